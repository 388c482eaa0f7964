#!/usr/bin/env python3
"""DKIM key operations, end to end (issue 13): `relayctl dkim keygen` and
`relayctl dkim check`, with the real binaries.

- keygen writes DIR/DOMAIN.SELECTOR.key with mode 0600 (owned by the configured
  `user` when run as root), refuses to overwrite it, and prints a TXT record
  that an independent verifier (python3-dkim) accepts for a message signed with
  that key: RSA and Ed25519 (RFC 8463).
- check asks relayd, which looks each [[dkim]] selector up through its own
  resolver (dnsmasq here): a published key is ok, a missing record, another
  key and a revoked record are reported, and the exit code is 1; the metric
  relayd_dkim_key_dns_match says 1 / 0 per selector.
- require_dns = true: while dnsmasq serves another key for that selector the
  message goes out without that key's signature (the Ed25519 key without
  require_dns still signs, and python3-dkim verifies it against dnsmasq) and
  the accept log line says which key was left out and why; once the right
  record is served, the daemon's own periodic check (dkim_check_interval = 1s,
  no relayctl) sees it and both keys sign; a record that goes away stops it again.
Needs python3-dkim and dnsmasq (exits 77 when missing).
"""

import base64
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import unittest
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
from test_delivery_common import DeliveryTestCase, Dnsmasq  # noqa: E402,F401
from dkim_dns_verify import VERIFIER, txt_strings, verify  # noqa: E402

try:
    import dkim  # python3-dkim
except ImportError:
    # Debian's package is installed for the system python3; ctest may run another.
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import dkim
    except ImportError:
        dkim = None

DOMAIN = "dkim.test"
MESSAGE = (b"From: App <app@dkim.test>\r\nTo: bob@example.net\r\nSubject: keys\r\n"
           b"Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <k1@dkim.test>\r\n\r\n"
           b"Signed with a key relayctl made.\r\n")
ZONE_RE = re.compile(r'^(\S+)\._domainkey\.(\S+)\. IN TXT \(((?: "[^"]*")+) \)$')


def minimal_config(test, prefix):
    """A temporary directory (removed after `test`) and a config file in it for
    keygen: no `user`, so no chown."""
    d = tempfile.mkdtemp(prefix=prefix)
    test.addCleanup(shutil.rmtree, d, True)
    config = os.path.join(d, "relayd.toml")
    with open(config, "w") as f:
        f.write('hostname = "relay.test"\n')
    return d, config


def keygen(config, *args):
    return h.run_relayctl(["-c", config, "dkim", "keygen"] + list(args))


def record_strings(zone_line):
    """The quoted strings of a printed zone line, in order."""
    m = ZONE_RE.match(zone_line.strip())
    assert m, f"not a zone line: {zone_line!r}"
    return re.findall(r'"([^"]*)"', m.group(3))


def ed25519_seed(pem_text):
    """python3-dkim takes an Ed25519 private key as the base64 32-byte seed: the
    last 32 bytes of the PKCS#8 DER that relayctl writes."""
    body = "".join(line for line in pem_text.splitlines() if not line.startswith("-----"))
    return base64.b64encode(base64.b64decode(body)[-32:])


class KeygenTest(unittest.TestCase):
    def setUp(self):
        if dkim is None:
            self.skipTest("python3-dkim is not installed (apt-get install python3-dkim)")
        self.dir, self.config = minimal_config(self, "relayd-dkim-")
        self.keys = os.path.join(self.dir, "keys")

    def generate(self, selector, algorithm):
        r = keygen(self.config, DOMAIN, selector, "--algorithm", algorithm, "--dir", self.keys)
        self.assertEqual(r.rc, 0, r)
        path = os.path.join(self.keys, f"{DOMAIN}.{selector}.key")
        st = os.stat(path)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, f"{path} mode")
        with open(path) as f:
            pem = f.read()
        self.assertIn("-----BEGIN PRIVATE KEY-----", pem)
        lines = [x for x in r.out.splitlines() if x.strip()]
        self.assertEqual(len(lines), 1, r)
        strings = record_strings(lines[0])
        self.assertTrue(lines[0].startswith(f"{selector}._domainkey.{DOMAIN}. IN TXT ("), r)
        for s in strings:
            self.assertLessEqual(len(s), 255, strings)
        self.assertIn(path, r.err)  # says where the key went
        return pem, "".join(strings)

    def verify(self, selector, record, signed):
        seen = []

        def dnsfunc(name, timeout=5):
            seen.append(name)
            want = f"{selector}._domainkey.{DOMAIN}."
            return record.encode() if name.decode().rstrip(".") + "." == want else None
        ok = dkim.verify(signed, dnsfunc=dnsfunc)
        self.assertTrue(seen, "the verifier never asked for the key record")
        return ok

    def test_rsa2048_key_and_record_verify(self):
        pem, record = self.generate("s2048", "rsa2048")
        self.assertTrue(record.startswith("v=DKIM1; k=rsa; p="), record)
        self.assertGreater(len(record), 255)  # split into several strings
        sig = dkim.sign(MESSAGE, b"s2048", DOMAIN.encode(), pem.encode(),
                        include_headers=[b"from", b"to", b"subject"])
        self.assertTrue(self.verify("s2048", record, sig + MESSAGE))
        # The verifier really checks: a changed body fails.
        self.assertFalse(self.verify("s2048", record, sig + MESSAGE.replace(b"key", b"kex")))

    def test_ed25519_key_and_record_verify(self):
        pem, record = self.generate("ed", "ed25519")
        m = re.fullmatch(r"v=DKIM1; k=ed25519; p=(\S+)", record)
        self.assertTrue(m, record)
        self.assertEqual(len(base64.b64decode(m.group(1))), 32)  # RFC 8463: the raw key
        sig = dkim.sign(MESSAGE, b"ed", DOMAIN.encode(), ed25519_seed(pem),
                        signature_algorithm=b"ed25519-sha256",
                        include_headers=[b"from", b"to", b"subject"])
        self.assertTrue(self.verify("ed", record, sig + MESSAGE))
        self.assertFalse(self.verify("ed", record, sig + MESSAGE + b"more\r\n"))

    def test_existing_key_is_not_overwritten(self):
        pem, _ = self.generate("s1", "rsa1024")
        r = keygen(self.config, DOMAIN, "s1", "--algorithm", "ed25519", "--dir", self.keys)
        self.assertEqual(r.rc, 1, r)
        self.assertIn("already", r.err)
        with open(os.path.join(self.keys, f"{DOMAIN}.s1.key")) as f:
            self.assertEqual(f.read(), pem)
        self.assertEqual(sorted(os.listdir(self.keys)), [f"{DOMAIN}.s1.key"])  # no temp file left

    def test_bad_arguments_are_usage_errors(self):
        for args in (["--algorithm", "dsa", DOMAIN, "s1"], [DOMAIN], ["bad domain", "s1"],
                     [DOMAIN, "s1", "--bogus"]):
            r = keygen(self.config, *args, "--dir", self.keys)
            self.assertEqual(r.rc, 2, r)
        self.assertFalse(os.path.exists(self.keys))

    def test_key_owned_by_the_run_as_user_when_root(self):
        if os.geteuid() != 0:
            self.skipTest("needs root (chown)")
        with open(self.config, "a") as f:
            f.write('user = "nobody"\n')
        self.generate("own", "ed25519")
        st = os.stat(os.path.join(self.keys, f"{DOMAIN}.own.key"))
        import pwd
        self.assertEqual(st.st_uid, pwd.getpwnam("nobody").pw_uid)


class CheckTest(DeliveryTestCase):
    """relayctl dkim check and the metric against dnsmasq's TXT records."""

    def setUp(self):
        if not os.path.exists(h.RELAYCTL_BIN) or dkim is None:
            self.skipTest("python3-dkim is not installed")
        self.tmp, self.config = minimal_config(self, "relayd-dkimchk-")

    def make_key(self, selector, algorithm="rsa1024"):
        r = keygen(self.config, DOMAIN, selector, "--algorithm", algorithm, "--dir", self.tmp)
        self.assertEqual(r.rc, 0, r)
        return os.path.join(self.tmp, f"{DOMAIN}.{selector}.key"), record_strings(r.out)

    def start(self, entries, txt):
        dns = self.start_dns(txt=txt)
        metrics_port = h.free_port()
        d = self.mx_relayd(dns, h.free_port(), {"metrics.listen": f"127.0.0.1:{metrics_port}"},
                           start=False)
        with open(d.config_path, "a") as f:
            for sel, key in entries:
                f.write(f'\n[[dkim]]\ndomain = "{DOMAIN}"\nselector = "{sel}"\nkey = "{key}"\n'
                        'require_dns = true\n')
        d.start()
        d.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        return d

    def metric(self, d, selector):
        text = urllib.request.urlopen(d.metrics_url, timeout=5).read().decode()
        m = re.search(r'^relayd_dkim_key_dns_match\{domain="%s",selector="%s"\} (\d)$'
                      % (re.escape(DOMAIN), re.escape(selector)), text, re.M)
        return m and int(m.group(1))

    def check(self, d, *extra):
        return h.run_relayctl(["-c", d.config_path, "dkim", "check"] + list(extra))

    def test_published_missing_mismatched_and_revoked(self):
        good, good_rec = self.make_key("good")
        ed, ed_rec = self.make_key("edgood", "ed25519")
        missing, _ = self.make_key("missing")
        wrong, _ = self.make_key("wrong")
        _, other_rec = self.make_key("other")
        revoked, _ = self.make_key("revoked")
        d = self.start(
            [("good", good), ("edgood", ed), ("missing", missing), ("wrong", wrong),
             ("revoked", revoked)],
            {f"good._domainkey.{DOMAIN}": ",".join(good_rec),  # dnsmasq: one string each
             f"edgood._domainkey.{DOMAIN}": ",".join(ed_rec),
             f"wrong._domainkey.{DOMAIN}": ",".join(other_rec),
             f"revoked._domainkey.{DOMAIN}": "v=DKIM1; k=rsa; p="})

        r = self.check(d, "--json")
        self.assertEqual(r.rc, 1, r)
        got = {e["selector"]: e for e in h.parse_json_lines(r.out)}
        self.assertEqual({s: e["state"] for s, e in got.items()},
                         {"good": "ok", "edgood": "ok", "missing": "missing",
                          "wrong": "mismatch", "revoked": "revoked"}, r)
        self.assertEqual(got["good"]["key"], good)
        self.assertEqual(got["good"]["record"], f"good._domainkey.{DOMAIN}")
        self.assertTrue(got["good"]["dns_match"])
        self.assertFalse(got["wrong"]["dns_match"])
        self.assertIn("NXDOMAIN", got["missing"]["reason"])

        table = self.check(d)
        self.assertEqual(table.rc, 1, table)
        rows = {ln.split()[1]: ln.split()[2] for ln in table.out.splitlines()
                if ln.startswith(DOMAIN)}
        self.assertEqual(rows["good"], "ok", table)
        self.assertEqual(rows["missing"], "missing", table)
        self.assertEqual(rows["wrong"], "mismatch", table)

        self.assertEqual(self.metric(d, "good"), 1)
        self.assertEqual(self.metric(d, "edgood"), 1)
        self.assertEqual(self.metric(d, "missing"), 0)
        self.assertEqual(self.metric(d, "wrong"), 0)
        self.assertEqual(self.metric(d, "revoked"), 0)

    def test_all_published_exits_0_and_checks_at_start(self):
        good, good_rec = self.make_key("good")
        d = self.start([("good", good)], {f"good._domainkey.{DOMAIN}": ",".join(good_rec)})
        # The daemon's own round at start sets the metric without relayctl.
        self.wait_until(lambda: self.metric(d, "good") == 1, 10, "the metric at start")
        r = self.check(d)
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.out, rf"(?m)^{re.escape(DOMAIN)}\s+good\s+ok\s+{re.escape(good)}$")

    def test_unreadable_key_is_reported(self):
        # relayd refuses to start with a key it cannot read (the signer loads it);
        # a key that goes away later is what check reports.
        key, rec = self.make_key("gone")
        d = self.start([("gone", key)], {f"gone._domainkey.{DOMAIN}": ",".join(rec)})
        os.rename(key, key + ".moved")
        r = self.check(d, "--json")
        self.assertEqual(r.rc, 1, r)
        (e,) = h.parse_json_lines(r.out)
        self.assertEqual(e["state"], "key_unreadable")
        self.assertIn(os.path.basename(key), e["reason"])


class RequireDnsTest(DeliveryTestCase):
    """[[dkim]] require_dns = true against dnsmasq's TXT records, signing for real."""

    def setUp(self):
        if VERIFIER is None:
            self.skipTest("python3-dkim (with python3-dnspython and python3-nacl) not installed")
        if not os.path.exists(Dnsmasq().binary):
            self.skipTest("dnsmasq is not installed")
        self.tmp, self.config = minimal_config(self, "relayd-dkimreq-")

    def make_key(self, selector, algorithm):
        r = keygen(self.config, DOMAIN, selector, "--algorithm", algorithm, "--dir", self.tmp)
        self.assertEqual(r.rc, 0, r)
        return os.path.join(self.tmp, f"{DOMAIN}.{selector}.key"), "".join(record_strings(r.out))

    def deliver(self, srv, d, subject):
        before = len(srv.messages())
        msg = MESSAGE.replace(b"Subject: keys", b"Subject: " + subject.encode())
        qid = self.assertQueued(h.submit(d.port, "app@dkim.test", ["bob@example.net"], msg),
                                "submit")
        self.wait_until(lambda: len(srv.messages()) > before, 10, "delivery")
        data = srv.messages()[-1]["data"]
        line = re.search(rf"(?m)^.*{qid}: from=<app@dkim\.test>, .*$", d.log())
        self.assertTrue(line, d.log())
        return data, line.group(0)

    def selectors(self, data):
        unfolded = re.sub(rb"\r\n[ \t]", b" ", data)
        return re.findall(rb"(?m)^DKIM-Signature: .*?\bs=([a-z0-9]+);", unfolded)

    def wait_verdict(self, d, text, count):
        self.wait_until(lambda: d.log().count(text) >= count, 15, f"{text!r} in the log")

    def test_mismatched_record_holds_the_key_back_until_dns_publishes_it(self):
        strict, strict_rec = self.make_key("strict", "rsa2048")
        _, other_rec = self.make_key("other", "rsa2048")
        ed, ed_rec = self.make_key("ed", "ed25519")
        strict_name, ed_name = f"strict._domainkey.{DOMAIN}", f"ed._domainkey.{DOMAIN}"
        dns = self.start_dns(txt={strict_name: txt_strings(other_rec),
                                  ed_name: txt_strings(ed_rec)})
        srv = self.start_server(["127.0.0.1:0"])
        d = self.smarthost_relayd(srv.port, {"delivery.dns_servers": [dns.server],
                                             "dkim_check_interval": "1s"}, start=False)
        with open(d.config_path, "a") as f:
            f.write(f'\n[[dkim]]\ndomain = "{DOMAIN}"\nselector = "strict"\nkey = "{strict}"\n'
                    'require_dns = true\n'
                    f'\n[[dkim]]\ndomain = "{DOMAIN}"\nselector = "ed"\nkey = "{ed}"\n')
        d.start()
        mismatch = f"dkim: strict._domainkey.{DOMAIN} ({strict}): mismatch"
        self.wait_verdict(d, mismatch, 1)

        # Another key published: the message goes out signed by the Ed25519 key only.
        data, line = self.deliver(srv, d, "while the record is wrong")
        self.assertEqual(self.selectors(data), [b"ed"], data[:800])
        self.assertTrue(line.endswith(f", dkim={DOMAIN}/ed (require_dns: not signed with "
                                      "strict, DNS record mismatch)"), line)
        ok, why = verify(data, dns.port, 0)
        self.assertTrue(ok, why)

        # The right record: the periodic check (1 s here) finds it, both keys sign.
        published = f"dkim: strict._domainkey.{DOMAIN} publishes {strict}"
        dns.restart(txt={strict_name: txt_strings(strict_rec), ed_name: txt_strings(ed_rec)})
        self.wait_verdict(d, published, 1)
        data, line = self.deliver(srv, d, "once the record is right")
        self.assertEqual(self.selectors(data), [b"strict", b"ed"], data[:1500])
        self.assertTrue(line.endswith(f", dkim={DOMAIN}/strict,ed"), line)
        for idx in (0, 1):
            ok, why = verify(data, dns.port, idx)
            self.assertTrue(ok, f"signature {idx}: {why}")

        # The record removed: held back again ("missing").
        dns.restart(txt={ed_name: txt_strings(ed_rec)})
        self.wait_verdict(d, f"dkim: strict._domainkey.{DOMAIN} ({strict}): missing", 1)
        data, line = self.deliver(srv, d, "after the record went away")
        self.assertEqual(self.selectors(data), [b"ed"], data[:800])
        self.assertIn("(require_dns: not signed with strict, DNS record missing)", line)
        self.assertEqual(d.ctl("dead", "list").out.strip(), "Dead spool is empty")


if __name__ == "__main__":
    h.main()
