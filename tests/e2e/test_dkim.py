#!/usr/bin/env python3
"""DKIM signing ([[dkim]], RFC 6376 and RFC 8463) checked by an independent
verifier: Debian's python3-dkim (dkimpy), which looks the public keys up itself
(its own DNS path, dnspython, pointed at the test dnsmasq that serves the
selectors' TXT records; dkim_dns_verify.py). relayd relays to the scripted test
SMTP server (smarthost mode), with the same dnsmasq as its resolver; what that
server received is verified.

- RSA-2048, Ed25519, and both at once (each signature verifies on its own);
  the accepted-message log line says dkim=DOMAIN/SELECTOR[,SELECTOR];
  `relayctl dkim check` finds both records ok on the same server.
- 8-bit body, an SMTPUTF8 message, long folded headers, a body whose last line
  has trailing blanks: all verify; so does a message imported from the maildrop
  whose body ends without a newline.
- The verifier really checks: a changed header, a changed body, a From: added
  on top (over-signing) and swapped key records all FAIL.
- A From: domain with no key: delivered unsigned, the log says dkim=none.
- A bad key file stops the start naming dkim[1].key; SIGHUP with a broken key
  keeps signing with the old one, SIGHUP with a new key signs with it.
- Multi-hop (root, Postfix): relayd signs (RSA-2048 and Ed25519), the installed
  Postfix, run as a private instance on loopback (tests/bench/postfix-instance.sh),
  relays to the test server, and both signatures still verify there: a plain
  message, an 8-bit body (BODY=8BITMIME) and long header lines (an unfolded
  900-octet Subject: and folded Cc:/References:); Postfix's Received: on top
  shows the extra hop.
Skipped (77) when no python3 with dkim, dnspython and nacl, or no dnsmasq.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402
from dkim_dns_verify import VERIFIER, txt_strings, verify  # noqa: E402

DOMAIN = "example.org"
SENDER = "app@example.org"

def openssl(*args, stdin=None):
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True,
                          check=True).stdout


class DkimCase(c.DeliveryTestCase):
    """Keys, their records in dnsmasq, relayd with [[dkim]] and the verifier."""

    def setUp(self):
        if VERIFIER is None:
            self.skipTest("python3-dkim (with python3-dnspython and python3-nacl) not installed")
        if not os.path.exists(c.Dnsmasq().binary):
            self.skipTest("dnsmasq is not installed")
        self.dir = tempfile.mkdtemp(prefix="relayd-dkim-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.records = {}

    def key(self, name, kind):
        """A new key file; its public key goes into the TXT records as NAME."""
        path = os.path.join(self.dir, f"{name}.pem")
        if kind == "rsa":
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", path)
        else:
            openssl("genpkey", "-algorithm", "ed25519", "-out", path)
        der = openssl("pkey", "-in", path, "-pubout", "-outform", "DER")
        import base64
        p = base64.b64encode(der if kind == "rsa" else der[-32:]).decode()
        self.records[f"{name}._domainkey.{DOMAIN}"] = f"v=DKIM1; k={kind}; p={p}"
        return path

    def txt(self):
        return {name: txt_strings(rec) for name, rec in self.records.items()}

    def publish(self):
        """Serves the current records (dnsmasq cannot change them at runtime)."""
        self.dns.restart(txt=self.txt())

    def verifies(self, message, idx=0):
        ok, _ = verify(message, self.dns.port, idx)  # "False REASON" otherwise
        return ok

    @staticmethod
    def with_dkim(d, keys):
        """Writes d's config with one [[dkim]] table per (selector, key path)."""
        d.write_config()
        with open(d.config_path, "a", encoding="utf-8") as f:
            for sel, path in keys:
                f.write(f'\n[[dkim]]\ndomain = "{DOMAIN}"\nselector = "{sel}"\n'
                        f'key = {json.dumps(path)}\n')

    def start(self, keys):
        self.dns = self.start_dns(txt=self.txt())
        srv = self.start_server(["127.0.0.1:0"])
        d = self.smarthost_relayd(srv.port, {"delivery.dns_servers": [self.dns.server]},
                                  start=False)
        self.with_dkim(d, keys)
        d.start()
        return srv, d

    def deliver(self, srv, d, msg, sender=SENDER, mail_options=()):
        before = len(srv.messages())
        res = h.submit(d.port, sender, ["rcpt@dest.test"], msg, mail_options=mail_options)
        qid = self.assertQueued(res, "submit")
        self.wait_until(lambda: len(srv.messages()) > before, 10, "delivery")
        return qid, srv.messages()[-1]["data"]

    def message(self, subject="signed", body="hello\r\n", sender=SENDER, extra=()):
        return h.make_message(subject, body, sender=sender, rcpt="rcpt@dest.test",
                              extra_headers=list(extra) + [
                                  "Date: Wed, 02 Dec 2026 10:00:00 +0000",
                                  "Message-ID: <dkim-test@example.org>"])


class DkimTest(DkimCase):
    def test_rsa_signature_verifies_and_tampering_fails(self):
        srv, d = self.start([("rsa1", self.key("rsa1", "rsa"))])
        qid, data = self.deliver(srv, d, self.message(body="line one\r\nline two\r\n"))
        self.assertTrue(data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;"), data[:200])
        self.assertTrue(self.verifies(data), data.decode(errors="replace"))
        # dkimpy asked dnsmasq for the key record (no lookup function of ours).
        self.assertIn(f"query[TXT] rsa1._domainkey.{DOMAIN} from 127.0.0.1", self.dns.log_text())
        self.assertRegex(d.log(), rf"(?m){qid}: from=<{SENDER}>, .*, dkim={DOMAIN}/rsa1$")
        self.assertFalse(self.verifies(data.replace(b"Subject: signed", b"Subject: signeD")))
        self.assertFalse(self.verifies(data.replace(b"line two", b"line 2")))
        # Over-signing: a copy added on top of a signed field breaks the signature.
        # (dkimpy also adds an extra From: by itself; Subject: shows that ours does it.)
        for name, added in ((b"From", b"From: <boss@example.org>"), (b"Subject", b"Subject: urgent")):
            i = data.index(b"\r\n" + name + b":") + 2  # the original field, not h= in the signature
            self.assertFalse(self.verifies(data[:i] + added + b"\r\n" + data[i:]), name)
        # Whitespace that relaxed canonicalization ignores does not.
        self.assertTrue(self.verifies(data.replace(b"Subject: signed", b"Subject:   signed")))

    def test_ed25519_signature_verifies(self):
        srv, d = self.start([("ed1", self.key("ed1", "ed25519"))])
        qid, data = self.deliver(srv, d, self.message())
        self.assertIn(b"a=ed25519-sha256;", data[:300])
        self.assertTrue(self.verifies(data), data.decode(errors="replace"))
        self.assertFalse(self.verifies(data.replace(b"hello", b"hellO")))
        self.assertRegex(d.log(), rf"(?m){qid}: .*, dkim={DOMAIN}/ed1$")

    def test_dual_signed_both_verify(self):
        srv, d = self.start([("rsa1", self.key("rsa1", "rsa")), ("ed1", self.key("ed1", "ed25519"))])
        qid, data = self.deliver(srv, d, self.message())
        self.assertEqual(data.count(b"DKIM-Signature:"), 2, data[:1200])
        self.assertTrue(self.verifies(data, 0))
        self.assertTrue(self.verifies(data, 1))
        self.assertRegex(d.log(), rf"(?m){qid}: .*, dkim={DOMAIN}/rsa1,ed1$")
        # relayd's own check of the selectors asks the same DNS server: both ok.
        r = h.run_relayctl(["-c", d.config_path, "dkim", "check"])
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.out, rf"(?m)^{re.escape(DOMAIN)}\s+rsa1\s+ok\s")
        self.assertRegex(r.out, rf"(?m)^{re.escape(DOMAIN)}\s+ed1\s+ok\s")
        # The verifier checks each against its own key: swap the records, both fail,
        # and relayctl dkim check reports both as mismatched.
        rsa, ed = (f"rsa1._domainkey.{DOMAIN}", f"ed1._domainkey.{DOMAIN}")
        self.records[rsa], self.records[ed] = self.records[ed], self.records[rsa]
        self.publish()
        self.assertFalse(self.verifies(data, 0))
        self.assertFalse(self.verifies(data, 1))
        r = h.run_relayctl(["-c", d.config_path, "dkim", "check"])
        self.assertEqual(r.rc, 1, r)
        self.assertRegex(r.out, rf"(?m)^{re.escape(DOMAIN)}\s+rsa1\s+mismatch\s")
        self.assertRegex(r.out, rf"(?m)^{re.escape(DOMAIN)}\s+ed1\s+mismatch\s")

    def test_8bit_smtputf8_long_headers_and_trailing_blanks(self):
        srv, d = self.start([("rsa1", self.key("rsa1", "rsa")), ("ed1", self.key("ed1", "ed25519"))])
        cases = {
            "8bit": (self.message(body="Grüße aus Köln, naïve café \r\n".encode(),
                                  extra=["MIME-Version: 1.0",
                                         "Content-Type: text/plain; charset=utf-8",
                                         "Content-Transfer-Encoding: 8bit"]),
                     ["BODY=8BITMIME"]),
            "smtputf8": (h.make_message("Ünïcödé sübject", "tschüß\r\n",
                                        sender="jörg@example.org", rcpt="rcpt@dest.test",
                                        extra_headers=["Date: Wed, 02 Dec 2026 10:00:00 +0000"]),
                         ["SMTPUTF8", "BODY=8BITMIME"]),
            "folded": (self.message(subject="a very long subject " * 12,
                                    extra=["Cc: " + ",\r\n\t".join(f"person{i}@dest.test"
                                                                    for i in range(30)),
                                           "References: " + "\r\n ".join(
                                               f"<ref{i}@example.org>" for i in range(20))]),
                       []),
            "trailing blanks, no final empty line": (self.message(body="last line  \t"), []),
        }
        for name, (msg, opts) in cases.items():
            with self.subTest(name):
                sender = "jörg@example.org" if name == "smtputf8" else SENDER
                qid, data = self.deliver(srv, d, msg, sender=sender, mail_options=opts)
                self.assertTrue(self.verifies(data, 0), data.decode(errors="replace"))
                self.assertTrue(self.verifies(data, 1), data.decode(errors="replace"))
                self.assertRegex(d.log(), rf"(?m){qid}: .*, dkim={DOMAIN}/rsa1,ed1$")

    def test_maildrop_import_is_signed_body_without_final_newline(self):
        writer = os.path.join(h.REPO, "build/release/tests/e2e/maildrop_write")
        if not os.path.exists(writer):
            self.skipTest(f"{writer} not built")
        srv, d = self.start([("ed1", self.key("ed1", "ed25519"))])
        # What sendmail writes when relayd is down; the last line has no newline.
        msg = (b"From: <app@example.org>\r\nTo: <rcpt@dest.test>\r\nSubject: dropped\r\n\r\n"
               b"first line\r\nlast line without newline")
        p = subprocess.run([writer, os.path.join(d.spool, "maildrop"), "-f", SENDER,
                            "rcpt@dest.test"], input=msg, capture_output=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.wait_until(lambda: srv.messages(), 40, "the imported message at the server")
        data = srv.messages()[-1]["data"]
        self.assertIn(b"a=ed25519-sha256;", data[:300])
        self.assertTrue(self.verifies(data), data.decode(errors="replace"))
        self.assertFalse(self.verifies(data.replace(b"first line", b"first Line")))
        self.assertRegex(d.log(), rf"(?m): from=<{SENDER}>, .*client=maildrop .*, dkim={DOMAIN}/ed1$")

    def test_no_key_for_the_domain_is_unsigned_and_logged(self):
        srv, d = self.start([("rsa1", self.key("rsa1", "rsa"))])
        qid, data = self.deliver(srv, d, self.message(sender="app@elsewhere.test"),
                                 sender="app@elsewhere.test")
        self.assertNotIn(b"DKIM-Signature", data)
        self.assertRegex(d.log(), rf"(?m){qid}: from=<app@elsewhere.test>, .*, dkim=none$")

    def test_bad_key_stops_the_start(self):
        bad = os.path.join(self.dir, "bad.pem")
        with open(bad, "w") as f:
            f.write("not a key\n")
        d = self.smarthost_relayd(2525, start=False)
        self.with_dkim(d, [("s1", bad)])
        d.start(wait=False)
        self.assertEqual(d.proc.wait(15), 1, d.log())
        self.assertIn(f"dkim[1].key: {bad}: not a PEM private key", d.log())

    def test_sighup_rereads_keys_and_keeps_the_old_on_error(self):
        path = self.key("rsa1", "rsa")
        old_record = self.records[f"rsa1._domainkey.{DOMAIN}"]
        srv, d = self.start([("rsa1", path)])
        # A broken key on reload: logged, the old one keeps signing.
        with open(path, "w") as f:
            f.write("broken\n")
        os.kill(d.proc.pid, signal.SIGHUP)
        self.wait_until(lambda: "the previous DKIM keys stay in use" in d.log(), 10, "reload error")
        _, data = self.deliver(srv, d, self.message())
        self.assertTrue(self.verifies(data))
        # A rotated key: the next message is signed with it.
        self.key("rsa1", "rsa")  # overwrites the file and the record
        self.assertNotEqual(self.records[f"rsa1._domainkey.{DOMAIN}"], old_record)
        self.publish()
        self.assertFalse(self.verifies(data), "the old signature against the new record")
        os.kill(d.proc.pid, signal.SIGHUP)
        self.wait_until(lambda: d.log().count("SIGHUP: dkim: signing with") >= 1, 10, "reload")
        _, data = self.deliver(srv, d, self.message())
        self.assertTrue(self.verifies(data))


POSTFIX_INSTANCE = os.path.join(h.REPO, "tests", "bench", "postfix-instance.sh")


class PostfixHopTest(DkimCase):
    """relayd (signs) -> Postfix (relays) -> test server (verified there)."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("Postfix's master needs root")
        if not shutil.which("postfix"):
            self.skipTest("postfix is not installed")
        self.sink = self.start_server(["127.0.0.1:0"])
        self.pf_dir = tempfile.mkdtemp(prefix="relayd-dkim-postfix-")
        self.pf_port = h.free_port()
        self.addCleanup(self.stop_postfix)
        r = subprocess.run(["bash", POSTFIX_INSTANCE, "start", self.pf_dir, str(self.pf_port),
                            str(self.sink.port)], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, f"postfix-instance start failed: {r.stderr}")

    def stop_postfix(self):
        subprocess.run(["bash", POSTFIX_INSTANCE, "destroy", self.pf_dir], capture_output=True,
                       timeout=60)

    def maillog(self):
        try:
            with open(os.path.join(self.pf_dir, "maillog"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return "(no maillog)"

    def test_signatures_survive_a_postfix_hop(self):
        keys = [("rsa1", self.key("rsa1", "rsa")), ("ed1", self.key("ed1", "ed25519"))]
        self.dns = self.start_dns(txt=self.txt())
        d = self.smarthost_relayd(self.pf_port, {"delivery.dns_servers": [self.dns.server],
                                                 "delivery.tls": "none"}, start=False)
        self.with_dkim(d, keys)
        d.start()
        long_subject = "long header " + "x" * 880  # one 900-octet line, no folding
        cases = {
            "plain": (self.message(subject="through postfix"), []),
            "8bit": (self.message(subject="8bit through postfix",
                                  body="Grüße aus Köln, naïve café\r\n".encode(),
                                  extra=["MIME-Version: 1.0",
                                         "Content-Type: text/plain; charset=utf-8",
                                         "Content-Transfer-Encoding: 8bit"]),
                     ["BODY=8BITMIME"]),
            "long headers": (self.message(subject=long_subject,
                                          extra=["Cc: " + ",\r\n\t".join(
                                                     f"person{i}@dest.test" for i in range(30)),
                                                 "References: " + "\r\n ".join(
                                                     f"<ref{i}@example.org>" for i in range(20))]),
                             []),
        }
        for name, (msg, opts) in cases.items():
            with self.subTest(name):
                before = len(self.sink.messages())
                res = h.submit(d.port, SENDER, ["rcpt@dest.test"], msg, mail_options=opts)
                qid = self.assertQueued(res, "submit")
                self.wait_until(lambda: len(self.sink.messages()) > before, 30,
                                f"the message relayed by Postfix ({self.maillog()})")
                data = self.sink.messages()[-1]["data"]
                # Postfix's own Received: sits above relayd's signatures.
                self.assertTrue(data.startswith(b"Received: from "), data[:300])
                self.assertIn(b"postfix-bench.localdomain", data.split(b"DKIM-Signature:")[0])
                self.assertEqual(data.count(b"DKIM-Signature:"), 2, data[:1500])
                for idx in (0, 1):
                    ok, why = verify(data, self.dns.port, idx)
                    self.assertTrue(ok, f"signature {idx} after the hop: {why}\n"
                                        f"{data.decode(errors='replace')[:3000]}")
                self.assertRegex(d.log(), rf"(?m){qid}: .*, dkim={DOMAIN}/rsa1,ed1$")
                if name == "8bit":
                    self.assertIn("Grüße".encode(), data)  # not converted on the way
                if name == "long headers":
                    self.assertIn(("Subject: " + long_subject).encode() + b"\r\n", data)
                # The verifier still checks after the hop: a changed body fails.
                tampered = (data.replace("Köln".encode(), b"Koeln") if name == "8bit"
                            else data.replace(b"\r\n\r\nhello\r\n", b"\r\n\r\nhellO\r\n"))
                self.assertNotEqual(tampered, data)
                for idx in (0, 1):
                    self.assertFalse(verify(tampered, self.dns.port, idx)[0])


if __name__ == "__main__":
    h.main()
