#!/usr/bin/env python3
"""The ESMTP DSN extension (RFC 3461) end to end, with the real relayd: what a
client asks for on MAIL (RET, ENVID) and RCPT (NOTIFY, ORCPT) decides which
notices reach the sender, what they contain, and what goes on to the next hop.

dnsmasq serves dst.test (recipients, MX on 127.0.0.2) and src.test (the
sender's domain, MX on 127.0.0.3); one scripted test SMTP server listens on both
and records every MAIL/RCPT parameter it is given.

- EHLO advertises DSN; malformed parameters get 501 5.5.4 and queue nothing;
- NOTIFY=NEVER and a 550: no notice reaches the sender's MX, the dead spool
  holds the recipient;
- NOTIFY=SUCCESS to a next hop without DSN: one "relayed" notice, with the
  ENVID as Original-Envelope-Id and the ORCPT as Original-Recipient; no DSN
  parameter reaches that hop;
- RET=HDRS: the failure notice returns the header block only
  (text/rfc822-headers); RET=FULL the whole message (message/rfc822);
- a next hop that advertises DSN receives RET/ENVID on MAIL and NOTIFY/ORCPT
  on RCPT (no ORCPT for a recipient that had none), and relayd leaves the
  success notice to it;
- interop (root and Postfix needed, else skipped): Postfix as the DSN-capable
  next hop, relaying on to the test server that has no DSN; the "relayed"
  notice Postfix itself then sends back carries our ENVID and ORCPT, which
  proves Postfix received them, and relayd sends none of its own.
"""

import email
import email.policy
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_bounces  # noqa: E402
import test_delivery_common as c  # noqa: E402

DST, SRC = "dst.test", "src.test"
SENDER = f"app@{SRC}"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
POSTFIX_INSTANCE = os.path.join(ROOT, "tests", "bench", "postfix-instance.sh")


# The message/delivery-status part -> (per-message fields, [per-recipient fields]),
# field names in lower case: the parser test_bounces.py uses.
status_groups = test_bounces.BounceTest.status_groups


def parse(data):
    return email.message_from_bytes(data, policy=email.policy.default)


class DsnTest(c.DeliveryTestCase):
    def setUp(self):
        self.dns = self.start_dns(
            mx=[(DST, f"mx.{DST}", 10), (SRC, f"mx.{SRC}", 10)],
            a={f"mx.{DST}": "127.0.0.2", f"mx.{SRC}": "127.0.0.3"})

    def relayd_to(self, srv):
        return self.mx_relayd(self.dns, srv.port, {"hostname": "relay.test"})

    def notices(self, srv):
        return [parse(m["data"]) for m in srv.messages()
                if m["mail_from"] == "" and m["rcpt_to"] == [SENDER]]

    def submit(self, d, rcpts, subject, mail_options=(), rcpt_options=()):
        msg = h.make_message(subject, "the body text\r\n", sender=SENDER, rcpt=rcpts[0])
        return self.assertQueued(h.submit(d.port, SENDER, rcpts, msg, mail_options=mail_options,
                                          rcpt_options=rcpt_options), f"submit {subject!r}")

    def dead_entries(self, d):
        r = d.ctl("dead", "list", "--json")
        self.assertEqual(r.rc, 0, r)
        return [json.loads(line) for line in r.out.splitlines() if line.strip()]

    def test_ehlo_offers_dsn_and_bad_parameters_get_501(self):
        srv = self.start_server(["127.0.0.2:0", "127.0.0.3:0"])
        d = self.relayd_to(srv)
        with d.smtplib() as s:
            code, _ = s.ehlo("client.test")
            self.assertEqual(code, 250)
            self.assertTrue(s.has_extn("dsn"), s.esmtp_features)
            for opts in (["RET=ALL"], ["ENVID=a+2b"], ["RET=FULL", "RET=HDRS"]):
                code, text = s.mail(SENDER, opts)
                self.assertEqual((code, text[:5]), (501, b"5.5.4"), opts)
            code, _ = s.mail(SENDER, ["RET=HDRS", "ENVID=ok"])
            self.assertEqual(code, 250)
            for opts in (["NOTIFY=NEVER,SUCCESS"], ["NOTIFY=SOMETIMES"], ["ORCPT=nosemicolon"]):
                code, text = s.rcpt(f"x@{DST}", opts)
                self.assertEqual((code, text[:5]), (501, b"5.5.4"), opts)
            code, text = s.docmd("DATA")
            self.assertEqual(code, 554, text)  # every RCPT was refused
        self.assertEqual(d.queue(), [])

    def test_notify_never_sends_no_notice_but_the_dead_spool_keeps_it(self):
        srv = self.start_server(["127.0.0.2:0", "127.0.0.3:0"],
                                rules=[{"on": "RCPT", "match": "bad@", "reply": "550 5.1.1 No such user"}])
        d = self.relayd_to(srv)
        qid = self.submit(d, [f"bad@{DST}"], "never tell", rcpt_options=["NOTIFY=NEVER"])
        entries = self.wait_until(lambda: self.dead_entries(d), 15, "the dead-spool entry")
        self.assertEqual([e["id"] for e in entries], [qid])
        self.assertEqual([x["address"] for x in entries[0]["recipients"]], [f"bad@{DST}"])
        self.wait_queue_empty(d, 10)
        time.sleep(1.5)  # a notice would be queued before the results and sent at once
        self.assertEqual(self.notices(srv), [], "NOTIFY=NEVER: no notice to the sender")
        self.assertNotIn("notification", d.log())

    def test_notify_success_without_dsn_at_the_next_hop_sends_relayed(self):
        srv = self.start_server(["127.0.0.2:0", "127.0.0.3:0"], strict_params=True)
        d = self.relayd_to(srv)
        qid = self.submit(d, [f"rcpt@{DST}", f"quiet@{DST}"], "tell me it went",
                          mail_options=["RET=HDRS", "ENVID=QQ+2B314"],
                          rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;orig+2Bx@src.test"])
        self.wait_until(lambda: self.notices(srv), 20, "the success notice")
        self.wait_queue_empty(d, 10)
        time.sleep(1)
        notices = self.notices(srv)
        self.assertEqual(len(notices), 1, "one notice for the two recipients")
        n = notices[0]
        self.assertEqual(n.get_content_type(), "multipart/report")
        self.assertEqual(str(n["Subject"]), "Relayed Mail Delivery Report")
        per_message, rcpts = status_groups(n)
        self.assertEqual(per_message.get("original-envelope-id"), "QQ+314")
        self.assertEqual(sorted(r["final-recipient"] for r in rcpts),
                         [f"rfc822; quiet@{DST}", f"rfc822; rcpt@{DST}"])
        for r in rcpts:
            self.assertEqual(r["action"], "relayed", r)
            self.assertEqual(r["status"], "2.0.0", r)
            self.assertEqual(r["original-recipient"], "rfc822; orig+x@src.test", r)
        self.assertIn(f"{qid}: sender success notification:", d.log())
        # The hop has no DSN: the original went without any DSN parameter.
        original = [m for m in srv.messages() if m["mail_from"] == SENDER]
        self.assertEqual(len(original), 1)
        self.assertEqual(original[0]["mail_params"].keys() & {"RET", "ENVID"}, set())
        for p in original[0]["rcpt_params"]:
            self.assertEqual((p or {}).keys() & {"NOTIFY", "ORCPT"}, set())

    def test_ret_hdrs_returns_headers_and_ret_full_the_message(self):
        srv = self.start_server(["127.0.0.2:0", "127.0.0.3:0"],
                                rules=[{"on": "RCPT", "match": "bad@", "reply": "550 5.1.1 No such user"}])
        d = self.relayd_to(srv)
        self.submit(d, [f"bad@{DST}"], "headers only", mail_options=["RET=HDRS", "ENVID=env-hdrs"],
                    rcpt_options=["ORCPT=rfc822;first@src.test"])
        self.submit(d, [f"bad@{DST}"], "all of it", mail_options=["RET=FULL"])
        self.wait_until(lambda: len(self.notices(srv)) >= 2, 20, "two failure notices")
        by_subject = {}
        for n in self.notices(srv):
            original = list(n.iter_parts())[2]
            by_subject["headers only" if "Subject: headers only" in str(original)
                       else "all of it"] = n
        self.assertEqual(sorted(by_subject), ["all of it", "headers only"])

        hdrs = by_subject["headers only"]
        part = list(hdrs.iter_parts())[2]
        self.assertEqual(part.get_content_type(), "text/rfc822-headers")
        self.assertNotIn("the body text", hdrs.as_string())
        per_message, rcpts = status_groups(hdrs)
        self.assertEqual(per_message.get("original-envelope-id"), "env-hdrs")
        self.assertEqual(rcpts[0]["action"], "failed")
        self.assertEqual(rcpts[0]["original-recipient"], "rfc822; first@src.test")

        full = by_subject["all of it"]
        part = list(full.iter_parts())[2]
        self.assertEqual(part.get_content_type(), "message/rfc822")
        self.assertIn("the body text", full.as_string())
        per_message, rcpts = status_groups(full)
        self.assertNotIn("original-envelope-id", per_message)
        self.assertNotIn("original-recipient", rcpts[0])

    def test_parameters_go_on_to_a_next_hop_with_dsn(self):
        srv = self.start_server(["127.0.0.2:0", "127.0.0.3:0"], dsn=True, strict_params=True)
        d = self.relayd_to(srv)
        with d.smtplib() as s:
            s.ehlo("client.test")
            self.assertEqual(s.mail(SENDER, ["RET=HDRS", "ENVID=id+20one"])[0], 250)
            self.assertEqual(s.rcpt(f"a@{DST}", ["NOTIFY=SUCCESS,DELAY",
                                                  "ORCPT=rfc822;A+2Borig@src.test"])[0], 250)
            self.assertEqual(s.rcpt(f"b@{DST}", ["NOTIFY=NEVER"])[0], 250)
            self.assertEqual(s.rcpt(f"c@{DST}")[0], 250)
            self.assertEqual(s.data(b"Subject: pass it on\r\n\r\nbody\r\n")[0], 250)
        self.wait_queue_empty(d, 15)
        msgs = [m for m in srv.messages() if m["mail_from"] == SENDER]
        self.assertEqual(len(msgs), 1)
        m = msgs[0]
        self.assertEqual(m["mail_params"].get("RET"), "HDRS")
        self.assertEqual(m["mail_params"].get("ENVID"), "id+20one")
        params = dict(zip(m["rcpt_to"], m["rcpt_params"]))
        self.assertEqual(params[f"a@{DST}"], {"NOTIFY": "SUCCESS,DELAY",
                                              "ORCPT": "rfc822;A+2Borig@src.test"})
        self.assertEqual(params[f"b@{DST}"], {"NOTIFY": "NEVER"})
        self.assertEqual(params[f"c@{DST}"] or {}, {}, "no NOTIFY or ORCPT where none was given")
        time.sleep(1)
        self.assertEqual(self.notices(srv), [], "the DSN-capable hop reports success, not relayd")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostfixDsnTest(c.DeliveryTestCase):
    """relayd -> Postfix (advertises DSN) -> test server (no DSN)."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("Postfix's master needs root")
        if not shutil.which("postfix"):
            self.skipTest("postfix is not installed")
        self.sink = self.start_server(["127.0.0.1:0"])
        self.pf_dir = tempfile.mkdtemp(prefix="relayd-dsn-postfix-")
        self.pf_port = free_port()
        r = subprocess.run(["bash", POSTFIX_INSTANCE, "start", self.pf_dir, str(self.pf_port),
                            str(self.sink.port)], capture_output=True, text=True, timeout=60)
        self.addCleanup(self._destroy_postfix)
        if r.returncode != 0:
            self.fail(f"postfix-instance start failed: {r.stderr}")

    def _destroy_postfix(self):
        if self._outcome_failed():
            try:
                with open(os.path.join(self.pf_dir, "maillog")) as f:
                    sys.stderr.write("\n---- postfix maillog ----\n" + f.read()[-4000:])
            except OSError:
                pass
        subprocess.run(["bash", POSTFIX_INSTANCE, "destroy", self.pf_dir],
                       capture_output=True, timeout=60)

    def _outcome_failed(self):
        result = getattr(self, "_outcome", None)
        errors = getattr(getattr(result, "result", None), "errors", []) + \
            getattr(getattr(result, "result", None), "failures", [])
        return any(t is self for t, _ in errors)

    def test_postfix_next_hop_receives_the_dsn_parameters(self):
        d = self.smarthost_relayd(self.pf_port, {"hostname": "relay.test",
                                                  "delivery.tls": "none"})
        msg = h.make_message("through postfix", "body\r\n", sender=SENDER, rcpt=f"x@{DST}")
        qid = self.assertQueued(h.submit(d.port, SENDER, [f"x@{DST}"], msg,
                                         mail_options=["RET=HDRS", "ENVID=relayd-env+2B1"],
                                         rcpt_options=["NOTIFY=SUCCESS,FAILURE",
                                                       "ORCPT=rfc822;orig@src.test"]),
                                "submit through Postfix")
        self.wait_queue_empty(d, 20)
        self.assertNotIn("success notification", d.log(), "Postfix took the DSN request on")

        def postfix_notice():
            return [parse(m["data"]) for m in self.sink.messages()
                    if m["mail_from"] == "" and m["rcpt_to"] == [SENDER]]
        self.wait_until(lambda: [m for m in self.sink.messages() if m["mail_from"] == SENDER],
                        30, "the message relayed by Postfix")
        notices = self.wait_until(postfix_notice, 30, "Postfix's own success notice")
        per_message, rcpts = status_groups(notices[0])
        # Postfix can only echo these if relayd passed them on MAIL and RCPT.
        self.assertEqual(per_message.get("original-envelope-id"), "relayd-env+1")
        self.assertEqual(len(rcpts), 1)
        self.assertEqual(rcpts[0].get("action"), "relayed", rcpts[0])
        self.assertEqual(rcpts[0].get("original-recipient", "").replace(" ", ""),
                         "rfc822;orig@src.test", rcpts[0])
        self.assertIn(qid, d.log())


if __name__ == "__main__":
    h.main()
