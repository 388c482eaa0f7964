#!/usr/bin/env python3
"""10,000 messages from Postfix's smtp-source (20 parallel sessions) all get 250;
relayd logs one accept line for each; relayctl -j lists each with the right
sender, recipient and size (size = stored octets, checked against relayctl -s
for a sample); relayctl -p counts 10000 Requests; relayctl -d ALL empties it."""

import os
import random
import re
import shutil
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
N = int(os.environ.get("RELAYD_LOAD_MESSAGES", "10000"))
SENDER, RCPT = "sender@src.test", "rcpt@dst.test"
PAYLOAD = 1024


class LoadTest(h.RelaydTestCase):
    def test_smtp_source_10000(self):
        if not os.path.exists(SMTP_SOURCE):
            self.skipTest("smtp-source not installed")
        d = self.relayd({"smtp.idle_timeout": "60s"})
        t0 = time.time()
        p = h.spawn([SMTP_SOURCE, "-s", "20", "-m", str(N), "-l", str(PAYLOAD),
                     "-M", "loadgen.test", "-f", SENDER, "-t", RCPT, f"127.0.0.1:{d.port}"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            self.fail(f"smtp-source did not finish in 240 s: {out[-2000:]!r}")
        elapsed = time.time() - t0
        self.assertEqual(p.returncode, 0, f"smtp-source failed (a non-2xx reply?):\n"
                                          f"{out.decode('utf-8', 'replace')[-3000:]}")
        print(f"\n{N} messages accepted in {elapsed:.1f} s ({N / elapsed:.0f}/s)", file=sys.stderr)

        # one accept line per message in the log (allow a moment for the log to flush)
        deadline = time.monotonic() + 10
        while True:
            logged = [e for e in d.accepted_log_entries() if e[1] == SENDER]
            if len(logged) >= N or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(len(logged), N, "accept lines in the log")
        log_ids = {e[0]: e for e in logged}
        self.assertEqual(len(log_ids), N, "queue IDs in the log are unique")
        for qid, sender, size, nrcpt, client in logged:
            self.assertEqual((nrcpt, client), ("1", "127.0.0.1"))

        # relayctl -j: every message, right envelope and size
        q = d.queue()
        self.assertEqual(len(q), N, "messages listed by relayctl -j")
        ids = [m["id"] for m in q]
        self.assertEqual(set(ids), set(log_ids), "relayctl -j IDs == logged IDs")
        for m in q:
            self.assertRegex(m["id"], r"^[0-9A-F]{16}$")
            self.assertEqual(m["sender"], SENDER, m)
            self.assertEqual([r["address"] for r in m["recipients"]], [RCPT], m)
            self.assertEqual(m["recipients"][0]["state"], "pending", m)
            self.assertIsInstance(m["size"], int)
            self.assertGreater(m["size"], PAYLOAD, m)
            self.assertEqual(m["size"], int(log_ids[m["id"]][2]), f"log size != -j size: {m}")
            self.assertLessEqual(abs(m["arrival"] - (t0 + elapsed / 2)), elapsed / 2 + 5, m)
        # IDs are time-ordered: sorted by ID, arrival never goes back
        by_id = sorted(q, key=lambda m: m["id"])
        for a, b in zip(by_id, by_id[1:]):
            self.assertLessEqual(a["arrival"], b["arrival"], f"ID order != time order: {a} {b}")

        # size = stored bytes, for a sample
        for m in random.Random(1).sample(q, 25):
            env, stored = d.show(m["id"])
            self.assertEqual(len(stored), m["size"], m["id"])
            self.assertTrue(stored.startswith(b"Received:"))
            self.assertIn(b"From: <sender@src.test>\r\n", stored)
            head, body = h.split_message(stored)
            payload = len(body.replace(b"\r\n", b""))  # smtp-source counts its line ends in -l
            self.assertTrue(PAYLOAD - 40 <= payload <= PAYLOAD, f"payload of {payload} octets")

        # relayctl -p: one ID line per message, trailer counts them all
        r = d.ctl("-p")
        self.assertEqual(r.rc, 0, r)
        lines = r.out.splitlines()
        self.assertTrue(lines[0].startswith("-Queue ID-"), lines[:2])
        id_lines = [l for l in lines if re.match(r"^[0-9A-F]{16}[*!]?\s", l)]
        self.assertEqual(len(id_lines), N)
        m = re.fullmatch(r"-- (\d+) Kbytes in (\d+) Requests\.", lines[-1])
        self.assertTrue(m, f"trailer: {lines[-1]!r}")
        self.assertEqual(int(m.group(2)), N)
        total = sum(x["size"] for x in q)
        self.assertLessEqual(abs(int(m.group(1)) - total / 1024), 1, f"Kbytes vs {total} octets")

        # relayctl -d ALL empties the queue
        r = d.ctl("-d", "ALL")
        self.assertEqual(r.rc, 0, r)
        self.assertIn(str(N), r.out + r.err, f"-d ALL reports the count: {r}")
        self.assertEqual(d.queue(), [])
        r = d.ctl("-p")
        self.assertEqual((r.rc, r.out.strip()), (0, "Mail queue is empty"))
        self.assertEqual(d.stop(), 0, "exit status after SIGTERM")


if __name__ == "__main__":
    h.main()
