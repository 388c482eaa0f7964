#!/usr/bin/env python3
"""Inbound TLS and AUTH against the real relayd (issue 5): STARTTLS and AUTH
PLAIN/LOGIN with swaks and smtplib on submission and smtp listeners, implicit
TLS on smtps, the submission refusals (538 before TLS, 535, 530), the cut-off
after three failures, the open-relay check with and without AUTH, STARTTLS
command injection (CVE-2011-0411), protocol versions and ciphers, SIGHUP with a
new certificate and new users, and start-up errors that name the key.

A test CA and server certificates are made with the openssl CLI in a temp dir;
passwords are hashed with `openssl passwd -6` (sha512-crypt) and with
libcrypt's yescrypt through ctypes."""

import ctypes
import os
import re
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
import relayd_harness as h  # noqa: E402

PLAIN_OK = "AGFsaWNlAHNlY3JldA=="      # \0alice\0secret
PLAIN_BAD = "AGFsaWNlAHdyb25n"         # \0alice\0wrong


def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, **kw)
    if p.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{p.stdout.decode(errors='replace')}")
    return p.stdout.decode()


def make_cert(d, name, ca="ca"):
    """A key and a certificate for `name` (CN and DNS SAN) signed by the test CA."""
    key, csr, pem, ext = (os.path.join(d, f"{name}.{x}") for x in ("key", "csr", "pem", "ext"))
    with open(ext, "w") as f:
        f.write(f"subjectAltName=DNS:{name}\n")
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", f"/CN={name}"])
    run(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(d, f"{ca}.pem"),
         "-CAkey", os.path.join(d, f"{ca}.key"), "-CAcreateserial", "-out", pem, "-days", "2",
         "-extfile", ext])
    return pem, key


def yescrypt(password):
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt.restype = ctypes.c_char_p
    setting = lib.crypt_gensalt(b"$y$", 0, None, 0)
    out = lib.crypt(password.encode(), setting)
    assert out and out.startswith(b"$y$"), out
    return out.decode()


def sha512crypt(password):
    return run(["openssl", "passwd", "-6", password]).strip()


def der(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class Conn(h.SmtpConn):
    """A raw SMTP connection that can switch to TLS."""

    def tls(self, ctx, server_hostname="relay.test"):
        assert not self.buf, f"unread plaintext before the handshake: {self.buf!r}"
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)

    def starttls(self, ctx, server_hostname="relay.test"):
        self.expect("220")  # caller sent STARTTLS
        self.tls(ctx, server_hostname)


class TlsAuthTest(h.RelaydTestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("openssl"):
            raise unittest.SkipTest("openssl CLI not installed")
        cls.swaks = shutil.which("swaks")
        cls.pki = tempfile.mkdtemp(prefix="relayd-tls-")
        d = cls.pki
        cls.ca = os.path.join(d, "ca.pem")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
             os.path.join(d, "ca.key"), "-out", cls.ca, "-days", "2", "-subj", "/CN=relayd test CA"])
        cls.cert, cls.key = make_cert(d, "relay.test")
        cls.cert2, cls.key2 = make_cert(d, "relay2.test")
        cls.alice_hash = sha512crypt("secret")   # $6$
        cls.bob_hash = yescrypt("hunter2")       # $y$

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki, ignore_errors=True)

    # -- fixtures
    def daemon(self, overrides=None, users=None, start=True):
        """relayd with [tls] and [auth]: listen (self.port), submission and smtps ports."""
        d = self.relayd(start=False)
        tls_dir = os.path.join(d.dir, "tls")
        os.makedirs(tls_dir)
        d.cert_path, d.key_path = os.path.join(tls_dir, "cert.pem"), os.path.join(tls_dir, "key.pem")
        shutil.copy(self.cert, d.cert_path)
        shutil.copy(self.key, d.key_path)
        d.users_path = os.path.join(d.dir, "users")
        self.write_users(d, users or [f"alice:{self.alice_hash}", f"bob:{self.bob_hash}"])
        d.submission_port = h.free_port()
        d.smtps_port = h.free_port()
        cfg = {
            "smtp.submission": [f"127.0.0.1:{d.submission_port}"],
            "smtp.smtps": [f"127.0.0.1:{d.smtps_port}"],
            "tls.cert": d.cert_path,
            "tls.key": d.key_path,
            "auth.users": d.users_path,
        }
        cfg.update(overrides or {})
        d.reconfigure(cfg)
        if start:
            d.start()
        return d

    def write_users(self, d, lines):
        with open(d.users_path, "w") as f:
            f.write("# test users\n\n" + "\n".join(lines) + "\n")

    def ctx(self, check_hostname=True):
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.load_verify_locations(self.ca)
        c.check_hostname = check_hostname
        return c

    def conn(self, port, source=None):
        c = Conn(port, timeout=15, source=source)
        self.addCleanup(c.close)
        return c

    def swaks_run(self, port, extra, expect_rc=0):
        if not self.swaks:
            self.skipTest("swaks not installed")
        cmd = [self.swaks, "--server", "127.0.0.1", "--port", str(port), "--ehlo", "swaks.test",
               "--from", "alice@src.test", "--to", "bob@dst.test", "--timeout", "20"] + extra
        p = h.spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = p.communicate(timeout=60)
        out = out.decode("utf-8", "replace")
        self.assertEqual(p.returncode, expect_rc, f"swaks exit {p.returncode}:\n{out}")
        return out

    def queued_id(self, out):
        m = re.search(r"<[-~] *250 2\.0\.0 Ok: queued as ([0-9A-F]{16})", out)
        self.assertTrue(m, f"no 'queued as' in swaks output:\n{out}")
        return m.group(1)

    def smtplib(self, d, source=None):
        # Connected by IP: STARTTLS then checks the CA chain, not the name.
        s = smtplib.SMTP("127.0.0.1", d.port, timeout=30,
                         source_address=(source, 0) if source else None)
        self.addCleanup(s.close)
        return s

    def received(self, d, qid):
        _, stored = d.show(qid)
        head, _ = h.split_message(stored)
        return re.split(rb"\r\n(?![ \t])", head)[0].decode("utf-8", "replace")

    def wait_log(self, d, text, timeout=5):
        deadline = time.monotonic() + timeout
        while text not in d.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"log lacks {text!r}\n{d.log_tail()}")
            time.sleep(0.05)

    # -- tests
    def test_swaks_starttls_auth_plain_on_submission(self):
        d = self.daemon()
        out = self.swaks_run(d.submission_port, ["--tls", "--auth", "PLAIN", "--auth-user", "alice",
                                                 "--auth-password", "secret"])
        self.assertIn("TLS started", out)
        self.assertRegex(out, r"<~ +235 2\.7\.0")
        qid = self.queued_id(out)
        q = {m["id"]: m for m in d.queue()}
        self.assertIn(qid, q)
        self.assertEqual(q[qid]["sender"], "alice@src.test")
        self.assertEqual([r["address"] for r in q[qid]["recipients"]], ["bob@dst.test"])
        self.assertIn("with ESMTPSA id " + qid, self.received(d, qid))
        self.wait_log(d, f"{qid}: from=<alice@src.test>")
        self.assertRegex(d.log(), rf"{qid}: from=<alice@src\.test>, .*client=127\.0\.0\.1, "
                                  r"sasl_username=alice")
        self.assertNotIn("secret", d.log())
        self.assertNotIn(PLAIN_OK, d.log())

    def test_swaks_auth_login_yescrypt_user(self):
        d = self.daemon()
        out = self.swaks_run(d.submission_port, ["--tls", "--auth", "LOGIN", "--auth-user", "bob",
                                                 "--auth-password", "hunter2"])
        self.queued_id(out)
        self.assertNotIn("hunter2", d.log())

    def test_submission_refusals(self):
        d = self.daemon()
        c = self.conn(d.submission_port)
        c.expect("220")
        code, lines = c.cmd("EHLO client.test")
        self.assertEqual(code, 250)
        self.assertEqual(lines[-1], "250 STARTTLS")
        self.assertFalse(any("AUTH" in l for l in lines), lines)
        # AUTH before STARTTLS: encryption required; nothing was checked.
        code, lines = c.cmd("AUTH PLAIN " + PLAIN_OK)
        self.assertEqual(lines[-1][:10], "538 5.7.11", lines)
        code, lines = c.cmd("MAIL FROM:<alice@src.test>")
        self.assertEqual(lines[-1][:9], "530 5.7.0", lines)
        c.send("STARTTLS\r\n")
        c.starttls(self.ctx())
        code, lines = c.cmd("EHLO client.test")
        self.assertEqual(code, 250)
        self.assertIn("250 AUTH PLAIN LOGIN", lines)
        self.assertNotIn("STARTTLS", "\n".join(lines))
        # Wrong password: 535, after a delay.
        t0 = time.monotonic()
        code, lines = c.cmd("AUTH PLAIN " + PLAIN_BAD)
        self.assertEqual(lines[-1], "535 5.7.8 Authentication credentials invalid")
        self.assertGreaterEqual(time.monotonic() - t0, 0.9, "a failed AUTH is delayed")
        # Still no MAIL without AUTH.
        code, lines = c.cmd("MAIL FROM:<alice@src.test>")
        self.assertEqual(lines[-1], "530 5.7.0 Authentication required")
        c.cmd("RCPT TO:<bob@dst.test>")
        code, lines = c.cmd("DATA")
        self.assertEqual(code, 503)
        c.cmd("QUIT")
        self.assertEqual(d.queue(), [])
        self.assertIn("auth failed: from 127.0.0.1", d.log())
        self.assertNotIn("wrong", d.log())

    def test_three_failures_cut_the_client_off(self):
        d = self.daemon()
        c = self.conn(d.submission_port)
        c.expect("220")
        c.cmd("EHLO client.test")
        c.send("STARTTLS\r\n")
        c.starttls(self.ctx())
        c.cmd("EHLO client.test")
        t0 = time.monotonic()
        for _ in range(2):
            self.assertEqual(c.cmd("AUTH PLAIN " + PLAIN_BAD)[0], 535)
        # The third failure: 535 and then 421, and the connection closes.
        c.send("AUTH LOGIN\r\n")
        c.expect("334")
        c.send("YWxpY2U=\r\n")
        c.expect("334")
        c.send("d3Jvbmc=\r\n")
        self.assertEqual(c.reply(timeout=15)[0], 535)
        code, lines = c.reply(timeout=5)
        self.assertEqual(lines[-1][:9], "421 4.7.0", lines)
        # Closed right after the 421, not at the idle timeout (5 s here).
        self.assertTrue(c.closed(timeout=2))
        self.assertGreaterEqual(time.monotonic() - t0, 1 + 2 + 3 - 0.3, "delays grow: 1s, 2s, 3s")

    def test_implicit_tls_on_smtps(self):
        d = self.daemon()
        out = self.swaks_run(d.smtps_port, ["--tlsc", "--auth", "PLAIN", "--auth-user", "alice",
                                            "--auth-password", "secret"])
        self.assertIn("TLS started", out)
        self.assertNotIn("STARTTLS", out.split("TLS started", 1)[1].split("queued")[0])
        qid = self.queued_id(out)
        self.assertIn("with ESMTPSA id", self.received(d, qid))
        # Without AUTH on smtps (not a submission port): relaying from mynetworks, ESMTPS.
        out = self.swaks_run(d.smtps_port, ["--tlsc"])
        qid = self.queued_id(out)
        self.assertIn("with ESMTPS id", self.received(d, qid))
        # A plaintext client gets no greeting: the server waits for a ClientHello.
        c = self.conn(d.smtps_port)
        with self.assertRaises(socket.timeout):
            c.reply(timeout=0.5)

    def test_no_open_relay_without_auth(self):
        d = self.daemon({"smtp.mynetworks": ["127.0.0.1/32"]})
        msg = h.make_message("relay", "hello\n")
        # 127.0.0.2 is outside mynetworks: no relaying without AUTH.
        res = h.submit(d.port, "alice@src.test", ["bob@dst.test"], msg, source="127.0.0.2")
        self.assertEqual(res[:1] + (res[1][:5],), (554, "5.7.1"), res)
        self.assertEqual(res[2], "rcpt")
        # No AUTH without TLS either.
        s = self.smtplib(d, source="127.0.0.2")
        try:
            s.ehlo("outside.test")
            self.assertFalse(s.has_extn("auth"))
            self.assertTrue(s.has_extn("starttls"))
            code, _ = s.docmd("AUTH", "PLAIN " + PLAIN_OK)
            self.assertEqual(code, 538)
        finally:
            s.close()
        self.assertEqual(d.queue(), [])
        # After STARTTLS and AUTH the same client may relay.
        s = self.smtplib(d, source="127.0.0.2")
        try:
            s.starttls(context=self.ctx(check_hostname=False))  # connected by IP
            s.ehlo("outside.test")
            self.assertTrue(s.has_extn("auth"))
            s.login("alice", "secret")
            refused = s.sendmail("alice@src.test", ["bob@dst.test"], msg)
            self.assertEqual(refused, {})
        finally:
            s.quit()
        q = d.queue()
        self.assertEqual(len(q), 1, q)
        self.wait_log(d, "client=127.0.0.2, sasl_username=alice")

    def test_starttls_command_injection(self):
        d = self.daemon()
        c = self.conn(d.port)
        c.expect("220")
        c.cmd("EHLO client.test")
        # One packet: STARTTLS and a pipelined RSET (and a partial command).
        c.send("STARTTLS\r\nRSET\r\nMAIL FROM:<evil@x.test>\r\nNOOP")
        code, lines = c.reply()
        self.assertEqual(lines, ["220 2.0.0 Ready to start TLS"])
        # Nothing else comes in plaintext.
        with self.assertRaises(socket.timeout):
            c.reply(timeout=0.5)
        c.tls(self.ctx())
        c.send("EHLO client.test\r\n")
        code, lines = c.reply()
        self.assertEqual(code, 250)
        self.assertEqual(lines[0], "250-relay.test", f"first reply under TLS is not EHLO's: {lines}")
        # The injected MAIL was never run: RCPT needs MAIL.
        code, lines = c.cmd("RCPT TO:<bob@dst.test>")
        self.assertEqual(lines[-1][:9], "503 5.5.1", lines)
        self.assertEqual(c.cmd("NOOP")[1], ["250 2.0.0 Ok"])
        with self.assertRaises(socket.timeout):
            c.reply(timeout=0.3)
        self.wait_log(d, "pipelined after STARTTLS discarded")

    def tls_session(self, d):
        c = self.conn(d.port)
        c.expect("220")
        c.cmd("EHLO client.test")
        c.send("STARTTLS\r\n")
        c.starttls(self.ctx())
        self.assertEqual(c.cmd("EHLO client.test")[0], 250)
        return c

    def test_idle_timeout_and_shutdown_under_tls(self):
        d = self.daemon({"smtp.idle_timeout": "2s"})
        idle = self.tls_session(d)
        code, lines = idle.reply(timeout=10)
        self.assertEqual(lines[-1][:9], "421 4.4.2", lines)
        self.assertTrue(idle.closed(timeout=5))
        # SIGTERM: an idle TLS session gets 421 4.3.2 over TLS; relayd exits 0.
        c = self.tls_session(d)
        d.proc.send_signal(signal.SIGTERM)
        code, lines = c.reply(timeout=10)
        self.assertEqual(lines[-1][:9], "421 4.3.2", lines)
        self.assertEqual(d.proc.wait(15), 0)

    def test_tls_versions_and_ciphers(self):
        d = self.daemon()

        def handshake(ctx):
            c = self.conn(d.smtps_port)
            try:
                c.tls(ctx, "relay.test")
                c.expect("220")
                return c.sock.version(), c.sock.cipher()[0]
            finally:
                c.close()

        def old_ctx(version, ciphers):
            x = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            x.check_hostname = False
            x.verify_mode = ssl.CERT_NONE
            x.set_ciphers(ciphers + ":@SECLEVEL=0")
            x.minimum_version = version
            x.maximum_version = version
            return x

        self.assertEqual(handshake(self.ctx())[0], "TLSv1.3")
        # Control: this client setup works with TLS 1.2 and an ECDHE AEAD suite...
        v, cipher = handshake(old_ctx(ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-GCM-SHA256"))
        self.assertEqual((v, cipher), ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"))
        # ... but not with RSA key exchange, CBC, or TLS 1.1 / 1.0.
        for version, ciphers in [(ssl.TLSVersion.TLSv1_2, "AES128-GCM-SHA256"),
                                 (ssl.TLSVersion.TLSv1_2, "ECDHE-RSA-AES128-SHA"),
                                 (ssl.TLSVersion.TLSv1_1, "ALL"),
                                 (ssl.TLSVersion.TLSv1, "ALL")]:
            with self.subTest(version=version, ciphers=ciphers):
                # An alert from the server, not a client that would not even try.
                with self.assertRaisesRegex(ssl.SSLError, r"ALERT_(HANDSHAKE_FAILURE|PROTOCOL_VERSION)"):
                    handshake(old_ctx(version, ciphers))
        self.assertTrue(d.running())

    def test_sighup_reloads_certificate_and_users(self):
        d = self.daemon()
        # An open connection under TLS with the first certificate.
        old = self.conn(d.port)
        old.expect("220")
        old.cmd("EHLO client.test")
        old.send("STARTTLS\r\n")
        old.starttls(self.ctx())
        self.assertEqual(old.sock.getpeercert(binary_form=True), der(self.cert))
        old.cmd("EHLO client.test")
        self.assertEqual(old.cmd("MAIL FROM:<alice@src.test>")[0], 250)

        shutil.copy(self.cert2, d.cert_path)
        shutil.copy(self.key2, d.key_path)
        self.write_users(d, [f"alice:{self.alice_hash}", f"carol:{sha512crypt('carolpw')}"])
        d.proc.send_signal(signal.SIGHUP)
        self.wait_log(d, "SIGHUP: TLS certificate")
        self.wait_log(d, "SIGHUP: auth users")

        new = self.conn(d.port)
        new.expect("220")
        new.cmd("EHLO client.test")
        new.send("STARTTLS\r\n")
        new.starttls(self.ctx(), server_hostname="relay2.test")
        self.assertEqual(new.sock.getpeercert(binary_form=True), der(self.cert2))
        new.cmd("EHLO client.test")
        self.assertEqual(new.cmd("AUTH PLAIN " + "AGNhcm9sAGNhcm9scHc=")[0], 235)  # carol
        new.cmd("QUIT")

        # The old connection was not dropped and finishes its transaction.
        self.assertEqual(old.cmd("RCPT TO:<bob@dst.test>")[0], 250)
        self.assertEqual(old.cmd("DATA")[0], 354)
        old.send("Subject: across a reload\r\n\r\nbody\r\n.\r\n")
        code, lines = old.reply()
        self.assertRegex(lines[-1], h.QUEUED_RE)
        old.cmd("QUIT")

        # A bad new certificate (key of another cert) is refused; the last good one stays.
        shutil.copy(self.key, d.key_path)
        with open(d.users_path, "a") as f:
            f.write("broken line\n")
        d.proc.send_signal(signal.SIGHUP)
        self.wait_log(d, "keeping the previous certificate")
        self.wait_log(d, "keeping the previous users")
        self.assertRegex(d.log(), r"tls\.key: .*does not match the certificate")
        self.assertRegex(d.log(), r"auth\.users: .*users:5: expected user:hash")
        self.assertTrue(d.running())
        again = self.conn(d.port)
        again.expect("220")
        again.cmd("EHLO client.test")
        again.send("STARTTLS\r\n")
        again.starttls(self.ctx(), server_hostname="relay2.test")
        self.assertEqual(again.sock.getpeercert(binary_form=True), der(self.cert2))
        again.cmd("EHLO client.test")
        self.assertEqual(again.cmd("AUTH PLAIN " + "AGNhcm9sAGNhcm9scHc=")[0], 235)

    def test_plaintext_auth_on_loopback_only_when_allowed(self):
        d = self.daemon({"auth.allow_plaintext_loopback": True})
        s = self.smtplib(d)
        try:
            s.ehlo("client.test")
            self.assertTrue(s.has_extn("auth"))
            s.login("alice", "secret")
            self.assertEqual(s.sendmail("alice@src.test", ["bob@dst.test"],
                                        h.make_message("plain", "x\n")), {})
        finally:
            s.quit()
        q = d.queue()
        self.assertEqual(len(q), 1)
        self.assertIn("with ESMTPA id", self.received(d, q[0]["id"]))
        # 127.0.0.2 is loopback too; the switch is about loopback, not mynetworks.
        c = self.conn(d.port, source="127.0.0.2")
        c.expect("220")
        self.assertIn("250 AUTH PLAIN LOGIN", c.cmd("EHLO client.test")[1])

    def test_startup_errors_name_the_key(self):
        def fails(d, *patterns):
            d.start(wait=False)
            try:
                rc = d.proc.wait(15)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"relayd did not exit\n{d.log_tail()}")
            self.assertNotEqual(rc, 0)
            for p in patterns:
                self.assertRegex(d.log(), p)

        d = self.daemon(start=False)
        shutil.copy(self.key2, d.key_path)
        fails(d, r"tls\.key: .*key\.pem: does not match the certificate in tls\.cert")

        d = self.daemon({"tls.cert": "/nonexistent/cert.pem"}, start=False)
        fails(d, r"tls\.cert: /nonexistent/cert\.pem: cannot read: No such file")

        d = self.daemon(start=False)
        with open(d.cert_path, "w") as f:
            f.write("not a certificate\n")
        fails(d, r"tls\.cert: .*no usable PEM certificate")

        d = self.daemon(users=[f"alice:{self.alice_hash}", "bob:$1$abc$legacymd5hashxxxxxxxxx"],
                        start=False)
        fails(d, r"auth\.users: .*users:4: user \"bob\": legacy hash method")

        d = self.daemon(users=[f"alice:{self.alice_hash}", f"alice:{self.bob_hash}"], start=False)
        fails(d, r"auth\.users: .*users:4: user \"alice\" is already on line 3")

        d = self.daemon({"auth.users": ""}, start=False)
        fails(d, r"smtp\.submission: needs auth\.users")

        d = self.daemon({"tls.cert": "", "tls.key": "", "smtp.submission": []}, start=False)
        fails(d, r"smtp\.smtps: needs tls\.cert")


if __name__ == "__main__":
    h.main()
