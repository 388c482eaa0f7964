#!/usr/bin/env python3
"""Self-test of the test tools: smtp_test_server.py (library and CLI) driven by
smtplib and raw sockets, and dnsmasq.py checked with its stdlib DNS client.
Loopback only; runs in a few seconds: python3 tests/tools/test_tools_selftest.py"""

import base64
import json
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dnsmasq as dm  # noqa: E402
from smtp_test_server import SMTPTestServer, parse_message, spawn_server  # noqa: E402

MSG = b"From: a@x.test\r\nTo: b@y.test\r\nSubject: hello\r\n\r\nline one\r\n.dotted line\r\n..two dots\r\n"


def raw_connect(port, host="127.0.0.1", timeout=5):
    s = socket.create_connection((host, port), timeout=timeout)
    return s, s.makefile("rb")


def read_reply(f):
    """-> (code, [lines]) of one possibly multi-line reply."""
    lines = []
    while True:
        ln = f.readline()
        if not ln:
            raise ConnectionError("closed")
        ln = ln.decode().rstrip("\r\n")
        lines.append(ln)
        if len(ln) < 4 or ln[3] != "-":
            return int(ln[:3]), lines


class SmtpServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="smtp-selftest-")
        cls.cert = os.path.join(cls.tmp, "cert.pem")
        cls.key = os.path.join(cls.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", cls.key, "-out", cls.cert,
                        "-days", "2", "-subj", "/CN=mx.test", "-addext", "subjectAltName=DNS:mx.test,IP:127.0.0.1"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def server(self, rules=None, listen="127.0.0.1:0", **opts):
        s = SMTPTestServer(listen, rules, **opts).start()
        self.addCleanup(s.stop)
        return s

    def client_ctx(self):
        ctx = ssl.create_default_context(cafile=self.cert)
        ctx.check_hostname = True
        return ctx

    # ---- rules
    def test_greeting_421_n_times(self):
        s = self.server([{"greeting": "421 4.7.0 Try later", "times": 3}])
        for _ in range(3):
            with self.assertRaises(smtplib.SMTPConnectError) as cm:
                smtplib.SMTP("127.0.0.1", s.port, timeout=5)
            self.assertEqual(cm.exception.smtp_code, 421)
        with smtplib.SMTP("127.0.0.1", s.port, timeout=5) as c:
            c.sendmail("a@x.test", ["b@y.test"], MSG)
        self.assertTrue(s.wait_messages(1))
        st = s.stats()
        self.assertEqual(st["connections"], 4)
        self.assertEqual([c["greeting"] for c in s.connections()], [421, 421, 421, 220])
        self.assertEqual(len(st["connect_times"]), 4)
        self.assertEqual(s.rules()[0]["fired"], 3)

    def test_rcpt_550_and_message_record(self):
        s = self.server([{"on": "RCPT", "match": "bad@", "reply": "550 5.1.1 No such user"}])
        with smtplib.SMTP("127.0.0.1", s.port, timeout=5) as c:
            refused = c.sendmail("a@x.test", ["good@y.test", "bad@y.test"], MSG)
        self.assertEqual(refused, {"bad@y.test": (550, b"5.1.1 No such user")})
        self.assertTrue(s.wait_messages(1))
        m = s.messages()[0]
        self.assertEqual(m["mail_from"], "a@x.test")
        self.assertEqual(m["rcpt_to"], ["good@y.test"])
        self.assertEqual(m["rejected_rcpts"], [{"addr": "bad@y.test", "reply": "550 5.1.1 No such user"}])
        self.assertEqual(m["data"], MSG)   # dot-unstuffed: what the client meant
        self.assertEqual(m["dot_lines"], 2)
        self.assertEqual(m["mail_params"].get("SIZE"), str(len(MSG)))
        self.assertFalse(m["tls"])
        self.assertEqual(parse_message(m)["Subject"], "hello")
        self.assertEqual(s.stats()["rcpt"]["bad@y.test"], {"attempts": 1, "accepted": 0, "rejected": 1})

    def test_451_then_accept_per_recipient(self):
        s = self.server([{"on": "RCPT", "match": "@slow.test", "reply": "451 4.3.0 Try again",
                          "times": 2, "per": "arg"}])
        for attempt in range(3):
            with smtplib.SMTP("127.0.0.1", s.port, timeout=5) as c:
                try:
                    refused = c.sendmail("a@x.test", ["r1@slow.test", "r2@slow.test"], MSG)
                except smtplib.SMTPRecipientsRefused as e:
                    refused = e.recipients
            if attempt < 2:
                self.assertEqual(set(refused), {"r1@slow.test", "r2@slow.test"})
                self.assertEqual(refused["r1@slow.test"][0], 451)
            else:
                self.assertEqual(refused, {})
        self.assertTrue(s.wait_messages(1))
        log = s.rcpt_log()
        self.assertEqual([x["reply"][:3] for x in log if x["addr"] == "r1@slow.test"], ["451", "451", "250"])
        self.assertEqual(s.stats()["delivered"], {"r1@slow.test": 1, "r2@slow.test": 1})

    def test_pipelining_replies_in_order(self):
        s = self.server([{"on": "RCPT", "match": "bad@", "reply": "550 5.1.1 No such user"}])
        sock, f = raw_connect(s.port)
        with sock:
            self.assertEqual(read_reply(f)[0], 220)
            sock.sendall(b"EHLO c.test\r\n")
            code, lines = read_reply(f)
            self.assertIn("250-PIPELINING", lines)
            sock.sendall(b"MAIL FROM:<a@x.test> BODY=8BITMIME\r\nRCPT TO:<b@y.test>\r\n"
                         b"RCPT TO:<bad@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n")
            self.assertEqual([read_reply(f)[0] for _ in range(5)], [250, 250, 550, 250, 354])
            sock.sendall(b"Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n")
            code, lines = read_reply(f)
            self.assertEqual(code, 250)
            self.assertRegex(lines[0], r"^250 2\.0\.0 Ok: queued as 1$")
            self.assertEqual(read_reply(f)[0], 221)
        self.assertTrue(s.wait_messages(1))
        s.wait_idle(5)
        cmds = s.connections()[0]["commands"]
        self.assertEqual([c["pipelined"] for c in cmds], [False, False, True, True, True, True, True])
        self.assertEqual(s.messages()[0]["rcpt_to"], ["b@y.test", "c@y.test"])

    def test_starttls_and_injection(self):
        s = self.server(tls_cert=self.cert, tls_key=self.key)
        with smtplib.SMTP("127.0.0.1", s.port, timeout=5) as c:
            c.ehlo()
            self.assertTrue(c.has_extn("starttls"))
            c.starttls(context=self.client_ctx())      # verified against the test cert
            c.ehlo()
            self.assertFalse(c.has_extn("starttls"))
            c.sendmail("a@x.test", ["b@y.test"], MSG)
        self.assertTrue(s.wait_messages(1))
        m = s.messages()[0]
        self.assertTrue(m["tls"])
        self.assertIn(m["tls_version"], ("TLSv1.2", "TLSv1.3"))
        # plaintext pipelined after STARTTLS is discarded, never answered
        sock, f = raw_connect(s.port)
        read_reply(f)
        sock.sendall(b"EHLO c.test\r\n")
        read_reply(f)
        sock.sendall(b"STARTTLS\r\nRSET\r\n")
        self.assertEqual(read_reply(f)[0], 220)
        ctx = ssl.create_default_context(cafile=self.cert)
        ts = ctx.wrap_socket(sock, server_hostname="mx.test")
        tf = ts.makefile("rb")
        ts.sendall(b"NOOP\r\n")
        self.assertEqual(read_reply(tf), (250, ["250 2.0.0 Ok"]))
        ts.sendall(b"QUIT\r\n")
        self.assertEqual(read_reply(tf)[0], 221)
        ts.close()
        self.assertEqual(s.stats()["starttls_injection"], 1)
        conn = s.connections()[-1]
        self.assertTrue(conn["starttls_injection"])
        self.assertEqual(conn["sni"], "mx.test")
        self.assertNotIn("RSET", [c["cmd"] for c in conn["commands"]])
        # a broken TLS peer: 220, then the connection closes
        s.set_rules([{"on": "STARTTLS", "reply": "220 2.0.0 Go ahead", "close": True, "times": 1}])
        with smtplib.SMTP("127.0.0.1", s.port, timeout=5) as c:
            c.ehlo()
            with self.assertRaises((ssl.SSLError, OSError, smtplib.SMTPServerDisconnected)):
                c.starttls(context=self.client_ctx())
        # implicit TLS (smtps), on IPv6 loopback
        s6 = self.server(listen="[::1]:0", tls_cert=self.cert, tls_key=self.key, implicit_tls=True)
        with smtplib.SMTP_SSL("::1", s6.port, timeout=5, context=ssl._create_unverified_context()) as c:
            c.sendmail("a@x.test", ["b@y.test"], MSG)
        self.assertTrue(s6.wait_messages(1))
        self.assertTrue(s6.messages()[0]["tls"])
        self.assertEqual(s6.messages()[0]["local_host"], "::1")

    def test_auth(self):
        s = self.server(auth_users={"alice": "s3cret"})
        with smtplib.SMTP("127.0.0.1", s.port, timeout=5) as c:
            c.ehlo()
            self.assertIn("PLAIN", c.esmtp_features["auth"])
            with self.assertRaises(smtplib.SMTPAuthenticationError) as cm:
                c.login("alice", "wrong")
            self.assertEqual(cm.exception.smtp_code, 535)
        with smtplib.SMTP("127.0.0.1", s.port, timeout=5) as c:
            c.ehlo()
            c.user, c.password = "alice", "s3cret"
            self.assertEqual(c.auth("PLAIN", c.auth_plain)[0], 235)
            c.sendmail("a@x.test", ["b@y.test"], MSG)
        with smtplib.SMTP("127.0.0.1", s.port, timeout=5) as c:
            c.ehlo()
            c.user, c.password = "alice", "s3cret"
            self.assertEqual(c.auth("LOGIN", c.auth_login, initial_response_ok=False)[0], 235)
        self.assertTrue(s.wait_messages(1))
        self.assertEqual(s.messages()[0]["auth_user"], "alice")
        self.assertEqual([(a["mech"], a["ok"]) for a in s.auth_log()],
                         [("PLAIN", False), ("LOGIN", False), ("PLAIN", True), ("LOGIN", True)])
        # AUTH only under TLS
        s.set_options(auth_require_tls=True)
        sock, f = raw_connect(s.port)
        with sock:
            read_reply(f)
            sock.sendall(b"EHLO c.test\r\n")
            self.assertFalse(any("AUTH" in ln for ln in read_reply(f)[1]))
            sock.sendall(b"AUTH PLAIN " + base64.b64encode(b"\0alice\0s3cret") + b"\r\n")
            self.assertEqual(read_reply(f)[0], 538)

    def test_drop_mid_data(self):
        s = self.server([{"on": "DATA_BODY", "action": "drop", "bytes": 10, "times": 1}])
        with self.assertRaises((smtplib.SMTPServerDisconnected, ConnectionError)):
            with smtplib.SMTP("127.0.0.1", s.port, timeout=5) as c:
                c.sendmail("a@x.test", ["b@y.test"], MSG)
        self.assertEqual(s.messages(), [])
        self.assertEqual(s.stats()["drops"], 1)
        with smtplib.SMTP("127.0.0.1", s.port, timeout=5) as c:   # times=1: now accepted
            c.sendmail("a@x.test", ["b@y.test"], MSG)
        self.assertTrue(s.wait_messages(1))
        self.assertEqual(s.connections()[0]["closed_by"], "drop")

    def test_stall_and_disconnect_is_noticed(self):
        s = self.server([{"on": "MAIL", "action": "stall", "seconds": 30}])
        c = smtplib.SMTP("127.0.0.1", s.port, timeout=0.5)
        c.ehlo()
        t0 = time.monotonic()
        with self.assertRaises((socket.timeout, smtplib.SMTPServerDisconnected)):
            c.mail("a@x.test")
        self.assertLess(time.monotonic() - t0, 2)
        c.close()
        # the stalled connection ends when the client goes: concurrency counts stay true
        self.assertTrue(s.wait_idle(3))
        self.assertEqual(s.stats()["stalls"], 1)
        s.set_rules([{"on": "ANY", "action": "stall", "seconds": 0.2},
                     {"on": "DOT", "reply": "452 4.3.1 Insufficient system storage", "times": 1}])
        with smtplib.SMTP("127.0.0.1", s.port, timeout=5) as c:
            with self.assertRaises(smtplib.SMTPDataError) as cm:
                c.sendmail("a@x.test", ["b@y.test"], MSG)
            self.assertEqual(cm.exception.smtp_code, 452)
            c.sendmail("a@x.test", ["b@y.test"], MSG)
        self.assertEqual(s.stats()["dot_rejected"], 1)
        self.assertEqual(len(s.messages()), 1)

    def test_listeners_local_rule_concurrency(self):
        s = self.server([{"on": "CONNECT", "local": "127.0.0.2", "action": "stall", "seconds": 0.3},
                         {"on": "CONNECT", "local": "127.0.0.2", "reply": "421 4.7.0 Rate limited",
                          "always": True}],
                        listen=["127.0.0.2:0", "127.0.0.3:0"])
        self.assertEqual(s.addresses, [("127.0.0.2", s.port), ("127.0.0.3", s.port)])
        socks = [socket.create_connection(("127.0.0.2", s.port), timeout=5) for _ in range(3)]
        for x in socks:
            self.assertTrue(x.makefile("rb").readline().startswith(b"421 4.7.0"))
            x.close()
        with smtplib.SMTP("127.0.0.3", s.port, timeout=5) as c:
            c.sendmail("a@x.test", ["b@y.test"], MSG)
        bl = s.stats()["by_local"]
        self.assertEqual(bl[f"127.0.0.2:{s.port}"]["max_concurrent"], 3)
        self.assertEqual(bl[f"127.0.0.2:{s.port}"]["messages"], 0)
        self.assertEqual(bl[f"127.0.0.3:{s.port}"]["messages"], 1)
        self.assertEqual(s.messages()[0]["local_host"], "127.0.0.3")

    def test_helo_only_size_and_syntax(self):
        s = self.server(helo_only=True)
        with smtplib.SMTP("127.0.0.1", s.port, timeout=5) as c:
            self.assertEqual(c.ehlo()[0], 502)
            self.assertEqual(c.helo()[0], 250)
            c.sendmail("a@x.test", ["b@y.test"], MSG)   # smtplib falls back to HELO
        self.assertTrue(s.wait_messages(1))
        self.assertFalse(s.messages()[0]["esmtp"])
        s.set_options(helo_only=False, size=100)
        with smtplib.SMTP("127.0.0.1", s.port, timeout=5) as c:
            c.ehlo()
            self.assertEqual(c.esmtp_features["size"], "100")
            with self.assertRaises(smtplib.SMTPSenderRefused) as cm:
                c.sendmail("a@x.test", ["b@y.test"], MSG * 2)
            self.assertEqual(cm.exception.smtp_code, 552)
        sock, f = raw_connect(s.port)
        with sock:
            read_reply(f)
            sock.sendall(b"EHLO c.test\n")
            self.assertEqual(read_reply(f)[0], 500)           # bare LF
            sock.sendall(b"NOOP " + b"x" * 5000 + b"\r\nEHLO c.test\r\n")
            self.assertEqual(read_reply(f)[0], 500)           # line too long
            self.assertEqual(read_reply(f)[0], 250)
            sock.sendall(b"MAIL FROM:<a@x.test> XFOO=1\r\nBOGUS\r\n")
            self.assertEqual(read_reply(f)[0], 555)
            self.assertEqual(read_reply(f)[0], 502)
        self.assertEqual(s.stats()["bare_lf_commands"], 1)

    def test_robust_against_bad_clients(self):
        s = self.server()
        for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 50, b"\xff" * 10000, b"EHLO"):
            x = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            x.sendall(junk)
            x.close()
        x = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        x.sendall(b"EHLO a\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\npartial")
        x.close()   # RST mid-DATA
        with smtplib.SMTP("127.0.0.1", s.port, timeout=5) as c:
            c.sendmail("a@x.test", ["b@y.test"], MSG)
        self.assertTrue(s.wait_idle(5))
        self.assertEqual(s.stats()["errors"], 0)
        self.assertEqual(len(s.messages()), 1)

    # ---- CLI mode
    def test_cli_control_maildir_sighup(self):
        md = os.path.join(self.tmp, "maildir")
        script = os.path.join(self.tmp, "rules.json")
        with open(script, "w") as f:
            json.dump({"rules": [{"on": "RCPT", "match": "bad@", "reply": "550 5.1.1 No such user"}],
                       "options": {"hostname": "cli.test"}}, f)
        p = spawn_server(["127.0.0.2:0"], script=script, maildir=md, stderr=subprocess.DEVNULL)
        self.addCleanup(p.stop)
        self.assertEqual(p.addresses[0][0], "127.0.0.2")
        with smtplib.SMTP("127.0.0.2", p.port, timeout=5) as c:
            self.assertIn(b"cli.test", c.ehlo()[1])
            refused = c.sendmail("a@x.test", ["ok@y.test", "bad@y.test"], MSG)
        self.assertIn("bad@y.test", refused)
        self.assertTrue(p.control.wait_messages(1, timeout=5))
        with open(os.path.join(md, "1.json")) as f:
            env = json.load(f)
        self.assertEqual(env["rcpt_to"], ["ok@y.test"])
        with open(os.path.join(md, "1.eml"), "rb") as f:
            self.assertEqual(f.read(), MSG)
        msgs = p.control.messages()
        self.assertEqual(msgs[0]["data"], MSG.decode())
        # runtime rules over the control port
        p.control.set_rules([{"on": "MAIL", "reply": "421 4.7.0 Go away", "times": 1}])
        with self.assertRaises((smtplib.SMTPSenderRefused, smtplib.SMTPServerDisconnected)):
            with smtplib.SMTP("127.0.0.2", p.port, timeout=5) as c:
                c.sendmail("a@x.test", ["bad@y.test"], MSG)
        with smtplib.SMTP("127.0.0.2", p.port, timeout=5) as c:
            self.assertEqual(c.sendmail("a@x.test", ["bad@y.test"], MSG), {})
        st = p.control.stats()
        self.assertEqual(st["messages"], 2)
        self.assertEqual(st["connections"], 3)
        self.assertEqual(p.control.get_rules()[0]["fired"], 1)
        # SIGHUP re-reads the script
        p.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and p.control.get_rules()[0].get("on") != "RCPT":
            time.sleep(0.05)
        self.assertEqual(p.control.get_rules()[0]["match"], "bad@")
        p.control.reset()
        self.assertEqual(p.control.stats()["messages"], 0)
        p.control.shutdown()
        self.assertEqual(p.proc.wait(5), 0)


@unittest.skipUnless(os.path.exists(dm.DNSMASQ), "dnsmasq not installed")
class DnsmasqTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dns = dm.Dnsmasq(
            mx=[("a.test", "mx1.a.test", 10), ("a.test", "mx2.a.test", 20)],
            a={"mx1.a.test": "127.0.0.2", "mx2.a.test": ["127.0.0.3", "127.0.0.5"],
               "implicit.test": "127.0.0.4"},
            aaaa={"implicit.test": "::1"},
            null_mx=["nullmx.test"], servfail=["servfail.test"], refused=["refused.test"],
            timeout=["slowdns.test"], ttl=60).start()

    @classmethod
    def tearDownClass(cls):
        cls.dns.cleanup()

    def test_mx(self):
        r = self.dns.query("a.test", "MX")
        self.assertEqual(r.rcode_name, "NOERROR")
        self.assertEqual(sorted(r.values("MX")), [(10, "mx1.a.test"), (20, "mx2.a.test")])
        self.assertEqual({rr[2] for rr in r.answers}, {60})
        self.assertEqual(self.dns.query("a.test", "MX", tcp=True).rcode, 0)

    def test_a_aaaa_and_implicit_mx(self):
        self.assertEqual(self.dns.query("mx1.a.test", "A").values("A"), ["127.0.0.2"])
        self.assertEqual(sorted(self.dns.query("mx2.a.test", "A").values()), ["127.0.0.3", "127.0.0.5"])
        r = self.dns.query("implicit.test", "MX")
        self.assertEqual((r.rcode_name, r.answers), ("NOERROR", []))
        self.assertEqual(self.dns.query("implicit.test", "A").values(), ["127.0.0.4"])
        self.assertEqual(self.dns.query("implicit.test", "AAAA").values(), ["::1"])

    def test_null_mx(self):
        r = self.dns.query("nullmx.test", "MX")
        self.assertEqual(r.values("MX"), [(0, "")])   # "0 ." per RFC 7505

    def test_nxdomain(self):
        self.assertEqual(self.dns.query("nosuch.test", "MX").rcode_name, "NXDOMAIN")
        self.assertEqual(self.dns.query("x.a.test", "A").rcode_name, "NXDOMAIN")

    def test_servfail_refused_timeout(self):
        self.assertEqual(self.dns.query("any.servfail.test", "MX").rcode_name, "SERVFAIL")
        self.assertEqual(self.dns.query("any.refused.test", "MX").rcode_name, "REFUSED")
        with self.assertRaises(socket.timeout):
            self.dns.query("any.slowdns.test", "MX", timeout=0.5)

    def test_restart_changes_records(self):
        d = dm.Dnsmasq(mx=[("b.test", "mx.b.test", 5)], a={"mx.b.test": "127.0.0.6"}).start()
        try:
            port = d.port
            self.assertEqual(d.query("b.test").values(), [(5, "mx.b.test")])
            d.restart(mx=[], null_mx=["b.test"])
            self.assertEqual(d.port, port)
            self.assertEqual(d.query("b.test").values(), [(0, "")])
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
