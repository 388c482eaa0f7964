#!/usr/bin/env python3
"""relayctl against a delivering relayd: -h / -H / -f / -r.

The destination answers every RCPT with 451, so each delivery attempt shows at
the test server (one RCPT) and in the log (one status=deferred line).
- hold: a held message is not attempted, not even by -f, though it is due;
  -j says "held", -p marks it '!'; release (-H): attempted again at once.
- flush: with a 60 s backoff, -f attempts the deferred message immediately;
  so does -r ID (requeue); once the server accepts, -f delivers it.
"""

import os
import re
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_delivery_common as c  # noqa: E402

RCPT = "hal@down.test"
DEFER = {"on": "RCPT", "match": RCPT, "reply": "451 4.3.0 Mailbox busy", "always": True}


class RelayctlDeliveryTest(c.DeliveryTestCase):
    def setUp(self):
        self.dns = self.start_dns(mx=[("down.test", "mx.down.test", 10)],
                                  a={"mx.down.test": "127.0.0.2"})
        self.srv = self.start_server(["127.0.0.2:0"], [DEFER])

    def rcpts_seen(self):
        return len([x for x in self.srv.rcpt_log() if x["addr"] == RCPT])

    def wait_attempts(self, d, qid, n, timeout):
        """Wait for the n-th attempt to be stored (log line and server RCPT)."""
        self.wait_until(lambda: len(self.attempts(d, qid)) >= n and self.rcpts_seen() >= n,
                        timeout, f"attempt {n} of {qid}")
        # ...and for its result to be stored, so the next action sees it
        self.wait_until(lambda: (self.entry(d, qid) or {}).get("in_flight") is False, 5,
                        f"{qid} not in flight")

    def ctl_ok(self, d, *args, expect=None):
        r = d.ctl(*args)
        self.assertEqual(r.rc, 0, r)
        if expect:
            self.assertRegex(r.out.strip(), expect, r)
        return r

    def test_hold_release(self):
        d = self.mx_relayd(self.dns, self.srv.port,
                           {"queue.min_backoff": "1s", "queue.max_backoff": "2s"})
        qid = self.send(d, RCPT, "hold me")
        self.wait_attempts(d, qid, 1, 5)
        self.ctl_ok(d, "-h", qid, expect=r"^relayctl: held 1 message$")
        m = self.entry(d, qid)
        self.assertEqual(m["state"], "held", m)
        p = self.ctl_ok(d, "-p")
        self.assertRegex(p.out, rf"(?m)^{qid}!\s", p.out)

        # Due after 1 s (and 2 s more): held, it is never attempted, flush or not.
        time.sleep(1.5)
        self.ctl_ok(d, "-f")
        time.sleep(2.0)
        self.assertEqual(self.rcpts_seen(), 1, "a held message must not be attempted")
        self.assertEqual(len(self.attempts(d, qid)), 1, self.attempts(d, qid))
        m = self.entry(d, qid)
        self.assertEqual((m["state"], m["recipients"][0]["attempts"]), ("held", 1), m)

        t = time.monotonic()
        self.ctl_ok(d, "-H", qid, expect=r"^relayctl: released 1 message$")
        self.wait_attempts(d, qid, 2, 3)
        self.assertLess(time.monotonic() - t, 2.5, "released and overdue: attempted at once")
        m = self.entry(d, qid)
        self.assertNotEqual(m["state"], "held", m)
        self.assertEqual(m["recipients"][0]["attempts"], 2, m)

        # ALL works too
        self.ctl_ok(d, "-h", "ALL", expect=r"^relayctl: held 1 message$")
        self.assertEqual(self.entry(d, qid)["state"], "held")
        self.ctl_ok(d, "-H", "ALL", expect=r"^relayctl: released 1 message$")
        self.srv.set_rules([])
        self.wait_until(lambda: self.srv.messages(), 5, "delivery after release")
        self.wait_queue_empty(d, 5)
        self.assertNoBounce(d)

    def test_flush_and_requeue_skip_the_backoff(self):
        d = self.mx_relayd(self.dns, self.srv.port,
                           {"queue.min_backoff": "60s", "queue.max_backoff": "120s"})
        qid = self.send(d, RCPT, "flush me")
        self.wait_attempts(d, qid, 1, 5)
        r = self.entry(d, qid)["recipients"][0]
        now = time.time()
        self.assertEqual(r["attempts"], 1, r)
        self.assertIn("451 4.3.0 Mailbox busy", r["last_reply"], r)
        self.assertTrue(now + 50 <= r["next_attempt"] <= now + 60 * 1.1 + 2,
                        f"next_attempt {r['next_attempt'] - now:.1f}s from now, want ~60s: {r}")

        t = time.monotonic()
        self.ctl_ok(d, "-f", expect=r"^relayctl: flushed 1 message$")
        self.wait_attempts(d, qid, 2, 3)
        self.assertLess(time.monotonic() - t, 2, "flush attempts at once")
        r = self.entry(d, qid)["recipients"][0]
        self.assertEqual(r["attempts"], 2, r)
        self.assertGreater(r["next_attempt"], time.time() + 60, f"backoff doubled: {r}")

        t = time.monotonic()
        self.ctl_ok(d, "-r", qid, expect=r"^relayctl: requeued 1 message$")
        self.wait_attempts(d, qid, 3, 3)
        self.assertLess(time.monotonic() - t, 2, "requeue attempts at once")

        r = d.ctl("-r", "0000000000000000")
        self.assertEqual(r.rc, 1, f"requeue of an unknown ID: {r}")
        self.assertIn("0000000000000000", r.err, r)

        # Nothing happens by itself for a minute; the server now accepts; -f.
        time.sleep(1)
        self.assertEqual(self.rcpts_seen(), 3)
        self.srv.set_rules([])
        t = time.monotonic()
        self.ctl_ok(d, "-f", expect=r"^relayctl: flushed 1 message$")
        self.wait_until(lambda: self.srv.messages(), 3, "delivery after the last flush")
        self.wait_queue_empty(d, 5)
        self.assertLess(time.monotonic() - t, 5)
        atts = self.attempts(d, qid)
        self.assertEqual([a.status for a in atts], ["deferred"] * 3 + ["sent"], atts)
        self.assertNoBounce(d)


if __name__ == "__main__":
    unittest.main(verbosity=2)
