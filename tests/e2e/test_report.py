#!/usr/bin/env python3
"""relayctl report: pflogsumm-style counts from relayd's own event record.

- A scripted next hop accepts accept.test and other.test, defers two
  recipients of defer.test (451 4.3.2, each reply with its own id) and rejects
  reject.test (550). `relayctl report --json` counts exactly: 6 received (5
  sent and the non-delivery notice), 4 delivered, 2 deferred, 1 bounced, per
  domain, the two deferrals as one reason (the ids collapsed), per submitter;
  the human output has pflogsumm's sections. No [events] file or webhook is
  configured: the record is on by default.
- A message of three hours ago (relayd run under libfaketime) is counted by
  the default --since 24h and by --since 4h --until 2h, not by --since 1h.
- The counts survive a restart; a damaged line in the record is skipped, and
  the report and the log say so.
- A bad --since exits 64, an unknown word 2.
"""

import glob
import json
import os
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


class ReportTest(c.DeliveryTestCase):
    def next_hop(self):
        return self.start_server(["127.0.0.1:0"], [
            {"on": "RCPT", "match": "a@defer.test", "reply": "451 4.3.2 Try later, id 1111"},
            {"on": "RCPT", "match": "b@defer.test", "reply": "451 4.3.2 Try later, id 2222"},
            {"on": "RCPT", "match": "@reject.test", "reply": "550 5.1.1 No such user"},
        ])

    def daemon(self, port):
        # Deferred mail waits an hour: each deferral is counted once.
        return self.smarthost_relayd(port, {"queue.min_backoff": "1h", "queue.max_backoff": "2h"},
                                     start=False)

    def report(self, d, *args):
        r = d.ctl("report", "--json", *args)
        self.assertEqual(r.rc, 0, r)
        return json.loads(r.out)

    def settled(self, d, ids):
        """Every message attempted and its result stored; the notice delivered."""
        def done():
            q = {m["id"]: m for m in d.queue()}
            return set(q) == set(ids) and all(m["state"] == "deferred" and not m["in_flight"]
                                              for m in q.values())
        self.wait_until(done, 30, "only the deferred mail left, attempted")

    def test_counts_sections_window_and_restart(self):
        srv = self.next_hop()
        d = self.daemon(srv.port)
        old_phase = os.path.exists(FAKETIME_LIB)
        if old_phase:
            # One message delivered three hours ago (relayd's clock set back).
            asan = os.environ.get("ASAN_OPTIONS", "")
            d.extra_env = {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": "-3h", "DONT_FAKE_MONOTONIC": "1",
                           "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}
            d.start()
            self.send(d, "old@accept.test", subject="old")
            self.wait_queue_empty(d, 20)
            d.stop()
            d.extra_env = {}
        d.start()
        self.send(d, "ok1@accept.test", subject="one")
        self.send(d, ["ok2@accept.test", "ok@other.test"], subject="two")
        deferred = [self.send(d, "a@defer.test", subject="a"), self.send(d, "b@defer.test", subject="b")]
        self.send(d, "x@reject.test", subject="rejected")
        self.settled(d, deferred)
        want_now = {"received": 6, "delivered": 4, "deferred": 2, "bounced": 1, "expired": 0,
                    "dead": 0, "suspended": 0, "resumed": 0}

        def totals(rep):
            return {k: rep[k] for k in want_now}
        # The record is written behind the I/O thread: wait for it, then compare exactly.
        self.wait_until(lambda: totals(self.report(d, "--since", "1h")) == want_now, 10,
                        "the counts of this hour")
        rep = self.report(d, "--since", "1h")
        self.assertEqual(totals(rep), want_now, rep)
        self.assertEqual({x["domain"]: (x["delivered"], x["deferred"], x["bounced"]) for x in rep["domains"]},
                         {"accept.test": (2, 0, 0), "other.test": (1, 0, 0), "defer.test": (0, 2, 0),
                          "reject.test": (0, 0, 1), "src.test": (1, 0, 0)}, rep)  # src.test: the notice
        self.assertEqual(rep["domain_count"], 5)
        self.assertEqual([x["domain"] for x in rep["domains"]][:2], ["accept.test", "defer.test"])
        self.assertEqual(len(rep["deferral_reasons"]), 1, rep)  # both ids in one group
        self.assertEqual(rep["deferral_reasons"][0]["count"], 2)
        self.assertIn("451 4.3.2 Try later, id #", rep["deferral_reasons"][0]["reason"])
        self.assertEqual(len(rep["bounce_reasons"]), 1, rep)
        self.assertIn("550 5.1.1 No such user", rep["bounce_reasons"][0]["reason"])
        self.assertEqual({x["submitter"]: x["count"] for x in rep["submitters"]},
                         {"smtp 127.0.0.1": 5, "relayd": 1})
        self.assertEqual(rep["damaged_lines"], 0)
        self.assertEqual(len(self.report(d, "--since", "1h", "--top", "2")["domains"]), 2)

        # The window.
        if old_phase:
            day = self.report(d)  # default: 24h
            self.assertEqual(day["received"], 7, day)
            self.assertEqual(day["delivered"], 5, day)
            self.assertEqual(day["domains"][0], {"domain": "accept.test", "delivered": 3, "deferred": 0,
                                                 "bounced": 0, "expired": 0, "dead": 0}, day)
            old = self.report(d, "--since", "4h", "--until", "2h")
            self.assertEqual(totals(old), dict(want_now, received=1, delivered=1, deferred=0,
                                               bounced=0), old)

        # The human form: pflogsumm's sections.
        r = d.ctl("report", "--since", "1h")
        self.assertEqual(r.rc, 0, r)
        for section in ("Grand Totals", "Per-Domain Summary (top 5 of 5)", "Top Deferral Reasons",
                        "Top Bounce Reasons", "Messages Received per Submitter"):
            self.assertIn(f"\n{section}\n", r.out)
        self.assertRegex(r.out, r"\n +6   received \(messages\)\n +4   delivered \(recipients\)\n"
                                r" +2   deferred \(recipients, attempts\)\n +1   bounced")
        self.assertRegex(r.out, r"\n +2 +0 +0 +0 +0  accept.test\n")
        self.assertRegex(r.out, r"\n +2   .*451 4\.3\.2 Try later, id #")

        # A restart keeps what was counted; a damaged line is skipped and said.
        d.stop()
        files = sorted(glob.glob(os.path.join(d.dir, "spool", "events", "*.log")))
        self.assertTrue(files, os.listdir(os.path.join(d.dir, "spool")))
        with open(files[-1], "ab") as f:
            f.write(b"garbage without tabs\n")
        d.start()
        self.wait_until(lambda: self.report(d, "--since", "1h")["damaged_lines"] == 1, 10,
                        "the damaged line counted")
        rep = self.report(d, "--since", "1h")
        self.assertEqual(totals(rep), want_now, rep)
        self.assertIn("1 damaged line(s) skipped", d.log())
        r = d.ctl("report", "--since", "1h")
        self.assertIn("1 damaged record line(s) skipped", r.out)
        if not old_phase:
            self.skipTest(f"{FAKETIME_LIB} missing (Debian package faketime): --since not shown "
                          "to leave older events out")

    def test_bad_arguments(self):
        d = self.relayd()
        r = d.ctl("report", "--since", "5x")
        self.assertEqual(r.rc, 64, r)
        self.assertIn("--since", r.err)
        r = d.ctl("report", "--since", "1h", "--until", "2h")
        self.assertEqual(r.rc, 64, r)
        r = d.ctl("report", "--top", "0")
        self.assertEqual(r.rc, 64, r)
        r = d.ctl("report", "--bogus")
        self.assertEqual(r.rc, 2, r)
        self.assertIn("usage:", r.out + r.err)
        rep = self.report(d)
        self.assertEqual(rep["received"], 0, rep)


if __name__ == "__main__":
    h.main()
