#!/usr/bin/env python3
"""Real clients against the real relayd: swaks and smtplib submit 8-bit and
SMTPUTF8 messages; relayctl -j shows the envelope, relayctl -s the stored bytes
(body intact, Received: prepended, Message-ID:/Date: added only when missing).

swaks 20201014 cannot add MAIL parameters (no BODY=8BITMIME / SMTPUTF8 option):
with swaks the 8-bit body and the UTF-8 header fields go over a plain ESMTP
transaction; smtplib covers the declared BODY=8BITMIME and SMTPUTF8 paths."""

import os
import re
import shutil
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402

LATIN1 = "Grüße, café, naïve, Ærø — 1 € ".encode("latin-1", "replace")
UTF8 = "Grüße aus Köln, 你好世界, Ελληνικά, emoji 🚀, ¡olé!".encode("utf-8")


class ClientsTest(h.RelaydTestCase):
    @classmethod
    def setUpClass(cls):
        cls.swaks = shutil.which("swaks")

    def setUp(self):
        self.d = self.relayd()

    def swaks_send(self, sender, rcpt, data, extra=()):
        if not self.swaks:
            self.skipTest("swaks not installed")
        path = os.path.join(self.d.dir, "swaks-data.eml")
        with open(path, "wb") as f:
            f.write(data.rstrip(b"\n"))  # swaks adds the final line end itself
        cmd = [self.swaks, "--server", "127.0.0.1", "--port", str(self.d.port),
               "--ehlo", "swaks.client.test", "--from", sender, "--to", rcpt,
               "--data", "@" + path, "--timeout", "20"] + list(extra)
        p = h.spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = p.communicate(timeout=60)
        out = out.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, f"swaks failed:\n{out}")
        m = re.search(r"<[-~] *250 2\.0\.0 Ok: queued as ([0-9A-F]{16})", out)
        self.assertTrue(m, f"no 'queued as' in swaks output:\n{out}")
        return m.group(1)

    def entry(self, qid):
        q = {m["id"]: m for m in self.d.queue()}
        self.assertIn(qid, q, f"{qid} not in relayctl -j: {list(q)}")
        return q[qid]

    def check_envelope(self, qid, sender, rcpts, sent):
        m = self.entry(qid)
        self.assertEqual(m["sender"], sender)
        self.assertEqual(sorted(r["address"] for r in m["recipients"]), sorted(rcpts))
        for r in m["recipients"]:
            self.assertEqual(r["state"], "pending", m)
        env, stored = self.assertIntact(self.d, qid, sent, sender=sender, rcpts=rcpts)
        self.assertEqual(m["size"], len(stored), "relayctl -j size != stored bytes")
        head, _ = h.split_message(stored)
        received = re.split(rb"\r\n(?![ \t])", head)[0]
        self.assertIn(b"relay.test", received, "Received: names this host")
        self.assertIn(qid.encode(), received, f"Received: carries the queue ID: {received!r}")
        names = h.header_names(head)
        self.assertEqual(names.count("message-id"), 1, names)
        self.assertEqual(names.count("date"), 1, names)
        return m, stored

    # -- swaks
    def test_swaks_8bit_body(self):
        body = b"Latin-1: " + LATIN1 + b"\nUTF-8: " + UTF8 + b"\nhigh bytes: \xff\xfe\x80\x81\n"
        data = (b"From: <alice@src.test>\nTo: <bob@dst.test>\nSubject: 8-bit via swaks\n"
                b"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                b"Content-Transfer-Encoding: 8bit\n\n" + body)
        qid = self.swaks_send("alice@src.test", "bob@dst.test", data)
        self.check_envelope(qid, "alice@src.test", ["bob@dst.test"],
                            data.replace(b"\n", b"\r\n"))

    def test_swaks_utf8_headers_keep_given_ids(self):
        # UTF-8 header fields, and Message-ID:/Date: present: not added again.
        data = ("From: 用户 <alice@src.test>\nTo: 收件人 <bob@dst.test>\n"
                "Subject: 你好, Grüße\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n"
                "Message-ID: <swaks-utf8@src.test>\n\n"
                "正文: Ελληνικά 🚀\n..leading dot line\n").encode("utf-8")
        qid = self.swaks_send("alice@src.test", "bob@dst.test", data)
        sent = data.replace(b"\n", b"\r\n")
        _, stored = self.check_envelope(qid, "alice@src.test", ["bob@dst.test"], sent)
        self.assertIn(b"Message-ID: <swaks-utf8@src.test>\r\n", stored)
        self.assertIn(b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n", stored)
        self.assertIn(b"\r\n..leading dot line\r\n", stored,
                      "swaks dot-stuffs; relayd must un-stuff exactly once")

    # -- smtplib
    def test_smtplib_8bitmime(self):
        body = b"Latin-1: " + LATIN1 + b"\r\nUTF-8: " + UTF8 + b"\r\n.dot\r\n\xff\r\n"
        msg = h.make_message("8-bit via smtplib", b"", extra_headers=[
            "MIME-Version: 1.0", "Content-Transfer-Encoding: 8bit"]) + body
        res = h.submit(self.d.port, "alice@src.test", ["bob@dst.test", "carol@dst.test"], msg,
                       mail_options=["BODY=8BITMIME"])
        qid = self.assertQueued(res)
        self.check_envelope(qid, "alice@src.test", ["bob@dst.test", "carol@dst.test"], msg)

    def test_smtplib_smtputf8(self):
        sender, rcpt = "用户@例子.测试", "收件人@例子.测试"
        msg = ("From: 用户 <用户@例子.测试>\r\nTo: <收件人@例子.测试>\r\n"
               "Subject: 国际化邮件 ✉\r\n\r\n你好, 世界! Grüße 🚀\r\n").encode("utf-8")
        res = h.submit(self.d.port, sender, [rcpt, "bob@dst.test"], msg,
                       mail_options=["SMTPUTF8", "BODY=8BITMIME"])
        qid = self.assertQueued(res)
        self.check_envelope(qid, sender, [rcpt, "bob@dst.test"], msg)

    def test_smtplib_sendmail_api(self):
        # The high-level API applications use: SMTP.sendmail with SMTPUTF8.
        msg = "Subject: sendmail API\r\nFrom: <ünïcode@例子.测试>\r\n\r\nBody ✓\r\n".encode()
        with self.d.smtplib() as s:
            s.ehlo("app.client.test")
            self.assertTrue(s.has_extn("smtputf8") and s.has_extn("8bitmime")
                            and s.has_extn("pipelining") and s.has_extn("size"))
            self.assertEqual(int(s.esmtp_features["size"]), 1024 * 1024)
            refused = s.sendmail("ünïcode@例子.测试", ["bob@dst.test"], msg,
                                 mail_options=["SMTPUTF8"])
            self.assertEqual(refused, {})
        q = self.d.queue()
        self.assertEqual(len(q), 1, q)
        self.check_envelope(q[0]["id"], "ünïcode@例子.测试", ["bob@dst.test"], msg)

    def test_header_detection(self):
        # Message-ID:/Date: are recognised case-insensitively and only in the
        # header section; a body line that looks like one does not count.
        cases = {
            "lowercase": (b"message-id: <lc@src.test>\r\nDATE: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
                          b"Subject: lower\r\n\r\nbody\r\n", False),
            "in body only": (b"Subject: body only\r\n\r\nMessage-ID: <fake@src.test>\r\n"
                             b"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n", True),
            "folded": (b"Subject: folded\r\nMessage-ID:\r\n <folded@src.test>\r\n"
                       b"Date:\r\n\tMon, 23 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n", False),
            "no body": (b"Subject: headers only\r\n", True),
        }
        for name, (msg, added) in cases.items():
            with self.subTest(name):
                qid = self.assertQueued(h.submit(self.d.port, "alice@src.test", ["bob@dst.test"], msg))
                _, stored = self.d.show(qid)
                head, body = h.split_message(stored)
                names = h.header_names(head)
                self.assertEqual(names.count("message-id"), 1, stored)
                self.assertEqual(names.count("date"), 1, stored)
                o_head, o_body = h.split_message(msg)
                self.assertEqual(body, o_body)
                for line in o_head.split(b"\r\n"):
                    self.assertIn(line, head.split(b"\r\n"))
                self.assertEqual(b"<" + qid.encode() + b"@relay.test>" in head, added, head)


if __name__ == "__main__":
    h.main()
