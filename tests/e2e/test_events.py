#!/usr/bin/env python3
"""[events]: JSON lines per state change, and the webhook's durable outbox.

- The event file of one run with a scripted smarthost: a message delivered at
  once, one deferred (451) then delivered, one refused (550: bounced, then its
  non-delivery notice is received and delivered), one from <> refused (dead:
  nobody to tell), one deferred until max_lifetime (expired). Every state
  change appears exactly once, in order per message, with the fields an
  operator ships (queue ID, Message-ID, sender, recipient, destination,
  reply, attempt, submitter), and it matches relayd's own status= log lines.
- The webhook: down (nothing listens) while mail flows, relayd killed with
  kill -9, started again, then a local HTTP server that first answers 503 and
  then 200: it receives every event of the file (at least once, deduplicated
  by event_id, in order per message), and later events after a graceful
  restart too; nothing stays in the outbox.
- Local submissions: sendmail through the [local] socket, and through the
  maildrop directory while relayd is down (imported at the next start): each
  "received" event names the submitting user (uid and login name).
- relayctl health: OK (exit 0) with an empty queue, WARNING (1) and CRITICAL
  (2) with a deferred message past thresholds given as flags, CRITICAL (2)
  when relayd does not answer.
"""

import http.server
import json
import os
import pwd
import re
import subprocess
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402


SENDMAIL_BIN = os.environ.get("SENDMAIL_BIN") or os.path.join(h.REPO, "build/release/cli/sendmail")


def read_events(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def by_message(events):
    out = {}
    for e in events:
        out.setdefault(e["queue_id"], []).append(e)
    return out


class Webhook:
    """A local HTTP server that records the JSON arrays POSTed to it; it answers
    `fail_first` requests with 503 before it takes any."""

    def __init__(self, port, fail_first=0):
        self.batches = []
        self.requests = 0
        self.fail_first = fail_first
        self.lock = threading.Lock()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hook.lock:
                    hook.requests += 1
                    refuse = hook.requests <= hook.fail_first
                    if not refuse:
                        hook.batches.append((self.headers.get("Content-Type"), json.loads(body)))
                self.send_response(503 if refuse else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self):
        with self.lock:
            return [e for _, batch in self.batches for e in batch]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class EventsTest(c.DeliveryTestCase):
    def scripted_server(self):
        return self.start_server(["127.0.0.1:0"], [
            {"on": "RCPT", "match": "later@dst.test", "reply": "451 4.3.0 Try again later",
             "times": 1},
            {"on": "RCPT", "match": "never@dst.test", "reply": "451 4.3.0 Not today"},
            {"on": "RCPT", "match": "bad@dst.test", "reply": "550 5.1.1 No such user"},
        ])

    def run_scenario(self, d):
        """Sends the five messages -> {name: (qid, message-id)}."""
        sent = {}
        for name, sender, rcpt in [("now", c.SENDER, "now@dst.test"),
                                   ("later", c.SENDER, "later@dst.test"),
                                   ("bad", c.SENDER, "bad@dst.test"),
                                   ("dead", "", "bad@dst.test"),
                                   ("never", c.SENDER, "never@dst.test")]:
            mid = f"<{name}.{time.time_ns()}@src.test>"
            msg = h.make_message(name, f"{name}\r\n", extra_headers=(f"Message-ID: {mid}",),
                                 sender=sender or "mailer-daemon@src.test", rcpt=rcpt)
            qid = self.assertQueued(h.submit(d.port, sender, [rcpt], msg), name)
            sent[name] = (qid, mid)
        return sent

    def assertScenario(self, d, sent, events):
        """The event sequence of every message of run_scenario()."""
        per = by_message(events)
        ids = [e["event_id"] for e in events]
        self.assertEqual(len(ids), len(set(ids)), "event_id is unique")
        types = {qid: [e["type"] for e in evs] for qid, evs in per.items()}
        q = {name: qid for name, (qid, _) in sent.items()}
        self.assertEqual(types[q["now"]], ["received", "delivered"], per[q["now"]])
        self.assertEqual(types[q["later"]], ["received", "deferred", "delivered"], per[q["later"]])
        self.assertEqual(types[q["bad"]], ["received", "bounced"], per[q["bad"]])
        self.assertEqual(types[q["dead"]], ["received", "dead"], per[q["dead"]])
        never = types[q["never"]]
        self.assertEqual(never[0], "received", never)
        self.assertEqual(never[-1], "expired", never)
        self.assertGreaterEqual(len(never), 3, never)
        self.assertEqual(set(never[1:-1]), {"deferred"}, never)
        # The two notices (for "bad" and "never") are messages of their own.
        notices = [qid for qid in per if qid not in q.values()]
        self.assertEqual(len(notices), 2, per)
        for n in notices:
            self.assertEqual(types[n], ["received", "delivered"], per[n])
            self.assertEqual(per[n][0]["submitter"], "relayd")
            self.assertEqual(per[n][0]["sender"], "")
        # Fields.
        for name, (qid, mid) in sent.items():
            for e in per[qid]:
                self.assertEqual(e["message_id"], mid, e)
                self.assertEqual(e["submitter"], "smtp 127.0.0.1", e)
                self.assertEqual(e["sender"], "" if name == "dead" else c.SENDER, e)
                if e["type"] != "received":
                    self.assertEqual(e["recipient"], f"{name if name != 'dead' else 'bad'}@dst.test", e)
                    self.assertIn("127.0.0.1", e["destination"], e)
                    self.assertRegex(e["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        later = per[q["later"]]
        self.assertIn("451 4.3.0 Try again later", later[1]["reply"])
        self.assertEqual((later[1]["attempt"], later[2]["attempt"]), (1, 2), later)
        self.assertEqual(later[1]["status"], "4.3.0")
        self.assertIn("550 5.1.1 No such user", per[q["bad"]][1]["reply"])
        self.assertEqual(per[q["bad"]][1]["status"], "5.1.1")
        # Exactly once: one event per status= log line of relayd, in the same order.
        for qid, evs in per.items():
            logged = [a.status for a in self.attempts(d, qid=qid)]
            delivery = [e["type"] for e in evs if e["type"] != "received"]
            want = ["sent" if t == "delivered" else "deferred" if t == "deferred" else "bounced"
                    for t in delivery]
            self.assertEqual(logged, want, f"{qid}: log {logged} vs events {delivery}")

    def test_event_file_has_every_state_change_once_in_order(self):
        srv = self.scripted_server()
        d = self.smarthost_relayd(srv.port, {"queue.max_lifetime": "6s"}, start=False)
        path = os.path.join(d.dir, "events.jsonl")
        d.reconfigure({"events.file": path})
        d.start()
        sent = self.run_scenario(d)
        self.wait_queue_empty(d, 40)
        self.wait_until(lambda: len(read_events(path)) >= 5 * 2 + 2 * 2 + 2, 5, "the last events")
        time.sleep(0.5)  # nothing more may come
        self.assertScenario(d, sent, read_events(path))

    def test_webhook_gets_every_event_after_an_outage_and_kill_9(self):
        srv = self.scripted_server()
        hook_port = h.free_port()
        d = self.smarthost_relayd(srv.port, {"queue.max_lifetime": "6s"}, start=False)
        path = os.path.join(d.dir, "events.jsonl")
        d.reconfigure({"events.file": path,
                       "events.webhook": f"http://127.0.0.1:{hook_port}/relayd/events"})
        d.start()
        sent = self.run_scenario(d)
        self.wait_queue_empty(d, 40)
        self.wait_until(lambda: len(read_events(path)) >= 16, 5, "the last events in the file")
        self.wait_until(lambda: "events.webhook 127.0.0.1:" in d.log(), 10,
                        "the log line about the webhook being down")
        d.kill9()
        d.start()
        waiting = [int(n) for n in re.findall(r"\((\d+) events in the outbox\)", d.log())]
        self.assertGreaterEqual(waiting[-1], 16, "the outbox kept the events across kill -9")
        hook = Webhook(hook_port, fail_first=2)
        self.addCleanup(hook.stop)
        file_events = read_events(path)
        want = {e["event_id"] for e in file_events}
        self.wait_until(lambda: want <= {e["event_id"] for e in hook.events()}, 30,
                        "every event at the webhook")
        got = hook.events()
        self.assertGreaterEqual(hook.requests, 3, "503 answers are retried")
        self.assertTrue(all(ct == "application/json" for ct, _ in hook.batches))
        # At least once: repeats only of the same event; in order per message.
        seen, unique = set(), []
        for e in got:
            if e["event_id"] not in seen:
                seen.add(e["event_id"])
                unique.append(e)
        self.assertEqual(seen, want, "the webhook got exactly the file's events")
        for qid, evs in by_message(file_events).items():
            self.assertEqual([e["event_id"] for e in by_message(unique)[qid]],
                             [e["event_id"] for e in evs], f"order of {qid}")
        self.assertScenario(d, sent, unique)
        # A graceful restart with the webhook up: the next message's events arrive too.
        d.stop()
        d.start()
        mid = f"<after.{time.time_ns()}@src.test>"
        qid = self.send(d, "after@dst.test", subject="after", extra_headers=(f"Message-ID: {mid}",))
        self.wait_until(lambda: [e["type"] for e in hook.events() if e["queue_id"] == qid]
                        == ["received", "delivered"], 15, "the events of the message after restart")
        self.assertEqual(len(read_events(path)), len(file_events) + 2)

    def test_local_submitter_via_socket_and_maildrop(self):
        if not os.access(SENDMAIL_BIN, os.X_OK):
            self.skipTest(f"sendmail is not built ({SENDMAIL_BIN})")
        srv = self.scripted_server()
        d = self.smarthost_relayd(srv.port, start=False)
        path = os.path.join(d.dir, "events.jsonl")
        d.reconfigure({"events.file": path})
        d.start()
        uid = os.getuid()
        user = pwd.getpwuid(uid).pw_name

        def sendmail(subject):
            mid = f"<{subject}.{time.time_ns()}@src.test>"
            msg = f"To: local@dst.test\nSubject: {subject}\nMessage-ID: {mid}\n\nhi\n"
            p = subprocess.run([SENDMAIL_BIN, "-C", d.config_path, "-t"], input=msg.encode(),
                               capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 0, p)
            return mid

        def received(mid):
            return [e for e in read_events(path) if e["type"] == "received"
                    and e["message_id"] == mid]

        by_socket = sendmail("socket")
        evs = self.wait_until(lambda: received(by_socket), 10, "the socket submission's event")
        self.assertRegex(evs[0]["submitter"], rf"^local uid={uid} user={re.escape(user)}\b")
        d.stop()
        by_drop = sendmail("maildrop")  # relayd is down: the drop directory
        d.start()
        evs = self.wait_until(lambda: received(by_drop), 15, "the imported drop file's event")
        self.assertEqual(len(evs), 1, evs)
        self.assertEqual(evs[0]["submitter"], f"local uid={uid} user={user}")
        self.wait_queue_empty(d, 20)
        for mid in (by_socket, by_drop):
            self.wait_until(lambda: [e["type"] for e in read_events(path) if e["message_id"] == mid]
                            == ["received", "delivered"], 10, f"the events of {mid}")

    def test_health_exit_codes(self):
        d = self.relayd()  # the harness's relayhost is a closed port: mail is deferred
        r = h.run_relayctl(["-S", d.socket_path, "health"])
        self.assertEqual(r.rc, 0, r)
        self.assertRegex(r.out, r"^RELAYD OK - spool [0-9.]+% used, oldest 0s, 0 queued, "
                                r"0 deferred, 0 dead \| ")
        self.assertEqual(len(r.out.splitlines()), 1, r)
        self.send(d, "x@dst.test")
        self.wait_until(lambda: any(m["state"] == "deferred" for m in d.queue()), 15,
                        "the message deferred")
        r = h.run_relayctl(["-S", d.socket_path, "health", "--deferred-warn", "1",
                            "--deferred-crit", "5"])
        self.assertEqual(r.rc, 1, r)
        self.assertRegex(r.out, r"^RELAYD WARNING - 1 deferred \(")
        time.sleep(2.1)
        r = h.run_relayctl(["-S", d.socket_path, "health", "--age-warn", "1s",
                            "--age-crit", "2s"])
        self.assertEqual(r.rc, 2, r)
        self.assertRegex(r.out, r"^RELAYD CRITICAL - oldest message \d+s old")
        r = h.run_relayctl(["-S", d.socket_path, "health", "--age-warn", "5s",
                            "--age-crit", "2s"])
        self.assertEqual(r.rc, 2, r)  # usage
        self.assertIn("--age-warn is above --age-crit", r.err)
        d.stop()
        r = h.run_relayctl(["-S", d.socket_path, "health"])
        self.assertEqual(r.rc, 2, r)
        self.assertRegex(r.out, r"^RELAYD CRITICAL - relayd does not answer")


if __name__ == "__main__":
    h.main()
