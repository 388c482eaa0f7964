#!/usr/bin/env python3
"""The dead spool through relayctl, against a delivering relayd.

relayd (MX mode, `bounces = false` so no DSN traffic) delivers to the scripted
test SMTP server, which answers 550 5.1.1 to every RCPT containing "bad".
- a rejected recipient ends in `dead list` (text and --json) and `dead show`
  with reason `rejected`, the reply with its host, its attempts and times; the
  recipient delivered in the same transaction is not in the entry; `stats`
  counts it as dead;
- switched to accept (through the server's control port), `dead replay ID`
  delivers it at once and empties the dead spool; `dead replay ALL` and
  `dead purge ID|ALL` work, also after a restart;
- unknown IDs and a stopped daemon exit 1 with one line on stderr, bad usage
  exits 2;
- with `dead_retention = "2s"` entries are purged by themselves, not before.
"""

import os
import re
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402
from smtp_test_server import ControlClient  # noqa: E402

REJECT = {"on": "RCPT", "match": "bad", "reply": "550 5.1.1 No such user", "always": True}
UNKNOWN = "00000000000000AB"


class DeadSpoolTest(c.DeliveryTestCase):
    def setUp(self):
        self.dns = self.start_dns(mx=[("dst.test", "mx.dst.test", 10)],
                                  a={"mx.dst.test": "127.0.0.2"})
        self.srv = self.start_server(["127.0.0.2:0"], [REJECT])
        # The server is switched through its control port, as a separate
        # process would be.
        self.srv_ctl = ControlClient(self.srv.start_control())

    def relayd_for_test(self, overrides=None):
        cfg = {"queue.bounces": False}
        cfg.update(overrides or {})
        return self.mx_relayd(self.dns, self.srv.port, cfg)

    # -- relayctl helpers
    def ctl_ok(self, d, *args, expect=None):
        r = d.ctl(*args)
        self.assertEqual(r.rc, 0, r)
        if expect:
            self.assertRegex(r.out.strip(), expect, r)
        return r

    def ctl_fails(self, d, *args, rc=1, mention=None):
        r = d.ctl(*args)
        self.assertEqual(r.rc, rc, r)
        self.assertEqual(r.out, "", r)
        if rc == 1:
            lines = r.err.strip().splitlines()
            self.assertEqual(len(lines), 1, f"one line on stderr: {r}")
            if mention:
                self.assertIn(mention, lines[0], r)
        return r

    def dead(self, d):
        return h.parse_json_lines(self.ctl_ok(d, "dead", "list", "--json").out)

    def stats(self, d):
        return h.parse_json_lines(self.ctl_ok(d, "stats", "--json").out)[0]

    def wait_dead(self, d, ids, timeout=10):
        want = set(ids)

        def listed():
            entries = self.dead(d)
            return entries if want <= {e["id"] for e in entries} else None
        return self.wait_until(listed, timeout, f"{sorted(want)} in the dead spool")

    def received_for(self, rcpt):
        return [m for m in self.srv.messages() if rcpt in m["rcpt_to"]]

    # -- tests
    def test_rejected_recipient_listed_shown_then_replayed(self):
        d = self.relayd_for_test()
        t_sent = time.time()
        qid = self.send(d, ["good@dst.test", "bad@dst.test"], "mixed fates")
        entries = self.wait_dead(d, [qid])
        self.wait_queue_empty(d, 5)
        t_dead = time.time()
        self.assertEqual(len(self.received_for("good@dst.test")), 1)
        self.assertEqual(self.received_for("bad@dst.test"), [])

        # dead list --json: one object per entry, failed recipients only
        self.assertEqual(len(entries), 1, entries)
        e = entries[0]
        self.assertEqual(e["id"], qid)
        self.assertEqual(e["sender"], c.SENDER)
        self.assertGreater(e["size"], 0)
        self.assertTrue(int(t_sent) <= e["arrival"] <= t_dead, e)
        self.assertTrue(e["arrival"] <= e["failed_at"] <= t_dead, e)
        self.assertEqual([r["address"] for r in e["recipients"]], ["bad@dst.test"], e)
        r = e["recipients"][0]
        self.assertEqual(r["reason"], "rejected", r)
        self.assertEqual(r["reply_code"], 550, r)
        self.assertEqual(r["status"], "5.1.1", r)
        self.assertRegex(r["remote_host"], rf"^mx\.dst\.test\[127\.0\.0\.2\]:{self.srv.port}$")
        self.assertIn("mx.dst.test[127.0.0.2]", r["last_reply"], r)
        self.assertIn("550 5.1.1 No such user", r["last_reply"], r)
        self.assertEqual(r["attempts"], 1, r)
        self.assertTrue(e["arrival"] <= r["first_attempt"] <= r["last_attempt"] <= t_dead, r)
        self.assertEqual(r["last_attempt"], e["failed_at"], e)

        # dead list: postqueue-like text
        out = self.ctl_ok(d, "dead", "list").out
        self.assertRegex(out, rf"(?m)^{qid}\s+{e['size']} .*\s{re.escape(c.SENDER)}$", out)
        self.assertRegex(out, r"(?m)^\s+\(rejected: host mx\.dst\.test\[127\.0\.0\.2\]\S* said: "
                              r"550 5\.1\.1 No such user", out)
        self.assertRegex(out, r"(?m)^\s+bad@dst\.test$", out)
        self.assertNotIn("good@dst.test", out)
        self.assertRegex(out, r"(?m)^-- \d+ Kbytes in 1 Request\.$", out)

        # dead show: envelope, per-recipient failure, then the raw message
        env, msg = h.parse_show(self.ctl_ok(d, "dead", "show", qid).out_bytes)
        keys = dict(env)
        self.assertEqual(keys.get("id"), qid, env)
        self.assertEqual(keys.get("state"), "dead", env)
        self.assertEqual(h.unbracket(keys.get("sender", "")), c.SENDER, env)
        self.assertIn("failed_at", keys, env)
        rcpts = [v for k, v in env if k == "recipient"]
        self.assertEqual(len(rcpts), 1, env)
        line = rcpts[0]
        self.assertTrue(line.startswith("<bad@dst.test> "), line)
        for part in ("reason=rejected", "attempts=1", "reply_code=550", "status=5.1.1",
                     f"remote_host=mx.dst.test[127.0.0.2]:{self.srv.port}",
                     "550 5.1.1 No such user", "first_attempt=", "last_attempt=",
                     "failed_at="):
            self.assertIn(part, line)
        self.assertTrue(msg.startswith(b"Received:"), msg[:200])
        self.assertIn(b"Subject: mixed fates", msg)
        self.assertEqual(len(msg), e["size"])

        # stats: one dead, nothing live
        st = self.stats(d)
        self.assertEqual((st["active"], st["deferred"], st["held"], st["dead"]), (0, 0, 0, 1), st)
        self.assertGreater(st["spool_bytes"], 0, st)
        self.assertGreaterEqual(st["spool_max_bytes"], st["spool_bytes"], st)
        text = self.ctl_ok(d, "stats").out
        self.assertRegex(text, r"(?m)^dead:\s+1$", text)
        self.assertRegex(text, r"(?m)^spool:\s+\S+ \S+ used of ", text)

        # the server accepts now: replay delivers at once, only to the failed one
        self.srv_ctl.set_rules([])
        t = time.monotonic()
        self.ctl_ok(d, "dead", "replay", qid, expect=r"^relayctl: replayed 1 dead entry$")
        self.wait_until(lambda: self.received_for("bad@dst.test"), 5, "the replayed delivery")
        self.assertLess(time.monotonic() - t, 5)
        got = self.received_for("bad@dst.test")[0]
        self.assertEqual(got["rcpt_to"], ["bad@dst.test"], "delivered recipients are not replayed")
        self.assertIn(b"Subject: mixed fates", got["data"])
        self.assertEqual(len(self.received_for("good@dst.test")), 1)
        self.wait_queue_empty(d, 5)
        self.assertEqual(self.dead(d), [])
        self.ctl_ok(d, "dead", "list", expect=r"^Dead spool is empty$")
        statuses = [a.status for a in self.attempts(d, qid, rcpt="bad@dst.test")]
        self.assertEqual(statuses, ["bounced", "sent"])

        # it is gone from the dead spool now
        self.ctl_fails(d, "dead", "replay", qid, mention=qid)
        self.ctl_fails(d, "dead", "show", qid, mention=qid)
        st = self.stats(d)
        self.assertEqual((st["active"], st["deferred"], st["held"], st["dead"]), (0, 0, 0, 0), st)

    def test_replay_all_and_purge(self):
        d = self.relayd_for_test()
        ids = [self.send(d, f"bad{i}@dst.test", f"dead {i}") for i in range(3)]
        self.wait_dead(d, ids)
        self.assertEqual(self.stats(d)["dead"], 3)

        self.ctl_ok(d, "dead", "purge", ids[0], expect=r"^relayctl: purged 1 dead entry$")
        self.assertEqual(sorted(e["id"] for e in self.dead(d)), sorted(ids[1:]))
        self.ctl_fails(d, "dead", "purge", ids[0], mention=ids[0])
        self.ctl_fails(d, "dead", "purge", UNKNOWN, mention=UNKNOWN)
        self.ctl_fails(d, "dead", "replay", UNKNOWN, mention=UNKNOWN)
        self.ctl_fails(d, "dead", "show", UNKNOWN, mention=UNKNOWN)
        self.ctl_fails(d, "dead", "replay", "not-an-id", mention="not-an-id")

        # the dead spool survives a restart
        self.assertEqual(d.stop(), 0)
        d.start()
        self.assertEqual(sorted(e["id"] for e in self.dead(d)), sorted(ids[1:]))

        self.srv_ctl.set_rules([])
        self.ctl_ok(d, "dead", "replay", "ALL", expect=r"^relayctl: replayed 2 dead entries$")
        self.wait_until(lambda: len(self.srv.messages()) >= 2, 5, "both replayed messages")
        self.assertEqual(sorted(r for m in self.srv.messages() for r in m["rcpt_to"]),
                         ["bad1@dst.test", "bad2@dst.test"])
        self.wait_queue_empty(d, 5)
        self.assertEqual(self.dead(d), [])
        self.ctl_ok(d, "dead", "replay", "ALL", expect=r"^relayctl: replayed 0 dead entries$")

        # purge ALL
        self.srv_ctl.set_rules([REJECT])
        more = [self.send(d, f"bad{i}@dst.test", f"dead again {i}") for i in range(2)]
        self.wait_dead(d, more)
        self.ctl_ok(d, "dead", "purge", "ALL", expect=r"^relayctl: purged 2 dead entries$")
        self.assertEqual(self.dead(d), [])
        self.ctl_ok(d, "dead", "purge", "ALL", expect=r"^relayctl: purged 0 dead entries$")
        self.assertEqual(self.stats(d)["dead"], 0)
        self.assertEqual(len(self.srv.messages()), 2, "purged entries are never delivered")

    def test_usage_errors_and_a_stopped_daemon(self):
        d = self.relayd_for_test()
        for args in (["dead"], ["dead", "show"], ["dead", "replay"], ["dead", "purge"],
                     ["dead", "frob"], ["dead", "list", "--yaml"], ["dead", "show", "A", "B"],
                     ["stats", "--yaml"], ["stats", "x"]):
            r = d.ctl(*args)
            self.assertEqual(r.rc, 2, r)
            self.assertIn("usage", r.err, r)
        self.assertEqual(self.dead(d), [])
        self.ctl_ok(d, "dead", "list", expect=r"^Dead spool is empty$")
        self.assertEqual(d.stop(), 0)
        for args in (["dead", "list"], ["dead", "replay", "ALL"], ["stats"]):
            self.ctl_fails(d, *args, mention="relayd")

    def test_dead_retention_purges_old_entries(self):
        d = self.relayd_for_test({"queue.dead_retention": "2s"})
        qid = self.send(d, "bad@dst.test", "short-lived")
        entry = self.wait_dead(d, [qid], timeout=10)[0]
        seen = time.time()
        self.wait_until(lambda: self.dead(d) == [], 10, "the automatic purge", interval=0.2)
        gone = time.time()
        # failed_at is in whole seconds: it was kept for about 2 s, not less
        self.assertGreaterEqual(gone - entry["failed_at"], 2.0,
                                f"purged too early ({gone - entry['failed_at']:.1f}s)")
        self.assertLess(gone - seen, 8)
        self.assertRegex(d.log(), r"dead spool: purged 1 entry older than dead_retention \(2s\)")
        self.assertEqual(self.srv.messages(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
