#!/usr/bin/env python3
"""kill -9 in the middle of a loaded run loses no acknowledged message.

20 concurrent smtplib clients submit messages with unique bodies and record the
queue ID of every `250 ... queued as ID`; relayd is killed with SIGKILL while
they run, then restarted on the same spool. Every recorded ID must be listed by
relayctl -j with its sender and recipients, and relayctl -s must show its body
intact (checked for the last 100 acknowledged before the kill plus a random
sample, at least 200 in all)."""

import os
import random
import re
import smtplib
import sys
import threading
import time
import unittest
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402

CLIENTS = 20
RUN_SECONDS = float(os.environ.get("RELAYD_CRASH_SECONDS", "4"))


def body_for(tag, rnd):
    lines = [f"unique {tag}"]
    for i in range(rnd.randint(1, 120)):
        kind = rnd.random()
        if kind < 0.1:
            lines.append("." + "dot-leading line %d" % i)  # dot-stuffing round trip
        elif kind < 0.15:
            lines.append("")
        elif kind < 0.2:
            lines.append("8-bit: caf\u00e9 \u4f60\u597d %d" % i)
        else:
            lines.append(("%s-%d " % (tag[:8], i)) * rnd.randint(1, 12))
    return "\r\n".join(lines).encode("utf-8") + b"\r\n"


class Client(threading.Thread):
    def __init__(self, n, port, stop, killing, acked, lock):
        super().__init__(daemon=True)
        self.n, self.port, self.stop_ev, self.acked, self.lock = n, port, stop, acked, lock
        self.killing = killing
        self.rnd = random.Random(n)
        self.errors_before_kill = []

    def run(self):
        while not self.stop_ev.is_set():
            try:
                s = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
            except OSError:
                time.sleep(0.05)
                continue
            try:
                s.ehlo(f"client{self.n}.test")
                # a few messages per connection, then a fresh one
                for _ in range(self.rnd.randint(1, 5)):
                    if self.stop_ev.is_set():
                        break
                    tag = uuid.uuid4().hex
                    sender = f"c{self.n}-{tag[:6]}@src.test"
                    rcpts = [f"r{i}-{tag[:6]}@dst.test" for i in range(self.rnd.randint(1, 3))]
                    msg = (f"From: <{sender}>\r\nTo: <{rcpts[0]}>\r\nSubject: crash {tag}\r\n"
                           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                           ).encode() + body_for(tag, self.rnd)
                    code, _ = s.mail(sender, ["BODY=8BITMIME"])
                    if code != 250:
                        raise smtplib.SMTPException(f"MAIL {code}")
                    for r in rcpts:
                        code, _ = s.rcpt(r)
                        if code != 250:
                            raise smtplib.SMTPException(f"RCPT {code}")
                    code, text = s.data(msg)
                    text = text.decode("utf-8", "replace")
                    if code == 250:
                        m = h.QUEUED_RE.match(f"250 {text}")
                        if not m:
                            raise AssertionError(f"bad DATA reply {text!r}")
                        with self.lock:
                            self.acked.append((m.group(1), sender, rcpts, msg, time.monotonic()))
                    else:
                        raise smtplib.SMTPException(f"DATA {code} {text}")
                s.quit()
            except AssertionError as e:
                self.errors_before_kill.append(repr(e))
                return
            except (OSError, smtplib.SMTPException) as e:
                if not self.killing.is_set():
                    self.errors_before_kill.append(repr(e))
                try:
                    s.close()
                except Exception:
                    pass
                time.sleep(0.02)


class CrashTest(h.RelaydTestCase):
    def test_kill9_loses_no_acknowledged_message(self):
        d = self.relayd({"smtp.idle_timeout": "30s"})
        stop, killing = threading.Event(), threading.Event()
        acked, lock = [], threading.Lock()
        clients = [Client(i, d.port, stop, killing, acked, lock) for i in range(CLIENTS)]
        for c in clients:
            c.start()
        try:
            deadline = time.monotonic() + RUN_SECONDS
            while time.monotonic() < deadline:
                time.sleep(0.1)
            with lock:
                n_before = len(acked)
            time.sleep(0.2)
            with lock:
                self.assertGreater(len(acked), n_before, "clients are still submitting at the kill")
            killing.set()
            d.kill9()  # mid-run: clients are inside transactions right now
            killed_at = time.monotonic()
        finally:
            stop.set()
            for c in clients:
                c.join(30)
        errors = [e for c in clients for e in c.errors_before_kill]
        self.assertEqual(errors, [], "client errors before the kill")
        self.assertGreaterEqual(len(acked), 300, "too few messages acknowledged to be a load test")
        print(f"\n{len(acked)} messages acknowledged before kill -9", file=sys.stderr)

        d.start()
        q = {m["id"]: m for m in d.queue()}
        ids = [a[0] for a in acked]
        self.assertEqual(len(set(ids)), len(ids), "acknowledged IDs are unique")
        missing = [i for i in ids if i not in q]
        self.assertEqual(missing, [], f"{len(missing)} acknowledged messages lost")
        # anything else in the queue was also sent by a client (committed, 250 lost in the kill)
        self.assertLessEqual(len(q) - len(ids), CLIENTS, "more unacknowledged messages than clients")
        for qid, sender, rcpts, msg, _ in acked:
            m = q[qid]
            self.assertEqual(m["sender"], sender, m)
            self.assertEqual(sorted(r["address"] for r in m["recipients"]), sorted(rcpts), m)

        # bodies: the last 100 before the kill and a random sample of the rest
        acked.sort(key=lambda a: a[4])
        sample = acked[-100:]
        rest = acked[:-100]
        sample += random.Random(7).sample(rest, min(len(rest), max(100, 300 - len(sample))))
        for qid, sender, rcpts, msg, _ in sample:
            _, stored = self.assertIntact(d, qid, msg, sender=sender, rcpts=rcpts)
            self.assertEqual(q[qid]["size"], len(stored), qid)
        self.assertGreaterEqual(len(sample), min(200, len(acked)))
        self.assertLess(time.monotonic() - killed_at, 120)

        # the start-up report counts what is in the spool
        log = d.log().split("==== start #2")[1]
        m = re.search(r"(\d+) messages", log)
        self.assertTrue(m, f"start-up report:\n{log[:2000]}")
        self.assertEqual(int(m.group(1)), len(q), log[:2000])

        # the restarted daemon takes new mail, with an ID after all earlier ones
        qid = self.assertQueued(h.submit(d.port, "after@src.test", ["bob@dst.test"],
                                         h.make_message("after restart", "hi\r\n")))
        self.assertGreater(qid, max(q), "queue IDs keep increasing across a kill -9")
        self.assertIn(qid, {m["id"] for m in d.queue()})
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
