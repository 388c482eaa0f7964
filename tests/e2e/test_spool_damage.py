#!/usr/bin/env python3
"""A spool record that does not decode is set aside and reported at start, never a
crash: envelope records are damaged with LMDB's own mdb_dump/mdb_load (a wrong
version byte, a truncated record) while relayd is stopped; on restart relayd
runs, reports them, lists the intact messages, and relayctl -s on a damaged ID
fails cleanly."""

import os
import re
import shutil
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402

MDB_DUMP, MDB_LOAD = shutil.which("mdb_dump"), shutil.which("mdb_load")


class SpoolDamageTest(h.RelaydTestCase):
    def rewrite_envelopes(self, spool, change):
        """change(key_hex, value_hex) -> new value_hex (or the same)."""
        dump = subprocess.run([MDB_DUMP, "-s", "envelope", spool], check=True,
                              capture_output=True, text=True).stdout
        lines = dump.split("\n")
        start = lines.index("HEADER=END") + 1
        end = lines.index("DATA=END")
        data = lines[start:end]
        for i in range(0, len(data), 2):
            key, value = data[i].strip(), data[i + 1].strip()
            data[i + 1] = " " + change(key, value)
        text = "\n".join(lines[:start] + data + lines[end:])
        r = subprocess.run([MDB_LOAD, "-s", "envelope", spool], input=text,
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, f"mdb_load: {r.stderr}")

    def test_undecodable_records_are_set_aside(self):
        if not (MDB_DUMP and MDB_LOAD):
            self.skipTest("lmdb-utils (mdb_dump, mdb_load) not installed")
        d = self.relayd()
        sent = {}
        for i in range(5):
            m = h.make_message(f"message {i}", f"body {i}\r\n")
            sent[self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"], m))] = m
        self.assertEqual(d.stop(), 0)
        ids = sorted(sent)
        bad_version, truncated = ids[1], ids[3]

        def change(key, value):
            if key.upper() == bad_version:
                return "ee" + value[2:]            # unknown record version
            if key.upper() == truncated:
                return value[:len(value) // 4 * 2]  # cut in the middle of a field
            return value
        self.rewrite_envelopes(d.spool, change)

        d.start()
        good = [i for i in ids if i not in (bad_version, truncated)]
        self.assertEqual(sorted(m["id"] for m in d.queue()), good)
        for qid in good:
            self.assertIntact(d, qid, sent[qid], sender="alice@src.test", rcpts=["bob@dst.test"])
        log = d.log().split("==== start #2")[1]
        m = re.search(r"(\d+) records? set aside", log)
        self.assertTrue(m, f"start-up report of set-aside records:\n{log}")
        self.assertEqual(int(m.group(1)), 2, log)
        for qid in (bad_version, truncated):
            self.assertIn(qid, log, "each set-aside record is named in the log")
            r = d.ctl("-s", qid)
            self.assertEqual(r.rc, 1, r)
        # new mail still flows, and the next start is clean
        self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"],
                                   h.make_message("after", "after\r\n")))
        self.assertEqual(d.stop(), 0)
        d.start()
        self.assertEqual(len(d.queue()), len(good) + 1)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    h.main()
