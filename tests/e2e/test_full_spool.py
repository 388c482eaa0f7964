#!/usr/bin/env python3
"""A full spool answers 452 4.3.1 and loses nothing: at max_messages, below
min_free_disk, and when the LMDB map reaches max_spool_size (MDB_MAP_FULL).
The 452 may come at MAIL, RCPT or after DATA; messages queued before stay
listed with intact bodies, also after a restart.

A disk that really fills up (ENOSPC, with the min_free_disk guard off) is
tested on a small tmpfs: new mail gets a 4xx, nothing queued before is lost,
and once there is room again mail is accepted without a restart."""

import os
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402


def msg(i, size=0):
    filler = ""
    if size:
        line = ("%05d " % i) + "x" * 72 + "\r\n"  # 80 octets
        filler = line * (size // len(line))
    return h.make_message(f"message {i}", f"body of message {i}\r\n" + filler)


class FullSpoolTest(h.RelaydTestCase):
    def assertFull(self, res, what):
        code, text, stage = res
        self.assertEqual(code, 452, f"{what}: expected 452 4.3.1, got {code} {text} at {stage}")
        self.assertTrue(text.startswith("4.3.1"), f"{what}: {code} {text}")

    def assertAllIntact(self, d, sent):
        """The queue is exactly `sent` (queue ID -> message), each body intact."""
        self.assertEqual(sorted(m["id"] for m in d.queue()), sorted(sent))
        for qid, m in sent.items():
            self.assertIntact(d, qid, m, sender="alice@src.test", rcpts=["bob@dst.test"])

    def test_max_messages(self):
        d = self.relayd({"queue.max_messages": 5})
        sent = {}
        for i in range(5):
            m = msg(i)
            sent[self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"], m), i)] = m
        self.assertFull(h.submit(d.port, "alice@src.test", ["bob@dst.test"], msg(5)), "6th message")
        self.assertFull(h.submit(d.port, "alice@src.test", ["bob@dst.test"], msg(6)), "7th message")
        self.assertIn("452 4.3.1", d.log(), "the rejection is logged with its reply")
        q = d.queue()
        self.assertEqual(sorted(m["id"] for m in q), sorted(sent))
        for qid, m in sent.items():
            self.assertIntact(d, qid, m, sender="alice@src.test", rcpts=["bob@dst.test"])
        # room again after a delete
        victim = sorted(sent)[0]
        r = d.ctl("-d", victim)
        self.assertEqual(r.rc, 0, r)
        del sent[victim]
        m = msg(7)
        sent[self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"], m),
                               "after a delete")] = m
        self.assertEqual(sorted(x["id"] for x in d.queue()), sorted(sent))

    def test_min_free_disk(self):
        d = self.relayd({"queue.min_free_disk": "100T"})
        self.assertFull(h.submit(d.port, "alice@src.test", ["bob@dst.test"], msg(0)), "1st message")
        self.assertEqual(d.queue(), [])
        # the session stays usable after the 452
        with d.smtp() as c:
            c.expect("220")
            c.cmd("EHLO client.test")
            self.assertEqual(c.cmd("NOOP")[0], 250)

    def test_max_spool_size(self):
        d = self.relayd({"queue.max_spool_size": "2M"})
        sent = {}
        result = None
        for i in range(60):  # 60 x 100 KiB = 6 MiB > 2 MiB
            m = msg(i, 100 * 1024)
            res = h.submit(d.port, "alice@src.test", ["bob@dst.test"], m)
            if res[2] != "queued":
                result = res
                break
            sent[res[1]] = m
        self.assertIsNotNone(result, "the 2M spool never filled up")
        self.assertFull(result, f"message {len(sent) + 1} of 100 KiB")
        self.assertGreater(len(sent), 3, "a 2M spool holds several 100 KiB messages")
        # the next one is refused too, nothing half-stored
        self.assertFull(h.submit(d.port, "alice@src.test", ["bob@dst.test"], msg(99, 100 * 1024)),
                        "next message")

        def check_all():
            self.assertAllIntact(d, sent)

        check_all()
        self.assertEqual(d.stop(), 0)
        d.start()
        check_all()
        # deleting makes room again
        r = d.ctl("-d", "ALL")
        self.assertEqual(r.rc, 0, r)
        self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"], msg(100, 100 * 1024)),
                          "after -d ALL")
        self.assertEqual(d.stop(), 0)

    def mount_small_disk(self, size="16m"):
        mnt = tempfile.mkdtemp(prefix="relayd-smalldisk-")
        self.addCleanup(os.rmdir, mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", mnt],
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs (needs root): {r.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", mnt], capture_output=True)
        return mnt

    @staticmethod
    def fill(path):
        """Writes a file until the disk is full; returns its path."""
        filler = os.path.join(path, "filler")
        chunk = b"\0" * 65536
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(chunk)
            except OSError:
                pass
            try:  # the last partial page, too
                while True:
                    f.write(b"\0" * 512)
            except OSError:
                pass
        return filler

    def test_disk_really_full(self):
        mnt = self.mount_small_disk()
        d = self.relayd({"spool": os.path.join(mnt, "spool"), "queue.min_free_disk": "0"})
        sent = {}
        for i in range(5):
            m = msg(i, 100 * 1024)
            sent[self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"], m), i)] = m
        filler = self.fill(mnt)
        refused = []
        for i in range(5, 10):
            res = h.submit(d.port, "alice@src.test", ["bob@dst.test"], msg(i, 100 * 1024))
            if res[2] == "queued":  # a page LMDB had already reserved may still take one
                sent[res[1]] = msg(i, 100 * 1024)
                continue
            refused.append(res)
            self.assertFull(res, f"message {i} on a full disk")
        self.assertTrue(refused, "a full disk refused nothing")
        self.assertTrue(d.running(), "relayd survives a full disk")
        self.assertIn("spool full: No space left on device", d.log())

        def check_all():
            self.assertAllIntact(d, sent)

        check_all()
        # Room again: accepted without a restart, and everything survives one.
        os.unlink(filler)
        m = msg(100, 100 * 1024)
        sent[self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"], m),
                               "after the disk has room again")] = m
        check_all()
        self.assertEqual(d.stop(), 0)
        d.start()
        check_all()
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    h.main()
