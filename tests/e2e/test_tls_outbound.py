#!/usr/bin/env python3
"""Outbound TLS policy ([delivery] tls), end to end against the scripted test
SMTP server with certificates from a test CA made here with openssl:

- verify: delivers over TLS when the CA is trusted (SSL_CERT_FILE points
  OpenSSL's default verify paths at the test CA), and defers with a clear
  reason when it is not, or when the certificate names another host; nothing
  is bounced and nothing reaches the server;
- encrypt: TLS without verification: delivers to an untrusted certificate,
  defers when the server does not offer STARTTLS;
- encrypt also defers when the handshake fails;
- may: falls back to plaintext when the handshake fails;
- none: never starts TLS.
"""

import os
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_delivery_common as c  # noqa: E402

DST = "dst.test"
MX = f"mx.{DST}"


openssl = c.openssl


def make_pki(d):
    """A test CA, a server certificate for MX signed by it, one for another name,
    and a self-signed one. Returns a dict of paths."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=relayd test CA", cwd=d)
    for name, host in (("mx", MX), ("other", "other.example")):
        c.issue_cert(d, name, host)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "self.key",
            "-out", "self.pem", "-days", "2", "-subj", f"/CN={MX}",
            "-addext", f"subjectAltName=DNS:{MX}", cwd=d)
    return {k: os.path.join(d, k) for k in os.listdir(d)}


class OutboundTlsTest(c.DeliveryTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="relayd-tls-out-")
        cls.pki = make_pki(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        self.dns = self.start_dns(mx=[(DST, MX, 10)], a={MX: "127.0.0.2"})

    def server(self, cert="mx", **options):
        if cert:
            options.update(tls_cert=self.pki[f"{cert}.pem"], tls_key=self.pki[f"{cert}.key"])
        return self.start_server(["127.0.0.2:0"], **options)

    def daemon(self, srv, policy, trust_ca):
        d = self.mx_relayd(self.dns, srv.port, {"delivery.tls": policy}, start=False)
        if trust_ca:
            d.extra_env = {"SSL_CERT_FILE": self.pki["ca.pem"]}
        else:  # a CA store without the test CA, whatever the machine trusts
            d.extra_env = {"SSL_CERT_FILE": self.pki["self.pem"] + ".none",
                           "SSL_CERT_DIR": self.tmp.name + "/no-such-dir"}
        d.start()
        return d

    def delivered(self, srv, rcpt):
        return [m for m in srv.messages() if rcpt in m["rcpt_to"]]

    def assertDeliveredOverTls(self, srv, d, rcpt):
        self.wait_until(lambda: self.delivered(srv, rcpt), 15, f"{rcpt} at the server")
        conns = [x for x in srv.connections() if x["messages"]]
        self.assertTrue(conns and all(x["tls"] for x in conns), conns)
        self.assertTrue(conns[0]["tls_version"] in ("TLSv1.2", "TLSv1.3"), conns[0])
        self.wait_queue_empty(d, 10)

    def test_verify_delivers_when_the_ca_is_trusted(self):
        srv = self.server()
        d = self.daemon(srv, "verify", trust_ca=True)
        self.send(d, f"v@{DST}", "verify trusted")
        self.assertDeliveredOverTls(srv, d, f"v@{DST}")
        self.assertEqual(srv.connections()[0]["sni"], MX, "SNI names the MX host")

    def test_verify_defers_when_the_ca_is_unknown(self):
        srv = self.server()
        d = self.daemon(srv, "verify", trust_ca=False)
        qid = self.send(d, f"v@{DST}", "verify untrusted")
        r = self.assertDeferredWith(srv, d, qid, "TLS handshake with", MX,
                                    "certificate verification failed")
        self.assertEqual(self.attempts(d, qid)[0].dsn, "4.7.5")
        self.assertRegex(r["last_reply"], r"local issuer|self.signed|unable to get")

    def test_verify_defers_when_the_name_does_not_match(self):
        srv = self.server(cert="other")
        d = self.daemon(srv, "verify", trust_ca=True)
        qid = self.send(d, f"v@{DST}", "verify wrong name")
        self.assertDeferredWith(srv, d, qid, "certificate verification failed",
                                "hostname mismatch")

    def test_encrypt_takes_an_unverified_certificate(self):
        srv = self.server(cert="self")
        d = self.daemon(srv, "encrypt", trust_ca=False)
        self.send(d, f"e@{DST}", "encrypt self-signed")
        self.assertDeliveredOverTls(srv, d, f"e@{DST}")

    def test_encrypt_defers_without_starttls(self):
        srv = self.server(cert=None)
        d = self.daemon(srv, "encrypt", trust_ca=True)
        qid = self.send(d, f"e@{DST}", "encrypt no starttls")
        r = self.assertDeferredWith(srv, d, qid)
        self.assertRegex(r["last_reply"], r"(?i)starttls|tls")

    def test_may_falls_back_to_plaintext_when_the_handshake_fails(self):
        # A broken TLS peer: 220 to STARTTLS, then it closes instead of a handshake.
        srv = self.server()
        srv.set_rules([{"on": "STARTTLS", "reply": "220 2.0.0 Ready", "close": True}])
        d = self.daemon(srv, "may", trust_ca=True)
        self.send(d, f"m@{DST}", "may fallback")
        self.wait_until(lambda: self.delivered(srv, f"m@{DST}"), 20, "the plaintext delivery")
        conns = [x for x in srv.connections() if x["messages"]]
        self.assertFalse(conns[0]["tls"], conns)
        self.wait_queue_empty(d, 10)
        self.assertNoBounce(d)

    def test_encrypt_defers_when_the_handshake_fails(self):
        srv = self.server()
        srv.set_rules([{"on": "STARTTLS", "reply": "220 2.0.0 Ready", "close": True}])
        d = self.daemon(srv, "encrypt", trust_ca=True)
        qid = self.send(d, f"e@{DST}", "encrypt broken peer")
        self.assertDeferredWith(srv, d, qid, "TLS handshake with")

    def test_none_never_starts_tls(self):
        srv = self.server()
        d = self.daemon(srv, "none", trust_ca=True)
        self.send(d, f"n@{DST}", "none")
        self.wait_until(lambda: self.delivered(srv, f"n@{DST}"), 15, "the delivery")
        self.assertTrue(all(not x["tls"] for x in srv.connections()), srv.connections())
        self.assertNotIn("STARTTLS", [cmd["cmd"] for x in srv.connections()
                                      for cmd in x["commands"]])


if __name__ == "__main__":
    unittest.main(verbosity=2)
