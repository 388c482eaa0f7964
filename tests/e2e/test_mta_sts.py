#!/usr/bin/env python3
"""MTA-STS (RFC 8461), end to end: relayd looks up _mta-sts.dst.test TXT in
dnsmasq, fetches https://mta-sts.dst.test/.well-known/mta-sts.txt from a local
HTTPS server (python ssl + http.server, certificate from a test CA made here
with openssl; SSL_CERT_FILE makes relayd trust it; [delivery] mta_sts_port
points at the server's port), and delivers to the scripted test SMTP server.

- enforce delivers to a matching MX over verified TLS (the log line names
  policy=mta-sts, the metric counts a success);
- enforce defers a non-matching MX and a bad certificate (also without
  STARTTLS) with the reason in relayctl, and nothing is sent in plaintext,
  even with tls = may, which otherwise falls back;
- enforce failing on every MX host suspends the destination (circuit breaker):
  one attempt for five messages, the reason in relayctl destinations;
- testing mode delivers and counts the failure;
- the cached policy is used while the policy server is down, after a relayd
  restart (it lives in the spool), and a new TXT id makes relayd fetch again;
- a domain without a policy still delivers with tls = may (no regression);
- a policy server that fails is asked once, then not again during the backoff
  (delivery goes on without a policy);
- relayctl destinations [--json] shows each destination's TLS policy and the
  outcome of its last session (verified, or failed with the reason).
"""

import http.server
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402

DST = "dst.test"
MX = f"mx.{DST}"
EVIL = f"evil.{DST}"  # an MX host a test policy may not name
POLICY_HOST = f"mta-sts.{DST}"
POLICY_IP = "127.0.0.5"
MX_IP, EVIL_IP = "127.0.0.2", "127.0.0.3"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d):
    """A test CA; certificates signed by it for the policy host and for the MX
    hosts (one certificate naming both); a self-signed one for MX."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=relayd MTA-STS test CA", cwd=d)
    for name, hosts in (("policy", [POLICY_HOST]), ("mx", [MX, EVIL])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", "-subj", f"/CN={hosts[0]}", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write("subjectAltName=" + ",".join(f"DNS:{x}" for x in hosts) + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                "-extfile", f"{name}.ext", cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "self.key",
            "-out", "self.pem", "-days", "2", "-subj", f"/CN={MX}",
            "-addext", f"subjectAltName=DNS:{MX}", cwd=d)
    return {k: os.path.join(d, k) for k in os.listdir(d)}


def policy_text(mode, *mx, max_age=86400):
    lines = ["version: STSv1", f"mode: {mode}"] + [f"mx: {m}" for m in mx]
    return "\r\n".join(lines + [f"max_age: {max_age}", ""])


class PolicyServer:
    """HTTPS on POLICY_IP:port serving one policy; counts the requests."""

    def __init__(self, cert, key, port=0):
        self.cert, self.key, self.port = cert, key, port
        self.policy = ""
        self.content_type = "text/plain"
        self.status = 200
        self.requests = []
        self.httpd = None

    def start(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Host")))
                if self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                if server.status != 200:
                    self.send_error(server.status)
                    return
                body = server.policy.encode()
                self.send_response(200)
                self.send_header("Content-Type", server.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = http.server.ThreadingHTTPServer((POLICY_IP, self.port), Handler)
        self.port = self.httpd.server_address[1]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


class MtaStsTest(c.DeliveryTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="relayd-mta-sts-")
        cls.pki = make_pki(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        self.web = PolicyServer(self.pki["policy.pem"], self.pki["policy.key"]).start()
        self.addCleanup(self.web.stop)

    # -- fixtures
    def dns_for(self, mx_host=MX, policy_id="1", txt=True):
        records = {f"_mta-sts.{DST}": f"v=STSv1; id={policy_id};"} if txt else {}
        return self.start_dns(mx=[(DST, mx_host, 10)],
                              a={MX: MX_IP, EVIL: EVIL_IP, POLICY_HOST: POLICY_IP},
                              txt=records)

    def mx_server(self, cert="mx", port=0):
        options = {}
        if cert:
            options.update(tls_cert=self.pki[f"{cert}.pem"], tls_key=self.pki[f"{cert}.key"])
        return self.start_server([f"{MX_IP}:{port}", f"{EVIL_IP}:{port}"], **options)

    def daemon(self, dns, srv, tls="may", overrides=None):
        self.metrics_port = h.free_port()
        cfg = {"delivery.tls": tls, "delivery.mta_sts_port": self.web.port,
               "metrics.listen": f"127.0.0.1:{self.metrics_port}"}
        cfg.update(overrides or {})
        d = self.mx_relayd(dns, srv.port, cfg, start=False)
        d.extra_env = {"SSL_CERT_FILE": self.pki["ca.pem"]}
        d.start()
        return d

    def policy_results(self):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                      timeout=5).read().decode()
        return {(m.group(1), m.group(2)): int(m.group(3)) for m in re.finditer(
            r'^relayd_tls_policy_results_total\{policy="([^"]*)",result="([^"]*)"\} (\d+)$',
            text, re.M)}

    def tls_row(self, d, dest=DST):
        """relayctl destinations --json: the destination's row."""
        r = d.ctl("destinations", "--json")
        self.assertEqual(r.rc, 0, r)
        rows = {o["destination"]: o for o in h.parse_json_lines(r.out)}
        self.assertIn(dest, rows, r.out)
        return rows[dest]

    def delivered(self, srv, rcpt):
        return [m for m in srv.messages() if rcpt in m["rcpt_to"]]

    def sessions_at(self, srv, ip):
        return [x for x in srv.connections() if x["local_host"] == ip]

    def assertNothingSentInPlaintext(self, srv):
        for x in srv.connections():
            cmds = [cmd["cmd"].split()[0].upper() for cmd in x["commands"] if cmd["cmd"]]
            if not x["tls"]:
                self.assertFalse({"MAIL", "RCPT", "DATA"} & set(cmds), x)
        self.assertEqual(srv.messages(), [], "nothing may reach the server")

    def assertDeferredWith(self, d, qid, *phrases, after=0):
        self.wait_until(lambda: len(self.attempts(d, qid, status="deferred")) > after, 20,
                        "a deferral")
        r = self.entry(d, qid)["recipients"][0]
        self.assertEqual(r["state"], "pending", r)
        for p in phrases:
            self.assertIn(p, r["last_reply"], r)
        listing = d.ctl("-p")
        self.assertEqual(listing.rc, 0, listing)
        self.assertIn(phrases[0], listing.out, "relayctl -p shows the reason")
        self.assertNoBounce(d)
        return r

    # -- enforce
    def test_enforce_delivers_to_a_matching_mx_over_verified_tls(self):
        self.web.policy = policy_text("enforce", MX)
        srv = self.mx_server()
        d = self.daemon(self.dns_for(), srv)
        self.send(d, f"a@{DST}", "enforce ok")
        self.wait_until(lambda: self.delivered(srv, f"a@{DST}"), 20, "the delivery")
        conns = [x for x in srv.connections() if x["messages"]]
        self.assertTrue(conns and all(x["tls"] and x["sni"] == MX for x in conns), conns)
        self.assertEqual(self.web.requests, [("/.well-known/mta-sts.txt", POLICY_HOST)])
        log = d.log()
        self.assertRegex(log, r"Verified TLS connection established to mx\.dst\.test\[127\.0\.0\.2\]"
                              r":\d+: TLSv1\.[23] with cipher \S+ policy=mta-sts")
        self.assertIn("MTA-STS: policy of dst.test fetched: id 1, mode enforce", log)
        self.assertGreaterEqual(self.policy_results()[("mta-sts", "success")], 1)
        self.assertEqual(self.policy_results()[("mta-sts", "failure")], 0)
        # relayctl destinations: the policy in force and the last session's outcome.
        row = self.tls_row(d)
        self.assertEqual(row["tls_policy"], "mta-sts enforce", row)
        self.assertRegex(row["tls_outcome"], r"^verified TLSv1\.[23]$", row)
        self.assertLess(abs(row["tls_at"] - time.time()), 60, row)
        text = d.ctl("destinations")
        self.assertRegex(text.out, r"tls: policy mta-sts enforce, verified TLSv1\.[23] at ")

    def test_enforce_defers_an_mx_outside_the_policy(self):
        self.web.policy = policy_text("enforce", "*.elsewhere.test")
        srv = self.mx_server()
        d = self.daemon(self.dns_for(), srv)
        qid = self.send(d, f"b@{DST}", "enforce mx mismatch")
        self.assertDeferredWith(d, qid, "does not match the MTA-STS policy of dst.test",
                                "*.elsewhere.test")
        self.assertEqual(self.attempts(d, qid, status="deferred")[0].dsn, "4.7.5")
        self.assertEqual(srv.connections(), [], "relayd may not even connect")
        self.assertGreaterEqual(self.policy_results()[("mta-sts", "failure")], 1)

    def test_enforce_defers_a_bad_certificate_and_never_falls_back(self):
        self.web.policy = policy_text("enforce", MX)
        srv = self.mx_server(cert="self")
        d = self.daemon(self.dns_for(), srv, tls="may")  # may alone would fall back
        qid = self.send(d, f"c@{DST}", "enforce bad certificate")
        self.assertDeferredWith(d, qid, "certificate verification failed",
                                "MTA-STS policy of dst.test requires TLS")
        self.assertNothingSentInPlaintext(srv)
        self.assertGreaterEqual(self.policy_results()[("mta-sts", "failure")], 1)
        row = self.tls_row(d)
        self.assertEqual(row["tls_policy"], "mta-sts enforce", row)
        self.assertTrue(row["tls_outcome"].startswith("failed: "), row)
        self.assertIn("certificate verification failed", row["tls_outcome"])
        # relayctl -j: the deferred recipient names its destination, the policy
        # in force there and how the last session ended.
        rcpt = self.entry(d, qid)["recipients"][0]
        self.assertEqual(rcpt["destination"], DST, rcpt)
        self.assertEqual(rcpt["tls_policy"], "mta-sts enforce", rcpt)
        self.assertEqual(rcpt["tls_outcome"], row["tls_outcome"], rcpt)

    def test_enforce_failing_on_every_mx_suspends_the_destination(self):
        # The circuit breaker: one attempt, then the destination is suspended
        # with the reason; the other messages wait without connecting.
        self.web.policy = policy_text("enforce", MX)
        srv = self.mx_server(cert="self")
        d = self.daemon(self.dns_for(), srv, tls="may", overrides={"queue.min_backoff": "30s",
                                                                   "queue.max_backoff": "60s"})
        ids = self.send_many(d, lambda i: f"s{i}@{DST}", 5, lambda i: f"breaker {i}")
        def row():
            r = d.ctl("destinations", "--json")
            return {o["destination"]: o for o in h.parse_json_lines(r.out)}.get(DST, {})
        self.wait_until(lambda: row().get("state") == "suspended", 20, f"{DST} to be suspended")
        self.assertIn(f"circuit breaker: every MX host of {DST} failed its TLS policy", row()["reason"])
        self.assertIn("certificate verification failed", row()["reason"])
        self.wait_until(lambda: all(self.entry(d, q)["recipients"][0]["last_reply"] for q in ids),
                        10, "every message deferred")
        attempts = sum(self.entry(d, q)["recipients"][0]["attempts"] for q in ids)
        self.assertEqual(attempts, 1, "one attempt, not one per message")
        self.assertEqual(len(self.sessions_at(srv, MX_IP)), 1, srv.connections())
        self.assertNothingSentInPlaintext(srv)
        self.assertNoBounce(d)

    def test_enforce_defers_without_starttls(self):
        self.web.policy = policy_text("enforce", MX)
        srv = self.mx_server(cert=None)
        d = self.daemon(self.dns_for(), srv, tls="none")  # the policy overrides none
        qid = self.send(d, f"d@{DST}", "enforce no starttls")
        self.assertDeferredWith(d, qid, "does not offer STARTTLS",
                                "MTA-STS policy of dst.test requires TLS")
        self.assertNothingSentInPlaintext(srv)

    # -- testing
    def test_testing_mode_delivers_and_counts_the_failure(self):
        self.web.policy = policy_text("testing", "*.elsewhere.test")
        srv = self.mx_server(cert="self")
        d = self.daemon(self.dns_for(), srv)
        self.send(d, f"e@{DST}", "testing mode")
        self.wait_until(lambda: self.delivered(srv, f"e@{DST}"), 20, "the delivery")
        self.wait_queue_empty(d, 10)
        self.assertGreaterEqual(self.policy_results()[("mta-sts", "testing_failure")], 1)
        self.assertEqual(self.policy_results()[("mta-sts", "failure")], 0)
        log = d.log()
        self.assertIn("does not match the MTA-STS policy of dst.test", log)
        self.assertIn("(testing mode: delivered anyway)", log)
        self.assertRegex(log, r"Untrusted TLS connection established to mx\.dst\.test\S+: "
                              r"TLSv1\.[23] with cipher \S+ policy=mta-sts")

    # -- the cache
    def test_cached_policy_outlives_the_server_and_a_restart_and_a_new_id_refetches(self):
        self.web.policy = policy_text("enforce", MX)
        srv = self.mx_server()
        dns = self.dns_for(policy_id="1")
        d = self.daemon(dns, srv)
        self.send(d, f"f1@{DST}", "first")
        self.wait_until(lambda: self.delivered(srv, f"f1@{DST}"), 20, "the first delivery")
        self.send(d, f"f2@{DST}", "same id")
        self.wait_until(lambda: self.delivered(srv, f"f2@{DST}"), 20, "the second delivery")
        self.assertEqual(len(self.web.requests), 1, "the same id is not fetched again")
        # The lingering connection closes first (a new message would reuse it).
        self.wait_until(lambda: all(x["end"] for x in srv.connections()), 15,
                        "the connection to close")

        # The policy server goes away, the TXT id changes and the MX moves to a
        # host the cached policy does not name: the cached policy still holds.
        self.web.stop()
        dns.restart(mx=[(DST, EVIL, 10)], txt={f"_mta-sts.{DST}": "v=STSv1; id=2;"})
        qid = self.send(d, f"f3@{DST}", "server down")
        self.assertDeferredWith(d, qid, "MX host evil.dst.test does not match the MTA-STS "
                                        "policy of dst.test")
        log = d.log()
        self.assertIn("MTA-STS: policy of dst.test (id 2) not fetched", log)
        self.assertIn("the cached policy (id 1, mode enforce) stays in use", log)
        self.assertEqual(self.sessions_at(srv, EVIL_IP), [])

        # A restart: the policy comes from the spool.
        self.assertEqual(d.stop(), 0)
        d.start()
        before = len(self.attempts(d, qid, status="deferred"))
        d.ctl("-f")
        self.assertDeferredWith(d, qid, "MX host evil.dst.test does not match", after=before)
        restarted = d.log().split("==== start #2")[1]
        self.assertIn("the cached policy (id 1, mode enforce) stays in use", restarted)
        self.assertEqual(self.sessions_at(srv, EVIL_IP), [])

        # The server is back with a policy that names evil.dst.test, under a new id.
        self.web = PolicyServer(self.pki["policy.pem"], self.pki["policy.key"],
                                port=self.web.port)
        self.web.policy = policy_text("enforce", f"*.{DST}")
        self.web.start()
        self.addCleanup(self.web.stop)
        dns.restart(txt={f"_mta-sts.{DST}": "v=STSv1; id=3;"})
        d.ctl("-f")
        self.wait_until(lambda: self.delivered(srv, f"f3@{DST}"), 20, "the delivery to evil")
        self.assertEqual(len(self.web.requests), 1)
        self.assertTrue(all(x["tls"] for x in self.sessions_at(srv, EVIL_IP) if x["messages"]))
        self.assertIn("MTA-STS: policy of dst.test fetched: id 3, mode enforce", d.log())

    # -- a failing policy server
    def test_a_failing_policy_server_is_not_asked_on_every_connection(self):
        self.web.policy = policy_text("enforce", MX)
        self.web.status = 503
        srv = self.mx_server(cert="self")  # no policy applies: tls = may delivers
        d = self.daemon(self.dns_for(), srv)
        for i in range(3):  # three connections, one after the other
            self.send(d, f"k{i}@{DST}", f"policy server failing {i}")
            self.wait_until(lambda: self.delivered(srv, f"k{i}@{DST}"), 20, "the delivery")
            self.wait_until(lambda: all(x["end"] for x in srv.connections()), 15,
                            "the connection to close")
        self.assertEqual(len(srv.connections()), 3, srv.connections())
        self.assertEqual(len(self.web.requests), 1, "one fetch, then the backoff")
        log = d.log()
        self.assertIn("MTA-STS: policy of dst.test (id 1) not fetched: ", log)
        self.assertIn("HTTP 503; no policy applies (next try in 300s)", log)
        self.assertIn("MTA-STS: policy of dst.test (id 1) not fetched: an earlier fetch failed, "
                      "next try in", log)
        row = self.tls_row(d)
        self.assertEqual(row["tls_policy"], "none", row)
        self.assertRegex(row["tls_outcome"], r"^untrusted TLSv1\.[23]$", row)

    # -- no policy
    def test_a_domain_without_a_policy_delivers_as_before(self):
        srv = self.mx_server(cert="self")  # untrusted: tls = may still delivers
        d = self.daemon(self.dns_for(txt=False), srv)
        self.send(d, f"g@{DST}", "no policy")
        self.wait_until(lambda: self.delivered(srv, f"g@{DST}"), 20, "the delivery")
        self.assertEqual(self.web.requests, [], "no TXT record: nothing fetched")
        self.assertRegex(d.log(), r"Untrusted TLS connection established to mx\.dst\.test\S+: "
                                  r"TLSv1\.[23] with cipher \S+ policy=none")

    def test_mta_sts_off_ignores_the_policy(self):
        self.web.policy = policy_text("enforce", "*.elsewhere.test")
        srv = self.mx_server()
        d = self.daemon(self.dns_for(), srv, overrides={"delivery.mta_sts": False})
        self.send(d, f"h@{DST}", "mta_sts off")
        self.wait_until(lambda: self.delivered(srv, f"h@{DST}"), 20, "the delivery")
        self.assertEqual(self.web.requests, [])


if __name__ == "__main__":
    h.main()
