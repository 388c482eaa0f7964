#!/usr/bin/env python3
"""OAuth2 for the smarthost (AUTH XOAUTH2 / OAUTHBEARER) and credentials reload.

A local HTTPS token endpoint (https_post_server.py, certificate from a test CA made
here with the openssl CLI, trusted through SSL_CERT_FILE) hands out access
tokens for a refresh token; the scripted test SMTP server accepts exactly the
token last issued and checks the SASL string byte for byte.

- A fresh token: delivered with XOAUTH2 ("user=U^Aauth=Bearer T^A^A"); the
  endpoint got grant_type=refresh_token with client_id, client_secret,
  refresh_token and scope; a second message reuses the cached token.
- Expiry: with expires_in = 2 s the next delivery fetches a new token; a refresh
  token the provider rotated is used next time and written back to its file.
- OAUTHBEARER (RFC 7628): delivered, GS2 header checked by the server.
- A revoked token (535 after the error challenge, twice): one new token is
  fetched and tried on a new connection, then the mail is deferred with the
  provider's 535 in relayctl -j; nothing is bounced.
- The token endpoint down, or answering 400 invalid_grant: deferred with the
  reason (cause auth / local_config), the smarthost never contacted, no bounce.
- Per route ([[route]] oauth2 = {...}): two routes by sender domain, one with
  OAuth2 and one with a password, to two smarthosts that both offer XOAUTH2,
  PLAIN and LOGIN: the first sees XOAUTH2 with the token issued for that
  route's refresh token, the second a password login, each only its own mail.
- SIGHUP (root only): relayd runs as nobody, the password file (or the OAuth2
  client secret) is 0600 root in a 0700 root directory; its content is rotated
  in place, SIGHUP, and the next delivery (the next token request) uses it.
"""

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_delivery_common as c  # noqa: E402
from https_post_server import HttpsPostServer  # noqa: E402

USER = "relay@example.test"


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{p.stdout.decode(errors='replace')}")


class TokenEndpoint:
    """POST /token: refresh_token grant. `on_issue(token)` is called before answering."""

    def __init__(self, cert, key, on_issue):
        self.requests = []  # parsed forms, with the content type
        self.expires_in = 3600
        self.error = None   # (status, json dict) to answer instead of a token
        self.rotate_to = None  # a refresh_token to return once
        self.on_issue = on_issue
        self.issued = 0
        self.server = HttpsPostServer(cert, key, self.answer, "/oauth2/token")
        self.url = self.server.url

    def answer(self, path, headers, data):
        form = urllib.parse.parse_qs(data.decode(), strict_parsing=True)
        form = {k: v[0] for k, v in form.items()}
        form["_content_type"] = headers.get("Content-Type")
        form["_path"] = path
        self.requests.append(form)
        if self.error:
            status, body = self.error
        else:
            self.issued += 1
            token = f"at-{self.issued}-{'x' * 20}"
            self.on_issue(token)
            status, body = 200, {"access_token": token, "token_type": "Bearer",
                                 "expires_in": self.expires_in}
            if self.rotate_to:
                body["refresh_token"], self.rotate_to = self.rotate_to, None
        return status, "application/json", json.dumps(body).encode()

    def stop(self):
        self.server.stop()


class OAuth2Test(c.DeliveryTestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("openssl"):
            raise unittest.SkipTest("openssl CLI not installed")
        cls.pki = tempfile.mkdtemp(prefix="relayd-oauth2-")
        d = cls.pki
        cls.ca = os.path.join(d, "ca.pem")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
             os.path.join(d, "ca.key"), "-out", cls.ca, "-days", "2", "-subj", "/CN=oauth2 test CA"])
        cls.key, csr, cls.cert, ext = (os.path.join(d, f"ep.{x}") for x in ("key", "csr", "pem", "ext"))
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", cls.key, "-out", csr,
             "-subj", "/CN=127.0.0.1"])
        run(["openssl", "x509", "-req", "-in", csr, "-CA", cls.ca, "-CAkey",
             os.path.join(d, "ca.key"), "-CAcreateserial", "-out", cls.cert, "-days", "2",
             "-extfile", ext])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.pki, True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="relayd-oauth2-t-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name, text, mode=0o600):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text + "\n")
        os.chmod(path, mode)
        return path

    def need_root_and_nobody(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("no user nobody")

    @staticmethod
    def read(path):
        with open(path) as f:
            return f.read()

    def setup_oauth(self, mechanism="xoauth2", token_url=None, smtp_mech="XOAUTH2"):
        self.srv = self.start_server(["127.0.0.1:0"], auth_users={USER: "no token yet"},
                                     auth_mechanisms=[smtp_mech], auth_required=True)
        self.ep = TokenEndpoint(self.cert, self.key,
                                lambda t: self.srv.set_options(auth_users={USER: t}))
        self.addCleanup(self.ep.stop)
        self.refresh_file = self.write("refresh_token", "rt-1")
        oauth = {"token_url": token_url or self.ep.url, "client_id": "client-1",
                 "client_secret_file": self.write("client_secret", "cs-1"),
                 "refresh_token_file": self.refresh_file,
                 "scope": "https://mail.test/ SMTP.Send", "mechanism": mechanism}
        d = self.smarthost_relayd(self.srv.port, {"delivery.relayhost_user": USER,
                                                   "delivery.relayhost_oauth2": oauth},
                                  start=False)
        d.extra_env["SSL_CERT_FILE"] = self.ca
        d.start()
        return d

    def deliver(self, d, subject, count):
        self.send(d, f"to{count}@dst.test", subject)
        self.wait_until(lambda: len(self.srv.messages()) >= count, 10, f"delivery of {subject}")
        self.wait_queue_empty(d, 5)

    def test_fresh_token_delivers_and_is_cached(self):
        d = self.setup_oauth()
        self.deliver(d, "first", 1)
        time.sleep(2.2)  # the first connection lingers 2 s: the second message opens a new one
        self.deliver(d, "second", 2)
        self.assertEqual(len(self.ep.requests), 1, "the token is cached")
        r = self.ep.requests[0]
        self.assertEqual(r["_content_type"], "application/x-www-form-urlencoded")
        self.assertEqual(r["_path"], "/oauth2/token")
        self.assertEqual({k: v for k, v in r.items() if not k.startswith("_")},
                         {"grant_type": "refresh_token", "client_id": "client-1",
                          "client_secret": "cs-1", "refresh_token": "rt-1",
                          "scope": "https://mail.test/ SMTP.Send"})
        log = self.srv.auth_log()
        self.assertGreaterEqual(len(log), 2, log)
        for a in log:
            self.assertEqual((a["mech"], a["user"], a["ok"], a["token"]),
                             ("XOAUTH2", USER, True, f"at-1-{'x' * 20}"), log)
        self.assertEqual(self.srv.messages()[0]["auth_user"], USER)
        self.assertNoBounce(d)

    def test_expired_token_is_refreshed_and_rotated_refresh_token_kept(self):
        d = self.setup_oauth()
        self.ep.expires_in = 2
        self.ep.rotate_to = "rt-2"
        self.deliver(d, "first", 1)
        self.wait_until(lambda: self.read(self.refresh_file) == "rt-2\n", 5,
                        "the rotated refresh token written back")
        time.sleep(2.5)
        self.deliver(d, "second", 2)
        self.assertEqual([r["refresh_token"] for r in self.ep.requests[:2]], ["rt-1", "rt-2"])
        tokens = [a["token"] for a in self.srv.auth_log() if a["ok"]]
        self.assertEqual(tokens[0], f"at-1-{'x' * 20}")
        self.assertTrue(tokens[-1].startswith("at-2-") or tokens[-1].startswith("at-3-"), tokens)
        self.assertEqual(oct(os.stat(self.refresh_file).st_mode & 0o777), "0o600")
        self.assertNoBounce(d)

    def test_oauthbearer(self):
        d = self.setup_oauth(mechanism="oauthbearer", smtp_mech="OAUTHBEARER")
        self.deliver(d, "bearer", 1)
        ok = [a for a in self.srv.auth_log() if a["ok"]]
        self.assertEqual([(a["mech"], a["user"]) for a in ok], [("OAUTHBEARER", USER)])

    def test_revoked_token_is_refreshed_once_then_deferred(self):
        d = self.setup_oauth()
        self.ep.on_issue = lambda t: None  # the smarthost refuses every token
        qid = self.send(d, "x@dst.test", "revoked")
        self.wait_until(lambda: self.attempts(d, qid), 10, "a deferred attempt")
        log = self.srv.auth_log()
        first = self.attempts(d, qid)[0]
        self.assertEqual(first.status, "deferred", first)
        # One attempt: the token, a new token on a new connection, then deferred.
        self.assertEqual([a["token"][:5] for a in log[:2]], ["at-1-", "at-2-"], log)
        self.assertFalse(any(a["ok"] for a in log), log)
        self.assertEqual(len({a["conn_id"] for a in log[:2]}), 2, log)
        m = self.entry(d, qid)
        self.assertEqual(m["recipients"][0]["state"], "pending", m)
        self.assertIn("535 5.7.8 Username and Password not accepted", m["recipients"][0]["last_reply"], m)
        self.assertEqual(self.srv.messages(), [])
        self.assertNoBounce(d)

    def check_endpoint_failure(self, d, qid, expected):
        self.wait_until(lambda: self.attempts(d, qid), 10, "a deferred attempt")
        a = self.attempts(d, qid)[0]
        self.assertEqual(a.status, "deferred", a)
        m = self.entry(d, qid)
        r = m["recipients"][0]
        self.assertEqual(r["state"], "pending", m)
        self.assertRegex(r["last_reply"], expected, m)
        self.assertEqual(self.srv.connections(), [], "the smarthost is not contacted")
        self.assertNoBounce(d)
        self.assertEqual(d.ctl("dead", "list").out.strip(), "Dead spool is empty")

    def test_token_endpoint_down_defers(self):
        d = self.setup_oauth(token_url=f"https://127.0.0.1:{c.h.free_port()}/token")
        qid = self.send(d, "x@dst.test", "endpoint down")
        self.check_endpoint_failure(d, qid, r"OAuth2 token endpoint 127\.0\.0\.1:\d+: cannot connect")

    def test_token_endpoint_refusal_defers_with_the_provider_error(self):
        d = self.setup_oauth()
        self.ep.error = (400, {"error": "invalid_grant",
                               "error_description": "Token has been expired or revoked."})
        qid = self.send(d, "x@dst.test", "invalid grant")
        self.check_endpoint_failure(
            d, qid, r"HTTP 400: invalid_grant: Token has been expired or revoked\.")

    def test_untrusted_endpoint_certificate_defers(self):
        d = self.setup_oauth()
        d.stop()
        d.extra_env = {}  # the test CA is not trusted now
        d.start()
        qid = self.send(d, "x@dst.test", "untrusted")
        self.check_endpoint_failure(d, qid, r"TLS handshake failed")
        self.assertEqual(self.ep.requests, [])

    def test_route_oauth2_and_route_password_each_smarthost_sees_its_mechanism(self):
        mechs = ["XOAUTH2", "PLAIN", "LOGIN"]
        m365 = self.start_server(["127.0.0.1:0"], auth_users={USER: "no token yet"},
                                 auth_mechanisms=mechs, auth_required=True)
        ses = self.start_server(["127.0.0.1:0"], auth_users={"ses-user": "s3cret"},
                                auth_mechanisms=mechs, auth_required=True)
        self.ep = TokenEndpoint(self.cert, self.key,
                                lambda t: m365.set_options(auth_users={USER: t}))
        self.addCleanup(self.ep.stop)
        oauth = {"token_url": self.ep.url, "client_id": "route-client",
                 "client_secret_file": self.write("client_secret", "cs-route"),
                 "refresh_token_file": self.write("refresh_token", "rt-route"),
                 "scope": "https://outlook.office.com/SMTP.Send"}
        routes = [
            {"name": "m365", "sender_domain": "m365.test",
             "relayhost": f"[127.0.0.1]:{m365.port}", "user": USER, "oauth2": oauth},
            {"name": "ses", "sender_domain": "ses.test",
             "relayhost": f"[127.0.0.1]:{ses.port}", "user": "ses-user",
             "password_file": self.write("ses.pw", "s3cret")},
        ]
        d = self.smarthost_relayd(c.h.free_port(), start=False)  # the default route is unused
        with open(d.config_path, "a", encoding="utf-8") as f:
            for r in routes:
                f.write("\n[[route]]\n" + "".join(f"{k} = {c.h._toml_value(v)}\n"
                                                  for k, v in r.items()))
        d.extra_env["SSL_CERT_FILE"] = self.ca
        d.start()
        self.send(d, "a@dst.test", "via oauth2", sender="app@m365.test")
        self.send(d, "b@dst.test", "via password", sender="app@ses.test")
        self.wait_until(lambda: m365.messages() and ses.messages(), 15, "both deliveries")
        self.wait_queue_empty(d, 5)

        oauth_log = [a for a in m365.auth_log() if a["ok"]]
        self.assertEqual([(a["mech"], a["user"], a.get("token")) for a in oauth_log],
                         [("XOAUTH2", USER, f"at-1-{'x' * 20}")], m365.auth_log())
        pw_log = [a for a in ses.auth_log() if a["ok"]]
        self.assertEqual(len(pw_log), 1, ses.auth_log())
        self.assertIn(pw_log[0]["mech"], ("PLAIN", "LOGIN"), pw_log)
        self.assertEqual(pw_log[0]["user"], "ses-user")
        self.assertNotIn("token", pw_log[0])
        self.assertEqual([self.rcpt_of(m) for m in m365.messages()], [["a@dst.test"]])
        self.assertEqual([self.rcpt_of(m) for m in ses.messages()], [["b@dst.test"]])
        # The token came from the route's own settings.
        self.assertEqual(len(self.ep.requests), 1, self.ep.requests)
        r = self.ep.requests[0]
        self.assertEqual((r["client_id"], r["client_secret"], r["refresh_token"], r["scope"]),
                         ("route-client", "cs-route", "rt-route",
                          "https://outlook.office.com/SMTP.Send"))
        self.assertNoBounce(d)

    def test_sighup_rereads_root_only_credentials_after_the_privilege_drop(self):
        self.need_root_and_nobody()
        secrets = os.path.join(self.dir, "secrets")
        os.mkdir(secrets, 0o700)  # nobody can open nothing in here by path
        pw = os.path.join(secrets, "relayhost.pw")
        with open(pw, "w") as f:
            f.write("old-password\n")
        os.chmod(pw, 0o600)
        srv = self.srv = self.start_server(["127.0.0.1:0"], auth_users={USER: "old-password"},
                                           auth_mechanisms=["PLAIN"], auth_required=True)
        d = self.smarthost_relayd(srv.port, {"user": "nobody", "delivery.relayhost_user": USER,
                                             "delivery.relayhost_password_file": pw}, start=False)
        os.chmod(d.dir, 0o755)
        d.start()
        self.deliver(d, "before rotation", 1)
        with open(pw, "r+") as f:  # rotated in place, as a secret hook rewrites it
            f.truncate(0)
            f.write("new-password\n")
        srv.set_options(auth_users={USER: "new-password"})
        time.sleep(2.2)  # the first connection lingers 2 s
        os.kill(d.proc.pid, signal.SIGHUP)
        self.wait_until(lambda: "relayhost_password_file re-read" in d.log(), 5, "the reload")
        self.deliver(d, "after rotation", 2)
        log = srv.auth_log()
        self.assertEqual([a["ok"] for a in log], [True, True], log)
        self.assertNotIn("relayhost_password_file: ", d.log().split("re-read")[0][-200:])
        self.assertNoBounce(d)

    def test_sighup_rereads_a_root_only_client_secret_after_the_privilege_drop(self):
        self.need_root_and_nobody()
        os.chmod(self.dir, 0o700)  # the secrets: root only, by path
        self.srv = self.start_server(["127.0.0.1:0"], auth_users={USER: "no token yet"},
                                     auth_mechanisms=["XOAUTH2"], auth_required=True)
        self.ep = TokenEndpoint(self.cert, self.key,
                                lambda t: self.srv.set_options(auth_users={USER: t}))
        self.addCleanup(self.ep.stop)
        self.ep.expires_in = 2
        secret = self.write("client_secret", "cs-1")
        oauth = {"token_url": self.ep.url, "client_id": "client-1",
                 "client_secret_file": secret,
                 "refresh_token_file": self.write("refresh_token", "rt-1")}
        d = self.smarthost_relayd(self.srv.port, {"user": "nobody", "delivery.relayhost_user": USER,
                                                   "delivery.relayhost_oauth2": oauth}, start=False)
        os.chmod(d.dir, 0o755)
        d.extra_env["SSL_CERT_FILE"] = self.ca
        d.start()
        self.deliver(d, "before rotation", 1)
        with open(secret, "r+") as f:  # rotated in place
            f.truncate(0)
            f.write("cs-2\n")
        os.kill(d.proc.pid, signal.SIGHUP)
        self.wait_until(lambda: "client_secret_file re-read" in d.log(), 5, "the reload")
        time.sleep(2.5)  # the token expired: the next delivery asks with the new secret
        self.deliver(d, "after rotation", 2)
        self.assertEqual([r["client_secret"] for r in self.ep.requests], ["cs-1", "cs-2"])
        self.assertNoBounce(d)


if __name__ == "__main__":
    c.h.main()
