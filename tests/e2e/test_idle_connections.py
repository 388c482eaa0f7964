#!/usr/bin/env python3
"""Many idle clients do not starve an honest one: 1,500 connections from 30
loopback addresses (50 each, the per-client cap) sit idle after their greeting,
within max_connections; a new client is still greeted at once and its message
is queued; every idle connection is still open and answers NOOP afterwards.
"""

import os
import resource
import selectors
import socket
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402

ADDRESSES = [f"127.0.0.{i}" for i in range(10, 40)]
PER_ADDRESS = 50
TOTAL = len(ADDRESSES) * PER_ADDRESS  # 1500


def read_reply(sock, timeout):
    """One complete reply (all lines), or raise on timeout/EOF."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and len(lines[-2]) >= 4 and lines[-2][3:4] == b" ":
            return data


class IdleConnectionsTest(h.RelaydTestCase):
    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = TOTAL + 500
        if soft < want:
            if hard != resource.RLIM_INFINITY and hard < want:
                self.skipTest(f"RLIMIT_NOFILE hard limit {hard} < {want}")
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        self.socks = []

    def tearDown(self):
        for s in self.socks:
            s.close()

    def open_idle(self, port):
        """Connects TOTAL sockets without blocking on each, then reads every greeting."""
        sel = selectors.DefaultSelector()
        for addr in ADDRESSES:
            for _ in range(PER_ADDRESS):
                s = socket.socket()
                s.bind((addr, 0))
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                self.socks.append(s)
                sel.register(s, selectors.EVENT_READ, b"")
        pending = {s.fileno(): b"" for s in self.socks}
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                fd = key.fileobj.fileno()
                try:
                    chunk = key.fileobj.recv(512)
                except BlockingIOError:
                    continue
                if not chunk:
                    self.fail(f"an idle connection was closed before its greeting: "
                              f"{pending.get(fd)!r}")
                pending[fd] += chunk
                if pending[fd].endswith(b"\r\n"):
                    self.assertTrue(pending[fd].startswith(b"220 "), pending[fd])
                    sel.unregister(key.fileobj)
                    del pending[fd]
        sel.close()
        self.assertEqual(len(pending), 0, f"{len(pending)} idle connections got no greeting")
        for s in self.socks:
            s.setblocking(True)

    def test_a_new_client_is_served_among_1500_idle_ones(self):
        d = self.relayd({"smtp.max_connections": TOTAL + 100,
                         "smtp.max_connections_per_client": PER_ADDRESS,
                         "smtp.idle_timeout": "5m"})
        self.open_idle(d.port)

        # the honest client: greeted and served while the others sit there
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
            greeting = read_reply(s, 10)
            greeted_after = time.monotonic() - t0
            self.assertTrue(greeting.startswith(b"220 "), greeting)
            s.sendall(b"EHLO honest.test\r\n")
            self.assertTrue(read_reply(s, 10).startswith(b"250"))
            s.sendall(b"MAIL FROM:<a@src.test>\r\nRCPT TO:<b@dst.test>\r\nDATA\r\n")
            replies = b""
            while replies.count(b"\r\n") < 3:
                replies += read_reply(s, 10)
            self.assertRegex(replies, rb"^250 .*\r\n250 .*\r\n354 ")
            s.sendall(b"Subject: among idle ones\r\n\r\nhello\r\n.\r\n")
            self.assertRegex(read_reply(s, 10), rb"^250 2\.0\.0 Ok: queued as [0-9A-F]{16}")
            s.sendall(b"QUIT\r\n")
        # generous: this is a liveness check, not a latency benchmark
        self.assertLess(greeted_after, 5.0, "the new client waited for its greeting")

        # the idle ones are all still there and served
        for s in self.socks[::50]:
            s.sendall(b"NOOP\r\n")
            self.assertTrue(read_reply(s, 10).startswith(b"250"))
        self.assertRegex(d.log(), r"connect from 127\.0\.0\.39")


if __name__ == "__main__":
    h.main()
