#!/usr/bin/env python3
"""dnsmasq on a loopback port for relayd's tests, plus a stdlib DNS client.

    from dnsmasq import Dnsmasq, dns_query
    with Dnsmasq(mx=[("a.test", "mx1.a.test", 10), ("a.test", "mx2.a.test", 20)],
                 a={"mx1.a.test": "127.0.0.2", "mx2.a.test": "127.0.0.3",
                    "implicit.test": "127.0.0.4"},
                 aaaa={"implicit.test": "::1"},
                 null_mx=["nullmx.test"],
                 servfail=["servfail.test"], refused=["refused.test"],
                 timeout=["slowdns.test"]) as dns:
        dns.port          # UDP+TCP port on 127.0.0.1: [delivery] dns_servers = ["127.0.0.1:PORT"]
        dns.server        # "127.0.0.1:PORT"
        dns_query("a.test", "MX", port=dns.port)   # -> DnsReply(rcode=0, answers=[...])

Recipes (dnsmasq 2.90, checked with dns_query; see the selftest):
  base      /usr/sbin/dnsmasq --keep-in-foreground --no-resolv --no-hosts
            --conf-file=/dev/null --bind-interfaces --listen-address=127.0.0.1
            --port=P --pid-file= --cache-size=0 --log-queries --log-facility=-
  zone      --local=/test/       names under .test that have no record -> NXDOMAIN
                                 (a name with some record but not the asked type -> NOERROR, no answer)
  MX        --mx-host=a.test,mx1.a.test,10   (one per MX; the answer's additional
                                 section carries the A records of the targets)
  A / AAAA  --host-record=mx1.a.test,127.0.0.2[,::1]  (exact name; no MX for it ->
                                 implicit MX case: MX query gives NOERROR/0 answers)
  null MX   --mx-host=nullmx.test,.,0   (RDATA 00 00 00: preference 0, exchange ".";
                                 --dns-rr=nullmx.test,15,000000 gives the same bytes)
  NXDOMAIN  any name under a --local zone without records
  SERVFAIL  --server=/servfail.test/127.0.0.1#Q where Q is a stub upstream that
            answers SERVFAIL (FakeDnsServer here); dnsmasq passes SERVFAIL on.
            A dead port (--server=/z/127.0.0.1#9) does NOT give SERVFAIL: dnsmasq
            never answers (the client times out) -> that is the `timeout` recipe.
  REFUSED   --server=/refused.test/#   (with --no-resolv there is no upstream: REFUSED at once)
  timeout   --server=/slowdns.test/127.0.0.1#Q with Q a bound UDP socket that never replies
  TTL       --local-ttl=N (dnsmasq's default for local records is 0)
"""

import argparse
import ipaddress
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

DNSMASQ = os.environ.get("DNSMASQ_BIN") or shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
          "SRV": 33, "ANY": 255}
QTYPE_NAMES = {v: k for k, v in QTYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


# ---------------------------------------------------------------- DNS client

class DnsReply:
    def __init__(self, rcode, flags, answers, authority, additional):
        self.rcode = rcode
        self.rcode_name = RCODES.get(rcode, str(rcode))
        self.flags = flags
        self.aa = bool(flags & 0x0400)
        self.tc = bool(flags & 0x0200)
        self.answers = answers          # [(name, type_name, ttl, value)]
        self.authority = authority
        self.additional = additional

    def values(self, qtype=None):
        return [v for (_, t, _, v) in self.answers if qtype is None or t == qtype]

    def __repr__(self):
        return f"DnsReply({self.rcode_name}, answers={self.answers})"


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            b = label.encode("idna") if any(ord(c) > 127 for c in label) else label.encode()
            out += bytes([len(b)]) + b
    return out + b"\0"


def _read_name(msg, off):
    labels, jumped, end = [], False, None
    for _ in range(128):
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if not jumped:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            jumped = True
            continue
        if n == 0:
            off += 1
            break
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    return ".".join(labels), (end if jumped else off)


def _parse_rr(msg, off):
    name, off = _read_name(msg, off)
    rtype, _cls, ttl, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
    off += 10
    rd = msg[off:off + rdlen]
    if rtype == 1 and rdlen == 4:
        val = str(ipaddress.IPv4Address(rd))
    elif rtype == 28 and rdlen == 16:
        val = str(ipaddress.IPv6Address(rd))
    elif rtype == 15:
        pref = struct.unpack(">H", rd[:2])[0]
        val = (pref, _read_name(msg, off + 2)[0])     # exchange "" = the root (null MX)
    elif rtype in (2, 5, 12):
        val = _read_name(msg, off)[0]
    elif rtype == 16:
        val, i = [], 0
        while i < len(rd):
            val.append(rd[i + 1:i + 1 + rd[i]].decode("utf-8", "replace"))
            i += 1 + rd[i]
    else:
        val = rd.hex()
    return (name, QTYPE_NAMES.get(rtype, str(rtype)), ttl, val), off + rdlen


def parse_reply(msg, tid=None):
    t, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", msg[:12])
    if tid is not None and t != tid:
        raise ValueError("DNS id mismatch")
    off = 12
    for _ in range(qd):
        _, off = _read_name(msg, off)
        off += 4
    sections = []
    for count in (an, ns, ar):
        rrs = []
        for _ in range(count):
            rr, off = _parse_rr(msg, off)
            rrs.append(rr)
        sections.append(rrs)
    return DnsReply(flags & 0x0F, flags, *sections)


def dns_query(name, qtype="MX", port=53, host="127.0.0.1", timeout=2.0, tcp=False):
    """One query, recursion desired. -> DnsReply; raises socket.timeout when
    nothing answers within `timeout`."""
    tid = random.randrange(65536)
    qt = QTYPES[qtype] if isinstance(qtype, str) else int(qtype)
    pkt = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0) + _encode_name(name) + struct.pack(">HH", qt, 1)
    if tcp:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">H", len(pkt)) + pkt)
            f = s.makefile("rb")
            n = struct.unpack(">H", f.read(2))[0]
            return parse_reply(f.read(n), tid)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.send(pkt)
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            data = s.recv(65535)
            try:
                return parse_reply(data, tid)
            except ValueError:
                continue          # a late answer to someone else's id


# ---------------------------------------------------------------- stub upstream

class FakeDnsServer:
    """UDP DNS stub on 127.0.0.1: answers every query with `rcode` (2 = SERVFAIL,
    5 = REFUSED, ...) and no records, or never answers when rcode is None."""

    def __init__(self, rcode=2, host="127.0.0.1", port=0):
        self.rcode = rcode
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True, name=f"fake-dns-{self.port}")
        self._t.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            if self.rcode is None or len(data) < 12:
                continue
            tid, flags, qd = struct.unpack(">HHH", data[:6])
            off = 12
            try:
                for _ in range(qd):
                    _, off = _read_name(data, off)
                    off += 4
            except (IndexError, struct.error):
                continue
            hdr = struct.pack(">HHHHHH", tid, 0x8080 | (flags & 0x0100) | (self.rcode & 0xF), qd, 0, 0, 0)
            try:
                self.sock.sendto(hdr + data[12:off], addr)
            except OSError:
                pass

    def close(self):
        self._stop.set()
        self._t.join(2)
        self.sock.close()


# ---------------------------------------------------------------- dnsmasq

def _free_port(host="127.0.0.1"):
    """A port free for both UDP and TCP a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def _pairs(x):
    """{name: ip | [ips]} or [(name, ip)] -> [(name, ip)]."""
    if isinstance(x, dict):
        out = []
        for k, v in x.items():
            for ip in ([v] if isinstance(v, str) else v):
                out.append((k, ip))
        return out
    return [tuple(p) for p in x]


def _pdeathsig():
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Dnsmasq:
    """dnsmasq serving test records on 127.0.0.1:port (UDP and TCP).

    mx        [(domain, host, preference)]
    a, aaaa   {name: ip or [ips]} or [(name, ip)]
    null_mx   [domain]                  RFC 7505 "0 ." MX
    txt       {name: text}              strings split at commas (dnsmasq's --txt-record);
                                        '"a,b"' (in double quotes) is one string with its commas
    zones     local zones: NXDOMAIN for names without records (default ["test"])
    servfail  [zone]                    SERVFAIL for every name in the zone
    refused   [zone]                    REFUSED for every name in the zone
    timeout   [zone]                    no answer at all for names in the zone
    ttl       TTL of the local records (--local-ttl; dnsmasq's default is 0)
    port      0 = a free port
    extra_args  more dnsmasq flags
    The dnsmasq log (--log-queries) is in self.log_path; log_text() reads it.
    """

    def __init__(self, mx=(), a=(), aaaa=(), null_mx=(), txt=None, zones=("test",), servfail=(),
                 refused=(), timeout=(), ttl=None, port=0, extra_args=(), binary=DNSMASQ):
        self.mx = list(mx)
        self.a = _pairs(a)
        self.aaaa = _pairs(aaaa)
        self.null_mx = list(null_mx)
        self.txt = dict(txt or {})
        self.zones = list(zones)
        self.servfail = list(servfail)
        self.refused = list(refused)
        self.timeout = list(timeout)
        self.ttl = ttl
        self.port = port
        self.extra_args = list(extra_args)
        self.binary = binary
        self.proc = None
        self._fakes = []
        self._tmp = tempfile.mkdtemp(prefix="dnsmasq-test-")
        self.log_path = os.path.join(self._tmp, "dnsmasq.log")

    @property
    def server(self):
        return f"127.0.0.1:{self.port}"

    def args(self, port, servfail_port=None, timeout_port=None):
        # dnsmasq honours quotes (commas inside one string) only in a conf file.
        quoted = {n: t for n, t in self.txt.items() if len(t) > 1 and t[0] == t[-1] == '"'}
        conf = "/dev/null"
        if quoted:
            conf = os.path.join(self._tmp, "txt.conf")
            with open(conf, "w") as f:
                f.writelines(f"txt-record={n},{t}\n" for n, t in quoted.items())
        a = [self.binary, "--keep-in-foreground", "--no-resolv", "--no-hosts",
             f"--conf-file={conf}", "--bind-interfaces", "--listen-address=127.0.0.1",
             f"--port={port}", "--pid-file=", "--cache-size=0", "--log-queries", "--log-facility=-"]
        if self.ttl is not None:
            a.append(f"--local-ttl={int(self.ttl)}")
        for z in self.zones:
            a.append(f"--local=/{z}/")
        for dom, host, pref in self.mx:
            a.append(f"--mx-host={dom},{host},{int(pref)}")
        for dom in self.null_mx:
            a.append(f"--mx-host={dom},.,0")
        for name, ip in self.a + self.aaaa:
            a.append(f"--host-record={name},{ip}")
        for name, text in self.txt.items():
            if name not in quoted:
                a.append(f"--txt-record={name},{text}")
        for z in self.servfail:
            a.append(f"--server=/{z}/127.0.0.1#{servfail_port}")
        for z in self.refused:
            a.append(f"--server=/{z}/#")
        for z in self.timeout:
            a.append(f"--server=/{z}/127.0.0.1#{timeout_port}")
        return a + self.extra_args

    def start(self, timeout=10.0):
        if not os.path.exists(self.binary):
            raise FileNotFoundError(f"{self.binary} not found (apt-get install dnsmasq-base)")
        sf_port = to_port = None
        if self.servfail and not self._fakes:
            f = FakeDnsServer(rcode=2)
            self._fakes.append(f)
        if self.timeout and len(self._fakes) < (2 if self.servfail else 1):
            self._fakes.append(FakeDnsServer(rcode=None))
        if self.servfail:
            sf_port = self._fakes[0].port
        if self.timeout:
            to_port = self._fakes[-1].port
        fixed = self.port != 0
        for attempt in range(5):
            port = self.port if fixed else _free_port()
            logf = open(self.log_path, "ab")
            self.proc = subprocess.Popen(self.args(port, sf_port, to_port), stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT, preexec_fn=_pdeathsig)
            logf.close()
            if self._wait_ready(port, timeout):
                self.port = port
                return self
            self.stop_process()
            if "Address already in use" not in self.log_text() or fixed:
                break
        raise RuntimeError(f"dnsmasq did not start:\n{self.log_text()[-2000:]}")

    def _wait_ready(self, port, timeout):
        probe = f"readiness-probe.{self.zones[0] if self.zones else 'invalid'}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                dns_query(probe, "A", port=port, timeout=0.2)
                return True
            except (socket.timeout, ConnectionRefusedError, OSError):
                time.sleep(0.05)
        return False

    def stop_process(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, **changes):
        """Restart on the same port with some constructor arguments changed
        (dnsmasq cannot change --mx-host/--host-record records at runtime)."""
        self.stop_process()
        for k, v in changes.items():
            if k in ("a", "aaaa"):
                v = _pairs(v)
            if not hasattr(self, k):
                raise ValueError(k)
            setattr(self, k, v)
        return self.start()

    def stop(self):
        self.stop_process()
        for f in self._fakes:
            f.close()
        self._fakes = []

    def cleanup(self):
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def query(self, name, qtype="MX", **kw):
        return dns_query(name, qtype, port=self.port, **kw)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


# ---------------------------------------------------------------- CLI

def main(argv=None):
    ap = argparse.ArgumentParser(description="Run dnsmasq with test records, or query a server.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run until SIGTERM/SIGINT; prints 'listening on 127.0.0.1:PORT'")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--zone", action="append", default=[], help="local zone (default: test)")
    s.add_argument("--mx", action="append", default=[], help="DOMAIN:HOST:PREF")
    s.add_argument("--a", action="append", default=[], help="NAME:IPv4")
    s.add_argument("--aaaa", action="append", default=[], help="NAME=IPv6")
    s.add_argument("--null-mx", action="append", default=[])
    s.add_argument("--servfail", action="append", default=[])
    s.add_argument("--refused", action="append", default=[])
    s.add_argument("--timeout", action="append", default=[])
    s.add_argument("--ttl", type=int)
    q = sub.add_parser("query", help="one query: prints rcode and answers")
    q.add_argument("--port", type=int, default=53)
    q.add_argument("--host", default="127.0.0.1")
    q.add_argument("--tcp", action="store_true")
    q.add_argument("name")
    q.add_argument("type", nargs="?", default="MX")
    a = ap.parse_args(argv)
    if a.cmd == "query":
        try:
            r = dns_query(a.name, a.type.upper(), port=a.port, host=a.host, tcp=a.tcp)
        except socket.timeout:
            print("TIMEOUT")
            return 1
        print(r.rcode_name)
        for rr in r.answers:
            print(*rr)
        return 0
    d = Dnsmasq(mx=[(x.split(":")[0], x.split(":")[1], int(x.split(":")[2])) for x in a.mx],
                a=[tuple(x.split(":", 1)) for x in a.a], aaaa=[tuple(x.split("=", 1)) for x in a.aaaa],
                null_mx=a.null_mx, zones=a.zone or ["test"], servfail=a.servfail, refused=a.refused,
                timeout=a.timeout, ttl=a.ttl, port=a.port)
    d.start()
    print(f"listening on {d.server}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            if d.proc is None or d.proc.poll() is not None:
                print(d.log_text()[-2000:], file=sys.stderr)
                return 1
    finally:
        d.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
