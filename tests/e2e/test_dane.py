#!/usr/bin/env python3
"""DANE for SMTP (RFC 7672, [delivery] dane = true) end to end, against a real
DNSSEC-validating resolver: unbound, with a trust anchor for the test zone
dane.test, which ldns-signzone signs and knotd serves on loopback; plain.test is
served unsigned (insecure). relayd asks unbound (delivery.dns_servers) and
delivers to the scripted test SMTP server (STARTTLS with a self-signed
certificate, or a certificate from a test CA), all MX hosts on 127.0.0.1.

- a matching DANE-EE TLSA record: delivered over TLS, logged with policy=dane;
- a matching DANE-TA record and a certificate naming the MX host: delivered;
- a mismatched TLSA record: deferred with the DANE reason, nothing sent;
- usable TLSA records but no STARTTLS: deferred, nothing sent in plaintext;
- a bogus TLSA signature (unbound answers SERVFAIL): deferred, no connection;
- an insecure (unsigned) zone: its TLSA records are ignored and the normal
  policy ([delivery] tls = may) delivers;
- only unusable (PKIX-EE) records: the normal policy delivers (RFC 7672 2.2).
Skipped when knotd, unbound or ldnsutils are missing.
"""

import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_delivery_common as c  # noqa: E402

h = c.h
SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
TOOLS = ("knotd", "unbound", "ldns-keygen", "ldns-signzone", "openssl")


def tool(name):
    return shutil.which(name, path=SBIN_PATH)


openssl = c.openssl


def dns_query(server_port, name, qtype, ad=True, timeout=2.0):
    """(rcode, ad_bit, answer_count) of one UDP query to 127.0.0.1:server_port."""
    hdr = struct.pack(">HHHHHH", 0x4242, 0x0100 | (0x20 if ad else 0), 1, 0, 0, 0)
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(hdr + qname + struct.pack(">HH", qtype, 1), ("127.0.0.1", server_port))
        r = s.recv(4096)
    flags = struct.unpack(">H", r[2:4])[0]
    return flags & 15, bool(flags & 0x20), struct.unpack(">H", r[6:8])[0]


def wait_dns(port, name, proc, what, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            dns_query(port, name, 6, timeout=0.5)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} does not answer on port {port}")


def make_pki(d):
    """A self-signed server certificate (DANE-EE), a test CA and a certificate it
    signed for mx.ta.dane.test (DANE-TA; the chain file holds both). Returns the
    TLSA association data as hex: the EE key's SPKI SHA-256, the CA's SHA-256."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ee.key",
            "-out", "ee.pem", "-days", "2", "-subj", "/CN=not-the-mx-name", cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=relayd DANE test CA", cwd=d)
    for name, host in (("ta", "mx.ta.dane.test"), ("tawrong", "elsewhere.example"),
                       ("cnta", "host.cnta.dane.test")):
        c.issue_cert(d, name, host)
        with open(os.path.join(d, f"{name}.pem"), "a") as out, \
                open(os.path.join(d, "ca.pem")) as ca:
            out.write(ca.read())  # the chain: DANE-TA matches the CA in it
    pub = openssl("x509", "-in", "ee.pem", "-noout", "-pubkey", cwd=d)
    spki = openssl("pkey", "-pubin", "-outform", "DER", cwd=d, inp=pub)
    ca_der = openssl("x509", "-in", "ca.pem", "-outform", "DER", cwd=d)
    return hashlib.sha256(spki).hexdigest(), hashlib.sha256(ca_der).hexdigest()


def signed_zone_text(port, ee_hash, ca_hash):
    wrong = hashlib.sha256(b"some other key").hexdigest()
    t = f"_{port}._tcp"
    rows = [
        "$ORIGIN dane.test.", "$TTL 300",
        "@ IN SOA ns.dane.test. hostmaster.dane.test. 1 3600 600 86400 300",
        "@ IN NS ns.dane.test.", "ns IN A 127.0.0.1",
    ]
    for label, tlsa in (("ok", f"3 1 1 {ee_hash}"), ("bad", f"3 1 1 {wrong}"),
                        ("bogus", f"3 1 1 {ee_hash}"), ("ta", f"2 0 1 {ca_hash}"),
                        ("unusable", f"1 1 1 {wrong}")):
        rows += [f"{label} IN MX 10 mx.{label}", f"mx.{label} IN A 127.0.0.1",
                 f"{t}.mx.{label} IN TLSA {tlsa}"]
    # MX hosts that are aliases (RFC 7672 2.2.2): TLSA records at the CNAME's
    # target (DANE-EE, and DANE-TA with a certificate naming only the target),
    # or only at the MX host name itself.
    for label, tlsa, at in (("cname", f"3 1 1 {ee_hash}", "host"),
                            ("cnta", f"2 0 1 {ca_hash}", "host"),
                            ("cnorig", f"3 1 1 {ee_hash}", "mx")):
        rows += [f"{label} IN MX 10 mx.{label}", f"mx.{label} IN CNAME host.{label}",
                 f"host.{label} IN A 127.0.0.1", f"{t}.{at}.{label} IN TLSA {tlsa}"]
    return "\n".join(rows) + "\n"


def plain_zone_text(port):
    wrong = hashlib.sha256(b"some other key").hexdigest()
    return "\n".join([
        "$ORIGIN plain.test.", "$TTL 300",
        "@ IN SOA ns.dane.test. hostmaster.plain.test. 1 3600 600 86400 300",
        "@ IN NS ns.dane.test.", "@ IN MX 10 mx", "mx IN A 127.0.0.1",
        f"_{port}._tcp.mx IN TLSA 3 1 1 {wrong}",
    ]) + "\n"


def break_signature(zone_file, owner, rrtype):
    """Flips a byte of the RRSIG covering `owner` `rrtype`: a bogus answer."""
    lines = open(zone_file).read().splitlines()
    done = False
    for i, line in enumerate(lines):
        f = line.split()
        if len(f) > 6 and f[0] == owner and f[3] == "RRSIG" and f[4] == rrtype:
            sig = f[-1]
            f[-1] = ("A" if sig[0] != "A" else "B") + sig[1:]
            lines[i] = "\t".join(f)
            done = True
    if not done:
        raise RuntimeError(f"no RRSIG {rrtype} for {owner} in {zone_file}")
    open(zone_file, "w").write("\n".join(lines) + "\n")


class SignedDns:
    """knotd serving dane.test (signed) and plain.test (unsigned), and unbound
    validating with dane.test's key-signing key as its trust anchor."""

    def __init__(self, d, smtp_port, ee_hash, ca_hash):
        self.dir = d
        self.procs = []
        with open(os.path.join(d, "dane.test.zone"), "w") as f:
            f.write(signed_zone_text(smtp_port, ee_hash, ca_hash))
        with open(os.path.join(d, "plain.test.zone"), "w") as f:
            f.write(plain_zone_text(smtp_port))
        run = dict(cwd=d, check=True, capture_output=True, text=True)
        ksk = subprocess.run([tool("ldns-keygen"), "-a", "ECDSAP256SHA256", "-k", "dane.test"],
                             **run).stdout.strip()
        zsk = subprocess.run([tool("ldns-keygen"), "-a", "ECDSAP256SHA256", "dane.test"],
                             **run).stdout.strip()
        subprocess.run([tool("ldns-signzone"), "dane.test.zone", ksk, zsk], **run)
        break_signature(os.path.join(d, "dane.test.zone.signed"),
                        f"_{smtp_port}._tcp.mx.bogus.dane.test.", "TLSA")
        self.anchor = os.path.join(d, ksk + ".key")
        self.knot_port = h.free_port()
        self.port = h.free_port()
        self.server = f"127.0.0.1:{self.port}"

    def start(self):
        d = self.dir
        with open(os.path.join(d, "knot.conf"), "w") as f:
            f.write(f"""server:
    rundir: "{d}"
    listen: 127.0.0.1@{self.knot_port}
database:
    storage: "{d}/knotdb"
template:
  - id: default
    storage: "{d}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: dane.test
    file: dane.test.zone.signed
  - domain: plain.test
    file: plain.test.zone
log:
  - target: stderr
    any: info
""")
        with open(os.path.join(d, "unbound.conf"), "w") as f:
            f.write(f"""server:
  interface: 127.0.0.1
  port: {self.port}
  username: ""
  chroot: ""
  directory: "{d}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 1
  val-log-level: 2
  do-ip6: no
  do-not-query-localhost: no
  module-config: "validator iterator"
  trust-anchor-file: "{self.anchor}"
  local-zone: "test." nodefault
  qname-minimisation: no
stub-zone:
  name: "dane.test"
  stub-addr: 127.0.0.1@{self.knot_port}
stub-zone:
  name: "plain.test"
  stub-addr: 127.0.0.1@{self.knot_port}
remote-control:
  control-enable: no
""")
        self.knot_log = open(os.path.join(d, "knot.log"), "w")
        self.unbound_log = open(os.path.join(d, "unbound.log"), "w")
        knot = h.spawn([tool("knotd"), "-c", os.path.join(d, "knot.conf")],
                       stdout=self.knot_log, stderr=subprocess.STDOUT)
        self.procs.append(knot)
        wait_dns(self.knot_port, "dane.test", knot, "knotd")
        unbound = h.spawn([tool("unbound"), "-d", "-c", os.path.join(d, "unbound.conf")],
                          stdout=self.unbound_log, stderr=subprocess.STDOUT)
        self.procs.append(unbound)
        wait_dns(self.port, "dane.test", unbound, "unbound")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        self.procs = []
        for f in (getattr(self, "knot_log", None), getattr(self, "unbound_log", None)):
            if f:
                f.close()

    def cleanup(self):
        """After each test: nothing (the test class stops the servers)."""

    def log_text(self):
        out = []
        for name in ("knot.log", "unbound.log"):
            try:
                with open(os.path.join(self.dir, name)) as f:
                    out.append(f"---- {name} ----\n" + f.read()[-4000:])
            except OSError:
                pass
        return "\n".join(out)


class DaneTest(c.DeliveryTestCase):
    @classmethod
    def setUpClass(cls):
        missing = [t for t in TOOLS if not tool(t)]
        if missing:
            raise unittest.SkipTest(f"missing {', '.join(missing)} (packaging/install-deps.sh "
                                    "installs unbound, knot and ldnsutils)")
        cls.tmp = tempfile.TemporaryDirectory(prefix="relayd-dane-")
        cls.smtp_port = h.free_port()
        ee_hash, ca_hash = make_pki(cls.tmp.name)
        cls.dns = SignedDns(cls.tmp.name, cls.smtp_port, ee_hash, ca_hash)
        try:
            cls.dns.start()
            cls.check_resolver()
        except Exception:
            sys.stderr.write(cls.dns.log_text())
            cls.dns.stop()
            cls.tmp.cleanup()
            raise

    @classmethod
    def check_resolver(cls):
        """The fixture itself: unbound validates dane.test, fails the broken
        signature, and leaves plain.test insecure."""
        p = cls.smtp_port
        expect = [(f"_{p}._tcp.mx.ok.dane.test", (0, True)),
                  (f"_{p}._tcp.mx.bogus.dane.test", (2, False)),
                  (f"_{p}._tcp.mx.plain.test", (0, False))]
        for name, want in expect:
            got = dns_query(cls.dns.port, name, 52)[:2]
            if got != want:
                raise RuntimeError(f"unbound answers {name} TLSA with (rcode, AD) {got}, "
                                   f"expected {want}")

    @classmethod
    def tearDownClass(cls):
        cls.dns.stop()
        cls.tmp.cleanup()

    def setUp(self):
        # Its logs are printed when a test fails (DeliveryTestCase's peers).
        self._peers.append(("dns", self.dns))

    def server(self, cert="ee"):
        options = {}
        if cert:
            options = dict(tls_cert=os.path.join(self.tmp.name, f"{cert}.pem"),
                           tls_key=os.path.join(self.tmp.name, f"{cert}.key"))
        return self.start_server([f"127.0.0.1:{self.smtp_port}"], **options)

    def daemon(self, srv, dane=True):
        # tls = may: the normal policy is opportunistic, so only DANE can make
        # TLS mandatory; no CA is trusted, so only DANE can verify.
        d = self.mx_relayd(self.dns, srv.port, {"delivery.tls": "may", "delivery.dane": dane},
                           start=False)
        d.extra_env = {"SSL_CERT_FILE": os.path.join(self.tmp.name, "none.pem"),
                       "SSL_CERT_DIR": os.path.join(self.tmp.name, "no-such-dir")}
        d.start()
        return d

    def delivered(self, srv, rcpt):
        return [m for m in srv.messages() if rcpt in m["rcpt_to"]]

    def sni(self, srv, rcpt):
        """The server name the delivery of `rcpt` asked for in its TLS handshake."""
        return [m["sni"] for m in srv.messages() if rcpt in m["rcpt_to"]][0]

    def assertDelivered(self, srv, d, rcpt, tls=True):
        self.wait_until(lambda: self.delivered(srv, rcpt), 20, f"{rcpt} at the server")
        conns = [x for x in srv.connections() if x["messages"]]
        self.assertTrue(conns, srv.connections())
        self.assertEqual([x["tls"] for x in conns], [tls] * len(conns), conns)
        self.wait_queue_empty(d, 10)
        self.assertNoBounce(d)

    def test_matching_dane_ee_record_delivers_over_verified_tls(self):
        srv = self.server()
        d = self.daemon(srv)
        self.send(d, "a@ok.dane.test", "dane ee")
        self.assertDelivered(srv, d, "a@ok.dane.test")
        log = d.log()
        self.assertRegex(log, rf"Verified TLS connection established to "
                              rf"mx\.ok\.dane\.test\[127\.0\.0\.1\]:{srv.port}: TLSv1\.[23] .*"
                              r"DANE-EE\(3\) 1 1 matched.* policy=dane")
        self.assertEqual(srv.connections()[0]["sni"], "mx.ok.dane.test")

    def test_matching_dane_ta_record_and_mx_name_deliver(self):
        srv = self.server(cert="ta")
        d = self.daemon(srv)
        self.send(d, "a@ta.dane.test", "dane ta")
        self.assertDelivered(srv, d, "a@ta.dane.test")
        self.assertRegex(d.log(), r"Verified TLS connection established to mx\.ta\.dane\.test"
                                  r".*DANE-TA\(2\) 0 1 matched.* policy=dane")

    def test_dane_ta_certificate_for_another_name_defers(self):
        srv = self.server(cert="tawrong")
        d = self.daemon(srv)
        qid = self.send(d, "a@ta.dane.test", "dane ta wrong name")
        self.assertDeferredWith(srv, d, qid, "DANE:", "not verified by the TLSA records",
                                "hostname mismatch")
        self.assertEqual(self.attempts(d, qid)[0].dsn, "4.7.5")

    def test_mismatched_record_defers(self):
        srv = self.server()
        d = self.daemon(srv)
        qid = self.send(d, "a@bad.dane.test", "dane mismatch")
        r = self.assertDeferredWith(srv, d, qid, "DANE:", "_%d._tcp.mx.bad.dane.test"
                                    % srv.port, "not verified by the TLSA records")
        self.assertIn("no matching dane tlsa records", r["last_reply"].lower(), r)
        self.assertEqual(self.attempts(d, qid)[0].dsn, "4.7.5")

    def test_usable_records_without_starttls_defer(self):
        srv = self.server(cert=None)
        d = self.daemon(srv)
        qid = self.send(d, "a@ok.dane.test", "dane no starttls")
        self.assertDeferredWith(srv, d, qid, "DANE:", "TLS is mandatory",
                                "does not offer STARTTLS")

    def test_bogus_tlsa_signature_defers_without_connecting(self):
        srv = self.server()
        d = self.daemon(srv)
        qid = self.send(d, "a@bogus.dane.test", "dane bogus")
        r = self.assertDeferredWith(srv, d, qid, "DANE:", "SERVFAIL looking up TLSA for "
                                    f"_{srv.port}._tcp.mx.bogus.dane.test")
        self.assertEqual(srv.connections(), [], "a host with a bogus TLSA answer is not used")
        self.assertEqual(self.attempts(d, qid)[0].dsn, "4.4.3", r)

    def test_insecure_zone_uses_the_normal_policy(self):
        # plain.test publishes a TLSA record that matches nothing, unsigned: ignored.
        srv = self.server()
        d = self.daemon(srv)
        self.send(d, "a@plain.test", "insecure zone")
        self.assertDelivered(srv, d, "a@plain.test", tls=True)  # may: opportunistic TLS
        self.assertNotIn("policy=dane", d.log())

    def test_only_unusable_records_use_the_normal_policy(self):
        srv = self.server(cert=None)  # not even STARTTLS: may delivers in plaintext
        d = self.daemon(srv)
        self.send(d, "a@unusable.dane.test", "unusable records")
        self.assertDelivered(srv, d, "a@unusable.dane.test", tls=False)
        self.assertNotIn("policy=dane", d.log())

    def test_an_mx_alias_uses_the_tlsa_records_of_its_target_then_its_own(self):
        srv = self.server()
        d = self.daemon(srv)
        self.send(d, "a@cname.dane.test", "dane cname ee")
        self.assertDelivered(srv, d, "a@cname.dane.test")
        self.assertRegex(d.log(), r"Verified TLS connection established to "
                                  r"mx\.cname\.dane\.test\S+: .*DANE-EE\(3\) 1 1 matched.* "
                                  r"policy=dane")
        # The SNI is the TLSA base domain: the name the alias leads to (RFC 7672 8.1).
        self.assertEqual(self.sni(srv, "a@cname.dane.test"), "host.cname.dane.test")
        # None at the target: the MX host name's own records, and its name as SNI.
        self.send(d, "b@cnorig.dane.test", "dane cname, records at the alias")
        self.assertDelivered(srv, d, "b@cnorig.dane.test")
        self.assertRegex(d.log(), r"Verified TLS connection established to "
                                  r"mx\.cnorig\.dane\.test\S+: .*DANE-EE\(3\) 1 1 matched.* "
                                  r"policy=dane")
        self.assertEqual(self.sni(srv, "b@cnorig.dane.test"), "mx.cnorig.dane.test")

    def test_dane_ta_accepts_the_name_an_mx_alias_leads_to(self):
        srv = self.server(cert="cnta")  # names host.cnta.dane.test only
        d = self.daemon(srv)
        self.send(d, "a@cnta.dane.test", "dane ta cname")
        self.assertDelivered(srv, d, "a@cnta.dane.test")
        self.assertRegex(d.log(), r"Verified TLS connection established to mx\.cnta\.dane\.test"
                                  r".*DANE-TA\(2\) 0 1 matched.* policy=dane")
        self.assertEqual(self.sni(srv, "a@cnta.dane.test"), "host.cnta.dane.test")

    def test_dane_off_ignores_tlsa_records(self):
        srv = self.server()
        d = self.daemon(srv, dane=False)
        self.send(d, "a@bad.dane.test", "dane off")
        self.assertDelivered(srv, d, "a@bad.dane.test", tls=True)
        self.assertNotIn("policy=dane", d.log())


if __name__ == "__main__":
    h.main()
