#!/usr/bin/env python3
"""Hardening (issue 5) against the real relayd: the error cap (smtp.max_errors),
slowloris phase timeouts (a command line within idle_timeout of its first byte,
a DATA body within smtp.data_timeout), the header size limit
(smtp.max_header_size), the per-client connection rate
(smtp.max_connection_rate_per_client), pipelining without reading replies, and
the privilege drop (top-level `user`)."""

import os
import pwd
import socket
import stat
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402


def status_ids(pid):
    """{"Uid": [real, effective, saved, fs], "Gid": [...], "Groups": [...]} from /proc."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("Uid", "Gid", "Groups"):
                out[key] = [int(x) for x in value.split()]
    return out


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class HardeningTest(h.RelaydTestCase):
    def greeted(self, d, source=None):
        c = d.smtp(source=source)
        c.expect(220)
        return c

    def trickle(self, c, data, gap, give_up_after):
        """Sends `data` one byte every `gap` seconds until relayd answers or
        closes; returns (reply or None, seconds from the first byte)."""
        start = time.monotonic()
        for i in range(len(data)):
            try:
                c.send(data[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                return c.reply(timeout=gap), time.monotonic() - start
            except socket.timeout:
                pass
            if time.monotonic() - start > give_up_after:
                self.fail(f"no reply after trickling for {give_up_after}s")
        return c.reply(timeout=5), time.monotonic() - start

    def test_error_cap(self):
        d = self.relayd({"smtp.max_errors": 3})
        with self.greeted(d) as c:
            self.assertEqual(c.cmd("EHLO client.test")[0], 250)
            self.assertEqual(c.cmd("BOGUS")[0], 500)
            self.assertEqual(c.cmd("NOOP")[0], 250)  # good commands do not reset the count
            self.assertEqual(c.cmd("RCPT TO:<bob@dst.test>")[0], 503)
            r = c.cmd("MAIL FROM:<broken")
            self.assertEqual(r[0], 501, r)
            r = c.reply()
            self.assertIsNotNone(r, "closed without the 421")
            self.assertTrue(r[1][-1].startswith("421 4.7.0 Too many errors"), r)
            self.assertTrue(c.closed())
        # below the cap the session goes on and mail is accepted
        with self.greeted(d) as c:
            c.cmd("EHLO client.test")
            self.assertEqual(c.cmd("BOGUS")[0], 500)
            self.assertEqual(c.cmd("BOGUS")[0], 500)
            self.assertEqual(c.cmd("MAIL FROM:<alice@src.test>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<bob@dst.test>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            c.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
            c.expect("250 2.0.0")
        self.assertEqual(len(d.queue()), 1)

    def test_command_line_trickled_byte_by_byte_is_cut_off(self):
        d = self.relayd({"smtp.idle_timeout": "2s", "smtp.data_timeout": "3s"})
        with self.greeted(d) as c:
            # every byte comes well within the idle timeout, the line never in time
            r, elapsed = self.trickle(c, b"EHLO slowloris.example.test\r\n", 0.5, 8)
            self.assertIsNotNone(r, "closed without a 421")
            self.assertTrue(r[1][-1].startswith("421 4.4.2"), r)
            self.assertGreaterEqual(elapsed, 1.5)
            self.assertLess(elapsed, 4.5, "the line deadline runs from its first byte")
            self.assertTrue(c.closed())
        self.assertIn("(command line)", d.log())
        # lines that come at once are fine, however long the session lasts
        with self.greeted(d) as c:
            for _ in range(4):
                self.assertEqual(c.cmd("NOOP")[0], 250)
                time.sleep(1)
            self.assertEqual(c.cmd("QUIT")[0], 221)

    def test_data_body_trickled_is_cut_off_and_not_queued(self):
        d = self.relayd({"smtp.idle_timeout": "2s", "smtp.data_timeout": "3s"})
        with self.greeted(d) as c:
            c.cmd("EHLO client.test")
            self.assertEqual(c.cmd("MAIL FROM:<alice@src.test>")[0], 250)
            self.assertEqual(c.cmd("RCPT TO:<bob@dst.test>")[0], 250)
            self.assertEqual(c.cmd("DATA")[0], 354)
            start = time.monotonic()
            r = None
            c.send(b"Subject: slow\r\n\r\n")
            for i in range(12):  # one line a second: never idle, never done
                try:
                    r = c.reply(timeout=1)
                    break
                except socket.timeout:
                    pass
                try:
                    c.send(f"line {i}\r\n".encode())
                except (BrokenPipeError, ConnectionResetError):
                    r = c.reply(timeout=5)
                    break
            elapsed = time.monotonic() - start
            self.assertIsNotNone(r, "closed without a 421")
            self.assertTrue(r[1][-1].startswith("421 4.4.2"), r)
            self.assertGreaterEqual(elapsed, 2.5)
            self.assertLess(elapsed, 5.5)
            # the terminator after the cut-off is never read as the end of a message
            try:
                c.send(b".\r\n")
            except OSError:
                pass
            self.assertTrue(c.closed())
        self.assertIn("(DATA body)", d.log())
        self.assertEqual(d.queue(), [], "nothing queued from a timed-out DATA")
        # a body sent at normal speed is accepted with the same limits
        self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"],
                                   h.make_message("fast", "x\n" * 1000)))

    def test_header_size_limit(self):
        d = self.relayd({"smtp.max_header_size": "1K"})
        big = h.make_message("big header", "body\n",
                             extra_headers=[f"X-Pad-{i}: {'p' * 60}" for i in range(20)])
        code, text, stage = h.submit(d.port, "alice@src.test", ["bob@dst.test"], big)
        self.assertEqual((code, stage), (552, "data"), text)
        self.assertIn("5.3.4 Message header too big", text)
        self.assertEqual(d.queue(), [])
        # a small header with a body far over the header limit is fine
        qid = self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"],
                                         h.make_message("small header", ("b" * 70 + "\n") * 100)))
        self.assertEqual([m["id"] for m in d.queue()], [qid])

    def test_connection_rate_per_client(self):
        d = self.relayd({"smtp.max_connection_rate_per_client": 5})
        # the readiness probe came from 127.0.0.1: use other addresses
        for _ in range(5):
            with self.greeted(d, source="127.0.0.3") as c:
                self.assertEqual(c.cmd("QUIT")[0], 221)
        for _ in range(2):
            with d.smtp(source="127.0.0.3") as c:
                r = c.reply()
                self.assertIsNotNone(r, "closed without a 421")
                self.assertEqual(r[1][-1],
                                 "421 4.7.0 Too many connections from you, slow down")
                self.assertTrue(c.closed())
        with self.greeted(d, source="127.0.0.4") as c:  # another client is not affected
            self.assertEqual(c.cmd("NOOP")[0], 250)
        self.assertIn("max_connection_rate_per_client", d.log())

    def test_pipelining_without_reading_stays_bounded(self):
        # EHLO replies with a long hostname are ~50 times the size of "EHLO a";
        # 20 clients pipeline them as fast as they can and never read a reply
        host = ".".join(["a" * 60] * 4)
        d = self.relayd({"hostname": host, "smtp.idle_timeout": "3s"})
        pid = d.proc.pid
        before = vm_rss_kib(pid)
        conns = []
        try:
            for i in range(20):
                c = self.greeted(d, source=f"127.0.1.{i + 1}")
                c.sock.setblocking(False)
                conns.append(c)
            burst = b"EHLO a\r\n" * 8192
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                for c in conns:
                    try:
                        c.sock.send(burst)
                    except OSError:
                        pass
                time.sleep(0.01)
            grown = vm_rss_kib(pid) - before
            # relayd stops reading a client whose replies are not read and holds at
            # most ~16 KiB of replies plus those to one 512-byte slice per client
            # (the replies to a whole 8 KiB read would be ~7 MiB over 20 clients)
            if os.environ.get("RELAYD_SANITIZED") != "1":
                self.assertLess(grown, 3 * 1024, f"RSS grew by {grown} KiB")
        finally:
            for c in conns:
                c.close()
        # the stuck writes hit the timeout and the connections go away; relayd serves on
        with self.greeted(d) as c:
            self.assertEqual(c.cmd("NOOP")[0], 250)
        # a client that pipelines a lot and does read gets every reply, in order
        with self.greeted(d, source="127.0.1.100") as c:
            c.send(b"".join(f"NOOP {i}\r\n".encode() for i in range(3000)) + b"QUIT\r\n")
            for _ in range(3000):
                self.assertEqual(c.reply()[0], 250)
            self.assertEqual(c.reply()[0], 221)
            self.assertTrue(c.closed())

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_unknown_user_is_a_startup_error(self):
        d = self.relayd({"user": "no-such-user-relayd"}, start=False)
        d.start(wait=False)
        rc = d.proc.wait(10)
        self.assertNotEqual(rc, 0)
        self.assertIn('user: unknown user "no-such-user-relayd"', d.log())

    def test_threads_are_named_for_top_and_perf(self):
        """`top -H`, `ps -L` and perf show which thread is busy: the spool's
        writer, the log writer, the report record's writer and the inbound I/O
        thread by name."""
        d = self.relayd({})
        self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"],
                                   h.make_message("names", "hello\n")))
        task = f"/proc/{d.proc.pid}/task"
        names = set()
        for tid in os.listdir(task):
            with open(os.path.join(task, tid, "comm")) as f:
                names.add(f.read().strip())
        for want in ("inbound", "spool-writer", "log-writer", "events-report"):
            self.assertIn(want, names)

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_privilege_drop(self):
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("no user nobody")
        d = self.relayd({"user": "nobody"}, start=False)
        os.chmod(d.dir, 0o755)  # the spool's parent, as /var/spool is
        d.start()
        ids = status_ids(d.proc.pid)
        self.assertEqual(ids["Uid"], [nobody.pw_uid] * 4)
        self.assertEqual(ids["Gid"], [nobody.pw_gid] * 4)
        self.assertEqual(ids["Groups"], [nobody.pw_gid])
        self.assertIn("running as user nobody", d.log())
        # mail is still accepted and spooled, relayctl (as root) still works
        qid = self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"],
                                         h.make_message("after drop", "hello\n")))
        self.assertEqual([m["id"] for m in d.queue()], [qid])
        p = d.ctl("-p")
        self.assertEqual(p.rc, 0, p)
        st = os.stat(d.spool)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o711)
        self.assertEqual((st.st_uid, st.st_gid), (nobody.pw_uid, nobody.pw_gid))
        for name in os.listdir(d.spool):
            self.assertEqual(os.stat(os.path.join(d.spool, name)).st_uid, nobody.pw_uid, name)
        sk = os.stat(d.socket_path)
        self.assertEqual((sk.st_uid, sk.st_gid), (nobody.pw_uid, nobody.pw_gid))
        self.assertEqual(stat.S_IMODE(sk.st_mode), 0o660)
        self.assertEqual(d.stop(), 0)
        # and it starts again on the spool it now owns
        d.start()
        self.assertEqual([m["id"] for m in d.queue()], [qid])


if __name__ == "__main__":
    h.main()
