#!/usr/bin/env python3
"""MX routing, end to end: dnsmasq serves the test domains' MX and A records
(hosts on 127.0.0.x), the scripted test SMTP server listens on those addresses
on one port ([delivery] port), and the real relayd delivers to them.

- the most preferred MX that is up gets the mail (the pref-20 record is listed
  first, so the order comes from the preference, not from the DNS answer);
- failover to the pref-20 host when the pref-10 host greets with 421, and when
  nothing listens on the pref-10 host;
- implicit MX: a domain with only an A record is delivered to that address;
- one message with recipients in three domains, one of them slow (its server
  stalls 8 s before answering RCPT): the two fast domains get it within a few
  seconds, each domain in its own transaction, while the slow one is still in
  flight (relayctl -p marks it `*`), and the slow one gets it after the stall.
"""

import os
import re
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_delivery_common as c  # noqa: E402

PREF, F421, FDOWN, IMPLICIT = "pref.test", "f421.test", "fdown.test", "implicit.test"


class MxRoutingTest(c.DeliveryTestCase):
    def setUp(self):
        # pref.test:   mx2 (20) on .3 listed before mx1 (10) on .2
        # f421.test:   mx1 (10) on .4 greets 421; mx2 (20) on .3
        # fdown.test:  mx1 (10) on .5, nothing listens there; mx2 (20) on .3
        # implicit.test: no MX, A 127.0.0.6
        self.dns = self.start_dns(
            mx=[(PREF, f"mx2.{PREF}", 20), (PREF, f"mx1.{PREF}", 10),
                (F421, f"mx1.{F421}", 10), (F421, f"mx2.{F421}", 20),
                (FDOWN, f"mx2.{FDOWN}", 20), (FDOWN, f"mx1.{FDOWN}", 10)],
            a={f"mx1.{PREF}": "127.0.0.2", f"mx2.{PREF}": "127.0.0.3",
               f"mx1.{F421}": "127.0.0.4", f"mx2.{F421}": "127.0.0.3",
               f"mx1.{FDOWN}": "127.0.0.5", f"mx2.{FDOWN}": "127.0.0.3",
               IMPLICIT: "127.0.0.6"})
        self.srv = self.start_server(["127.0.0.2:0", "127.0.0.3:0", "127.0.0.4:0", "127.0.0.6:0"])
        self.port = self.srv.port

    def delivered(self, rcpt):
        return [m for m in self.srv.messages() if rcpt in m["rcpt_to"]]

    def wait_delivered(self, d, rcpt, count=1, timeout=15):
        self.wait_until(lambda: len(self.delivered(rcpt)) >= count, timeout,
                        f"{count} message(s) for {rcpt} at the test server")
        return self.delivered(rcpt)

    def test_most_preferred_mx(self):
        d = self.mx_relayd(self.dns, self.port)
        ids = [self.send(d, f"user{i}@{PREF}", f"pref {i}") for i in range(3)]
        for i in range(3):
            msgs = self.wait_delivered(d, f"user{i}@{PREF}")
            self.assertEqual([m["local_host"] for m in msgs], ["127.0.0.2"],
                             f"user{i}@{PREF} must reach the pref-10 MX only")
            self.assertEqual(msgs[0]["mail_from"], c.SENDER)
            self.assertEqual(self.subject_of(msgs[0]), f"pref {i}")
        self.wait_queue_empty(d, 10)
        self.assertNotIn(f"127.0.0.3:{self.port}", self.srv.stats()["by_local"],
                         "the pref-20 MX must not be contacted while the pref-10 MX is up")
        for qid, i in zip(ids, range(3)):
            sent = self.attempts(d, qid, status="sent")
            self.assertEqual(len(sent), 1, f"one status=sent log line for {qid}")
            a = sent[0]
            self.assertEqual(a.rcpt, f"user{i}@{PREF}")
            self.assertRegex(a.relay, c.relay_re(re.escape(f"mx1.{PREF}"), "127.0.0.2", self.port))
            self.assertRegex(a.dsn, r"^2\.\d+\.\d+$")
            self.assertIn(f"{qid}: removed", d.log())

    def test_failover_on_421_greeting(self):
        self.srv.set_rules([{"greeting": "421 4.3.2 mx1 is going down", "local": "127.0.0.4"}])
        d = self.mx_relayd(self.dns, self.port)
        qid = self.send(d, f"bob@{F421}", "failover 421")
        msgs = self.wait_delivered(d, f"bob@{F421}")
        self.assertEqual([m["local_host"] for m in msgs], ["127.0.0.3"])
        self.wait_queue_empty(d, 10)
        greeted = [x for x in self.srv.connections() if x["local_host"] == "127.0.0.4"]
        self.assertGreaterEqual(len(greeted), 1, "the pref-10 MX was tried first")
        self.assertTrue(all(x["greeting"] == 421 and not x["messages"] for x in greeted), greeted)
        first_mx1 = min(x["start"] for x in greeted)
        self.assertLess(first_mx1, msgs[0]["time_connect"], "pref-10 MX tried before pref-20")
        sent = self.attempts(d, qid, status="sent")
        self.assertEqual(len(sent), 1, self.attempts(d, qid))
        self.assertRegex(sent[0].relay, c.relay_re(re.escape(f"mx2.{F421}"), "127.0.0.3", self.port))
        # The failover happens inside the attempt: no deferral first.
        self.assertEqual(self.attempts(d, qid, status="deferred"), [])

    def test_failover_when_mx_not_listening(self):
        d = self.mx_relayd(self.dns, self.port)
        t0 = time.monotonic()
        qid = self.send(d, f"carol@{FDOWN}", "failover down")
        msgs = self.wait_delivered(d, f"carol@{FDOWN}")
        self.assertLess(time.monotonic() - t0, 5, "failover must not wait for a retry")
        self.assertEqual([m["local_host"] for m in msgs], ["127.0.0.3"])
        self.wait_queue_empty(d, 10)
        sent = self.attempts(d, qid, status="sent")
        self.assertEqual(len(sent), 1, self.attempts(d, qid))
        self.assertRegex(sent[0].relay, c.relay_re(re.escape(f"mx2.{FDOWN}"), "127.0.0.3", self.port))
        self.assertEqual(self.attempts(d, qid, status="deferred"), [])

    def test_implicit_mx(self):
        d = self.mx_relayd(self.dns, self.port)
        qid = self.send(d, f"dave@{IMPLICIT}", "implicit mx")
        msgs = self.wait_delivered(d, f"dave@{IMPLICIT}")
        self.assertEqual([m["local_host"] for m in msgs], ["127.0.0.6"])
        self.assertEqual(msgs[0]["rcpt_to"], [f"dave@{IMPLICIT}"])
        self.wait_queue_empty(d, 10)
        sent = self.attempts(d, qid, status="sent")
        self.assertEqual(len(sent), 1, self.attempts(d, qid))
        self.assertRegex(sent[0].relay, c.relay_re(re.escape(IMPLICIT), "127.0.0.6", self.port))
        # dnsmasq saw the MX query, then the A query for the domain itself
        queries = self.dns.log_text()
        self.assertRegex(queries, rf"query\[MX\] {re.escape(IMPLICIT)}\b")
        self.assertRegex(queries, rf"query\[A\] {re.escape(IMPLICIT)}\b")


class ThreeDomainsTest(c.DeliveryTestCase):
    STALL = 8.0

    def test_slow_domain_does_not_hold_up_the_others(self):
        dns = self.start_dns(
            mx=[("fast1.test", "mx.fast1.test", 10), ("fast2.test", "mx.fast2.test", 10),
                ("slow.test", "mx.slow.test", 10)],
            a={"mx.fast1.test": "127.0.0.2", "mx.fast2.test": "127.0.0.3",
               "mx.slow.test": "127.0.0.4"})
        srv = self.start_server(
            ["127.0.0.2:0", "127.0.0.3:0", "127.0.0.4:0"],
            [{"on": "RCPT", "local": "127.0.0.4", "action": "stall", "seconds": self.STALL}])
        d = self.mx_relayd(dns, srv.port)
        rcpts = ["ann@fast1.test", "ben@fast2.test", "cat@slow.test"]
        t0 = time.time()
        qid = self.send(d, rcpts, "three domains")

        def fast_done():
            got = {r for m in srv.messages() for r in m["rcpt_to"]}
            return {"ann@fast1.test", "ben@fast2.test"} <= got
        self.wait_until(fast_done, 5, "the fast domains' deliveries")
        t_fast = time.time() - t0
        self.assertLess(t_fast, 4, "fast domains delivered promptly")

        # While the slow domain stalls: fast recipients delivered, the slow one
        # pending, the message in flight (relayctl -p marks it with '*').
        time.sleep(0.3)
        m = self.entry(d, qid)
        self.assertIsNotNone(m, "the message stays queued for its slow recipient")
        states = {r["address"]: r["state"] for r in m["recipients"]}
        self.assertEqual(states, {"ann@fast1.test": "delivered", "ben@fast2.test": "delivered",
                                  "cat@slow.test": "pending"}, m)
        self.assertTrue(m.get("in_flight"), f"in_flight while the slow delivery runs: {m}")
        p = d.ctl("-p")
        self.assertEqual(p.rc, 0, p)
        self.assertRegex(p.out, rf"(?m)^{qid}\*\s", f"-p marks {qid} in flight:\n{p.out}")
        pending = re.findall(r"(?m)^\s{20,}(\S+@\S+)$", p.out)
        self.assertEqual(pending, ["cat@slow.test"], f"-p lists only the pending recipient:\n{p.out}")
        self.assertLess(time.time() - t0, self.STALL, "checked before the slow server answered")

        self.wait_until(lambda: any("cat@slow.test" in x["rcpt_to"] for x in srv.messages()),
                        self.STALL + 15, "the slow domain's delivery")
        t_slow = time.time() - t0
        self.assertGreaterEqual(t_slow, self.STALL)
        self.wait_queue_empty(d, 10)

        # one transaction per domain, each to its own MX, each recipient once
        msgs = srv.messages()
        by_host = {x["local_host"]: x["rcpt_to"] for x in msgs}
        self.assertEqual(len(msgs), 3, [(x["local_host"], x["rcpt_to"]) for x in msgs])
        self.assertEqual(by_host, {"127.0.0.2": ["ann@fast1.test"], "127.0.0.3": ["ben@fast2.test"],
                                   "127.0.0.4": ["cat@slow.test"]})
        for x in msgs:
            self.assertEqual(self.subject_of(x), "three domains")
        sent = {a.rcpt: a for a in self.attempts(d, qid, status="sent")}
        self.assertEqual(set(sent), set(rcpts), self.attempts(d, qid))
        self.assertEqual(self.attempts(d, qid, status="deferred"), [])
        self.assertLess(sent["ann@fast1.test"].delay, 4)
        self.assertLess(sent["ben@fast2.test"].delay, 4)
        self.assertGreaterEqual(sent["cat@slow.test"].delay, self.STALL - 0.5)
        # the log says when each happened: both fast lines come before the slow one
        log = d.log()
        pos = {r: log.find(f"{qid}: to=<{r}>") for r in rcpts}
        self.assertLess(max(pos["ann@fast1.test"], pos["ben@fast2.test"]), pos["cat@slow.test"])
        self.assertEqual(log.count(f"{qid}: removed"), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
