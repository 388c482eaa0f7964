#!/usr/bin/env python3
"""Live reload (SIGHUP and `relayctl reload`) and logs for mail admins.

- SIGHUP with a lower queue.min_backoff moves the next attempt of mail that was
  already deferred under the old one (relayctl -j), and the log says so.
- A broken file (TOML syntax, then an unknown key) keeps the running
  configuration: the daemon still accepts mail, the reason names the file and
  line, relayd_config_last_reload_successful is 0; the fixed file makes it 1
  and moves the success timestamp.
- `relayctl reload` prints what changed (exit 0) or the daemon's reason (exit 1);
  a new relayhost takes the mail deferred under the old one.
- A changed listener is reported as needing a restart; the old one keeps serving.
- [log] level = "warning" hides the info lines until a reload sets "info".
- With JOURNAL_STREAM naming stderr every line starts with <N> (its syslog
  priority) and has no timestamp/PID of our own; the accepted-message line
  carries message-id=<...>.
"""

import http.client
import os
import re
import signal
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402

RELOAD_OK = "relayd_config_last_reload_successful"
RELOAD_TS = "relayd_config_last_reload_success_timestamp_seconds"


def scrape(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode("utf-8")
    finally:
        conn.close()
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


class ReloadTest(c.DeliveryTestCase):
    def start(self, overrides=None, **kw):
        port = h.free_port()
        cfg = {"metrics.listen": f"127.0.0.1:{port}"}
        cfg.update(overrides or {})
        d = self.relayd(cfg, **kw)
        d.metrics_port = port
        return d

    def wait_metric(self, d, name, value, timeout=10):
        return self.wait_until(lambda: scrape(d.metrics_port).get(name) == value, timeout,
                               f"{name} == {value} (last: {scrape(d.metrics_port).get(name)})")

    def accept(self, d, subject="hello", extra_headers=()):
        msg = h.make_message(subject, "body\n", extra_headers=extra_headers)
        return self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"], msg), subject)

    def hup(self, d):
        d.proc.send_signal(signal.SIGHUP)

    def log_after(self, d, mark):
        text = d.log()
        return text[text.rfind(mark):] if mark in text else ""

    # ------------------------------------------------------------------ retry

    def test_sighup_min_backoff_moves_already_deferred_mail(self):
        d = self.start({"queue.min_backoff": "1h", "queue.max_backoff": "2h"})
        qid = self.accept(d)

        def deferred():
            m = next((m for m in d.queue() if m["id"] == qid), None)
            return m if m and m["recipients"][0]["attempts"] >= 1 else None
        m = self.wait_until(deferred, 15, "the first (refused) attempt")
        seen = time.time()  # the attempt was made before this
        r = m["recipients"][0]
        self.assertGreater(r["next_attempt"], time.time() + 3000, m)  # 1h under the old file

        d.reconfigure({"queue.min_backoff": "20s"})
        self.hup(d)
        moved = self.wait_until(
            lambda: (x := deferred()) and x["recipients"][0]["next_attempt"] < time.time() + 60 and x,
            10, "the next attempt to move under min_backoff 20s")
        r2 = moved["recipients"][0]
        # The last attempt + the new backoff (20 s).
        self.assertLessEqual(r2["next_attempt"], seen + 21, moved)
        self.assertGreaterEqual(r2["next_attempt"], seen - 5, moved)
        log = d.log()
        self.assertRegex(log, r"reload: 1 deferred message\(s\) rescheduled for min_backoff 20s")
        self.assertIn(RELOAD_OK + " 1", "\n".join(f"{k} {v:g}" for k, v in scrape(d.metrics_port).items()))

    def test_new_relayhost_takes_mail_already_deferred(self):
        srv = self.start_server(["127.0.0.1:0"])
        d = self.start({"queue.min_backoff": "1h", "queue.max_backoff": "2h"})
        qid = self.accept(d, "to the new relayhost")
        self.wait_until(lambda: self.attempts(d, qid, status="deferred"), 15, "the refused attempt")
        d.reconfigure({"delivery.relayhost": f"[127.0.0.1]:{srv.port}"})
        r = d.ctl("reload")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("changed: delivery", r.out)
        self.assertEqual(d.ctl("-f").rc, 0)
        self.wait_until(lambda: srv.messages(), 15, "the delivery through the new relayhost")
        self.wait_queue_empty(d, 10)

    # ------------------------------------------------------------ a bad file

    def test_broken_file_keeps_the_running_configuration(self):
        d = self.start()
        self.wait_metric(d, RELOAD_OK, 1)
        started_ts = scrape(d.metrics_port)[RELOAD_TS]
        with open(d.config_path) as f:
            good = f.read()

        # TOML syntax error on line 2.
        with open(d.config_path, "w") as f:
            f.write('hostname = "relay.test"\n[queue\nmin_backoff = "1s"\n')
        self.hup(d)
        self.wait_metric(d, RELOAD_OK, 0)
        self.wait_until(lambda: "reload failed" in d.log(), 5, "the reload failure in the log")
        self.assertRegex(d.log(), r"SIGHUP: reload failed, the running configuration stays: " +
                         re.escape(d.config_path) + r":2:\d+: ")
        self.assertTrue(d.running())
        # Still accepting, with the old limits: max_message_size 1M of the good file.
        self.accept(d, "after a bad reload")
        big = h.make_message("too big", ("x" * 99 + "\n") * (11 * 1024))  # 1.1M
        code, _, stage = h.submit(d.port, "alice@src.test", ["bob@dst.test"], big)
        self.assertEqual((code, stage), (552, "data"), "the running max_message_size stays 1M")

        # relayctl reload answers with the daemon's reason (through -S: the
        # file relayctl -c would read is the broken one).
        r = h.run_relayctl(["-S", d.socket_path, "reload"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn(f"{d.config_path}:2:", r.err)

        # An unknown key: "FILE: KEY: ..." from the daemon, still nothing changed.
        with open(d.config_path, "w") as f:
            f.write("no_such_key = 1\n" + good)
        r = h.run_relayctl(["-S", d.socket_path, "reload"])
        self.assertEqual(r.rc, 1, r)
        self.assertIn(f"{d.config_path}: no_such_key", r.err)
        self.assertEqual(scrape(d.metrics_port)[RELOAD_OK], 0)

        # Fixed: reload succeeds, the metric is 1 and the timestamp moves.
        with open(d.config_path, "w") as f:
            f.write(good)
        time.sleep(1.1)
        r = d.ctl("reload")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("reloaded", r.out)
        samples = scrape(d.metrics_port)
        self.assertEqual(samples[RELOAD_OK], 1)
        self.assertGreater(samples[RELOAD_TS], started_ts)

    def test_relayctl_reload_reports_what_changed(self):
        d = self.start()
        d.reconfigure({"smtp.max_message_size": "2M"})
        r = d.ctl("reload")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("changed: smtp", r.out)
        # The new limit is in force for the next session.
        msg = h.make_message("1.5M", ("x" * 99 + "\n") * (15 * 1024))
        self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"], msg), "1.5M")

    def test_changed_listener_needs_a_restart(self):
        d = self.start()
        old_port = d.port
        d.reconfigure({"smtp.listen": [f"127.0.0.1:{h.free_port()}"]})
        r = d.ctl("reload")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("restart needed for: smtp.listen", r.out)
        self.assertRegex(d.log(), r"smtp\.listen changed: restart needed")
        # The running listener keeps serving.
        self.assertQueued(h.submit(old_port, "alice@src.test", ["bob@dst.test"],
                                   h.make_message("still here", "x\n")), "old listener")

    # ------------------------------------------------------------------- logs

    def test_log_level_setting_applies_on_reload(self):
        d = self.start({"log.level": "warning"})
        qid = self.accept(d, "quiet")
        time.sleep(0.3)
        self.assertNotIn(f"{qid}: from=<", d.log())
        d.reconfigure({"log.level": "info"})
        self.assertEqual(d.ctl("reload").rc, 0)
        qid2 = self.accept(d, "loud")
        self.wait_until(lambda: f"{qid2}: from=<" in d.log(), 5, "the accepted line at info")

    def test_journal_priorities_and_message_id(self):
        d = self.start(start=False)
        open(d.log_path, "ab").close()
        st = os.stat(d.log_path)
        d.extra_env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        d.start()
        mid = "<reload-test.1@src.test>"
        qid = self.accept(d, "with id", extra_headers=[f"Message-ID: {mid}"])
        # A warning: a broken file on SIGHUP logs an error line.
        with open(d.config_path, "a") as f:
            f.write("\n[queue\n")
        self.hup(d)
        self.wait_until(lambda: "reload failed" in d.log(), 5, "the reload failure")
        lines = [l for l in self.log_after(d, "==== start #1").splitlines()[1:] if l]
        self.assertTrue(lines)
        for l in lines:
            self.assertRegex(l, r"^<[2-7]>\S", f"a line without its priority prefix:\n{l}")
            self.assertNotRegex(l, r"^<\d>\d{4}-\d\d-\d\dT", f"our own timestamp under journald:\n{l}")
            self.assertNotIn(f"relayd[{d.proc.pid}]", l)
        accepted = [l for l in lines if l.startswith(f"<6>{qid}: from=<")]
        self.assertEqual(len(accepted), 1, lines)
        self.assertIn(f"message-id={mid}", accepted[0])
        self.assertTrue(any(l.startswith("<3>") and "reload failed" in l for l in lines), lines)

    def test_message_id_without_journal_and_for_generated_ids(self):
        d = self.start()
        qid = self.accept(d, "no id of its own")
        self.wait_until(lambda: f"{qid}: from=<" in d.log(), 5, "the accepted line")
        line = next(l for l in d.log().splitlines() if f"{qid}: from=<" in l)
        # relayd added the Message-ID: the log names the one it stored.
        _, stored = d.show(qid)
        m = re.search(rb"(?im)^Message-ID:\s*(<[^>]+>)", stored)
        self.assertIsNotNone(m, stored[:500])
        self.assertIn(f"message-id={m.group(1).decode()}", line)
        self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\S+ relayd\[\d+\] info: ")


if __name__ == "__main__":
    h.main()
