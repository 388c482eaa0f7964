#!/usr/bin/env python3
"""Failures that tell, end to end: DSNs from the real relayd, delivered by MX to
the sender's domain and parsed with Python's email package.

dnsmasq serves dst.test (recipients, MX on 127.0.0.2) and src.test (the
senders' domain, MX on 127.0.0.3); one scripted test SMTP server listens on both.

- a 550 for one of two recipients: the sender gets one RFC 3464 report
  (multipart/report; report-type=delivery-status) from MAILER-DAEMON@ with the
  envelope sender <>, naming only the failed recipient: Action failed, Status
  5.1.1, Remote-MTA, the remote 550 in Diagnostic-Code, and the original
  headers; the other recipient is delivered once; the dead spool holds the
  failed recipient only;
- expiry: a server that always answers 451, max_lifetime of a few seconds: one
  "delayed" DSN, then one "failed" DSN (Status 4.4.7), nothing after;
- a null sender that fails: dead spool, no mail sent anywhere;
- mixed outcomes: one recipient delivered, one 550, one 451: the 550 is in the
  dead spool (and in a DSN) at once while the 451 one stays queued and retried;
- `bounces = false`: dead spool, no DSN;
- resolver failures (SERVFAIL, REFUSED, timeout): deferred, never bounced;
- NXDOMAIN and a null MX (RFC 7505): no attempt, dead spool (reason no_route)
  and a DSN at once (5.1.2, 5.1.10).
"""

import email
import email.policy
import json
import os
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_delivery_common as c  # noqa: E402

DST, SRC = "dst.test", "src.test"
SENDER = f"app@{SRC}"


class BounceTest(c.DeliveryTestCase):
    def setUp(self):
        self.dns = self.start_dns(
            mx=[(DST, f"mx.{DST}", 10), (SRC, f"mx.{SRC}", 10)],
            a={f"mx.{DST}": "127.0.0.2", f"mx.{SRC}": "127.0.0.3"},
            null_mx=["nullmx.test"],
            servfail=["servfail.test"], refused=["refused.test"], timeout=["slowdns.test"])
        self.srv = self.start_server(["127.0.0.2:0", "127.0.0.3:0"])
        self.port = self.srv.port

    def relayd_for(self, **overrides):
        cfg = {"hostname": "relay.test"}
        cfg.update(overrides)
        return self.mx_relayd(self.dns, self.port, cfg)

    # -- observation
    def dsns(self):
        """Messages the sender's MX received with the null reverse-path, parsed."""
        return [email.message_from_bytes(m["data"], policy=email.policy.default)
                for m in self.srv.messages()
                if m["mail_from"] == "" and m["rcpt_to"] == [SENDER]]

    def delivered_to(self, rcpt):
        return [m for m in self.srv.messages() if rcpt in m["rcpt_to"]]

    @staticmethod
    def status_groups(report):
        """The message/delivery-status part -> (per-message fields, [per-recipient fields])."""
        part = next(p for p in report.walk()
                    if p.get_content_type() == "message/delivery-status")
        payload = part.get_payload()
        if isinstance(payload, list):  # the email package parses the field groups
            groups = [dict((k.lower(), str(v)) for k, v in g.items()) for g in payload]
        else:
            groups = []
            for block in payload.replace("\r\n", "\n").strip().split("\n\n"):
                fields = {}
                for line in block.split("\n"):
                    k, _, v = line.partition(":")
                    fields[k.strip().lower()] = v.strip()
                groups.append(fields)
        return groups[0], groups[1:]

    def assertReport(self, report, action):
        self.assertEqual(report.get_content_type(), "multipart/report")
        self.assertEqual(report.get_param("report-type"), "delivery-status")
        self.assertIn("MAILER-DAEMON@relay.test", str(report["From"]))
        self.assertIn(SENDER, str(report["To"]))
        kinds = [p.get_content_type() for p in report.iter_parts()]
        self.assertEqual(kinds[0], "text/plain", kinds)
        self.assertEqual(kinds[1], "message/delivery-status", kinds)
        self.assertIn(kinds[2], ("text/rfc822-headers", "message/rfc822"), kinds)
        per_message, rcpts = self.status_groups(report)
        self.assertEqual(per_message.get("reporting-mta"), "dns; relay.test")
        self.assertTrue(rcpts)
        for r in rcpts:
            self.assertEqual(r.get("action"), action, r)
        return rcpts

    def test_550_reaches_the_sender_as_a_dsn(self):
        self.srv.set_rules([{"on": "RCPT", "match": "bad@", "reply": "550 5.1.1 No such user"}])
        d = self.relayd_for()
        qid = self.send(d, [f"bad@{DST}", f"good@{DST}"], "doomed", sender=SENDER)
        self.wait_until(self.dsns, 20, "the DSN at the sender's MX")
        reports = self.dsns()
        self.assertEqual(len(reports), 1)
        rcpts = self.assertReport(reports[0], "failed")
        self.assertEqual(len(rcpts), 1, "only the failed recipient is reported")
        r = rcpts[0]
        self.assertEqual(r["final-recipient"], f"rfc822; bad@{DST}")
        self.assertEqual(r["status"], "5.1.1")
        self.assertEqual(r["remote-mta"], f"dns; mx.{DST}")
        self.assertEqual(r["diagnostic-code"], "smtp; 550 5.1.1 No such user")
        headers = str(list(reports[0].iter_parts())[2])
        self.assertIn("Subject: doomed", headers)
        self.assertIn(qid, str(reports[0]))
        # the good recipient got it once, and the DSN came from <> at src.test's MX
        self.assertEqual(len(self.delivered_to(f"good@{DST}")), 1)
        dsn_msg = [m for m in self.srv.messages() if m["mail_from"] == ""][0]
        self.assertEqual(dsn_msg["local_host"], "127.0.0.3")
        self.wait_until(lambda: f"{qid}: moved to the dead spool" in d.log(), 10,
                        "the message in the dead spool")
        self.assertIn(f"{qid}: sender non-delivery notification:", d.log())
        self.wait_queue_empty(d, 10)

    def test_expiry_sends_one_delay_warning_then_a_failure(self):
        self.srv.set_rules([{"on": "RCPT", "match": f"@{DST}", "reply": "451 4.3.0 Try later"}])
        d = self.relayd_for(**{"queue.max_lifetime": "6s", "queue.delay_warning": "2s",
                               "queue.min_backoff": "1s", "queue.max_backoff": "1s"})
        qid = self.send(d, f"slow@{DST}", "expiring", sender=SENDER)

        def failed_dsn():
            return [m for m in self.dsns() if "failed" in str(m.get("Subject", "")).lower()
                    or any(r.get("action") == "failed" for r in self.status_groups(m)[1])]
        self.wait_until(failed_dsn, 25, "the failure DSN after max_lifetime")
        time.sleep(2.5)  # anything more would come within a backoff or two
        reports = self.dsns()
        actions = [[r.get("action") for r in self.status_groups(m)[1]] for m in reports]
        self.assertEqual(actions, [["delayed"], ["failed"]],
                         "exactly one delay warning, then the failure")
        delayed = self.status_groups(reports[0])[1][0]
        self.assertEqual(delayed["final-recipient"], f"rfc822; slow@{DST}")
        self.assertTrue(delayed["status"].startswith("4."), delayed)
        self.assertIn("will-retry-until", delayed)
        failed = self.status_groups(reports[1])[1][0]
        self.assertEqual(failed["status"], "4.4.7")
        self.assertEqual(failed["diagnostic-code"], "smtp; 451 4.3.0 Try later")
        self.assertIn(f"{qid}: moved to the dead spool", d.log())
        self.assertIn("message expired", d.log())
        self.wait_queue_empty(d, 10)
        # the expiry came on time: within a backoff of max_lifetime, not after it
        attempts = self.attempts(d, qid)
        self.assertEqual(attempts[-1].status, "bounced")
        self.assertLess(attempts[-1].delay, 6 + 2.5, attempts[-1])

    def test_mixed_outcomes_keep_each_recipients_fate(self):
        self.srv.set_rules([{"on": "RCPT", "match": "bad@", "reply": "550 5.1.1 No such user"},
                            {"on": "RCPT", "match": "later@", "reply": "451 4.3.0 Try later"}])
        d = self.relayd_for(**{"queue.delay_warning": "0s"})
        qid = self.send(d, [f"good@{DST}", f"bad@{DST}", f"later@{DST}"], "mixed",
                        sender=SENDER)
        self.wait_until(self.dsns, 20, "the DSN for bad@")

        def dead_entries():
            r = d.ctl("dead", "list", "--json")
            self.assertEqual(r.rc, 0, r)
            return [json.loads(line) for line in r.out.splitlines() if line.strip()]
        entries = self.wait_until(dead_entries, 10, "the dead-spool entry")
        self.assertEqual([e["id"] for e in entries], [qid])
        self.assertEqual([x["address"] for x in entries[0]["recipients"]], [f"bad@{DST}"])
        e = self.entry(d, qid)
        self.assertIsNotNone(e, "the deferred recipient keeps the message queued")
        states = {x["address"]: x["state"] for x in e["recipients"]}
        self.assertEqual(states[f"later@{DST}"], "pending")
        self.assertEqual(states[f"good@{DST}"], "delivered")
        # the deferred recipient is retried; the delivered and failed ones are not
        self.wait_until(lambda: len(self.attempts(d, qid, rcpt=f"later@{DST}")) >= 2, 15,
                        "a retry of later@")
        self.assertEqual(len(self.delivered_to(f"good@{DST}")), 1)
        self.assertEqual(len(self.attempts(d, qid, rcpt=f"bad@{DST}")), 1)
        rcpts = self.assertReport(self.dsns()[0], "failed")
        self.assertEqual([r["final-recipient"] for r in rcpts], [f"rfc822; bad@{DST}"])
        self.assertIn("failed recipient(s) moved to the dead spool", d.log())

    def dead_entries(self, d):
        r = d.ctl("dead", "list", "--json")
        self.assertEqual(r.rc, 0, r)
        return [json.loads(line) for line in r.out.splitlines() if line.strip()]

    def test_nxdomain_and_null_mx_fail_at_once_with_a_dsn(self):
        d = self.relayd_for()
        want = {"nosuch.test": "5.1.2", "nullmx.test": "5.1.10"}  # nosuch.test: no records
        ids = {dom: self.send(d, f"x@{dom}", f"no route {dom}", sender=SENDER) for dom in want}
        self.wait_until(lambda: len(self.dsns()) >= 2, 20, "a DSN for each domain")
        self.wait_queue_empty(d, 10)
        time.sleep(1)  # nothing more may come: no retry, no second DSN
        reports = self.dsns()
        self.assertEqual(len(reports), 2)
        seen = {}
        for report in reports:
            rcpts = self.assertReport(report, "failed")
            self.assertEqual(len(rcpts), 1, rcpts)
            seen[rcpts[0]["final-recipient"]] = rcpts[0]
        for dom, status in want.items():
            r = seen[f"rfc822; x@{dom}"]
            self.assertEqual(r["status"], status, r)
            self.assertNotIn("remote-mta", r, "no server was ever asked")
            self.assertEqual([a.status for a in self.attempts(d, ids[dom])], ["bounced"])
        entries = {e["id"]: e for e in self.dead_entries(d)}
        self.assertEqual(set(entries), set(ids.values()))
        for dom, qid in ids.items():
            r = entries[qid]["recipients"][0]
            self.assertEqual((r["address"], r["reason"], r["status"]),
                             (f"x@{dom}", "no_route", want[dom]), r)
        self.assertEqual([m for m in self.srv.messages() if m["mail_from"] != ""], [],
                         "nothing was delivered anywhere")

    def test_null_sender_goes_to_the_dead_spool_only(self):
        self.srv.set_rules([{"on": "RCPT", "match": "bad@", "reply": "550 5.1.1 No such user"}])
        d = self.relayd_for()
        qid = self.send(d, f"bad@{DST}", "a bounce that bounces", sender="")
        self.wait_until(lambda: f"{qid}: moved to the dead spool" in d.log(), 15,
                        "the null-sender message in the dead spool")
        time.sleep(1.5)
        self.assertEqual(self.srv.messages(), [], "no mail may be sent for a failed bounce")
        self.assertNotIn("notification", d.log())
        bounced = self.attempts(d, qid, status="bounced")
        self.assertEqual(len(bounced), 1)
        self.wait_queue_empty(d, 5)
        [entry] = self.dead_entries(d)
        self.assertEqual(entry["id"], qid)
        self.assertEqual(entry["recipients"][0]["reason"], "bounce_failed", entry)

    def test_bounces_false_means_dead_spool_only(self):
        self.srv.set_rules([{"on": "RCPT", "match": "bad@", "reply": "550 5.1.1 No such user"}])
        d = self.relayd_for(**{"queue.bounces": False})
        qid = self.send(d, f"bad@{DST}", "quiet failure", sender=SENDER)
        self.wait_until(lambda: f"{qid}: moved to the dead spool" in d.log(), 15,
                        "the message in the dead spool")
        time.sleep(1.5)
        self.assertEqual(self.dsns(), [])
        self.assertNotIn("notification", d.log())

    def test_resolver_failures_defer_and_never_bounce(self):
        d = self.relayd_for(**{"queue.min_backoff": "1s", "queue.max_backoff": "1s",
                               "queue.delay_warning": "0s"})
        ids = {dom: self.send(d, f"x@{dom}", f"dns {dom}", sender=SENDER)
               for dom in ("servfail.test", "refused.test", "slowdns.test")}

        def all_deferred():
            return all(self.attempts(d, qid, status="deferred") for qid in ids.values())
        self.wait_until(all_deferred, 40, "a deferral for each resolver failure")
        for dom, qid in ids.items():
            e = self.entry(d, qid)
            self.assertIsNotNone(e, f"{dom}: still queued")
            r = e["recipients"][0]
            self.assertEqual(r["state"], "pending", r)
            self.assertTrue(r["last_reply"], f"{dom}: relayctl -j says why: {r}")
            a = self.attempts(d, qid, status="deferred")[0]
            self.assertTrue(a.dsn.startswith("4."), a)
        self.assertNoBounce(d)
        self.assertEqual(self.dsns(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
