#!/usr/bin/env python3
"""TLS reporting (RFC 8460), end to end: relayd with [delivery] tls_rpt
delivers under an MTA-STS policy (the policy server, test CA and dnsmasq of
test_mta_sts.py), once to an MX with a valid certificate and once, after the
MX changed to a self-signed one, into a deferral; relayd is restarted between
the deliveries and again before the report (the counts live under the spool).
`relayctl tls-rpt send TODAY` then looks up _smtp._tls.dst.test in dnsmasq and
queues the report, which relayd delivers to the test MX of rua.test:

- a multipart/report; report-type="tlsrpt" with TLS-Report-Domain,
  TLS-Report-Submitter and the RFC 8460 5.3 Subject;
- an application/tlsrpt+gzip part named submitter!domain!begin!end!id.json.gz;
- JSON with the RFC 8460 4 fields and types (and, when python3-jsonschema is
  installed, valid against a schema written from the RFC's text), with exactly
  one success and one certificate-not-trusted failure (sending-mta-ip, the MX
  host and address).

An https: destination (RFC 8460 5.3.1) gets the gzipped JSON by POST, as
application/tlsrpt+gzip over verified TLS: a finished day (yesterday's counts,
found at start) whose POST fails (503) is kept while its mailto: report goes;
the next round posts it and does not mail the report again. A day that still
fails two days after its end is given up.

Also: --check-config wants tls_rpt_from; relayctl tls-rpt send refuses a bad
DAY with 64, and a daemon without tls_rpt says so (1).
"""

import datetime
import email
import email.policy
import gzip
import json
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
import test_mta_sts as sts  # noqa: E402
from https_post_server import HttpsPostServer  # noqa: E402

try:
    import jsonschema
except ImportError:  # python3-jsonschema (packaging/install-deps.sh)
    jsonschema = None

DST, MX, MX_IP = sts.DST, sts.MX, sts.MX_IP
RUA = "rua.test"
REPORTS = f"reports@{RUA}"
FROM = "tls-reports@relay.test"

RESULT_TYPES = ["starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
                "certificate-not-trusted", "validation-failure", "tlsa-invalid",
                "dnssec-invalid", "dane-required", "sts-policy-fetch-error",
                "sts-policy-invalid", "sts-webpki-invalid"]
RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"
COUNT = {"type": "integer", "minimum": 0}
STRINGS = {"type": "array", "items": {"type": "string"}}

# RFC 8460 section 4.4 (fields) and 4.3 (result types) as a JSON Schema.
SCHEMA = {
    "type": "object",
    "required": ["organization-name", "date-range", "contact-info", "report-id", "policies"],
    "properties": {
        "organization-name": {"type": "string"},
        "date-range": {
            "type": "object",
            "required": ["start-datetime", "end-datetime"],
            "properties": {"start-datetime": {"type": "string", "pattern": RFC3339},
                           "end-datetime": {"type": "string", "pattern": RFC3339}},
        },
        "contact-info": {"type": "string"},
        "report-id": {"type": "string"},
        "policies": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["policy", "summary"],
                "properties": {
                    "policy": {
                        "type": "object",
                        "required": ["policy-type", "policy-domain"],
                        "properties": {
                            "policy-type": {"enum": ["tlsa", "sts", "no-policy-found"]},
                            "policy-string": STRINGS,
                            "policy-domain": {"type": "string"},
                            "mx-host": STRINGS,
                        },
                    },
                    "summary": {
                        "type": "object",
                        "required": ["total-successful-session-count",
                                     "total-failure-session-count"],
                        "properties": {"total-successful-session-count": COUNT,
                                       "total-failure-session-count": COUNT},
                    },
                    "failure-details": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["result-type", "failed-session-count"],
                            "properties": {
                                "result-type": {"enum": RESULT_TYPES},
                                "sending-mta-ip": {"type": "string"},
                                "receiving-mx-hostname": {"type": "string"},
                                "receiving-mx-helo": {"type": "string"},
                                "receiving-ip": {"type": "string"},
                                "failed-session-count": COUNT,
                                "additional-information": {"type": "string"},
                                "failure-reason-code": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def utc_today():
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return now.strftime("%Y-%m-%d"), int(start.timestamp())


class ReportEndpoint:
    """Takes report POSTs: records each (path, content type, body), answers `status`."""

    def __init__(self, cert, key):
        self.posts = []
        self.status = 201
        self.server = HttpsPostServer(cert, key, self.answer, "/v1/tlsrpt")
        self.url = self.server.url

    def answer(self, path, headers, data):
        self.posts.append((path, headers.get("Content-Type"), data))
        return self.status, None, b""

    def stop(self):
        self.server.stop()


class TlsRptTest(c.DeliveryTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="relayd-tls-rpt-")
        cls.pki = sts.make_pki(cls.tmp.name)
        # The report endpoint's certificate: 127.0.0.1, signed by the same CA.
        d = cls.tmp.name
        sts.openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "rua.key", "-out",
                    "rua.csr", "-subj", "/CN=127.0.0.1", cwd=d)
        with open(os.path.join(d, "rua.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n")
        sts.openssl("x509", "-req", "-in", "rua.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                    "-CAcreateserial", "-out", "rua.pem", "-days", "2", "-extfile", "rua.ext",
                    cwd=d)
        cls.pki.update({k: os.path.join(d, k) for k in ("rua.pem", "rua.key")})

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def mx_server(self, cert, port=0):
        return self.start_server([f"{MX_IP}:{port}"], tls_cert=self.pki[f"{cert}.pem"],
                                 tls_key=self.pki[f"{cert}.key"])

    def restart(self, d):
        self.assertEqual(d.stop(), 0, d.log_tail())
        d.start()

    def report_mails(self, srv):
        return [m for m in srv.messages() if REPORTS in m["rcpt_to"]]

    def test_a_days_counts_survive_restarts_and_reach_the_rua_address(self):
        web = sts.PolicyServer(self.pki["policy.pem"], self.pki["policy.key"]).start()
        self.addCleanup(web.stop)
        web.policy = sts.policy_text("enforce", MX)
        dns = self.start_dns(
            mx=[(DST, MX, 10), (RUA, MX, 10)], a={MX: MX_IP, sts.POLICY_HOST: sts.POLICY_IP},
            txt={f"_mta-sts.{DST}": "v=STSv1; id=1;",
                 f"_smtp._tls.{DST}": f"v=TLSRPTv1; rua=mailto:{REPORTS}"})
        srv = self.mx_server("mx")
        port = srv.port
        # One attempt per message: the deferred one is not retried during the test.
        d = self.mx_relayd(dns, port, {
            "delivery.tls": "may", "delivery.mta_sts_port": web.port,
            "delivery.tls_rpt": True, "delivery.tls_rpt_from": FROM,
            "delivery.tls_rpt_organization": "Relay Test Org",
            "queue.min_backoff": "1h", "queue.max_backoff": "2h"}, start=False)
        d.extra_env = {"SSL_CERT_FILE": self.pki["ca.pem"]}
        d.start()
        day, day_start = utc_today()

        # 1. Verified TLS to the MX the enforced policy names: a success.
        self.send(d, f"a@{DST}", "under the policy")
        self.wait_until(lambda: [m for m in srv.messages() if f"a@{DST}" in m["rcpt_to"]], 20,
                        "the first delivery")
        self.restart(d)

        # 2. The MX now shows a self-signed certificate: a failure, deferred.
        srv.stop()
        srv = self.mx_server("self", port=port)
        qid = self.send(d, f"b@{DST}", "bad certificate")
        self.wait_until(lambda: self.attempts(d, qid, status="deferred"), 20, "the deferral")
        self.assertIn("certificate verification failed", self.entry(d, qid)["recipients"][0]
                      ["last_reply"])
        failed = [x for x in srv.connections() if not x["tls"] and not x["messages"]]
        self.assertEqual(len(failed), 1, srv.connections())
        sending_ip = failed[0]["peer_host"]
        self.restart(d)
        stored = os.path.join(d.spool, "tls-rpt", day, DST)
        self.assertTrue(os.path.exists(stored), f"{stored}: the day's counts are on disk")

        # 3. The report, now (today: a partial report).
        r = d.ctl("tls-rpt", "send", day)
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.out, rf"{re.escape(DST)}: report queued as \S+ to {re.escape(REPORTS)}")
        self.wait_until(lambda: self.report_mails(srv), 20, "the report at rua.test's MX")
        mails = self.report_mails(srv)
        self.assertEqual(len(mails), 1, mails)
        self.assertEqual(len(self.attempts(d, qid, status="deferred")), 1,
                         "b was attempted once: one failure")

        msg = email.message_from_bytes(mails[0]["data"], policy=email.policy.default)
        self.assertEqual(mails[0]["mail_from"], FROM)
        self.assertEqual(msg.get_content_type(), "multipart/report")
        self.assertEqual(msg.get_param("report-type"), "tlsrpt")
        self.assertEqual(msg["TLS-Report-Domain"], DST)
        self.assertEqual(msg["TLS-Report-Submitter"], "relay.test")
        self.assertRegex(msg["Subject"],
                         rf"^Report Domain: {re.escape(DST)} Submitter: relay\.test "
                         r"Report-ID: <[^>]+>$")
        parts = [p for p in msg.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
        self.assertEqual(len(parts), 1, [p.get_content_type() for p in msg.walk()])
        self.assertEqual(
            parts[0].get_filename(),
            f"relay.test!{DST}!{day_start}!{day_start + 86399}!"
            f"{parts[0].get_filename().split('!')[4]}")
        self.assertRegex(parts[0].get_filename(), r"![A-Za-z0-9.-]+\.json\.gz$")
        report = json.loads(gzip.decompress(parts[0].get_payload(decode=True)))

        # The RFC 8460 4.4 fields, their types, and the counts of this test.
        self.assertEqual(report["organization-name"], "Relay Test Org")
        self.assertEqual(report["contact-info"], FROM)
        self.assertIsInstance(report["report-id"], str)
        self.assertTrue(report["report-id"])
        self.assertEqual(report["date-range"], {
            "start-datetime": f"{day}T00:00:00Z", "end-datetime": f"{day}T23:59:59Z"})
        self.assertEqual(len(report["policies"]), 1, report)
        p = report["policies"][0]
        self.assertEqual(p["policy"], {
            "policy-type": "sts",
            "policy-string": ["version: STSv1", "mode: enforce", f"mx: {MX}", "max_age: 86400"],
            "policy-domain": DST, "mx-host": [MX]})
        self.assertEqual(p["summary"], {"total-successful-session-count": 1,
                                        "total-failure-session-count": 1})
        self.assertEqual(len(p["failure-details"]), 1, p)
        f = p["failure-details"][0]
        self.assertEqual({k: f[k] for k in ("result-type", "sending-mta-ip",
                                             "receiving-mx-hostname", "receiving-ip",
                                             "failed-session-count")},
                         {"result-type": "certificate-not-trusted", "sending-mta-ip": sending_ip,
                          "receiving-mx-hostname": MX, "receiving-ip": MX_IP,
                          "failed-session-count": 1})
        self.assertIsInstance(f.get("additional-information", ""), str)
        if jsonschema is None:
            self.skipTest("python3-jsonschema is not installed: the JSON Schema check did not run "
                          "(the field checks above did)")
        jsonschema.validate(report, SCHEMA)

    def test_an_https_destination_gets_the_report_by_post_and_a_failed_one_is_tried_again(self):
        ep = ReportEndpoint(self.pki["rua.pem"], self.pki["rua.key"])
        self.addCleanup(ep.stop)
        ep.status = 503
        dns = self.start_dns(
            mx=[(DST, MX, 10), (RUA, MX, 10)], a={MX: MX_IP},
            # Quoted: one string with its comma (tests/tools/dnsmasq.py).
            txt={f"_smtp._tls.{DST}": f'"v=TLSRPTv1; rua={ep.url},mailto:{REPORTS}"'})
        srv = self.mx_server("mx")
        d = self.mx_relayd(dns, srv.port, {
            "delivery.tls": "may", "delivery.tls_rpt": True, "delivery.tls_rpt_from": FROM},
            start=False)
        d.extra_env = {"SSL_CERT_FILE": self.pki["ca.pem"]}
        d.start()
        self.send(d, f"a@{DST}", "no policy, TLS")
        self.wait_until(lambda: srv.messages(), 20, "the delivery")
        self.assertEqual(d.stop(), 0, d.log_tail())

        # Today's counts become yesterday's: a finished day, reported at start.
        today, _ = utc_today()
        start = datetime.datetime.strptime(today, "%Y-%m-%d").replace(
            tzinfo=datetime.timezone.utc) - datetime.timedelta(days=1)
        day = start.strftime("%Y-%m-%d")
        # A copy of them four days back: failing still, it is given up.
        old_day = (start - datetime.timedelta(days=3)).strftime("%Y-%m-%d")
        base = os.path.join(d.spool, "tls-rpt")
        shutil.copytree(os.path.join(base, today), os.path.join(base, old_day))
        shutil.move(os.path.join(base, today), os.path.join(base, day))
        stored = os.path.join(base, day, DST)
        self.assertTrue(os.path.exists(stored))
        d.start()
        self.wait_until(lambda: len(ep.posts) == 2 and len(self.report_mails(srv)) == 2, 20,
                        "two failed POSTs and two report mails (one per day)")
        self.wait_until(lambda: "given up" in d.log(), 10, "the old day given up")
        self.assertIn(f"tls-rpt: {day} report for {DST} not posted to {ep.url}: HTTP 503",
                      d.log())
        self.assertIn(f"tls-rpt: {old_day} report for {DST}: given up", d.log())
        self.assertTrue(os.path.exists(stored), "a day whose POST failed is kept")
        self.assertFalse(os.path.exists(os.path.join(base, old_day)), "a day given up is removed")

        # The next round: the POST goes through; the mail is not sent again.
        ep.status = 201
        r = d.ctl("tls-rpt", "send", day)
        self.assertEqual(r.rc, 0, r)
        self.assertIn(f"{DST}: report posted to {ep.url} (HTTP 201)", r.out)
        self.assertIn(f"{DST}: already sent to {REPORTS}", r.out)
        self.assertNotIn("queued", r.out)
        self.assertFalse(os.path.exists(stored), "a day reported everywhere is removed")
        self.assertEqual(len(ep.posts), 3, [p[:2] for p in ep.posts])
        self.assertEqual(len(self.report_mails(srv)), 2)

        path, ctype, body = ep.posts[-1]
        self.assertEqual(path, "/v1/tlsrpt")
        self.assertEqual(ctype, "application/tlsrpt+gzip")
        report = json.loads(gzip.decompress(body))
        self.assertEqual(report["contact-info"], FROM)
        self.assertEqual(report["date-range"], {
            "start-datetime": f"{day}T00:00:00Z", "end-datetime": f"{day}T23:59:59Z"})
        self.assertEqual(len(report["policies"]), 1, report)
        p = report["policies"][0]
        self.assertEqual(p["policy"]["policy-type"], "no-policy-found")
        self.assertEqual(p["policy"]["policy-domain"], DST)
        self.assertEqual(p["summary"], {"total-successful-session-count": 1,
                                        "total-failure-session-count": 0})
        self.assertNotEqual(report["report-id"], json.loads(gzip.decompress(ep.posts[0][2]))
                            ["report-id"], "each POST is a report of its own")
        if jsonschema is not None:
            jsonschema.validate(report, SCHEMA)

    def test_tls_rpt_wants_a_from_address(self):
        d = self.relayd({"delivery.tls_rpt": True}, start=False)
        p = subprocess.run([h.RELAYD_BIN, "--check-config", d.config_path], capture_output=True,
                           text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("delivery.tls_rpt_from", p.stderr + p.stdout)
        self.assertIn("must be set when delivery.tls_rpt is on", p.stderr + p.stdout)

    def test_relayctl_tls_rpt_send_checks_the_day_and_the_setting(self):
        d = self.relayd()
        for bad in ("2026-02-30", "yesterday", "2026-1-1"):
            r = d.ctl("tls-rpt", "send", bad)
            self.assertEqual(r.rc, 64, r)
            self.assertIn("is not a day (YYYY-MM-DD)", r.err)
        r = d.ctl("tls-rpt", "send")
        self.assertEqual(r.rc, 1, r)
        self.assertIn("TLS reporting is off", r.err)


if __name__ == "__main__":
    h.main()
