#!/usr/bin/env python3
"""Shared fixtures of the delivery e2e suites (test_delivery_*.py); no tests here.

A DeliveryTestCase starts dnsmasq (tests/tools/dnsmasq.py), the scripted test
SMTP server (tests/tools/smtp_test_server.py) and relayd in MX or smarthost mode,
stops them all whatever happens, and on failure prints what the peers saw
(connections, RCPTs, dnsmasq queries) next to relayd's log. It parses relayd's
per-recipient delivery log lines:
  ID: to=<r>, relay=host[ip]:port, delay=S, delays=a/b/c/d, dsn=X.Y.Z, status=sent|deferred|bounced (reply)
"""

import collections
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402

sys.path.insert(0, os.path.join(h.REPO, "tests", "tools"))
from dnsmasq import Dnsmasq  # noqa: E402,F401
from smtp_test_server import SMTPTestServer  # noqa: E402,F401

DELIVERY_RE = re.compile(
    r"\b([0-9A-F]{16}): to=<([^>]*)>, relay=(\S+), delay=([0-9.]+), "
    r"delays=([0-9.]+)/([0-9.]+)/([0-9.]+)/([0-9.]+), dsn=(\S+), "
    r"status=(sent|deferred|bounced) \((.*)\)$", re.M)
REMOVED_RE = re.compile(r"\b([0-9A-F]{16}): removed$", re.M)

Attempt = collections.namedtuple("Attempt", "qid rcpt relay delay delays dsn status reply")

SENDER = "app@src.test"


def parse_attempts(log_text):
    out = []
    for m in DELIVERY_RE.finditer(log_text):
        out.append(Attempt(m.group(1), m.group(2), m.group(3), float(m.group(4)),
                           tuple(float(m.group(i)) for i in range(5, 9)),
                           m.group(9), m.group(10), m.group(11)))
    return out


def openssl(*args, cwd, inp=None):
    """Runs the openssl CLI in `cwd`; returns its stdout (bytes)."""
    return subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True,
                          input=inp).stdout


def issue_cert(d, name, host, ca="ca"):
    """In directory d: name.key and name.pem, a certificate for DNS:host signed
    by ca.pem/ca.key (made with openssl req -x509 beforehand)."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={host}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName=DNS:{host}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d)


def relay_re(host, ip, port):
    """relay=host[ip]:port as a regex (host may be given as a regex)."""
    return re.compile(rf"^{host}\[{re.escape(ip)}\]:{port}$")


class DeliveryTestCase(h.RelaydTestCase):
    """RelaydTestCase plus dnsmasq and test SMTP servers that are stopped after
    each test, and helpers to submit mail and wait for its delivery."""

    def run(self, result=None):
        self._peers = []
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            if len(result.failures) + len(result.errors) > before:
                for kind, p in self._peers:
                    try:
                        sys.stderr.write("\n" + self._describe_peer(kind, p) + "\n")
                    except Exception as e:  # diagnostics must not hide the failure
                        sys.stderr.write(f"\n(cannot describe {kind}: {e})\n")
            for kind, p in self._peers:
                if kind == "dns":
                    p.cleanup()
            self._peers = []

    @staticmethod
    def _describe_peer(kind, p):
        if kind == "dns":
            lines = p.log_text().splitlines()
            return f"---- dnsmasq {p.server}, last 40 of {len(lines)} log lines ----\n" + \
                "\n".join(lines[-40:])
        out = [f"---- test SMTP server {p.addresses}: stats "
               f"{ {k: v for k, v in p.stats().items() if k not in ('commands', 'rcpt')} }"]
        for c in p.connections()[-30:]:
            cmds = " | ".join(f"{x['cmd'][:40]}->{x['reply']}" for x in c["commands"][:12])
            out.append(f"  conn {c['id']} {c['local']} t={c['start']:.3f} "
                       f"end={c['end'] if c['end'] is None else round(c['end'], 3)} "
                       f"greeting={c['greeting']} closed_by={c['closed_by']} "
                       f"auth={c['auth_user']} msgs={c['messages']}: {cmds}")
        return "\n".join(out)

    # -- peers
    def start_dns(self, **kw):
        dns = Dnsmasq(**kw)
        self._peers.append(("dns", dns))  # its temp dir goes after the failure report
        self.addCleanup(dns.stop)
        dns.start()
        return dns

    def start_server(self, listen, rules=None, **options):
        srv = SMTPTestServer(listen, rules or [], **options)
        srv.start()
        self.addCleanup(srv.stop)
        self._peers.append(("smtp", srv))
        return srv

    # -- relayd
    def mx_relayd(self, dns, port, overrides=None, start=True):
        """relayd in MX mode: DNS from `dns`, every MX host reached on `port`."""
        cfg = {
            "delivery.relayhost": "",
            "delivery.dns_servers": [dns.server],
            "delivery.port": port,
            "delivery.tls": "none",
            "delivery.connect_timeout": "5s",
            "delivery.command_timeout": "30s",
            "queue.min_backoff": "1s",
            "queue.max_backoff": "4s",
        }
        cfg.update(overrides or {})
        return self.relayd(cfg, start=start)

    def smarthost_relayd(self, port, overrides=None, host="127.0.0.1", start=True):
        cfg = {
            "delivery.relayhost": f"[{host}]:{port}",
            "delivery.connect_timeout": "5s",
            "delivery.command_timeout": "30s",
            "queue.min_backoff": "1s",
            "queue.max_backoff": "4s",
        }
        cfg.update(overrides or {})
        return self.relayd(cfg, start=start)

    # -- mail
    def send(self, d, rcpts, subject="test", sender=SENDER, body="hello\r\n", extra_headers=()):
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        msg = h.make_message(subject, body, extra_headers=extra_headers, sender=sender,
                             rcpt=rcpts[0])
        return self.assertQueued(h.submit(d.port, sender, rcpts, msg), f"submit {subject!r}")

    def send_many(self, d, rcpt_for, count, subject_for, sender=SENDER):
        """`count` messages over one SMTP session -> [qid]; rcpt_for(i) and
        subject_for(i) give each message's recipient(s) and subject."""
        ids = []
        with d.smtplib() as s:
            s.ehlo("client.test")
            for i in range(count):
                rcpts = rcpt_for(i)
                if isinstance(rcpts, str):
                    rcpts = [rcpts]
                msg = h.make_message(subject_for(i), f"message {i}\r\n", sender=sender,
                                     rcpt=rcpts[0])
                code, _ = s.mail(sender)
                self.assertEqual(code, 250, f"MAIL for message {i}")
                for r in rcpts:
                    code, _ = s.rcpt(r)
                    self.assertEqual(code, 250, f"RCPT {r} for message {i}")
                code, text = s.data(msg)
                self.assertEqual(code, 250, f"DATA for message {i}: {text!r}")
                m = re.fullmatch(rb"2\.0\.0 Ok: queued as ([0-9A-F]{16})", text)
                self.assertTrue(m, text)
                ids.append(m.group(1).decode())
        return ids

    # -- observation
    def attempts(self, d, qid=None, rcpt=None, status=None):
        return [a for a in parse_attempts(d.log())
                if (qid is None or a.qid == qid) and (rcpt is None or a.rcpt == rcpt)
                and (status is None or a.status == status)]

    def wait_until(self, pred, timeout, what, interval=0.05):
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    def entry(self, d, qid):
        """qid's relayctl -j object, or None when it is not in the queue."""
        for m in d.queue():
            if m["id"] == qid:
                return m
        return None

    def wait_queue_empty(self, d, timeout, what="the queue to empty"):
        last = []

        def empty():
            last[:] = d.queue()
            return not last
        try:
            self.wait_until(empty, timeout, what, interval=0.25)
        except AssertionError:
            self.fail(f"queue not empty after {timeout}s: {len(last)} messages left, "
                      f"e.g. {last[:3]}")

    def assertDeferredWith(self, srv, d, qid, *phrases, timeout=20):
        """qid was deferred, still pending (relayctl -j) with every phrase in its
        last reply; the test SMTP server `srv` got no message, not even a MAIL
        command; nothing bounced. Returns the recipient's relayctl -j object."""
        self.wait_until(lambda: self.attempts(d, qid, status="deferred"), timeout, "a deferral")
        e = self.entry(d, qid)
        self.assertIsNotNone(e)
        r = e["recipients"][0]
        self.assertEqual(r["state"], "pending", r)
        for p in phrases:
            self.assertIn(p, r["last_reply"], r)
        self.assertEqual(srv.messages(), [], "nothing may reach the server")
        for conn in srv.connections():
            sent = [x["cmd"].split(" ")[0].upper() for x in conn["commands"]]
            self.assertNotIn("MAIL", sent, "no transaction may start (in plaintext or not)")
        self.assertNoBounce(d)
        return r

    def assertNoBounce(self, d):
        bounced = [a for a in parse_attempts(d.log()) if a.status == "bounced"]
        self.assertEqual(bounced, [], "nothing may be bounced")
        self.assertNotIn("moved to the dead spool", d.log())

    def rcpt_of(self, m):
        """Envelope recipients of a test server message record."""
        return sorted(m["rcpt_to"])

    def subject_of(self, m):
        mm = re.search(rb"(?mi)^Subject: (.*?)\r?$", m["data"])
        return mm.group(1).decode("utf-8", "replace") if mm else None
