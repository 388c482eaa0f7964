#!/usr/bin/env python3
"""CHUNKING (RFC 3030) against the real relayd, driven over a raw socket
(smtplib has no BDAT), every transaction pipelined: MAIL, RCPT and all BDAT
chunks in one write, the replies read afterwards.

- Messages of 1 octet to 10 MB, in chunks of 1 octet to 1 MB, 8-bit content
  and lines that start with dots: relayd delivers each to a test SMTP sink
  (smarthost mode), where it arrives as the octets sent with only relayd's
  Received: field in front (and, for the header-less 1-octet message, the
  Date:/Message-ID: fields and the final CRLF relayd adds to any message).
- A BDAT total over smtp.max_message_size: the chunk that goes over and the one
  pipelined behind it get 552 5.3.4, the session stays in sync (NOOP answered)
  and nothing is queued (relayctl -p says the queue is empty, the sink got
  nothing); the next transaction in the same session is queued.
"""

import os
import random
import re
import sys
import threading
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402

MB = 1024 * 1024
QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9A-F]{16})$")


def payload(size, seed):
    """`size` octets: a full header block (so relayd adds only Received:) and a
    body of 8-bit lines, some starting with dots, CRLF-terminated. Sizes under
    the header block's length give that many 'x' instead."""
    head = (f"From: <{c.SENDER}>\r\nTo: <bob@dst.test>\r\nSubject: bdat {size}\r\n"
            f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <bdat-{size}@src.test>\r\n"
            "\r\n").encode()
    if size < len(head) + 2:
        return b"x" * size
    rng = random.Random(seed)
    body = bytearray()
    left = size - len(head)
    while left > 0:
        n = left if left <= 902 else rng.randint(3, 900)  # octets of the line, CRLF included
        if n > 2:
            line = bytes([rng.choice(b".abc")]) + rng.randbytes(n - 3)
            body += line.replace(b"\r", b"r").replace(b"\n", b"n").replace(b"\0", b"0")
        body += b"\r\n"
        left -= n
    return head + bytes(body)


def transaction(data, chunk, rcpt="bob@dst.test"):
    """MAIL, RCPT and `data` in BDAT chunks of `chunk` octets (the last one LAST)."""
    out = [f"MAIL FROM:<{c.SENDER}> BODY=8BITMIME\r\nRCPT TO:<{rcpt}>\r\n".encode()]
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] or [b""]
    for i, p in enumerate(pieces):
        last = " LAST" if i == len(pieces) - 1 else ""
        out.append(f"BDAT {len(p)}{last}\r\n".encode() + p)
    return b"".join(out), len(pieces)


class BdatClient(h.SmtpConn):
    """A raw connection that writes a pipelined batch from a thread while the
    caller reads its replies, so neither side can block the other."""

    def __init__(self, port):
        super().__init__(port, timeout=60)
        self.expect("220")
        code, lines = self.cmd("EHLO client.test")
        assert code == 250, lines
        self.capabilities = {l[4:].split(" ")[0].upper() for l in lines}

    def batch(self, data, replies):
        errors = []

        def write():
            try:
                self.send(data)
            except OSError as e:
                errors.append(e)

        t = threading.Thread(target=write)
        t.start()
        try:
            return [self.reply() for _ in range(replies)]
        finally:
            t.join(60)
            if errors:
                raise AssertionError(f"write failed: {errors[0]}")


class ChunkingTest(c.DeliveryTestCase):
    def test_messages_of_1_octet_to_10_mb_arrive_byte_exact(self):
        srv = self.start_server(["127.0.0.1:0"], size=32 * MB)
        d = self.smarthost_relayd(srv.port, {"smtp.max_message_size": "11M"})
        # (message size, chunk size)
        cases = [(1, 1), (2, 1), (300, 1), (301, 7), (4096, 4096), (65543, 1000),
                 (MB + 3, 65536), (3 * MB, 1 * MB - 1), (10 * MB, MB)]
        sent = {}
        with BdatClient(d.port) as conn:
            self.assertIn("CHUNKING", conn.capabilities)
            self.assertIn("PIPELINING", conn.capabilities)
            for i, (size, chunk) in enumerate(cases):
                data = payload(size, seed=i)
                self.assertEqual(len(data), size)
                batch, chunks = transaction(data, chunk, rcpt=f"m{i}@dst.test")
                replies = conn.batch(batch, 2 + chunks)
                texts = [r[1][-1] for r in replies]
                self.assertEqual(texts[0], "250 2.1.0 Ok", texts[:3])
                self.assertEqual(texts[1], "250 2.1.5 Ok", texts[:3])
                pieces = [data[j:j + chunk] for j in range(0, size, chunk)]
                for j, t in enumerate(texts[2:-1]):
                    self.assertEqual(t, f"250 2.0.0 {len(pieces[j])} octets received")
                self.assertRegex(texts[-1], QUEUED, f"{size} octets")
                sent[f"m{i}@dst.test"] = data
            self.assertEqual(conn.cmd("QUIT")[0], 221)
        self.assertTrue(srv.wait_messages(len(cases), timeout=60), "every message delivered")
        self.wait_queue_empty(d, 30)
        got = {m["rcpt_to"][0]: m["data"] for m in srv.messages()}
        self.assertEqual(sorted(got), sorted(sent))
        for rcpt, data in sent.items():
            arrived = got[rcpt]
            if len(data) < 10:
                # No header block: relayd added Date:, Message-ID: and the
                # blank line; delivery ends the last line with CRLF.
                self.assertTrue(arrived.endswith(b"\r\n\r\n" + data + b"\r\n"), arrived[-100:])
                continue
            self.assertTrue(arrived.endswith(data), f"{rcpt}: {len(data)} octets not intact")
            prefix = arrived[:-len(data)].decode()
            self.assertRegex(prefix, r"^Received: from client\.test \(.*\r\n(\t.*\r\n)*\Z",
                             f"{rcpt}: only Received: is added")

    def test_total_over_the_size_limit_is_refused_and_nothing_is_queued(self):
        srv = self.start_server(["127.0.0.1:0"])
        d = self.smarthost_relayd(srv.port)  # smtp.max_message_size = 1M
        with BdatClient(d.port) as conn:
            half = b"y" * 600000
            batch = (f"MAIL FROM:<{c.SENDER}>\r\nRCPT TO:<bob@dst.test>\r\n".encode() +
                     b"BDAT 600000\r\n" + half + b"BDAT 600000\r\n" + half +
                     b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n")
            texts = [r[1][-1] for r in conn.batch(batch, 6)]
            self.assertEqual(texts, ["250 2.1.0 Ok", "250 2.1.5 Ok",
                                     "250 2.0.0 600000 octets received",
                                     "552 5.3.4 Message size exceeds fixed limit",
                                     "552 5.3.4 Message size exceeds fixed limit",
                                     "250 2.0.0 Ok"])
            # One BDAT over the limit on its own.
            texts = [r[1][-1] for r in conn.batch(
                transaction(b"z" * (MB + 1), MB + 1)[0], 3)]
            self.assertEqual(texts[2], "552 5.3.4 Message size exceeds fixed limit")
            p = d.ctl("-p")
            self.assertEqual(p.rc, 0, p)
            self.assertEqual(p.out.strip(), "Mail queue is empty")
            self.assertEqual(d.queue(), [])
            # The session goes on: the next message fits and is queued.
            texts = [r[1][-1] for r in conn.batch(transaction(payload(5000, 1), 999)[0], 8)]
            self.assertRegex(texts[-1], QUEUED)
        self.assertTrue(srv.wait_messages(1, timeout=30), "the fitting message delivered")
        self.assertEqual(len(srv.messages()), 1)
        self.assertIn("bdat 5000", srv.messages()[0]["data"].decode("latin-1"))


if __name__ == "__main__":
    h.main()
