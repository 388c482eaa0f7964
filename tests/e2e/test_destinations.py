#!/usr/bin/env python3
"""[[destination]] traffic shaping, reply rules and the circuit breaker
(issue 15), with the real relayd, dnsmasq and scripted SMTP servers.

- max_rate = "10/s" on "mx:*.shared.test": 40 messages for two domains whose MX
  hosts share the suffix reach the server no faster than the one bucket they
  share allows (measured over every window), the rest is delivered later, and
  relayctl -p says until when each waits; relayctl destinations names the policy
  for both domains. (The /m and /h semantics are unit tests:
  tests/unit/relayd/delivery_destination_test.cpp.)
- Gmail's "421 4.7.28" from an MX under google.com triggers the built-in
  profile: the destination is suspended (relayctl destinations says why and
  until when), no connection is made to it while suspended, mail for another
  destination is delivered meanwhile, relayctl resume delivers the rest.
- A configured rule (suspend for 3s) ends by itself: the next connection comes
  only after the suspension.
- A smarthost answering 535: one AUTH attempt for five messages, the route is
  suspended with the reason, the messages are "deferred" in relayctl -j, stats
  and relayd_queue_messages, nothing bounced; after the password file is fixed,
  SIGHUP and relayctl resume deliver everything.
- DNS SERVFAIL for a destination's MX lookup: 20 queued messages cost a few
  lookups, not one each; after 3 failed attempts in a row the destination is
  suspended with the reason (relayctl destinations, relayd_destinations_suspended),
  nothing bounces; once DNS answers again the probe delivers everything, and the
  events file has one "suspended" and one "resumed" line for it.
"""

import json
import os
import signal
import sys
import tempfile
import time
import unittest
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402

GMAIL_421 = ("421 4.7.28 [127.0.0.1 15] Our system has detected an unusual rate of "
             "unsolicited mail originating from your IP address. To protect our users from "
             "spam, mail sent from your IP address has been temporarily rate limited.")
USER, PASSWORD = "relayuser", "the right one"


class DestinationsTest(c.DeliveryTestCase):
    def destinations(self, d):
        r = d.ctl("destinations", "--json")
        self.assertEqual(r.rc, 0, r)
        return {o["destination"]: o for o in h.parse_json_lines(r.out)}

    def connections_to(self, srv, local_host):
        return [x for x in srv.connections() if x["local"].startswith(local_host + ":")]

    # ------------------------------------------------------------------ rate
    def test_max_rate_is_shared_by_domains_whose_mx_share_a_suffix(self):
        dns = self.start_dns(mx=[("a.test", "mx1.shared.test", 10),
                                 ("b.test", "mx2.shared.test", 10)],
                             a={"mx1.shared.test": "127.0.0.2", "mx2.shared.test": "127.0.0.3"})
        srv = self.start_server(["127.0.0.2:0", "127.0.0.3:0"])
        d = self.mx_relayd(dns, srv.port, {
            "destination": [{"match": "mx:*.shared.test", "max_rate": "10/s"}]})
        count, rate, burst = 40, 10.0, 10
        ids = self.send_many(d, lambda i: f"r{i}@{'ab'[i % 2]}.test", count,
                             lambda i: f"rate {i}")
        # While they wait, relayctl -p says until when and why.
        self.wait_until(lambda: "rate limit 10/s of destination mx:*.shared.test: waits until"
                        in d.ctl("-p").out, 10, "relayctl -p to show the rate wait")
        dests = self.destinations(d)
        for dom in ("a.test", "b.test"):
            self.assertIn(dom, dests, dests)
            self.assertEqual(dests[dom]["policy"], "mx:*.shared.test", dests[dom])
            self.assertEqual(dests[dom]["rate"], "10/s", dests[dom])
        srv.wait_messages(count, timeout=30)
        self.wait_queue_empty(d, 10)
        times = sorted(m["time_received"] for m in srv.messages())
        self.assertEqual(len(times), count)
        self.assertEqual({r for m in srv.messages() for r in m["rcpt_to"]},
                         {f"r{i}@{'ab'[i % 2]}.test" for i in range(count)})
        # Over every window [t_i, t_j]: at most the burst plus the tokens made
        # meanwhile; slack: each domain's first message goes before its MX is
        # known (2), and 0.2 s of delivery-time jitter.
        worst = 0.0
        for i in range(count):
            for j in range(i, count):
                allowed = burst + 2 + (times[j] - times[i] + 0.2) * rate
                worst = max(worst, (j - i + 1) - allowed)
        self.assertLessEqual(worst, 0, f"more than the bucket allows: {times}")
        # Both domains together, not 10/s each: 40 messages need about 3 s.
        self.assertGreaterEqual(times[-1] - times[0], (count - burst - 2) / rate - 0.3, times)
        # Messages over the rate were deferred, not attempted.
        self.assertNoBounce(d)
        del ids


    # ------------------------------------------------------ DNS breaker
    def test_dns_servfail_opens_the_circuit_breaker_and_a_probe_closes_it(self):
        dns = self.start_dns(mx=[("ok.test", "mx.ok.test", 10)], a={"mx.ok.test": "127.0.0.2"},
                             servfail=["flaky.test"])
        srv = self.start_server(["127.0.0.2:0"])
        tmp = tempfile.TemporaryDirectory(prefix="relayd-breaker-")
        self.addCleanup(tmp.cleanup)
        events = os.path.join(tmp.name, "events.jsonl")
        metrics_port = h.free_port()
        d = self.mx_relayd(dns, srv.port, {"events.file": events,
                                           "metrics.listen": f"127.0.0.1:{metrics_port}"})
        count = 20
        ids = self.send_many(d, lambda i: f"r{i}@flaky.test", count, lambda i: f"servfail {i}")
        self.wait_until(lambda: self.destinations(d).get("flaky.test", {}).get("state")
                        == "suspended", 30, "flaky.test to be suspended")
        row = self.destinations(d)["flaky.test"]
        self.assertIn("circuit breaker: the DNS lookup for flaky.test failed 3 times in a row",
                      row["reason"], row)
        lookups = dns._fakes[0].queries
        # c-ares tries each query up to 3 times; one lookup per attempt, not per message.
        self.assertLess(lookups, count, f"{lookups} SERVFAIL queries for {count} messages")
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                      timeout=5).read().decode()
        self.assertIn('relayd_destinations_suspended{cause="dns"} 1', text)
        self.assertNoBounce(d)
        # DNS answers again: the probe at the backoff interval delivers everything.
        dns.restart(servfail=[], mx=[("flaky.test", "mx.ok.test", 10)])
        srv.wait_messages(count, timeout=40)
        self.wait_queue_empty(d, 20)
        self.assertEqual(len(ids), count)
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                      timeout=5).read().decode()
        self.assertIn('relayd_destinations_suspended{cause="dns"} 0', text)
        d.stop()
        with open(events) as f:
            states = [(e["type"], e["destination"]) for e in map(json.loads, f)
                      if e["type"] in ("suspended", "resumed")]
        self.assertEqual(states, [("suspended", "flaky.test"), ("resumed", "flaky.test")])

    # ----------------------------------------------------- reply rules
    def test_gmail_421_4_7_28_suspends_the_destination(self):
        dns = self.start_dns(
            mx=[("gm.test", "alt1.gmail-smtp-in.l.google.com", 10),
                ("other.test", "mx.other.test", 10)],
            a={"alt1.gmail-smtp-in.l.google.com": "127.0.0.4", "mx.other.test": "127.0.0.2"},
            zones=("test", "google.com"))
        srv = self.start_server(["127.0.0.2:0", "127.0.0.4:0"],
                                rules=[{"on": "RCPT", "local": "127.0.0.4", "reply": GMAIL_421}])
        d = self.mx_relayd(dns, srv.port)
        first = self.send(d, "u0@gm.test", "gmail 0")
        self.wait_until(lambda: self.destinations(d).get("gm.test", {}).get("state")
                        == "suspended", 15, "gm.test to be suspended")
        row = self.destinations(d)["gm.test"]
        self.assertEqual(row["policy"], "mx:*.google.com", row)
        self.assertIn("4.7.28", row["reason"], row)
        self.assertIn("built-in profile", row["reason"], row)
        # The built-in rule suspends for 30 minutes.
        self.assertAlmostEqual(row["until"], time.time() + 1800, delta=60)
        text = d.ctl("destinations")
        self.assertEqual(text.rc, 0, text)
        self.assertRegex(text.out, r"gm\.test\s+mx:\*\.google\.com\s.*suspended", text.out)
        self.assertIn("4.7.28", text.out)

        seen = len(self.connections_to(srv, "127.0.0.4"))
        more = [self.send(d, f"u{i}@gm.test", f"gmail {i}") for i in range(1, 4)]
        other = self.send(d, "x@other.test", "not google")
        self.wait_until(lambda: [m for m in srv.messages() if m["rcpt_to"] == ["x@other.test"]],
                        10, "mail for another destination")
        time.sleep(2)
        self.assertEqual(len(self.connections_to(srv, "127.0.0.4")), seen,
                         "no connection to a suspended destination")
        for qid in [first] + more:
            m = self.entry(d, qid)
            self.assertIsNotNone(m, qid)
            self.assertEqual(m["state"], "deferred", m)
        p = d.ctl("-p")
        self.assertIn("suspended until", p.out, p.out)
        self.assertIsNone(self.entry(d, other))

        # Resumed (the server takes mail again): everything goes.
        srv.set_rules([])
        r = d.ctl("resume", "mx:*.google.com")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("mx:*.google.com: resumed", r.out)
        self.wait_until(lambda: len([m for m in srv.messages()
                                     if m["rcpt_to"][0].endswith("@gm.test")]) >= 4,
                        15, "the suspended mail after resume")
        self.wait_queue_empty(d, 5)
        self.assertNoBounce(d)

    def test_a_configured_suspension_ends_by_itself(self):
        dns = self.start_dns(mx=[("sus.test", "mx.sus.test", 10)], a={"mx.sus.test": "127.0.0.2"})
        srv = self.start_server(["127.0.0.2:0"], rules=[
            {"on": "RCPT", "reply": "451 4.7.99 Slow down please", "times": 1}])
        d = self.mx_relayd(dns, srv.port, {"destination": [{
            "match": "sus.test",
            "rule": [{"reply": "^451 4\\.7\\.99 ", "action": "suspend", "for": "3s"}]}]})
        self.send(d, "a@sus.test", "suspend me")
        self.wait_until(lambda: self.destinations(d).get("sus.test", {}).get("state")
                        == "suspended", 10, "sus.test to be suspended")
        refused_at = min(x["t"] for conn in srv.connections() for x in conn["commands"]
                         if str(x["reply"]).startswith("451"))
        self.send(d, "b@sus.test", "during the suspension")
        srv.wait_messages(2, timeout=15)
        later = [conn["start"] - refused_at for conn in srv.connections()
                 if conn["start"] > refused_at]
        self.assertTrue(later, srv.connections())
        self.assertGreaterEqual(min(later), 2.7,
                                "the next connection waits for the end of the suspension")
        for m in srv.messages():
            self.assertGreaterEqual(m["time_received"] - refused_at, 2.7, m["rcpt_to"])
        self.wait_queue_empty(d, 5)

    # ------------------------------------------------------- circuit breaker
    def test_smarthost_535_suspends_the_route_after_one_attempt(self):
        srv = self.start_server(["127.0.0.1:0"], auth_users={USER: PASSWORD},
                                auth_mechanisms=["PLAIN"], auth_required=True)
        tmp = tempfile.mkdtemp(prefix="relayd-dest-")
        self.addCleanup(lambda: __import__("shutil").rmtree(tmp, True))
        pw = os.path.join(tmp, "relayhost.pw")
        with open(pw, "w") as f:
            f.write("a wrong password\n")
        metrics_port = h.free_port()
        d = self.smarthost_relayd(srv.port, {
            "delivery.relayhost_user": USER, "delivery.relayhost_password_file": pw,
            "queue.min_backoff": "30s", "queue.max_backoff": "60s",
            "metrics.listen": f"127.0.0.1:{metrics_port}"})
        dest = f"127.0.0.1:{srv.port}"
        ids = self.send_many(d, lambda i: f"r{i}@d{i}.example", 5, lambda i: f"breaker {i}")
        self.wait_until(lambda: self.destinations(d).get(dest, {}).get("state") == "suspended",
                        10, "the route to be suspended")
        time.sleep(1.5)
        fails = [a for a in srv.auth_log() if not a["ok"]]
        self.assertEqual(len(fails), 1, f"one AUTH attempt, not one per message: {srv.auth_log()}")
        self.assertEqual(srv.messages(), [])
        row = self.destinations(d)[dest]
        self.assertIn("circuit breaker", row["reason"], row)
        self.assertIn("535", row["reason"], row)
        self.assertEqual(row["queued"], 5, row)
        text = d.ctl("destinations")
        self.assertIn("circuit breaker", text.out, text.out)
        # The queue tells the truth: deferred, in -j, stats and the metric.
        for qid in ids:
            self.assertEqual(self.entry(d, qid)["state"], "deferred")
        stats = json.loads(d.ctl("stats", "--json").out)
        self.assertEqual((stats["deferred"], stats["active"]), (5, 0), stats)

        def metric_deferred():
            body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                          timeout=5).read().decode()
            for line in body.splitlines():
                if line.startswith('relayd_queue_messages{state="deferred"}'):
                    return float(line.split()[-1])
            return None
        self.wait_until(lambda: metric_deferred() == 5, 20, "relayd_queue_messages deferred 5")
        self.assertNoBounce(d)

        # Fix the password, SIGHUP re-reads it, resume delivers everything.
        with open(pw, "w") as f:
            f.write(PASSWORD + "\n")
        d.proc.send_signal(signal.SIGHUP)
        self.wait_until(lambda: "SIGHUP" in d.log(), 5, "SIGHUP handled")
        r = d.ctl("resume", dest)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("5 message(s)", r.out)
        srv.wait_messages(5, timeout=15)
        self.wait_queue_empty(d, 5)
        self.assertEqual(sorted(m["rcpt_to"][0] for m in srv.messages()),
                         sorted(f"r{i}@d{i}.example" for i in range(5)))
        self.assertNoBounce(d)

    def test_suspend_and_resume_by_hand(self):
        srv = self.start_server(["127.0.0.1:0"])
        d = self.smarthost_relayd(srv.port)
        dest = f"127.0.0.1:{srv.port}"
        r = d.ctl("suspend", dest, "--for", "1h")
        self.assertEqual(r.rc, 0, r)
        qid = self.send(d, "z@hand.example", "held back")
        self.wait_until(lambda: (self.entry(d, qid) or {}).get("state") == "deferred", 5,
                        "the message to wait deferred")
        self.assertEqual(srv.connections(), [])
        row = self.destinations(d)[dest]
        self.assertEqual(row["state"], "suspended", row)
        self.assertIn("relayctl", row["reason"], row)
        bad = d.ctl("resume", "nowhere.example")
        self.assertEqual(bad.rc, 1, bad)
        self.assertEqual(d.ctl("suspend").rc, 2)
        self.assertEqual(d.ctl("suspend", dest, "--for", "soon").rc, 2)
        r = d.ctl("resume", dest)
        self.assertEqual(r.rc, 0, r)
        srv.wait_messages(1, timeout=10)
        self.wait_queue_empty(d, 5)


if __name__ == "__main__":
    h.main()
