#!/usr/bin/env python3
"""10,000 messages from Postfix's smtp-source (20 sessions) through relayd (MX
mode: dnsmasq sends sink.test to 127.0.0.2) all arrive at Postfix's smtp-sink,
counted by smtp-sink itself (-c: its running "mesg=N" counter), exactly once,
over a few reused connections (its "sess=N" counter); relayd logs one
status=sent line and one "removed" line per accepted message, and the queue
ends empty (relayctl -j prints nothing)."""

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

SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
N = int(os.environ.get("RELAYD_LOAD_MESSAGES", "10000"))
SENDER, RCPT = "loader@src.test", "sink@sink.test"
SINK_HOST = "127.0.0.2"
COUNTER_RE = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")


class DeliveryLoadTest(c.DeliveryTestCase):
    def start_sink(self):
        tmp = tempfile.mkdtemp(prefix="relayd-sink-")
        self.addCleanup(shutil.rmtree, tmp, True)
        out_path = os.path.join(tmp, "sink.out")
        port = h.free_port(SINK_HOST)
        args = [SMTP_SINK, "-c"]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]  # smtp-sink refuses to run as root without -u
        args += [f"{SINK_HOST}:{port}", "1024"]
        out = open(out_path, "wb")
        p = h.spawn(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        self.addCleanup(lambda: (p.kill(), p.wait()))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((SINK_HOST, port), timeout=1).close()
                break
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    with open(out_path, "rb") as f:
                        self.fail(f"smtp-sink did not start: {f.read()[-500:]!r}")
                time.sleep(0.05)
        return p, port, out_path

    @staticmethod
    def sink_count(path):
        """smtp-sink's latest counters -> (sessions, quits, messages)."""
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 4096))
            last = COUNTER_RE.findall(f.read())
        return tuple(int(x) for x in last[-1]) if last else (0, 0, 0)

    def test_10000_to_smtp_sink(self):
        for tool in (SMTP_SOURCE, SMTP_SINK):
            if not os.path.exists(tool):
                self.skipTest(f"{tool} not installed")
        sink, port, sink_out = self.start_sink()
        # The probe connection of start_sink counts as one session.
        dns = self.start_dns(mx=[("sink.test", "mx.sink.test", 10)],
                             a={"mx.sink.test": SINK_HOST}, ttl=300)
        d = self.mx_relayd(dns, port, {"smtp.idle_timeout": "60s",
                                       "delivery.connect_timeout": "10s",
                                       "delivery.command_timeout": "60s"})
        t0 = time.time()
        p = h.spawn([SMTP_SOURCE, "-s", "20", "-m", str(N), "-l", "1024", "-M", "loadgen.test",
                     "-f", SENDER, "-t", RCPT, f"127.0.0.1:{d.port}"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out, _ = p.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            self.fail(f"smtp-source did not finish in 150 s: {out[-2000:]!r}")
        t_accepted = time.time() - t0
        self.assertEqual(p.returncode, 0, f"smtp-source failed:\n{out.decode(errors='replace')[-3000:]}")

        try:
            self.wait_until(lambda: self.sink_count(sink_out)[2] >= N, 150,
                            f"{N} messages at smtp-sink", interval=0.5)
        except AssertionError:
            self.fail(f"smtp-sink counted {self.sink_count(sink_out)[2]} of {N} messages "
                      f"after {time.time() - t0:.0f}s")
        t_delivered = time.time() - t0
        self.wait_until(lambda: d.log().count(": removed") >= N, 30, "all 'removed' lines",
                        interval=0.5)
        r = d.ctl("-j")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.out, "", "relayctl -j prints nothing: the queue is empty")
        time.sleep(1)
        sessions, _, messages = self.sink_count(sink_out)
        self.assertEqual(messages, N, "smtp-sink received each message once")
        # Connections are reused: at most concurrency_per_destination (20) at a
        # time, each carrying many messages (plus start_sink's probe). A
        # connection that closed whenever another took its job made thousands.
        self.assertLessEqual(sessions, 2 * 20 + 1, f"smtp-sink sessions for {N} messages")

        log = d.log()
        accepted = {e[0] for e in h.ACCEPT_LOG_RE.findall(log) if e[1] == SENDER}
        self.assertEqual(len(accepted), N, "accept lines")
        atts = c.parse_attempts(log)
        sent = [a.qid for a in atts if a.status == "sent"]
        self.assertEqual(len(sent), N, "one status=sent line per message")
        self.assertEqual(set(sent), accepted)
        deferred = [a for a in atts if a.status == "deferred"]
        self.assertEqual([a for a in atts if a.status == "bounced"], [])
        for a in atts[:50]:
            self.assertEqual(a.rcpt, RCPT)
            self.assertRegex(a.relay, c.relay_re(re.escape("mx.sink.test"), SINK_HOST, port))
        self.assertEqual(set(c.REMOVED_RE.findall(log)), accepted)
        print(f"\n{N} messages: accepted in {t_accepted:.1f}s, all at smtp-sink after "
              f"{t_delivered:.1f}s ({N / t_delivered:.0f}/s end to end); "
              f"{len(deferred)} deferrals on the way", file=sys.stderr)
        self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    h.main()
