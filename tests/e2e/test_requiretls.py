#!/usr/bin/env python3
"""REQUIRETLS (RFC 8689) end to end: the real relayd, a test CA made here with
openssl (given to relayd as its CA file through SSL_CERT_FILE), dnsmasq for
the names, and the scripted test SMTP server as the next hop.

- relayd offers REQUIRETLS only after STARTTLS on its TCP listener (and on the
  local socket); MAIL ... REQUIRETLS before STARTTLS gets 530 5.7.10;
- a REQUIRETLS message goes over TLS verified for the relayhost's name to a
  next hop that advertises REQUIRETLS, and its MAIL carries REQUIRETLS;
- it fails (5.7.30) when the next hop lacks REQUIRETLS, (5.7.10) when it lacks
  TLS or its certificate is not trusted, and (5.7.10) in MX mode when the MX
  answer is not authenticated (no DNSSEC, MTA-STS or DANE yet); each time the
  sender gets a DSN that carries nothing of the message (redacted, RFC 8689 5)
  and nothing of the message reaches the server;
- a domain's hosts are each tried: the one that qualifies gets the message;
- "TLS-Required: No" without REQUIRETLS is delivered to a plaintext next hop,
  and is ignored when MAIL said REQUIRETLS;
- sendmail -O requiretls=yes submits with REQUIRETLS over the local socket.
"""

import os
import re
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402

RELAYHOST = "smtp.relay.test"
DST = "dst.test"
SENDMAIL_BIN = os.environ.get("SENDMAIL_BIN") or os.path.join(h.REPO, "build/release/cli/sendmail")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    """A test CA, certificates it signs for the next hops and for relayd's own
    listener, and a self-signed one for the relayhost's name."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=relayd requiretls test CA", cwd=d)
    for name in (RELAYHOST, DST, f"mx.{DST}", "relay.test"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName=DNS:{name}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                "-extfile", f"{name}.ext", cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "self.key",
            "-out", "self.pem", "-days", "2", "-subj", f"/CN={RELAYHOST}",
            "-addext", f"subjectAltName=DNS:{RELAYHOST}", cwd=d)
    return {k: os.path.join(d, k) for k in os.listdir(d)}


def queued_id(text):
    m = re.search(rb"queued as ([0-9A-F]{16})", text)
    assert m, text
    return m.group(1).decode()


class RequireTlsTest(c.DeliveryTestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("openssl is missing")
        cls.tmp = tempfile.TemporaryDirectory(prefix="relayd-requiretls-")
        cls.pki = make_pki(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    # -- fixtures
    def server(self, listen="127.0.0.2:0", cert=RELAYHOST, requiretls=True, **options):
        if cert:
            options.update(tls_cert=self.pki[f"{cert}.pem"], tls_key=self.pki[f"{cert}.key"])
        if requiretls:
            options["extra_ehlo"] = ["REQUIRETLS"]
        # MAIL parameters are kept as given (REQUIRETLS is not among the test
        # server's own), so that what relayd sent can be checked.
        options.setdefault("strict_params", False)
        return self.start_server([listen] if isinstance(listen, str) else listen, **options)

    def daemon(self, srv, mx=False, overrides=None, dns=None):
        """relayd with its own STARTTLS certificate, the test CA as its CA file, and
        either the relayhost [smtp.relay.test] (on 127.0.0.2) or MX delivery."""
        if mx:
            d = self.mx_relayd(dns, srv.port, {"delivery.tls": "may"}, start=False)
        else:
            dns = self.start_dns(a={RELAYHOST: "127.0.0.2"})
            d = self.smarthost_relayd(srv.port, {"delivery.relayhost": f"[{RELAYHOST}]:{srv.port}",
                                                 "delivery.dns_servers": [dns.server]},
                                      start=False)
        d.reconfigure({"tls.cert": self.pki["relay.test.pem"], "tls.key": self.pki["relay.test.key"],
                       **(overrides or {})})
        d.extra_env = {"SSL_CERT_FILE": self.pki["ca.pem"]}
        d.start()
        return d

    def client_tls(self):
        """relayd's certificate checked against the test CA (connected by IP: no name)."""
        ctx = ssl.create_default_context(cafile=self.pki["ca.pem"])
        ctx.check_hostname = False
        return ctx

    def submit(self, d, subject, rcpt, requiretls=True, starttls=True, extra_headers=()):
        """One message over relayd's TCP listener (STARTTLS first) -> queue ID."""
        msg = h.make_message("secret " + subject, "secret body\r\n", extra_headers=extra_headers,
                             sender=c.SENDER, rcpt=rcpt)
        with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
            s.ehlo("client.test")
            if starttls:
                s.starttls(context=self.client_tls())
                s.ehlo("client.test")
            code, text = s.mail(c.SENDER, ["REQUIRETLS"] if requiretls else [])
            self.assertEqual(code, 250, text)
            code, text = s.rcpt(rcpt)
            self.assertEqual(code, 250, text)
            code, text = s.data(msg)
            self.assertEqual(code, 250, text)
            return queued_id(text)

    def dsns(self, srv):
        return [m for m in srv.messages() if m["mail_from"] == ""]

    def originals(self, srv):
        return [m for m in srv.messages() if m["mail_from"] != ""]

    def assertFailedWithRedactedDsn(self, d, srv, qid, rcpt, status, phrase):
        self.wait_until(lambda: self.attempts(d, qid, status="bounced"), 20, "the bounce")
        a = self.attempts(d, qid, status="bounced")[0]
        self.assertEqual(a.dsn, status, a)
        self.assertIn(phrase, a.reply, a)
        self.wait_until(lambda: self.dsns(srv), 20, "the DSN at the next hop")
        dsn = self.dsns(srv)[0]
        self.assertEqual(dsn["rcpt_to"], [c.SENDER])
        data = dsn["data"]
        self.assertIn(f"Final-Recipient: rfc822; {rcpt}".encode(), data)
        self.assertIn(f"Status: {status}".encode(), data)
        self.assertIn(b"Action: failed", data)
        self.assertRegex(data, rb"not\s+attached:\s+it\s+was\s+sent\s+with\s+REQUIRETLS")
        self.assertNotIn(b"secret", data, "a redacted DSN carries nothing of the message")
        self.assertNotIn(b"REQUIRETLS", dsn["mail_params"] or {}, "the DSN goes without it")
        self.assertEqual(self.originals(srv), [], "nothing of the message may reach the server")

    # -- receiving
    def test_requiretls_is_offered_only_after_starttls(self):
        srv = self.server()
        d = self.daemon(srv)
        with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:
            s.ehlo("client.test")
            self.assertTrue(s.has_extn("starttls"))
            self.assertFalse(s.has_extn("requiretls"), s.esmtp_features)
            code, text = s.mail(c.SENDER, ["REQUIRETLS"])
            self.assertEqual((code, text[:6]), (530, b"5.7.10"), text)
            s.starttls(context=self.client_tls())
            s.ehlo("client.test")
            self.assertTrue(s.has_extn("requiretls"), s.esmtp_features)
            code, text = s.mail(c.SENDER, ["REQUIRETLS"])
            self.assertEqual(code, 250, text)

    # -- delivering
    def test_delivered_over_verified_tls_to_a_requiretls_next_hop(self):
        srv = self.server()
        d = self.daemon(srv)
        self.submit(d, "over verified tls", f"a@{DST}")
        self.assertTrue(srv.wait_messages(1, timeout=20), "the message at the next hop")
        m = srv.messages()[0]
        self.assertEqual(m["rcpt_to"], [f"a@{DST}"])
        self.assertTrue(m["tls"], m)
        self.assertEqual(m["sni"], RELAYHOST)
        self.assertIn("REQUIRETLS", m["mail_params"], m["mail_params"])
        self.wait_queue_empty(d, 10)
        self.assertNoBounce(d)

    def test_a_plain_message_does_not_ask_for_requiretls(self):
        srv = self.server()
        d = self.daemon(srv)
        self.submit(d, "plain", f"p@{DST}", requiretls=False)
        self.assertTrue(srv.wait_messages(1, timeout=20))
        self.assertNotIn("REQUIRETLS", srv.messages()[0]["mail_params"])

    def test_fails_with_5_7_30_when_the_next_hop_lacks_requiretls(self):
        srv = self.server(requiretls=False)
        d = self.daemon(srv)
        qid = self.submit(d, "no requiretls there", f"b@{DST}")
        self.assertFailedWithRedactedDsn(d, srv, qid, f"b@{DST}", "5.7.30",
                                         "does not advertise REQUIRETLS")

    def test_fails_with_5_7_10_when_the_next_hop_lacks_tls(self):
        srv = self.server(cert=None)  # advertises REQUIRETLS, but offers no STARTTLS
        d = self.daemon(srv)
        qid = self.submit(d, "no tls there", f"c@{DST}")
        self.assertFailedWithRedactedDsn(d, srv, qid, f"c@{DST}", "5.7.10", "does not offer TLS")
        self.assertFalse(self.dsns(srv)[0]["tls"], "the DSN went without TLS: it is redacted")

    def test_fails_with_5_7_10_when_the_certificate_is_not_trusted(self):
        srv = self.server(cert="self")
        d = self.daemon(srv)
        qid = self.submit(d, "untrusted certificate", f"u@{DST}")
        self.assertFailedWithRedactedDsn(d, srv, qid, f"u@{DST}", "5.7.10", "not verified")

    def test_mx_answer_without_dnssec_is_not_enough(self):
        # The DSN goes to the sender's domain: the same server, as its MX too.
        dns = self.start_dns(mx=[(DST, f"mx.{DST}", 10), ("src.test", f"mx.{DST}", 10)],
                             a={f"mx.{DST}": "127.0.0.2"})
        srv = self.server(cert=f"mx.{DST}")  # verified for the MX name, which DNS alone gave
        d = self.daemon(srv, mx=True, dns=dns)
        qid = self.submit(d, "insecure mx", f"m@{DST}")
        self.assertFailedWithRedactedDsn(d, srv, qid, f"m@{DST}", "5.7.10", "not authenticated")

    def test_every_host_of_the_domain_is_tried(self):
        # No MX: the domain's own two addresses (implicit MX), so a certificate
        # for the domain is verified for the name the message was sent to.
        dns = self.start_dns(a={DST: ["127.0.0.2", "127.0.0.3"]})
        plain = self.server("127.0.0.2:0", cert=DST, requiretls=False)
        good = self.server(f"127.0.0.3:{plain.port}", cert=DST)
        d = self.daemon(plain, mx=True, dns=dns)
        for i in range(3):
            self.submit(d, f"walk {i}", f"w{i}@{DST}")
        self.wait_until(lambda: len(good.messages()) == 3, 30, "all three at the qualifying host")
        self.assertEqual(plain.messages(), [], "never to the host without REQUIRETLS")
        self.assertTrue(all("REQUIRETLS" in m["mail_params"] for m in good.messages()))
        self.assertNoBounce(d)

    def test_tls_required_no_goes_to_a_plaintext_next_hop(self):
        srv = self.server(cert=None, requiretls=False)
        d = self.daemon(srv)
        self.submit(d, "tls optional", f"n@{DST}", requiretls=False,
                    extra_headers=["TLS-Required: No"])
        self.assertTrue(srv.wait_messages(1, timeout=20))
        m = srv.messages()[0]
        self.assertFalse(m["tls"])
        self.assertNotIn("REQUIRETLS", m["mail_params"])
        self.assertIn(b"TLS-Required: No", m["data"])
        self.assertNoBounce(d)

    def test_tls_required_no_is_ignored_with_requiretls(self):
        srv = self.server(cert=None, requiretls=False)
        d = self.daemon(srv)
        qid = self.submit(d, "both", f"x@{DST}", extra_headers=["TLS-Required: No"])
        self.assertFailedWithRedactedDsn(d, srv, qid, f"x@{DST}", "5.7.10", "does not offer TLS")

    # -- sendmail
    def test_sendmail_O_requiretls_yes(self):
        if not os.access(SENDMAIL_BIN, os.X_OK):
            self.skipTest(f"no sendmail binary at {SENDMAIL_BIN}")
        srv = self.server()
        d = self.daemon(srv, overrides={"local.domain": "users.test"})
        env = dict(os.environ)
        env.pop("RELAYD_CONFIG", None)
        for flag, rcpt in ((["-O", "requiretls=yes"], f"s1@{DST}"), ([], f"s2@{DST}")):
            p = subprocess.run([SENDMAIL_BIN, "-C", d.config_path, "-f", c.SENDER, *flag, rcpt],
                               input=f"Subject: sendmail {rcpt}\n\nbody\n".encode(),
                               capture_output=True, timeout=60, env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
        self.wait_until(lambda: len(srv.messages()) == 2, 20, "both messages at the next hop")
        params = {m["rcpt_to"][0]: m["mail_params"] for m in srv.messages()}
        self.assertIn("REQUIRETLS", params[f"s1@{DST}"])
        self.assertNotIn("REQUIRETLS", params[f"s2@{DST}"])
        self.assertTrue(all(m["tls"] for m in srv.messages()))


if __name__ == "__main__":
    h.main()
