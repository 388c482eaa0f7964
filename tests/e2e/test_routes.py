#!/usr/bin/env python3
"""Smarthosts over implicit TLS, [[route]] and sender rewriting (issue 13, 2-4),
with the real relayd, the scripted test SMTP server and dnsmasq.

- relayhost = "smtps://[host]:PORT" with AUTH: TLS from the first byte (the
  server only speaks TLS), then AUTH, delivered; with tls = verify the test
  CA's certificate for the name is accepted and another name's is refused.
- A bare "[host]:465" is refused by relayd --check-config with the hint.
- Three senders go to three relayhosts, each logging in with its own user, and
  one recipient domain goes by MX; relayctl -j / -p name each recipient's route.
- A route whose MX greets 421 backs off while the default route to the same
  recipient domain (another port) delivers at once.
- A pool fails over: the first host refuses connections, the second greets
  421, the third takes the mail.
- Rewriting: the smarthost sees the verified envelope sender and From:, and
  Reply-To: carries the original From: with its display name.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402
from test_tls_outbound import MX, make_pki  # noqa: E402  (a test CA; MX = "mx.dst.test")

FAST = {"queue.min_backoff": "1s", "queue.max_backoff": "4s",
        "delivery.connect_timeout": "5s", "delivery.command_timeout": "30s"}


def toml_str(v):
    return h._toml_value(v)


def route_toml(routes):
    """[[route]] blocks from a list of dicts."""
    out = []
    for r in routes:
        out.append("\n[[route]]")
        out += [f"{k} = {toml_str(v)}" for k, v in r.items()]
    return "\n".join(out) + "\n"


class RoutesTest(c.DeliveryTestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("openssl is missing")
        cls.tmp = tempfile.TemporaryDirectory(prefix="relayd-routes-")
        cls.pki = make_pki(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def password_file(self, password):
        fd, path = tempfile.mkstemp(prefix="pw-", dir=self.tmp.name)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        return path

    def daemon(self, overrides, routes=(), env=None):
        cfg = dict(FAST)
        cfg.update(overrides)
        d = self.relayd(cfg, start=False)
        with open(d.config_path, "a", encoding="utf-8") as f:
            f.write(route_toml(routes))
        if env:
            d.extra_env = env
        d.start()
        return d

    def submit(self, d, sender, rcpts, msg):
        return self.assertQueued(h.submit(d.port, sender, rcpts, msg), "submit")

    def delivered(self, srv, rcpt):
        return [m for m in srv.messages() if rcpt in m["rcpt_to"]]

    def wait_delivered(self, srv, rcpt, timeout=15):
        return self.wait_until(lambda: self.delivered(srv, rcpt), timeout, f"{rcpt} delivered")

    def tls_server(self, cert="mx", listen=("127.0.0.1:0",), **options):
        return self.start_server(list(listen), tls_cert=self.pki[f"{cert}.pem"],
                                 tls_key=self.pki[f"{cert}.key"], **options)

    # ------------------------------------------------------------ smtps://
    def test_implicit_tls_relayhost_with_auth(self):
        srv = self.tls_server(implicit_tls=True, auth_users={"ses": "s3cret"},
                              auth_required=True)
        d = self.daemon({"delivery.relayhost": f"smtps://[127.0.0.1]:{srv.port}",
                         "delivery.relayhost_user": "ses",
                         "delivery.relayhost_password_file": self.password_file("s3cret")})
        qid = self.send(d, "x@far.test", "over smtps")
        m = self.wait_delivered(srv, "x@far.test")[0]
        self.assertTrue(m["tls"], m)
        self.assertEqual(m["auth_user"], "ses")
        self.assertEqual(self.subject_of(m), "over smtps")
        conns = srv.connections()
        self.assertTrue(all(x["tls"] for x in conns), conns)
        # no STARTTLS was ever sent: the TLS came first
        self.assertFalse([x for x in conns for cmd in x["commands"]
                          if cmd["cmd"].upper().startswith("STARTTLS")], conns)
        sent = self.attempts(d, qid, status="sent")
        self.assertEqual(len(sent), 1, self.attempts(d, qid))
        self.assertNoBounce(d)

    def test_implicit_tls_verify_checks_the_certificate_and_name(self):
        dns = self.start_dns(a={MX: "127.0.0.2", "other.dst.test": "127.0.0.2"})
        good = self.tls_server(cert="mx", listen=("127.0.0.2:0",), implicit_tls=True)
        env = {"SSL_CERT_FILE": self.pki["ca.pem"]}
        d = self.daemon({"delivery.relayhost": f"smtps://[{MX}]:{good.port}",
                         "delivery.tls": "verify", "delivery.dns_servers": [dns.server]},
                        env=env)
        self.send(d, "v@far.test", "verified")
        m = self.wait_delivered(good, "v@far.test")[0]
        self.assertEqual(m["sni"], MX)
        # The same certificate reached under another name: refused, nothing sent.
        d2 = self.daemon({"delivery.relayhost": f"smtps://[other.dst.test]:{good.port}",
                          "delivery.tls": "verify", "delivery.dns_servers": [dns.server]},
                         env=env)
        qid = self.send(d2, "w@far.test", "wrong name")
        self.wait_until(lambda: self.attempts(d2, qid, status="deferred"), 15, "a deferral")
        self.assertIn("certificate verification failed", self.entry(d2, qid)["recipients"][0]
                      ["last_reply"])
        self.assertEqual(self.delivered(good, "w@far.test"), [])

    def test_port_465_without_scheme_is_refused_by_check_config(self):
        path = os.path.join(self.tmp.name, "bare465.toml")
        with open(path, "w") as f:
            f.write('[delivery]\nrelayhost = "[smtp.example.net]:465"\n')
        r = subprocess.run([h.RELAYD_BIN, "--check-config", path], capture_output=True,
                           text=True, timeout=10)
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn("delivery.relayhost: port 465 is implicit TLS: write "
                      "smtps://[smtp.example.net]:465", r.stderr)
        with open(path, "w") as f:
            f.write('[delivery]\nrelayhost = "smtps://[smtp.example.net]:465"\n')
        r = subprocess.run([h.RELAYD_BIN, "--check-config", path], capture_output=True,
                           text=True, timeout=10)
        self.assertEqual(r.returncode, 0, r)

    # ------------------------------------------------------------ routes
    def test_three_senders_three_relayhosts_and_one_domain_by_mx(self):
        dns = self.start_dns(mx=[("bymx.test", "mx.bymx.test", 10)],
                             a={"mx.bymx.test": "127.0.0.2"})
        hosts = {}
        for name in ("billing", "alerts", "news"):
            hosts[name] = self.start_server(["127.0.0.1:0"], auth_users={f"u-{name}": f"p-{name}"},
                                            auth_required=True)
        mx = self.start_server(["127.0.0.2:0"])
        default = self.start_server(["127.0.0.1:0"])
        routes = [{"name": "bymx", "recipient_domain": "bymx.test", "relayhost": "",
                   "port": mx.port, "tls": "none"}]
        for name, srv in hosts.items():
            routes.append({"name": name, "sender_domain": f"{name}.example",
                           "relayhost": f"smtp://[127.0.0.1]:{srv.port}", "user": f"u-{name}",
                           "password_file": self.password_file(f"p-{name}")})
        d = self.daemon({"delivery.relayhost": f"[127.0.0.1]:{default.port}",
                         "delivery.dns_servers": [dns.server]}, routes)
        for name in hosts:
            self.send(d, [f"to-{name}@far.test", f"r-{name}@bymx.test"], f"from {name}",
                      sender=f"app@{name}.example")
        self.send(d, "plain@far.test", "default route", sender="app@other.example")
        for name, srv in hosts.items():
            m = self.wait_delivered(srv, f"to-{name}@far.test")[0]
            self.assertEqual(m["auth_user"], f"u-{name}")
            self.assertEqual(m["mail_from"], f"app@{name}.example")
            self.assertEqual(m["rcpt_to"], [f"to-{name}@far.test"], "the MX recipient left")
            m = self.wait_delivered(mx, f"r-{name}@bymx.test")[0]
            self.assertIsNone(m["auth_user"])
        self.wait_delivered(default, "plain@far.test")
        for srv in hosts.values():
            self.assertEqual(len(srv.messages()), 1, srv.messages())
        self.assertEqual(len(default.messages()), 1, default.messages())
        self.wait_queue_empty(d, 10)
        self.assertNoBounce(d)

    def test_route_in_backoff_does_not_slow_the_others(self):
        # Both routes deliver dst.test by MX to 127.0.0.2, on different ports:
        # the "slow" route's server greets 421, the default's accepts.
        dns = self.start_dns(mx=[("dst.test", "mx.dst.test", 10)], a={"mx.dst.test": "127.0.0.2"})
        busy = self.start_server(["127.0.0.2:0"], [{"greeting": "421 4.7.0 Try again later"}])
        ok = self.start_server(["127.0.0.2:0"])
        d = self.daemon({"delivery.relayhost": "", "delivery.dns_servers": [dns.server],
                         "delivery.port": ok.port, "delivery.tls": "none",
                         "queue.min_backoff": "60s", "queue.max_backoff": "120s"},
                        [{"name": "slow", "sender_domain": "slow.example", "relayhost": "",
                          "port": busy.port, "tls": "none"}])
        slow = self.send(d, "a@dst.test", "slow one", sender="app@slow.example")
        self.wait_until(lambda: self.attempts(d, slow, status="deferred"), 15, "the 421")
        self.wait_until(lambda: "destination dst.test throttled" in d.log(), 5, "the backoff")
        fast = [self.send(d, f"b{i}@dst.test", f"fast {i}") for i in range(3)]
        for i in range(3):
            self.wait_delivered(ok, f"b{i}@dst.test", timeout=10)
        for q in fast:
            self.assertTrue(self.attempts(d, q, status="sent"), q)
        # The slow route's message waits, shown on its route.
        e = self.entry(d, slow)
        self.assertIsNotNone(e)
        r = e["recipients"][0]
        self.assertEqual((r["state"], r["route"]), ("pending", "slow"), r)
        self.assertIn("421", r["last_reply"])
        listing = d.ctl("-p").out
        self.assertRegex(listing, r"a@dst\.test route=slow")
        self.assertEqual(ok.messages() and [m for m in ok.messages() if "a@dst.test" in
                                             m["rcpt_to"]], [])
        self.assertNoBounce(d)

    def test_pool_fails_over(self):
        srv = self.start_server(["127.0.0.2:0", "127.0.0.3:0"],
                                [{"greeting": "421 4.3.2 Busy", "local": "127.0.0.2"}])
        closed = h.free_port()
        d = self.daemon({}, [{"name": "pool", "sender": "app@src.test",
                              "relayhost": [f"[127.0.0.1]:{closed}", f"[127.0.0.2]:{srv.port}",
                                            f"[127.0.0.3]:{srv.port}"]}])
        qid = self.send(d, "p@far.test", "pool")
        m = self.wait_delivered(srv, "p@far.test")[0]
        self.assertEqual(m["local_host"], "127.0.0.3")
        self.assertEqual(len(self.attempts(d, qid)), 1, "one attempt: the failover is inside it")
        greeted = [x["local"] for x in srv.connections() if x["greeting"] == 421]
        self.assertEqual([g.split(":")[0] for g in greeted], ["127.0.0.2"], srv.connections())
        self.assertNoBounce(d)

    # ------------------------------------------------------------ rewriting
    def test_rewriting_sender_and_from_keeps_the_original_in_reply_to(self):
        srv = self.start_server(["127.0.0.1:0"])
        d = self.daemon({}, [{"name": "ses", "sender_domain": "web-3.internal",
                              "relayhost": f"[127.0.0.1]:{srv.port}",
                              "rewrite_sender": "noreply@verified.example",
                              "rewrite_from": "noreply@verified.example"}])
        msg = (b"From: \"Web App\" <root@web-3.internal>\r\nTo: <x@far.test>\r\n"
               b"Subject: rewritten\r\n\r\nhello\r\n")
        qid = self.submit(d, "root@web-3.internal", ["x@far.test"], msg)
        m = self.wait_delivered(srv, "x@far.test")[0]
        self.assertEqual(m["mail_from"], "noreply@verified.example")
        data = m["data"].decode()
        head = data.split("\r\n\r\n", 1)[0]
        self.assertRegex(head, r"(?m)^From: \"Web App\" <noreply@verified\.example>\r?$")
        self.assertRegex(head, r"(?m)^Reply-To: \"Web App\" <root@web-3\.internal>\r?$")
        self.assertEqual(len(re.findall(r"(?mi)^From:", head)), 1, head)
        self.assertTrue(self.attempts(d, qid, status="sent"))
        self.assertNoBounce(d)

    def test_rewrite_on_a_recipient_domain_route_is_refused(self):
        path = os.path.join(self.tmp.name, "rewrite.toml")
        with open(path, "w") as f:
            f.write('[[route]]\nrecipient_domain = "gmail.com"\n'
                    'rewrite_sender = "a@example.org"\n')
        r = subprocess.run([h.RELAYD_BIN, "--check-config", path], capture_output=True,
                           text=True, timeout=10)
        self.assertNotEqual(r.returncode, 0, r)
        self.assertIn("route[1].rewrite_sender: is not supported on a recipient_domain route",
                      r.stderr)


if __name__ == "__main__":
    unittest.main()
