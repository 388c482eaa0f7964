#!/usr/bin/env python3
"""Two relayd processes never share a spool (both would deliver every message).

relayd A runs; relayd B, with its own ports and control socket but A's spool,
exits non-zero within seconds with one line naming A's PID, and A goes on
accepting and queueing mail. Once A has stopped, B starts on that spool and
finds A's message there."""

import os
import sys
import subprocess
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402


class SpoolLock(h.RelaydTestCase):
    def test_second_relayd_on_one_spool_is_refused_until_the_first_stops(self):
        a = self.relayd(name="a")
        b = self.relayd({"spool": a.spool}, start=False, name="b")
        self.assertNotEqual(a.port, b.port)

        b.start(wait=False)
        try:
            rc = b.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.fail("relayd B kept running on a spool relayd A holds")
        self.assertNotEqual(rc, 0)
        expected = f"spool {a.spool} is in use by relayd pid {a.proc.pid}"
        lines = [l for l in b.log().splitlines() if expected in l]
        self.assertEqual(len(lines), 1, f"no single line {expected!r} in:\n{b.log_tail()}")

        self.assertTrue(a.running())
        msg = h.make_message("while B was refused", "A still queues mail.\r\n")
        qid = self.assertQueued(h.submit(a.port, "alice@src.test", ["bob@dst.test"], msg), "A")
        self.assertIn(qid, [m["id"] for m in a.queue()])

        self.assertEqual(a.stop(), 0)
        b.start()
        self.assertIn(qid, [m["id"] for m in b.queue()])


if __name__ == "__main__":
    unittest.main()
