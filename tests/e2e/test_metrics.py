#!/usr/bin/env python3
"""Metrics and monitoring (issue 4, item 6; DESIGN.md "Metrics").

- The real relayd with [metrics] listen = "127.0.0.1:PORT": GET /metrics is 200
  text/plain version 0.0.4, `promtool check metrics` accepts it, every metric
  DESIGN.md lists is there with its type; relayd_messages_received_total grows
  by one per message sent with smtplib; a delivery to a closed port is counted
  as a deferred attempt of class "connect" and shows in the queue gauges; a
  smarthost that accepts one recipient and rejects another gives sent, failed,
  a dead letter, a bounce and a delivery-duration sample. Other paths 404,
  other methods 405. A taken metrics port is a start-up error.
- packaging/prometheus: `promtool check rules` and `promtool test rules`.
- packaging/grafana: valid dashboard JSON, a datasource variable, every
  expression parses (as a promtool recording rule) and uses only relayd's
  metrics (and `up`).

promtool comes from Debian's `prometheus` package (packaging/install-deps.sh);
without it only the promtool checks are skipped (each is its own ctest entry,
reported as skipped).
"""

import http.client
import json
import os
import re
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
import test_delivery_common as c  # noqa: E402

PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool not installed (Debian package 'prometheus'; packaging/install-deps.sh)"
RULES = os.path.join(h.REPO, "packaging", "prometheus", "relayd-alerts.yml")
RULES_TEST = os.path.join(h.REPO, "packaging", "prometheus", "relayd-alerts.test.yml")
DASHBOARD = os.path.join(h.REPO, "packaging", "grafana", "relayd-dashboard.json")

# Every metric relayd exports, with its type. DESIGN.md's list is REQUIRED.
METRICS = {
    "relayd_messages_received_total": "counter",
    "relayd_delivery_attempts_total": "counter",
    "relayd_deferrals_total": "counter",
    "relayd_dead_letters_total": "counter",
    "relayd_bounces_total": "counter",
    "relayd_delay_warnings_total": "counter",
    "relayd_smtp_rejections_total": "counter",
    "relayd_delivery_duration_seconds": "histogram",
    "relayd_queue_messages": "gauge",
    "relayd_queue_oldest_age_seconds": "gauge",
    "relayd_spool_bytes": "gauge",
    "relayd_spool_max_bytes": "gauge",
    "relayd_smtp_connections": "gauge",
    "relayd_in_flight_messages": "gauge",
    "relayd_start_time_seconds": "gauge",
    "relayd_dkim_key_dns_match": "gauge",  # only with [[dkim]] entries (test_dkim_ops.py)
    "relayd_tls_policy_results_total": "counter",  # test_mta_sts.py counts it
    "relayd_build_info": "gauge",
    "relayd_events_dropped_total": "counter",
    "relayd_events_outbox": "gauge",
    "relayd_events_webhook_posts_total": "counter",
    "relayd_destination_queued_recipients": "gauge",
    "relayd_destinations_suspended": "gauge",
    "relayd_destination_deferred_recipients": "gauge",
    "relayd_destination_attempts_total": "counter",
}
REQUIRED = [
    "relayd_messages_received_total", "relayd_delivery_attempts_total",
    "relayd_deferrals_total", "relayd_dead_letters_total", "relayd_bounces_total",
    "relayd_queue_messages", "relayd_queue_oldest_age_seconds",
    "relayd_delivery_duration_seconds", "relayd_spool_bytes", "relayd_spool_max_bytes",
    "relayd_smtp_connections",
]
# Series names a query may use: the metrics, a histogram's parts, and `up`.
SERIES = set(METRICS) | {"up"} | {
    f"{name}{suffix}" for name, t in METRICS.items() if t == "histogram"
    for suffix in ("_bucket", "_sum", "_count")}

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """Prometheus text -> ({name: type}, {(name, frozenset(labels)): float})."""
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            types[name] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            raise AssertionError(f"malformed sample line: {line!r}")
        labels = frozenset(LABEL_RE.findall(m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    return types, samples


def value(samples, name, **labels):
    """The sample's value, or None when the series is missing."""
    return samples.get((name, frozenset(labels.items())))


def http_request(port, path="/metrics", method="GET", body=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        conn.close()


def run_promtool(args, stdin=None, timeout=60):
    p = subprocess.run([PROMTOOL] + args, input=stdin, capture_output=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def metric_names(expr):
    """Series names used in a PromQL expression: relayd_* names and any name
    followed by a selector."""
    names = set(re.findall(r"\brelayd_[a-zA-Z0-9_]+", expr))
    names |= set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{", expr))
    return names


def dashboard_exprs(dash):
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))  # rows
    walk(dash.get("panels", []))
    return out


def grafana_to_promql(expr):
    return (expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
            .replace("$__range", "1h").replace("$job", ".*").replace("$instance", ".*"))


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def rule_exprs(path):
    """The expr: values of a rules file (block scalars included), no YAML parser."""
    exprs, cur, indent = [], None, None
    for line in read(path).splitlines():
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if m:
            if cur is not None:
                exprs.append("\n".join(cur))
            if m.group(2).strip() in ("|", ">", "|-", ">-"):
                cur, indent = [], len(m.group(1))
            else:
                exprs.append(m.group(2))
                cur = None
            continue
        if cur is not None:
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                exprs.append("\n".join(cur))
                cur = None
            else:
                cur.append(line.strip())
    if cur is not None:
        exprs.append("\n".join(cur))
    return exprs


class PackagingTest(unittest.TestCase):
    """The files in packaging/: no daemon needed."""

    @unittest.skipUnless(PROMTOOL, NO_PROMTOOL)
    def test_promtool_check_rules(self):
        rc, out = run_promtool(["check", "rules", RULES])
        self.assertEqual(rc, 0, out)
        self.assertIn("SUCCESS", out)

    @unittest.skipUnless(PROMTOOL, NO_PROMTOOL)
    def test_promtool_test_rules(self):
        rc, out = run_promtool(["test", "rules", RULES_TEST])
        self.assertEqual(rc, 0, out)
        self.assertIn("SUCCESS", out)

    def test_rules_cover_the_alerts_and_use_known_metrics(self):
        text, tests = read(RULES), read(RULES_TEST)
        alerts = ("RelaydDown", "RelaydDeadLettersGrowing", "RelaydOldestMessageTooOld",
                  "RelaydHighDeferralRate", "RelaydSpoolNearlyFull", "RelaydDkimKeyNotPublished",
                  "RelaydMailRefused452", "RelaydDeferralsLocalOrAuth", "RelaydDeferralsTls",
                  "RelaydRestartLoop", "RelaydTlsPolicyEnforcedFailures",
                  "RelaydDestinationSuspended")
        for alert in alerts:
            self.assertRegex(text, rf"alert:\s*{alert}\b")
            self.assertRegex(tests, rf"alertname:\s*{alert}\b", f"{alert} has no promtool test")
        self.assertEqual(set(re.findall(r"alert:\s*(\w+)", text)), set(alerts),
                         "every alert is listed here (and so has a test)")
        # Every alert points at its own section of docs/runbook.md.
        runbook = read(os.path.join(h.REPO, "docs", "runbook.md"))
        anchors = {re.sub(r"[^a-z0-9_-]", "", t.strip().lower().replace(" ", "-"))
                   for t in re.findall(r"(?m)^## (.+)$", runbook)}
        urls = re.findall(r'runbook_url:\s*"([^"]+)"', text)
        self.assertEqual(len(urls), len(re.findall(r"- alert:", text)), "one runbook_url per rule")
        for alert in alerts:
            url = f"/usr/share/doc/relayd/runbook.md#{alert.lower()}"
            self.assertIn(url, urls, f"{alert} has no runbook_url")
            self.assertIn(alert.lower(), anchors, f"docs/runbook.md has no section {alert}")
        exprs = rule_exprs(RULES)
        self.assertGreaterEqual(len(exprs), 5, exprs)
        for e in exprs:
            unknown = metric_names(e) - SERIES
            self.assertFalse(unknown, f"rule expression uses unknown metrics {unknown}: {e}")

    def test_dashboard(self):
        with open(DASHBOARD, encoding="utf-8") as f:
            dash = json.load(f)  # valid JSON
        self.assertIsInstance(dash.get("title"), str)
        self.assertGreaterEqual(dash.get("schemaVersion", 0), 36)
        variables = dash.get("templating", {}).get("list", [])
        ds_vars = [v for v in variables if v.get("type") == "datasource"
                   and v.get("query") == "prometheus"]
        self.assertTrue(ds_vars, "a Prometheus datasource template variable")
        ds_ref = "${" + ds_vars[0]["name"] + "}"

        ids = []
        for p in dash["panels"]:
            ids.append(p["id"])
            self.assertIn("gridPos", p, p["title"])
            self.assertEqual(p.get("datasource", {}).get("uid"), ds_ref, p["title"])
            for t in p.get("targets", []):
                self.assertEqual(t.get("datasource", {}).get("uid"), ds_ref, p["title"])
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")

        exprs = dashboard_exprs(dash)
        self.assertGreaterEqual(len(exprs), 8)
        used = set()
        for title, e in exprs:
            names = metric_names(e)
            unknown = names - SERIES
            self.assertFalse(unknown, f"panel {title!r} uses unknown metrics {unknown}: {e}")
            used |= names
        for name in ("relayd_queue_messages", "relayd_queue_oldest_age_seconds",
                     "relayd_delivery_attempts_total", "relayd_deferrals_total",
                     "relayd_dead_letters_total", "relayd_delivery_duration_seconds_bucket",
                     "relayd_smtp_connections", "relayd_spool_bytes", "relayd_spool_max_bytes"):
            self.assertIn(name, used, f"no panel shows {name}")
        self.assertTrue(any("histogram_quantile" in e for _, e in exprs))

    @unittest.skipUnless(PROMTOOL, NO_PROMTOOL)
    def test_dashboard_queries_parse(self):
        # Each query, with Grafana's variables filled in, as a recording rule:
        # `promtool check rules` parses it.
        with open(DASHBOARD, encoding="utf-8") as f:
            exprs = dashboard_exprs(json.load(f))
        lines = ["groups:", "  - name: dashboard", "    rules:"]
        for i, (_, e) in enumerate(exprs):
            lines.append(f"      - record: dashboard:query_{i}")
            lines.append(f"        expr: {json.dumps(grafana_to_promql(e))}")
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            f.write("\n".join(lines) + "\n")
        try:
            rc, out = run_promtool(["check", "rules", f.name])
        finally:
            os.unlink(f.name)
        self.assertEqual(rc, 0, out)


class MetricsEndpointTest(c.DeliveryTestCase):
    """The real daemon's /metrics."""

    def metrics_relayd(self, overrides=None, start=True, smarthost_port=None):
        port = h.free_port()
        cfg = {"metrics.listen": f"127.0.0.1:{port}"}
        cfg.update(overrides or {})
        if smarthost_port is not None:
            d = self.smarthost_relayd(smarthost_port, cfg, start=start)
        else:
            d = self.relayd(cfg, start=start)
        d.metrics_port = port
        if start:
            self.wait_metrics(d)
        return d

    def wait_metrics(self, d, timeout=10):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                return http_request(d.metrics_port)
            except OSError as e:
                last = e
                time.sleep(0.1)
        self.fail(f"no /metrics on 127.0.0.1:{d.metrics_port} after {timeout}s ({last!r}); "
                  "is the metrics endpoint wired into the daemon?")

    def scrape(self, d):
        status, headers, body = http_request(d.metrics_port)
        self.assertEqual(status, 200, body[:500])
        text = body.decode("utf-8")
        types, samples = parse_exposition(text)
        return text, types, samples

    def wait_for(self, d, what, pred, timeout=30):
        """Scrapes until pred(samples) holds; returns the samples."""
        deadline = time.monotonic() + timeout
        while True:
            _, _, samples = self.scrape(d)
            if pred(samples):
                return samples
            if time.monotonic() > deadline:
                relevant = {k: v for k, v in samples.items() if not k[0].endswith("_bucket")}
                self.fail(f"timed out after {timeout}s waiting for {what}; last scrape: "
                          f"{sorted(relevant.items())}")
            time.sleep(0.25)

    @unittest.skipUnless(PROMTOOL, NO_PROMTOOL)
    def test_promtool_check_metrics(self):
        d = self.metrics_relayd()
        status, _, body = http_request(d.metrics_port)
        self.assertEqual(status, 200)
        rc, out = run_promtool(["check", "metrics"], stdin=body)
        self.assertEqual(rc, 0, f"promtool check metrics:\n{out}\n---\n{body.decode()[:3000]}")

    def test_scrape_format_and_received_counter(self):
        d = self.metrics_relayd()
        status, headers, body = http_request(d.metrics_port)
        self.assertEqual(status, 200)
        self.assertEqual(headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8")
        self.assertEqual(int(headers.get("content-length", -1)), len(body))

        text, types, samples = self.scrape(d)
        for name in REQUIRED:
            self.assertIn(name, types, f"{name} missing from /metrics")
        for name, typ in METRICS.items():
            if name in types:
                self.assertEqual(types[name], typ, name)
        for result in ("sent", "deferred", "failed"):
            self.assertIsNotNone(value(samples, "relayd_delivery_attempts_total", result=result))
        for cls in ("4xx", "421_throttle", "connect", "dns", "tls", "timeout", "local"):
            self.assertIsNotNone(value(samples, "relayd_deferrals_total", **{"class": cls}), cls)
        for state in ("active", "deferred", "held", "dead"):
            self.assertIsNotNone(value(samples, "relayd_queue_messages", state=state), state)
        self.assertIsNotNone(value(samples, "relayd_smtp_connections",
                                   listener=f"127.0.0.1:{d.port}"),
                             "relayd_smtp_connections{listener=\"127.0.0.1:PORT\"} "
                             "(the [smtp] listen entry)")
        self.assertIsNotNone(value(samples, "relayd_delivery_duration_seconds_bucket", le="+Inf"))

        before = value(samples, "relayd_messages_received_total")
        with d.smtplib() as s:
            s.ehlo("client.test")
            s.sendmail("alice@src.test", ["bob@dst.test"],
                       h.make_message("metrics", "counted\r\n"))
            # While the session is open the listener has a connection.
            _, _, during = self.scrape(d)
            self.assertGreaterEqual(value(during, "relayd_smtp_connections",
                                          listener=f"127.0.0.1:{d.port}") or 0, 1)
        _, _, samples = self.scrape(d)
        self.assertEqual(value(samples, "relayd_messages_received_total"), before + 1)

        # Routing of the endpoint.
        self.assertEqual(http_request(d.metrics_port, "/")[0], 404)
        self.assertEqual(http_request(d.metrics_port, "/metrics", "POST", b"x")[0], 405)
        self.assertEqual(http_request(d.metrics_port, "/metrics", "HEAD")[0], 200)
        # Garbage does not hurt it.
        with socket.create_connection(("127.0.0.1", d.metrics_port), timeout=5) as s:
            s.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n")
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 400"))
        self.assertEqual(http_request(d.metrics_port)[0], 200)
        self.assertTrue(d.running())

    def test_deferred_delivery_and_queue_gauges(self):
        # The harness points delivery at a closed port: connection refused.
        d = self.metrics_relayd()
        _, _, s0 = self.scrape(d)
        self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"],
                                   h.make_message("deferred", "x\r\n")))
        connect0 = value(s0, "relayd_deferrals_total", **{"class": "connect"})
        self.wait_for(d, "a deferred attempt of class connect", lambda s: (
            value(s, "relayd_delivery_attempts_total", result="deferred") >
            value(s0, "relayd_delivery_attempts_total", result="deferred")
            and value(s, "relayd_deferrals_total", **{"class": "connect"}) > connect0))
        # The periodic spool scan updates the queue gauges.
        s = self.wait_for(d, "relayd_queue_messages{state=\"deferred\"} >= 1", lambda s: (
            (value(s, "relayd_queue_messages", state="deferred") or 0) >= 1))
        self.assertGreaterEqual(value(s, "relayd_spool_bytes"), 1)
        self.assertGreaterEqual(value(s, "relayd_spool_max_bytes"),
                                value(s, "relayd_spool_bytes"))
        s = self.wait_for(d, "relayd_queue_oldest_age_seconds > 0", lambda s: (
            (value(s, "relayd_queue_oldest_age_seconds") or 0) > 0))
        self.assertLess(value(s, "relayd_queue_oldest_age_seconds"), 600)

    def test_per_destination_series_are_capped_and_build_info(self):
        # [metrics] destinations_top = 1: the destination with most recipients
        # queued has its own series, the other adds up under "other".
        d = self.metrics_relayd({"metrics.destinations_top": 1})
        for rcpts in (["a1@big.test", "a2@big.test"], ["b@small.test"], ["c@tiny.test"]):
            self.assertQueued(h.submit(d.port, "alice@src.test", rcpts,
                                       h.make_message("dest", "x\r\n", rcpt=rcpts[0])))
        s = self.wait_for(d, "the per-destination gauges", lambda s: (
            value(s, "relayd_destination_queued_recipients", destination="big.test") == 2
            and value(s, "relayd_destination_queued_recipients", destination="other") == 2))
        self.assertIsNone(value(s, "relayd_destination_queued_recipients", destination="small.test"))
        s = self.wait_for(d, "deferred per destination", lambda s: (
            value(s, "relayd_destination_deferred_recipients", destination="big.test") == 2))
        names = {dict(labels).get("destination") for (name, labels) in s
                 if name.startswith("relayd_destination_")}
        self.assertEqual(names, {"big.test", "other"})
        # Every result is counted under one of those names.
        per_dest = sum(v for (name, labels), v in s.items()
                       if name == "relayd_destination_attempts_total"
                       and dict(labels).get("result") == "deferred")
        self.assertEqual(per_dest, value(s, "relayd_delivery_attempts_total", result="deferred"))
        self.assertGreaterEqual(per_dest, 3)
        self.assertEqual(value(s, "relayd_build_info", version="0.1.0"), 1)

    def test_sent_failed_dead_letter_and_bounce(self):
        srv = self.start_server(["127.0.0.1:0"],
                                [{"on": "RCPT", "match": "bad@", "reply": "550 5.1.1 No such user"}])
        d = self.metrics_relayd(smarthost_port=srv.port)
        _, _, s0 = self.scrape(d)
        self.send(d, "good@one.example", "good")
        self.send(d, "bad@two.example", "bad")

        def grew(s, name, **labels):
            return (value(s, name, **labels) or 0) > (value(s0, name, **labels) or 0)
        self.wait_for(d, "a sent and a failed attempt, a dead letter, a duration sample",
                      lambda s: (grew(s, "relayd_delivery_attempts_total", result="sent")
                                 and grew(s, "relayd_delivery_attempts_total", result="failed")
                                 and grew(s, "relayd_dead_letters_total", reason="rejected")
                                 and grew(s, "relayd_delivery_duration_seconds_count")))
        if PROMTOOL:
            status, _, body = http_request(d.metrics_port)
            rc, out = run_promtool(["check", "metrics"], stdin=body)
            self.assertEqual(rc, 0, out)
        self.wait_for(d, "relayd_queue_messages{state=\"dead\"} >= 1", lambda s: (
            (value(s, "relayd_queue_messages", state="dead") or 0) >= 1))
        self.wait_for(d, "relayd_bounces_total to grow (the DSN to the sender of the rejected "
                      "message must call metrics::bounce())",
                      lambda s: grew(s, "relayd_bounces_total"))

    def test_sigterm_with_an_idle_scrape_connection(self):
        # A half-sent request must not hold up the graceful stop.
        d = self.metrics_relayd()
        with socket.create_connection(("127.0.0.1", d.metrics_port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
            time.sleep(0.2)
            t0 = time.monotonic()
            self.assertEqual(d.stop(timeout=8), 0)
            self.assertLess(time.monotonic() - t0, 5)

    def test_metrics_port_in_use_is_a_startup_error(self):
        d = self.metrics_relayd(start=False)
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", d.metrics_port))
            blocker.listen()
            d.start(wait=False)
            try:
                rc = d.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.fail("relayd keeps running although its metrics port is taken")
        self.assertNotEqual(rc, 0)
        self.assertIn(f"127.0.0.1:{d.metrics_port}", d.log())


if __name__ == "__main__":
    h.main()
