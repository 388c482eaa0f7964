#!/usr/bin/env python3
"""sendmail throughput: N messages piped through relayd's sendmail and through
Postfix's sendmail (postdrop + pickup), in the same run, on the same machine.

    tests/bench/sendmail-throughput.py [--messages N] [--parallel P] [--rounds R] [--size BYTES]

Each message is one sendmail process, as cron, PHP or a script starts it:
`sendmail -f sender@bench.test rcpt@bench.test < message`. P callers run at
once, started by tests/bench/sendmail-driver.c (compiled here with cc:
posix_spawn + a pipe per process, so both MTAs pay the same minimal start-up
cost); `--driver python` starts them from Python's subprocess instead (the
first runs of issue 12, whose fork+exec cost compresses the ratio). Three modes, each measured per round for both MTAs where it applies:

  up       the daemon runs: "accepted" is N / the time until the last sendmail
           exited 0; "delivered" is N / the time until the sink counted N.
  down     relayd is stopped: sendmail writes the drop directory (Postfix's
           sendmail always writes its maildrop; its master is stopped too, so
           both sides only write files); "accepted" as above, then the daemon
           starts and "delivered" is N / the time from the start until the sink
           counted N (import, queue, delivery).

Both relay to an smtp-sink on loopback without TLS. Must run as root (Postfix's
master). Prints one line per measurement and a Markdown table of medians and
the relayd/Postfix ratios; times are wall clock, so compare ratios, not rates
across machines.
"""

import argparse
import concurrent.futures
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("BUILD_DIR", os.path.join(REPO, "build/release"))
RELAYD = os.environ.get("RELAYD_BIN", os.path.join(BUILD, "relayd/relayd"))
RELAYCTL = os.environ.get("RELAYCTL_BIN", os.path.join(BUILD, "cli/relayctl"))
SENDMAIL = os.environ.get("SENDMAIL_BIN", os.path.join(BUILD, "cli/sendmail"))
POSTFIX_SENDMAIL = "/usr/sbin/sendmail.postfix" if os.path.exists(
    "/usr/sbin/sendmail.postfix") else "/usr/sbin/sendmail"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class Sink:
    """smtp-sink counting messages (it rewrites "mesg=N" on every message)."""

    def __init__(self, work):
        self.port = free_port()
        self.log = os.path.join(work, f"sink-{self.port}.log")
        self.proc = subprocess.Popen(["smtp-sink", "-c", "-u", "nobody", f"127.0.0.1:{self.port}",
                                      "1024"], stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        if not wait_port(self.port, 5):
            raise SystemExit("smtp-sink did not start")

    def count(self):
        try:
            with open(self.log, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 200))
                m = re.findall(rb"mesg=(\d+)", f.read())
                return int(m[-1]) if m else 0
        except OSError:
            return 0

    def wait_for(self, n, timeout=600):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.count() >= n:
                return time.monotonic()
            time.sleep(0.02)
        raise SystemExit(f"sink counted {self.count()} of {n} within {timeout}s")

    def stop(self):
        self.proc.terminate()


class Relayd:
    def __init__(self, work, sink_port):
        self.dir = os.path.join(work, "relayd")
        os.makedirs(self.dir)
        os.chmod(self.dir, 0o711)
        self.port = free_port()
        self.conf = os.path.join(self.dir, "relayd.toml")
        with open(self.conf, "w") as f:
            f.write(f'''hostname = "relayd-bench.localdomain"
spool = "{self.dir}/spool"
[smtp]
listen = ["127.0.0.1:{self.port}"]
mynetworks = ["127.0.0.0/8"]
[delivery]
relayhost = "[127.0.0.1]:{sink_port}"
tls = "none"
[queue]
min_free_disk = "100M"
[control]
socket = "{self.dir}/control.sock"
[local]
socket = "{self.dir}/submit.sock"
maildrop = "{self.dir}/spool/maildrop"
aliases = ""
[metrics]
listen = ""
''')
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([RELAYD, "--config", self.conf],
                                     stdout=open(os.path.join(self.dir, "relayd.log"), "ab"),
                                     stderr=subprocess.STDOUT)
        end = time.monotonic() + 20
        while not os.path.exists(os.path.join(self.dir, "submit.sock")):
            if time.monotonic() > end or self.proc.poll() is not None:
                raise SystemExit("relayd did not open its submit socket")
            time.sleep(0.02)
        wait_port(self.port, 10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def command(self):
        return [SENDMAIL, "-C", self.conf]


class Postfix:
    def __init__(self, work, sink_port):
        self.dir = os.path.join(work, "pf")
        self.port = free_port()
        self.sink_port = sink_port

    def instance(self, verb):
        args = [verb, self.dir] + ([str(self.port), str(self.sink_port)] if verb == "start" else [])
        subprocess.run(["bash", os.path.join(HERE, "postfix-instance.sh")] + args, check=True,
                       stdout=subprocess.DEVNULL)

    def start(self):
        self.instance("start")

    def stop(self):
        self.instance("stop")

    def command(self):
        return [POSTFIX_SENDMAIL, "-C", os.path.join(self.dir, "etc")]


DRIVER = None  # (path to the compiled C driver, path to the message file), set in main()


def call_all(command, n, parallel, message):
    """n sendmail processes, `parallel` at once; returns the time the last exited."""
    if DRIVER:
        driver, message_file = DRIVER
        p = subprocess.run([driver, str(n), str(parallel), message_file] + command,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise SystemExit(f"sendmail-driver for {command[0]}: {p.stderr.decode()[:300]}")
        return time.monotonic()

    def one(i):
        p = subprocess.run(command + ["-f", "sender@bench.test", f"rcpt{i % 50}@bench.test"],
                           input=message, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise SystemExit(f"{command[0]} exited {p.returncode}: {p.stderr.decode()[:200]}")
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(n)))
    return time.monotonic()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--driver", choices=("c", "python"), default="c")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (Postfix's master needs it)")
    for tool in ("smtp-sink", "postfix"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed")
    for b in (RELAYD, SENDMAIL):
        if not os.access(b, os.X_OK):
            raise SystemExit(f"{b} not built")

    work = tempfile.mkdtemp(prefix="sendmail-bench.", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    os.chmod(work, 0o755)
    body = ("x" * 75 + "\n") * max(1, args.size // 76)
    message = (f"From: sender@bench.test\nTo: rcpt@bench.test\nSubject: bench\n\n{body}").encode()
    if args.driver == "c":
        global DRIVER
        driver = os.path.join(work, "sendmail-driver")
        subprocess.run(["cc", "-O2", "-o", driver, os.path.join(HERE, "sendmail-driver.c")],
                       check=True)
        message_file = os.path.join(work, "message")
        with open(message_file, "wb") as f:
            f.write(message)
        DRIVER = (driver, message_file)
    rsink, psink = Sink(work), Sink(work)
    relayd, postfix = Relayd(work, rsink.port), Postfix(work, psink.port)
    rows = []  # (round, mode, mta, accepted msg/s, delivered msg/s)
    try:
        relayd.start()
        postfix.start()
        # warm up both (page cache, process pools, the LMDB map)
        call_all(relayd.command(), 100, args.parallel, message)
        call_all(postfix.command(), 100, args.parallel, message)
        rsink.wait_for(100)
        psink.wait_for(100)
        n = args.messages
        for r in range(1, args.rounds + 1):
            for mta, sink in (("relayd", rsink), ("postfix", psink)):
                d = relayd if mta == "relayd" else postfix
                # up
                base = sink.count()
                t0 = time.monotonic()
                t_acc = call_all(d.command(), n, args.parallel, message)
                t_del = sink.wait_for(base + n)
                rows.append((r, "up", mta, n / (t_acc - t0), n / (t_del - t0)))
                log(f"round {r} | up   | {mta:7} | accepted {rows[-1][3]:8.0f} msg/s | "
                    f"delivered {rows[-1][4]:8.0f} msg/s")
                # down: write the drop directory, then start and deliver
                d.stop()
                base = sink.count()
                t0 = time.monotonic()
                t_acc = call_all(d.command(), n, args.parallel, message)
                t1 = time.monotonic()
                d.start()
                t_del = sink.wait_for(base + n)
                rows.append((r, "down", mta, n / (t_acc - t0), n / (t_del - t1)))
                log(f"round {r} | down | {mta:7} | accepted {rows[-1][3]:8.0f} msg/s | "
                    f"imported+delivered {rows[-1][4]:8.0f} msg/s")
    finally:
        relayd.stop()
        try:
            postfix.stop()
        except subprocess.CalledProcessError:
            pass
        rsink.stop()
        psink.stop()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)

    def med(mode, mta, col):
        return statistics.median(row[col] for row in rows if row[1] == mode and row[2] == mta)

    print(f"\n{args.messages} messages of {args.size} bytes per round, {args.parallel} sendmail "
          f"processes at once ({args.driver} driver), {args.rounds} rounds; medians (msg/s)\n")
    print("| daemon | relayd accepted | Postfix accepted | ratio | relayd delivered | "
          "Postfix delivered | ratio |")
    print("|---|---|---|---|---|---|---|")
    for mode in ("up", "down"):
        ra, pa = med(mode, "relayd", 3), med(mode, "postfix", 3)
        rd, pd = med(mode, "relayd", 4), med(mode, "postfix", 4)
        print(f"| {mode} | {ra:.0f} | {pa:.0f} | **{ra / pa:.1f}x** | {rd:.0f} | {pd:.0f} | "
              f"**{rd / pd:.1f}x** |")


if __name__ == "__main__":
    main()
