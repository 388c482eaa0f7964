#!/usr/bin/env python3
"""Fixed-rate SMTP load generator that measures end-of-DATA -> 250 latency.

Sends messages at a fixed target rate over N persistent connections and, for each
message, records the time between writing the final "\\r\\n.\\r\\n" and reading the
complete reply to it. Prints p50/p99/max and the rate actually achieved.

Scheduling is open loop: message i is due at t0 + i/rate. A due message goes to
the next idle connection; if all connections are busy it waits (that wait is NOT
in the measured latency, which covers only end-of-DATA -> reply, but the achieved
rate will fall short of the target and the output says so).

The work can be split over --procs processes (each with its own asyncio loop, an
equal share of the connections and of the rate). One process is cheaper and
jitters less; it tops out near 4,500 msg/s on one core, so use 2 above that.

  latency.py --port 2525 --rate 2000 --duration 10 [--conns 20] [--size 1024]
"""
import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import time


def percentile(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def make_body(size):
    line = b"x" * 76 + b"\r\n"
    n = max(1, size // len(line))
    hdr = (b"From: <bench@example.org>\r\nTo: <rcpt@example.com>\r\n"
           b"Subject: latency probe\r\n\r\n")
    return hdr + line * n


ENVELOPE = (b"MAIL FROM:<bench@example.org>\r\n"
            b"RCPT TO:<rcpt@example.com>\r\n"
            b"DATA\r\n")


class Client(asyncio.Protocol):
    """One SMTP connection as a callback-driven state machine (cheaper than
    streams, so the generator keeps up on a small machine)."""

    def __init__(self, gen):
        self.gen = gen
        self.buf = b""
        self.expect = []      # reply codes still awaited, in order
        self.state = "greeting"
        self.t_end = 0.0
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                return
            line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
            if len(line) >= 4 and line[3:4] == b"-":
                continue  # continuation of a multi-line reply
            self.reply(int(line[:3]), line)

    def connection_lost(self, exc):
        if self.state not in ("quit", "done"):
            self.gen.fail(f"connection lost in state {self.state}: {exc!r}")
        self.state = "done"
        self.gen.conn_closed()

    def reply(self, code, line):
        st = self.state
        if st == "greeting":
            if code != 220:
                return self.gen.fail(f"greeting: {line!r}")
            self.state = "ehlo"
            self.transport.write(b"EHLO latency.localdomain\r\n")
        elif st == "ehlo":
            if code != 250:
                return self.gen.fail(f"EHLO: {line!r}")
            self.state = "idle"
            self.gen.idle(self)
        elif st == "envelope":
            want = self.expect.pop(0)
            if code != want:
                self.gen.fail(f"expected {want}: {line!r}")
            if not self.expect:
                self.state = "eod"
                # One write: body (ends in CRLF) + ".CRLF". The clock starts just
                # before it; for a ~1 KiB body that is the end-of-DATA instant.
                self.t_end = time.perf_counter()
                self.transport.write(self.gen.body_eod)
        elif st == "eod":
            dt = time.perf_counter() - self.t_end
            if code == 250:
                self.gen.lat.append(dt)
            else:
                self.gen.errors.append(line.decode(errors="replace").strip())
            self.state = "idle"
            self.gen.idle(self)
        elif st == "quit":
            self.transport.close()

    def send(self):
        self.state = "envelope"
        self.expect = [250, 250, 354]
        self.transport.write(ENVELOPE)  # PIPELINING: MAIL, RCPT, DATA in one write

    def quit(self):
        self.state = "quit"
        self.transport.write(b"QUIT\r\n")


class Generator:
    def __init__(self, loop, rate, total, body):
        self.loop, self.rate, self.total = loop, rate, total
        self.body_eod = body + b".\r\n"
        self.lat, self.errors = [], []
        self.idle_conns = []
        self.released = 0   # messages whose due time has passed
        self.started = 0    # messages handed to a connection
        self.open = 0
        self.done = loop.create_future()
        self.t0 = None

    def fail(self, msg):
        self.errors.append(msg)
        if not self.done.done():
            self.done.set_result(None)

    def conn_closed(self):
        self.open -= 1
        if self.open == 0 and not self.done.done():
            self.done.set_result(None)

    def idle(self, c):
        if self.started < self.released:
            self.started += 1
            c.send()
        elif self.released >= self.total:
            c.quit()
        else:
            self.idle_conns.append(c)

    def tick(self):
        now = time.perf_counter()
        due = min(self.total, int((now - self.t0) * self.rate) + 1)
        self.released = max(self.released, due)
        while self.idle_conns and self.started < self.released:
            self.started += 1
            self.idle_conns.pop().send()
        if self.released < self.total:
            self.loop.call_later(0.0005, self.tick)
        else:
            while self.idle_conns:
                self.idle_conns.pop().quit()


async def run_worker(host, port, conns, rate, duration, size):
    loop = asyncio.get_running_loop()
    gen = Generator(loop, rate, max(1, int(rate * duration)), make_body(size))
    for _ in range(conns):
        await loop.create_connection(lambda: Client(gen), host, port)
        gen.open += 1
    await asyncio.sleep(0.2)  # let connections finish EHLO
    gen.t0 = time.perf_counter()
    gen.tick()
    await gen.done
    elapsed = time.perf_counter() - gen.t0
    return {"lat": gen.lat, "errors": gen.errors, "elapsed": elapsed}


def worker_main(args, conns, rate, out):
    try:
        res = asyncio.run(run_worker(args.host, args.port, conns, rate, args.duration, args.size))
    except Exception as e:  # report, do not hang the parent
        res = {"lat": [], "errors": [f"worker failed: {e!r}"], "elapsed": 0.0}
    out.put(res)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True, help="target messages/second (total)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    ap.add_argument("--conns", type=int, default=20)
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--size", type=int, default=1024, help="approximate body bytes")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    procs = max(1, min(args.procs, args.conns))
    out = mp.Queue()
    workers = []
    for k in range(procs):
        c = args.conns // procs + (1 if k < args.conns % procs else 0)
        p = mp.Process(target=worker_main, args=(args, c, args.rate / procs, out))
        p.start()
        workers.append(p)
    lat, errors, elapsed = [], [], 0.0
    for _ in workers:
        r = out.get()
        lat += r["lat"]
        errors += r["errors"]
        elapsed = max(elapsed, r["elapsed"])
    for p in workers:
        p.join()

    lat.sort()
    ms = lambda v: round(v * 1000.0, 3)
    summary = {
        "target_rate": args.rate,
        "achieved_rate": round(len(lat) / elapsed, 1) if elapsed else 0.0,
        "messages": len(lat),
        "errors": len(errors),
        "p50_ms": ms(percentile(lat, 50)),
        "p99_ms": ms(percentile(lat, 99)),
        "max_ms": ms(lat[-1]) if lat else float("nan"),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"target {args.rate:.0f} msg/s, achieved {summary['achieved_rate']} msg/s over "
              f"{args.conns} connections: {len(lat)} messages, {len(errors)} errors")
        print(f"end-of-DATA -> 250: p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, "
              f"max {summary['max_ms']} ms")
    for e in errors[:5]:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors or not lat else 0


if __name__ == "__main__":
    sys.exit(main())
