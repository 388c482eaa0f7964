#!/usr/bin/env python3
"""Connection limits (421 4.7.0 over max_connections / max_connections_per_client),
the idle timeout (421, then close), and graceful stop on SIGTERM: a session in
the middle of DATA still gets its 250, new connections are no longer served,
idle sessions get 421, and relayd exits 0 with the message safe on disk.
smtp.max_data_memory bounds the message content all sessions hold together:
the body that grows past it gets 452 4.3.1 at the end of its DATA."""

import os
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402


class LimitsTest(h.RelaydTestCase):
    def open_session(self, d, source=None, retry_for=3.0):
        """A connection that got its 220 (retries briefly while a just-closed
        connection, e.g. the readiness probe, is still being counted)."""
        deadline = time.monotonic() + retry_for
        while True:
            c = d.smtp(source=source)
            r = c.reply()
            if r and r[0] == 220:
                return c
            c.close()
            if time.monotonic() > deadline:
                self.fail(f"no 220 for a connection from {source or '127.0.0.1'}: {r}")
            time.sleep(0.1)

    def assertRefused421(self, d, source=None):
        with d.smtp(source=source) as c:
            r = c.reply()
            self.assertIsNotNone(r, "closed without a 421")
            self.assertEqual(r[0], 421, r)
            self.assertTrue(r[1][-1].startswith("421 4.7.0"), r)
            self.assertTrue(c.closed(), "closed after the 421")

    def test_max_connections_per_client(self):
        d = self.relayd({"smtp.max_connections_per_client": 2})
        c1 = self.open_session(d)
        c2 = self.open_session(d)
        try:
            self.assertRefused421(d)
            self.assertRefused421(d)
            # another client is not affected
            with self.open_session(d, source="127.0.0.2") as other:
                self.assertEqual(other.cmd("EHLO other.test")[0], 250)
            # the existing sessions still work
            self.assertEqual(c1.cmd("EHLO one.test")[0], 250)
            self.assertEqual(c2.cmd("NOOP")[0], 250)
            # a slot frees when a session ends
            self.assertEqual(c1.cmd("QUIT")[0], 221)
            self.assertTrue(c1.closed())
            with self.open_session(d) as c3:
                self.assertEqual(c3.cmd("NOOP")[0], 250)
        finally:
            c1.close()
            c2.close()
        self.assertIn("421 4.7.0", d.log(), "the refusal is logged with its reply")

    def test_max_connections(self):
        d = self.relayd({"smtp.max_connections": 3, "smtp.max_connections_per_client": 3})
        conns = [self.open_session(d, source=f"127.0.0.{i}") for i in (1, 2, 3)]
        try:
            self.assertRefused421(d, source="127.0.0.4")
            self.assertRefused421(d, source="127.0.0.1")
            conns[0].cmd("QUIT")
            self.assertTrue(conns[0].closed())
            with self.open_session(d, source="127.0.0.4") as c:
                self.assertEqual(c.cmd("NOOP")[0], 250)
        finally:
            for c in conns:
                c.close()

    def reply_within(self, c, seconds, what):
        try:
            return c.reply(timeout=seconds)
        except socket.timeout:
            pass
        self.fail(f"{what}: nothing from relayd within {seconds} s (idle_timeout is 2s)")

    def test_idle_timeout(self):
        d = self.relayd({"smtp.idle_timeout": "2s"})
        # after the greeting
        with self.open_session(d) as c:
            t0 = time.monotonic()
            r = self.reply_within(c, 8, "idle after the greeting")
            waited = time.monotonic() - t0
            self.assertIsNotNone(r, "closed without a 421")
            self.assertEqual(r[0], 421, r)
            self.assertTrue(1.5 <= waited <= 5, f"timed out after {waited:.1f} s, want ~2 s")
            self.assertTrue(c.closed(timeout=3))
        # in the middle of DATA: 421, close, nothing queued
        with self.open_session(d) as c:
            c.cmd("EHLO client.test")
            self.assertEqual(c.cmd("MAIL FROM:<alice@src.test>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<bob@dst.test>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(b"Subject: stalled\r\n\r\nhalf a body")
            r = self.reply_within(c, 8, "idle in the middle of DATA")
            self.assertIsNotNone(r)
            self.assertEqual(r[0], 421, r)
            self.assertTrue(c.closed(timeout=3))
        self.assertEqual(d.queue(), [])
        # activity keeps a session alive past the timeout
        with self.open_session(d) as c:
            for _ in range(4):
                time.sleep(1)
                self.assertEqual(c.cmd("NOOP")[0], 250)

    def test_sigterm_finishes_data_in_flight(self):
        d = self.relayd({"smtp.idle_timeout": "30s"})
        busy = self.open_session(d)
        idle = self.open_session(d)
        try:
            idle.cmd("EHLO idle.test")
            busy.cmd("EHLO busy.test")
            self.assertEqual(busy.cmd("MAIL FROM:<alice@src.test>")[0], 250)
            self.assertEqual(busy.cmd("RCPT TO:<bob@dst.test>")[0], 250)
            self.assertEqual(busy.cmd("DATA")[0], 354)
            first = b"Subject: in flight at SIGTERM\r\n\r\nfirst half\r\n"
            busy.send(first)
            time.sleep(0.2)
            d.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            self.assertTrue(d.running(), "relayd must wait for the transaction in flight")
            # the idle session is told to go away
            r = idle.reply(timeout=5)
            self.assertIsNotNone(r, "idle session closed without a reply")
            self.assertEqual(r[0], 421, r)
            self.assertTrue(idle.closed(timeout=3))
            # new connections are no longer served
            try:
                with h.SmtpConn(d.port, timeout=3) as c:
                    r = c.reply(timeout=3)
                    self.assertTrue(r is None or r[0] == 421, f"new connection after SIGTERM got {r}")
            except (ConnectionRefusedError, socket.timeout):
                pass
            # finishing DATA still gets the 250
            second = b"second half\r\n"
            busy.send(second + b".\r\n")
            r = busy.reply(timeout=10)
            self.assertIsNotNone(r, "closed before answering DATA")
            self.assertRegex(r[1][-1], h.QUEUED_RE.pattern)
            qid = h.QUEUED_RE.match(r[1][-1]).group(1)
            # then the session ends (a 421 first is fine)
            r = busy.reply(timeout=5)
            if r is not None:
                self.assertEqual(r[0], 421, r)
                self.assertTrue(busy.closed(timeout=5))
        finally:
            busy.close()
            idle.close()
        t0 = time.monotonic()
        rc = d.proc.wait(10)
        self.assertEqual(rc, 0, "exit status after SIGTERM")
        self.assertLess(time.monotonic() - t0, 10)
        # the message is on disk
        d.start()
        self.assertEqual([m["id"] for m in d.queue()], [qid])
        self.assertIntact(d, qid, first + second, sender="alice@src.test", rcpts=["bob@dst.test"])
        self.assertEqual(d.stop(), 0)

    def test_sigterm_with_stalled_data(self):
        # A client that stops in the middle of DATA holds up the stop only until
        # its idle timeout; then relayd exits 0 and nothing is queued.
        d = self.relayd({"smtp.idle_timeout": "3s"})
        c = self.open_session(d)
        try:
            c.cmd("EHLO stalled.test")
            self.assertEqual(c.cmd("MAIL FROM:<alice@src.test>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<bob@dst.test>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(b"Subject: never finished\r\n\r\npartial")
            time.sleep(0.5)
            t0 = time.monotonic()
            d.proc.send_signal(signal.SIGTERM)
            try:
                rc = d.proc.wait(15)
            except subprocess.TimeoutExpired:
                rc = None
            if rc is None:
                self.fail("relayd still running 15 s after SIGTERM with one stalled session "
                          "(idle_timeout = 3s)")
            self.assertEqual(rc, 0)
            took = time.monotonic() - t0
            self.assertLess(took, 8, f"stop took {took:.1f} s with idle_timeout = 3s")
        finally:
            c.close()
        d.start()
        self.assertEqual(d.queue(), [])

    def test_open_file_limit_raised(self):
        # Started with a soft limit of 256 descriptors, relayd still serves 600
        # concurrent sessions (it raises its limit towards max_connections).
        d = self.relayd({"smtp.max_connections": 1000, "smtp.max_connections_per_client": 1000,
                         "smtp.idle_timeout": "60s"}, start=False)
        d.start(nofile=256)
        conns = []
        try:
            for i in range(600):
                c = h.SmtpConn(d.port, timeout=10)
                conns.append(c)
            for i, c in enumerate(conns):
                r = c.reply(timeout=10)
                self.assertIsNotNone(r, f"connection {i} closed without a greeting")
                self.assertEqual(r[0], 220, f"connection {i}: {r}")
            self.assertEqual(conns[-1].cmd("NOOP")[0], 250)
        finally:
            for c in conns:
                c.close()
        self.assertTrue(d.running())

    def test_ipv6_listener(self):
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
        except OSError:
            self.skipTest("no IPv6 loopback")
        d = self.relayd(start=False)
        port6 = h.free_port()
        d.reconfigure({"smtp.listen": [f"127.0.0.1:{d.port}", f"[::1]:{port6}"],
                       "smtp.mynetworks": ["127.0.0.0/8", "::1/128"]})
        d.start()
        with socket.create_connection(("::1", port6), timeout=10) as s:
            f = s.makefile("rwb")
            self.assertTrue(f.readline().startswith(b"220"))
            for cmd, want in ((b"EHLO v6.test", b"250 "), (b"MAIL FROM:<alice@src.test>", b"250 "),
                              (b"RCPT TO:<bob@dst.test>", b"250 "), (b"DATA", b"354 ")):
                f.write(cmd + b"\r\n")
                f.flush()
                while True:
                    line = f.readline()
                    if line[3:4] != b"-":
                        break
                self.assertTrue(line.startswith(want), (cmd, line))
            f.write(b"Subject: over IPv6\r\n\r\nhi\r\n.\r\n")
            f.flush()
            line = f.readline().decode().rstrip("\r\n")
            self.assertRegex(line, h.QUEUED_RE.pattern)
        q = d.queue()
        self.assertEqual(len(q), 1)
        env, _ = d.show(q[0]["id"])
        self.assertEqual(dict(env)["client"].split()[0].strip("[]"), "::1", env)
        self.assertIn("connect from [::1]:", d.log())

    def test_pipelined_burst(self):
        # 5000 commands in one write: 5000 replies, in order, none lost.
        import threading
        d = self.relayd()
        c = self.open_session(d)
        try:
            c.cmd("EHLO burst.test")
            burst = b"".join(b"NOOP %d\r\n" % i for i in range(5000)) + b"QUIT\r\n"
            sender = threading.Thread(target=c.send, args=(burst,), daemon=True)
            sender.start()
            for i in range(5000):
                r = c.reply(timeout=20)
                self.assertIsNotNone(r, f"closed after {i} replies")
                self.assertEqual(r[0], 250, f"reply {i}: {r}")
            self.assertEqual(c.reply(timeout=20)[0], 221)
            self.assertTrue(c.closed())
            sender.join(10)
        finally:
            c.close()

    def test_message_size_boundary(self):
        # max_message_size = 1M counts the content as sent (after un-stuffing):
        # exactly 1048576 octets are accepted, one more is refused with 552 5.3.4.
        d = self.relayd()
        head = b"Subject: boundary\r\n\r\n"
        line = b"y" * 998 + b"\r\n"
        def content(total):
            n, rest = divmod(total - len(head), len(line))
            return head + line * n + b"z" * (rest - 2) + b"\r\n"
        exact = content(1024 * 1024)
        self.assertEqual(len(exact), 1024 * 1024)
        res = h.submit(d.port, "alice@src.test", ["bob@dst.test"], exact,
                       mail_options=["SIZE=%d" % len(exact)])
        self.assertQueued(res, "exactly max_message_size")
        over = content(1024 * 1024 + 1)
        code, text, stage = h.submit(d.port, "alice@src.test", ["bob@dst.test"], over)
        self.assertEqual((code, stage), (552, "data"), text)
        self.assertTrue(text.startswith("5.3.4"), text)
        self.assertEqual(len(d.queue()), 1)

    def test_message_content_in_memory_is_bounded(self):
        d = self.relayd({"smtp.max_data_memory": "300K", "smtp.max_message_size": "1M"})
        line = "x" * 78 + "\r\n"
        big = h.make_message("second", line * 2500)  # 200 KB
        a = self.open_session(d)
        self.assertEqual(a.cmd("EHLO a.test")[0], 250)
        self.assertEqual(a.cmd("MAIL FROM:<alice@src.test>")[0], 250)
        self.assertEqual(a.cmd("RCPT TO:<bob@dst.test>")[0], 250)
        self.assertEqual(a.cmd("DATA")[0], 354)
        a.send("Subject: first\r\n\r\n" + line * 2500)  # 200 KB held, no end yet
        time.sleep(0.5)  # relayd has read it
        # Another 200 KB on top is over 300K: refused at the end of its DATA.
        code, text, stage = h.submit(d.port, "alice@src.test", ["bob@dst.test"], big)
        self.assertEqual((code, text[:5], stage), (452, "4.3.1", "data"), text)
        # The session that held the first 200 KB goes on and is accepted.
        a.send(".\r\n")
        code, lines = a.reply()
        self.assertEqual(code, 250, lines)
        # Its memory is given back once queued (the session stays open): the
        # same message is accepted now.
        self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"], big), "after")
        a.close()
        self.assertEqual(len(d.queue()), 2)
        self.assertIn("over smtp.max_data_memory (307200): this message is refused", d.log())

    def test_sigint_idle_daemon(self):
        d = self.relayd()
        d.proc.send_signal(signal.SIGINT)
        self.assertEqual(d.proc.wait(10), 0)


if __name__ == "__main__":
    h.main()
