#!/usr/bin/env python3
"""Runs scripted SMTP dialogues (tests/dialogues/*.dlg) against the real relayd.

Usage: run_dialogue.py [-v] [--sendmail-bs] FILE.dlg...
                                            (no FILE: every tests/dialogues/*.dlg)

--sendmail-bs: every connection is a `sendmail -bs` process of the daemon's
config ($SENDMAIL_BIN) instead of a TCP connection, so the same files check
that sendmail's SMTP dialogue on stdin/stdout behaves as the listeners do.
Files marked `@tcp-only` are reported as skipped there.

File format, one directive per line (blank lines ignored):
  # comment
  @config KEY = VALUE   TOML override with a dotted key, VALUE as in TOML/JSON:
                        `@config smtp.max_recipients = 3`,
                        `@config smtp.mynetworks = ["127.0.0.1/32"]`.
                        Files with the same @config lines share one relayd.
  @bind ADDR            source address for the following connections (127.0.0.2)
  @reconnect            close the connection; the next >>/<< opens a new one
  @sleep SECONDS        pause
  @queue N              `relayctl -j` lists exactly N messages (the queue is
                        emptied with `relayctl -d ALL` before every file)
  @queue-sender ADDR N  exactly N queued messages have envelope sender ADDR
  @queue-rcpts N        the newest queued message has N recipients
  @log TEXT             the daemon log, since this file started, contains TEXT
  @tcp-only REASON      the file is about the TCP listener (client addresses,
                        relay rights, bare addresses): not run with --sendmail-bs
With --sendmail-bs, @log steps are not checked: the daemon logs what its
listeners refuse, and sendmail -bs is a process of its own.
  >> TEXT               send TEXT (UTF-8) followed by CRLF
  >>> TEXT              send TEXT with no CRLF appended
                        Both expand escapes: \\r \\n \\t \\\\ \\xNN, and ${N*UNIT}
                        repeats UNIT (escapes expanded, no '}') N times.
  << CODE               the next complete reply (multi-line aware) has CODE;
                        CODE may use x as a wildcard digit (5xx)
  << CODE PREFIX        ... and its last line starts with "CODE PREFIX"
  << CODE * A * B       ... and the whole reply contains A and B
  << CODE ~ REGEX       ... and its last line matches REGEX (re.search)
  << queued             shorthand: the reply is "250 2.0.0 Ok: queued as <16 hex>"
  << closed             the server closes the connection (EOF or reset) without
                        sending another reply
  << silence            no reply arrives within 0.5 s
The first connection opens at the first >>/<<; the 220 greeting is a reply like
any other and must be expected. At the end of a file (and at @reconnect) any
reply already received but not expected is a failure, and relayd must still run.
"""

import json
import os
import re
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402

DIALOGUES = os.path.join(h.REPO, "tests", "dialogues")
QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as [0-9A-F]{16}$")


class DialogueError(Exception):
    pass


def expand(text):
    """Escapes and ${N*UNIT} repetition -> bytes."""
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c == "$" and text.startswith("${", i):
            end = text.find("}", i)
            m = re.fullmatch(r"\$\{(\d+)\*(.*)\}", text[i:end + 1], re.S)
            if end < 0 or not m:
                raise DialogueError(f"bad repetition at {text[i:i + 20]!r}")
            out += expand(m.group(2)) * int(m.group(1))
            i = end + 1
        elif c == "\\" and i + 1 < len(text):
            n = text[i + 1]
            if n == "x":
                out.append(int(text[i + 2:i + 4], 16))
                i += 4
                continue
            mapping = {"r": b"\r", "n": b"\n", "t": b"\t", "\\": b"\\", "$": b"$"}
            if n not in mapping:
                raise DialogueError(f"unknown escape \\{n}")
            out += mapping[n]
            i += 2
        else:
            out += c.encode("utf-8")
            i += 1
    return bytes(out)


def parse(path):
    """-> (config overrides as sorted tuple of (key, json text), [(lineno, op, arg)])"""
    config, steps = [], []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line.startswith(">>> "):
                steps.append((n, "send", expand(line[4:])))
            elif line == ">>>":
                steps.append((n, "send", b""))
            elif line == ">>":
                steps.append((n, "send", b"\r\n"))
            elif line.startswith(">> "):
                steps.append((n, "send", expand(line[3:]) + b"\r\n"))
            elif line.startswith("<< "):
                steps.append((n, "expect", line[3:].strip()))
            elif line.startswith("@config "):
                k, eq, v = line[8:].partition("=")
                if not eq:
                    raise DialogueError(f"{path}:{n}: @config KEY = VALUE")
                try:
                    json.loads(v.strip())
                except ValueError:
                    v = json.dumps(v.strip())
                config.append((k.strip(), v.strip()))
            elif line.startswith("@"):
                op, _, arg = line[1:].partition(" ")
                if op not in ("bind", "reconnect", "sleep", "queue", "queue-sender",
                              "queue-rcpts", "log", "tcp-only"):
                    raise DialogueError(f"{path}:{n}: unknown directive @{op}")
                steps.append((n, op, arg.strip()))
            else:
                raise DialogueError(f"{path}:{n}: cannot parse {line!r}")
    return tuple(sorted(config)), steps


def check_reply(spec, reply):
    """Raises DialogueError when `reply` ((code, lines) or None) does not match."""
    if spec == "closed":
        if reply is not None:
            raise DialogueError(f"expected the connection to close, got {reply[1]!r}")
        return
    if reply is None:
        raise DialogueError(f"expected {spec!r}, the connection was closed")
    code, lines = reply
    last = lines[-1]
    if spec == "queued":
        if not QUEUED.match(last):
            raise DialogueError(f"expected 250 queued as ID, got {lines!r}")
        return
    want, _, rest = spec.partition(" ")
    if not re.fullmatch(r"[2-5x][0-9x]{2}", want):
        raise DialogueError(f"bad expectation {spec!r}")
    got = f"{code:03d}" if code >= 0 else "???"
    if not all(w in ("x", g) for w, g in zip(want, got)):
        raise DialogueError(f"expected {spec!r}, got {lines!r}")
    for l in lines:
        if l[:3] != got:
            raise DialogueError(f"reply mixes codes: {lines!r}")
    rest = rest.strip()
    if not rest:
        return
    if rest.startswith("*"):
        whole = "\n".join(lines)
        for term in rest.split("*")[1:]:
            if term.strip() not in whole:
                raise DialogueError(f"expected {term.strip()!r} in the reply, got {lines!r}")
    elif rest.startswith("~"):
        if not re.search(rest[1:].strip(), last):
            raise DialogueError(f"expected last line to match {rest[1:].strip()!r}, got {lines!r}")
    elif not last.startswith(f"{got} {rest}"):
        raise DialogueError(f"expected a reply starting {got} {rest!r}, got {lines!r}")


SENDMAIL_BIN = os.environ.get("SENDMAIL_BIN") or os.path.join(h.REPO, "build/release/cli/sendmail")


class BsConn(h.SmtpConn):
    """`sendmail -bs -C CONFIG` on one end of a socket pair, read and written as
    a TCP connection would be."""

    def __init__(self, config_path, timeout=10):
        ours, theirs = socket.socketpair()
        self.proc = h.spawn([SENDMAIL_BIN, "-C", config_path, "-bs"], stdin=theirs,
                            stdout=theirs)
        theirs.close()
        self.sock = ours
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False
        self.timeout = timeout

    def close(self):
        super().close()
        try:
            self.proc.wait(10)
        except Exception:
            self.proc.kill()


class Runner:
    def __init__(self, daemon, verbose=False, via_sendmail=False):
        self.d = daemon
        self.verbose = verbose
        self.via_sendmail = via_sendmail

    def run_file(self, path, steps):
        transcript = []
        conn = None
        bind = None
        log_start = len(self.d.log())

        def say(s):
            transcript.append(s)
            if self.verbose:
                print("   " + s)

        def ensure():
            nonlocal conn
            if conn is None and self.via_sendmail:
                conn = BsConn(self.d.config_path)
                say("-- sendmail -bs")
            elif conn is None:
                conn = h.SmtpConn(self.d.port, timeout=10, source=bind)
                say(f"-- connect from {bind or '127.0.0.1'}")
            return conn

        def drain_check():
            # replies received but never expected are a failure
            if conn is not None and not conn.eof and b"\r\n" in conn.buf:
                raise DialogueError(f"unexpected extra data from the server: {conn.buf[:300]!r}")

        r = self.d.delete_all()
        if r.rc not in (0, 1):
            raise DialogueError(f"relayctl -d ALL before the file failed: {r}")
        try:
            for n, op, arg in steps:
                try:
                    if op == "send":
                        c = ensure()
                        shown = arg if len(arg) < 200 else arg[:100] + b"..." + arg[-60:]
                        say(f">> {shown!r} ({len(arg)} bytes)")
                        try:
                            c.send(arg)
                        except (BrokenPipeError, ConnectionResetError) as e:
                            say(f"   (send failed: {e})")
                    elif op == "expect":
                        c = ensure()
                        if arg == "silence":
                            try:
                                rep = c.reply(timeout=0.5)
                            except socket.timeout:
                                say("<< (silence)")
                                continue
                            raise DialogueError(f"expected silence, got {rep!r}")
                        try:
                            rep = c.reply()
                        except socket.timeout as e:
                            raise DialogueError(f"expected {arg!r}: {e}")
                        say(f"<< {rep[1] if rep else 'closed'}")
                        check_reply(arg, rep)
                    elif op == "tcp-only":
                        pass
                    elif op == "bind":
                        bind = arg
                    elif op == "reconnect":
                        drain_check()
                        if conn:
                            conn.close()
                        conn = None
                        say("-- reconnect")
                    elif op == "sleep":
                        time.sleep(float(arg))
                    elif op in ("queue", "queue-sender", "queue-rcpts"):
                        q = self.d.queue()
                        if op == "queue":
                            if len(q) != int(arg):
                                raise DialogueError(f"queue has {len(q)} messages, want {arg}: {q!r}")
                        elif op == "queue-sender":
                            addr, cnt = arg.rsplit(" ", 1)
                            got = sum(1 for m in q if m.get("sender") == addr)
                            if got != int(cnt):
                                raise DialogueError(f"{got} queued messages from {addr}, want {cnt}: {q!r}")
                        else:
                            if not q:
                                raise DialogueError("queue is empty")
                            newest = max(q, key=lambda m: m["id"])
                            if len(newest["recipients"]) != int(arg):
                                raise DialogueError(f"newest message has {newest['recipients']!r}, want {arg}")
                        say(f"-- @{op} {arg}: ok")
                    elif op == "log" and self.via_sendmail:
                        say(f"-- @log {arg}: not checked for sendmail -bs")
                    elif op == "log":
                        deadline = time.monotonic() + 3
                        while arg not in self.d.log()[log_start:]:
                            if time.monotonic() > deadline:
                                raise DialogueError(f"log does not contain {arg!r}")
                            time.sleep(0.05)
                        say(f"-- @log {arg}: ok")
                except DialogueError as e:
                    raise DialogueError(f"{path}:{n}: {e}")
            drain_check()
        except DialogueError as e:
            return False, str(e), transcript
        finally:
            if conn:
                conn.close()
        if not self.d.running():
            return False, f"{path}: relayd is no longer running (exit {self.d.proc.returncode})", transcript
        return True, "", transcript


def main(argv):
    verbose = "-v" in argv
    via_sendmail = "--sendmail-bs" in argv
    files = [a for a in argv if a not in ("-v", "--sendmail-bs")]
    if not files:
        files = sorted(os.path.join(DIALOGUES, f) for f in os.listdir(DIALOGUES) if f.endswith(".dlg"))
    groups = {}
    for f in files:
        cfg, steps = parse(f)
        groups.setdefault(cfg, []).append((f, steps))

    failures = 0
    total = 0
    skipped = 0
    if via_sendmail:
        for cfg in list(groups):
            kept = []
            for f, steps in groups[cfg]:
                reason = next((arg for _, op, arg in steps if op == "tcp-only"), None)
                if reason is None:
                    kept.append((f, steps))
                else:
                    skipped += 1
                    print(f"SKIP {os.path.basename(f)}: {reason}")
            groups[cfg] = kept
        if not os.access(SENDMAIL_BIN, os.X_OK):
            print(f"FAIL sendmail is not built ({SENDMAIL_BIN})")
            return 1
    for cfg, items in groups.items():
        if not items:
            continue
        overrides = {k: json.loads(v) for k, v in cfg}
        d = h.Relayd(overrides, name="relayd " + (", ".join(f"{k}={v}" for k, v in cfg) or "default"))
        try:
            try:
                d.start()
            except AssertionError as e:
                for f, _ in items:
                    print(f"FAIL {os.path.basename(f)}: relayd did not start")
                print(e)
                failures += len(items)
                total += len(items)
                continue
            runner = Runner(d, verbose, via_sendmail)
            for f, steps in items:
                total += 1
                if verbose:
                    print(f"---- {os.path.basename(f)}")
                if not d.running():
                    d.start()  # a previous file crashed it: reported there
                ok, why, transcript = runner.run_file(f, steps)
                if ok:
                    print(f"PASS {os.path.basename(f)}")
                else:
                    failures += 1
                    print(f"FAIL {os.path.basename(f)}\n  {why}\n  transcript:")
                    for t in transcript[-25:]:
                        print("    " + t)
                    print("\n".join("    " + l for l in d.log_tail(30).splitlines()))
            rc = d.stop()
            if rc != 0:
                failures += 1
                print(f"FAIL relayd [{d.name}] exited {rc} after SIGTERM\n{d.log_tail(30)}")
        finally:
            d.cleanup()
    print(f"{total - failures if failures <= total else 0}/{total} dialogues passed"
          + (f", {skipped} skipped (@tcp-only)" if skipped else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
