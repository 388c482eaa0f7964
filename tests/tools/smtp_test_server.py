#!/usr/bin/env python3
"""Scriptable SMTP server for relayd's tests (Python 3.11 stdlib only, loopback).

Usable as a library (start it in-process, inspect what it received, change its
behaviour while it runs) and as a CLI, so end-to-end tests can run it as a
separate process next to relayd.

LIBRARY
    from smtp_test_server import SMTPTestServer
    with SMTPTestServer(listen=["127.0.0.2:0", "127.0.0.3:0"],
                        rules=[{"on": "RCPT", "match": "bad@", "reply": "550 5.1.1 No such user"}],
                        auth_users={"u": "p"}, tls_cert=CERT, tls_key=KEY) as srv:
        srv.port                      # the bound port (all listeners share it)
        srv.addresses                 # [("127.0.0.2", port), ("127.0.0.3", port)]
        ...relay mail to it...
        srv.wait_messages(1, timeout=10)
        m = srv.messages()[0]         # dict, see "Message record" below
        srv.set_rules([...])          # replace the behaviour at runtime
        srv.set_options(size=1000)    # change capabilities at runtime
        srv.stats()["max_concurrent"]

CLI
    smtp_test_server.py --listen 127.0.0.2:2525 [--listen 127.0.0.3:2525]
        [--script rules.json] [--maildir DIR] [--control-port N] [options...]
    Prints, flushed, one line per listener `listening on HOST:PORT`
    (`[::1]:PORT` for IPv6), then `control on 127.0.0.1:PORT` when
    --control-port is given (0 = free port), then `ready`.
    Port 0 = a free port; every --listen with port 0 gets the port chosen for
    the first one, so MX hosts on 127.0.0.x share one `[delivery] port`.
    SIGHUP re-reads --script (rules and options); SIGTERM/SIGINT stop it (exit 0).
    --maildir DIR: each accepted message is written as DIR/<n>.eml (the data,
    dot-unstuffed) and DIR/<n>.json (envelope); .json is renamed into place
    last, so its presence means both files are complete.
    Control port: one JSON object per line in, one JSON object per line out
    ({"ok": true, ...} or {"ok": false, "error": "..."}):
        {"cmd":"ping"}
        {"cmd":"set_rules","rules":[...]}     {"cmd":"add_rules","rules":[...]}
        {"cmd":"get_rules"}                   -> "rules" (each with "fired")
        {"cmd":"set_options","options":{...}}
        {"cmd":"stats"}                       -> "stats"
        {"cmd":"messages","data":true}        -> "messages" (data as UTF-8 text,
                                                 "data_b64" too when "b64":true)
        {"cmd":"connections"} {"cmd":"rcpt_log"} {"cmd":"auth_log"}
        {"cmd":"reset"}                       clear messages, logs and counters
        {"cmd":"wait_messages","count":N,"timeout":S} -> "ok", "messages"
        {"cmd":"shutdown"}
    ControlClient(port) wraps this; spawn_server(...) starts the CLI as a
    child process and returns a ServerProcess with .port, .control, .stop().

RULES (JSON script, or the same dicts in Python)
    A script file is a list of rules, or {"rules": [...], "options": {...}}.
    Rules are checked in order at each event; a rule matches when its "on"
    names the event (or is "ANY") and all its filters pass. Keys:
      on       CONNECT | EHLO | HELO | MAIL | RCPT | DATA | DATA_BODY | DOT |
               AUTH | STARTTLS | RSET | NOOP | QUIT | VRFY | <any verb> | ANY
               (ANY = every point where a reply is due: CONNECT, every
               command, DOT; not DATA_BODY). Default ANY.
      greeting "421 4.7.0 Try later"  shorthand for on=CONNECT, reply=...
      match    case-insensitive substring of the subject
      regex    Python regex searched in the subject (use (?i) for case)
               subject = peer IP for CONNECT; the whole command line for
               commands ("RCPT TO:<bad@x.test> NOTIFY=NEVER"); the message
               data (latin-1) for DOT and DATA_BODY (data so far).
      local    only connections to this local address ("127.0.0.2" or
               "127.0.0.2:2525")
      peer     only connections from this client IP
      reply    reply text; "\\n"-separated or a list for multi-line (the
               continuation dashes are fixed up). A 2xx reply (354 for DATA,
               220 for STARTTLS, 235 for AUTH) means success with that text
               (for EHLO it replaces the whole capability list); any other
               code is a refusal with no state change. A 421 reply closes
               the connection after it is sent; so does "close": true
               (on STARTTLS, a 220 with "close": true closes instead of the
               TLS handshake: a broken TLS peer).
      action   reply (default when "reply" is given) | drop | stall | accept | close
               drop   close the connection without a reply (replies already
                      due for earlier pipelined commands are sent first);
                      "rst": true sends a TCP RST instead of a FIN.
               stall  wait "seconds" (default 3600) before going on; with a
                      "reply" that reply follows, otherwise the next rules and
                      the default behaviour apply. While stalled the server
                      reads and keeps what the client sends and notices it
                      closing (the connection then ends, so concurrency
                      counts stay true).
               accept stop looking at rules: default behaviour.
               close  send "reply" if any, then close gracefully.
      bytes    DATA_BODY only: fire once at least this many bytes of the body
               were read (default 1). Each DATA_BODY rule is checked once per
               DATA. A reply mid-body is sent and the connection closed.
      times    fire for the first N matching occurrences only ("always": true
               or no "times" = every time)
      after    skip the first N matching occurrences (then "times" counts)
      per      what occurrences are counted per: global (default) |
               connection | arg (per address for MAIL/RCPT, else per subject)
               | peer | local
    A CONNECT reply that is not 2xx: 421 closes; any other (554) keeps the
    connection, answering 503 to everything but QUIT (RFC 5321 3.1).
    Default behaviour: accept everything, "250 2.0.0 Ok: queued as <n>".

OPTIONS (constructor keywords, set_options(), script "options", CLI flags)
    hostname ("mx.test"), greeting (text after 220), pipelining, size
    (int; None = no SIZE; 0 = "SIZE" without limit), eightbitmime, smtputf8,
    enhancedstatuscodes, dsn (all bool, all True but dsn), extra_ehlo (list),
    helo_only (EHLO -> 502), tls_cert/tls_key (enable STARTTLS),
    tls_min_version ("TLSv1.2"), starttls (offer it when a cert is set, True),
    implicit_tls (TLS from the first byte), auth_users ({user: password};
    enables AUTH), auth_mechanisms (["PLAIN", "LOGIN"]; also "XOAUTH2" and
    "OAUTHBEARER", where the password is the bearer token: a wrong token gets
    the error challenge "334 <base64 JSON>", then 535 after the client's dummy
    response: "" for XOAUTH2, "AQ==" for OAUTHBEARER), auth_require_tls,
    auth_required (MAIL needs AUTH: 530), strict_crlf (bare LF ending a
    command -> 500), strict_params (reject MAIL/RCPT parameters the EHLO did
    not offer: 555), max_line (command line cap, 4096), max_recipients (1000),
    max_connections (1000, then 421), idle_timeout (300 s, then 421),
    max_message_bytes (64 MiB kept per message when there is no SIZE limit).

MESSAGE RECORD (messages(); DIR/<n>.json has the same without "data")
    id, queue_id, conn_id, local, local_host, local_port, peer, helo, esmtp,
    mail_from, mail_params, rcpt_to, rcpt_params, rejected_rcpts
    [{addr, reply}], data (bytes), size, tls, tls_version, tls_cipher, sni,
    auth_user, time_connect, time_mail, time_data, time_received,
    bare_lf, bare_cr, long_lines, eight_bit, dot_lines
COUNTERS: see stats(), connections(), rcpt_log(), auth_log().
"""

import argparse
import base64
import binascii
import copy
import email
import email.policy
import json
import logging
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

log = logging.getLogger("smtp_test_server")

DEFAULT_OPTIONS = {
    "hostname": "mx.test",
    "greeting": None,            # text after "220 " (default: "<hostname> ESMTP relayd-test")
    "pipelining": True,
    "size": 10240000,
    "eightbitmime": True,
    "smtputf8": True,
    "enhancedstatuscodes": True,
    "dsn": False,
    "extra_ehlo": [],
    "helo_only": False,
    "tls_cert": None,
    "tls_key": None,
    "tls_min_version": "TLSv1.2",
    "starttls": True,
    "implicit_tls": False,
    "auth_users": None,
    "auth_mechanisms": ["PLAIN", "LOGIN"],
    "auth_require_tls": False,
    "auth_required": False,
    "strict_crlf": True,
    "strict_params": True,
    "max_line": 4096,
    "max_recipients": 1000,
    "max_connections": 1000,
    "idle_timeout": 300.0,
    "max_message_bytes": 64 << 20,
}

ANY_EVENTS_EXCLUDED = {"DATA_BODY"}
RULE_KEYS = {"on", "greeting", "match", "regex", "local", "peer", "reply", "action",
             "seconds", "times", "always", "after", "per", "bytes", "rst", "close", "comment"}
ACTIONS = {"reply", "drop", "stall", "accept", "close"}
DATA_CHUNK = 65536
MAX_BUFFER = 4 << 20          # unread input kept per connection (stalls, pipelining)
MAX_CMD_LOG = 2000            # commands remembered per connection


# ---------------------------------------------------------------- helpers

def parse_hostport(s, default_port=0):
    """'127.0.0.2:2525' / '[::1]:25' / '127.0.0.2' / (host, port) -> (host, port)."""
    if isinstance(s, (tuple, list)):
        return str(s[0]), int(s[1])
    s = str(s)
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if s.count(":") == 1:
        host, port = s.split(":")
        return host, int(port)
    return s, default_port


def fmt_hostport(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def normalize_reply(reply):
    """A reply given as text ('\\n'-separated) or list -> list of lines with
    the multi-line dashes fixed ('250-a', '250 b')."""
    lines = reply if isinstance(reply, (list, tuple)) else str(reply).replace("\r\n", "\n").split("\n")
    lines = [str(x) for x in lines if str(x) != ""]
    if not lines:
        raise ValueError("empty reply")
    out = []
    for i, ln in enumerate(lines):
        if len(ln) >= 3 and ln[:3].isdigit() and (len(ln) == 3 or ln[3] in " -"):
            sep = " " if i == len(lines) - 1 else "-"
            ln = ln[:3] + sep + ln[4:] if len(ln) > 3 else ln[:3] + (sep if sep == "-" else "")
        out.append(ln)
    return out


def reply_code(lines):
    try:
        return int(lines[0][:3])
    except (ValueError, IndexError):
        return 0


def extract_addr(s):
    m = re.search(r"<([^>]*)>", s)
    return m.group(1) if m else s.strip()


def parse_message(msg):
    """email.message.EmailMessage from a message record (or raw bytes)."""
    data = msg["data"] if isinstance(msg, dict) else msg
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return email.message_from_bytes(data, policy=email.policy.default)


class Rule:
    """One behaviour rule (see the module doc). Keeps its own counters."""

    def __init__(self, spec):
        if isinstance(spec, Rule):
            spec = spec.spec
        if not isinstance(spec, dict):
            raise ValueError(f"rule must be an object: {spec!r}")
        unknown = set(spec) - RULE_KEYS
        if unknown:
            raise ValueError(f"unknown rule keys {sorted(unknown)} in {spec!r}")
        self.spec = dict(spec)
        if "greeting" in spec:
            self.on = "CONNECT"
            reply = spec["greeting"]
        else:
            self.on = str(spec.get("on", "ANY")).upper()
            reply = spec.get("reply")
        self.reply = normalize_reply(reply) if reply is not None else None
        self.action = spec.get("action") or ("reply" if self.reply is not None else None)
        if self.action not in ACTIONS:
            raise ValueError(f"rule needs a reply or an action in {sorted(ACTIONS)}: {spec!r}")
        if self.action == "reply" and self.reply is None:
            raise ValueError(f"action reply without reply: {spec!r}")
        self.match = spec.get("match")
        self.regex = re.compile(spec["regex"]) if spec.get("regex") is not None else None
        self.local = spec.get("local")
        self.peer = spec.get("peer")
        self.seconds = float(spec.get("seconds", 3600 if self.action == "stall" else 0))
        self.times = None if spec.get("always") else spec.get("times")
        if self.times is not None:
            self.times = int(self.times)
        self.after = int(spec.get("after", 0))
        self.per = spec.get("per", "global")
        if self.per not in ("global", "connection", "arg", "peer", "local"):
            raise ValueError(f"bad per {self.per!r}")
        self.bytes = int(spec.get("bytes", 1))
        self.rst = bool(spec.get("rst", False))
        self.close = bool(spec.get("close", False))
        self.counts = {}
        self.fired = 0

    def terminal(self):
        return not (self.action == "stall" and self.reply is None)

    def applies(self, event, subject, conn):
        if self.on != event and not (self.on == "ANY" and event not in ANY_EVENTS_EXCLUDED):
            return False
        if self.local is not None:
            h, p = parse_hostport(self.local, None)
            if h != conn.local_host or (p is not None and p != conn.local_port):
                return False
        if self.peer is not None and self.peer != conn.peer_host:
            return False
        if self.match is not None and str(self.match).lower() not in subject.lower():
            return False
        if self.regex is not None and not self.regex.search(subject):
            return False
        return True

    def consume(self, key):
        n = self.counts.get(key, 0)
        self.counts[key] = n + 1
        if n < self.after:
            return False
        if self.times is not None and n - self.after >= self.times:
            return False
        self.fired += 1
        return True

    def describe(self):
        d = dict(self.spec)
        d["fired"] = self.fired
        return d


class _Close(Exception):
    """Close gracefully (after flushing)."""


class _Drop(Exception):
    def __init__(self, rst=False):
        super().__init__("drop")
        self.rst = rst


class _Gone(Exception):
    """The client went away."""


class _Timeout(Exception):
    pass


class _Stop(Exception):
    pass


class _RuleReply:
    def __init__(self, lines, close):
        self.lines = lines
        self.code = reply_code(lines)
        self.close = close


# ---------------------------------------------------------------- connection

class _Conn:
    def __init__(self, server, sock, peer, local, cid):
        self.srv = server
        self.sock = sock
        self.peer_host, self.peer_port = peer[0], peer[1]
        self.local_host, self.local_port = local[0], local[1]
        self.cid = cid
        self.buf = bytearray()
        self.out = []
        self.closing = False
        self.helo = None
        self.esmtp = False
        self.tls = False
        self.tls_version = None
        self.tls_cipher = None
        self.sni = None
        self.auth_user = None
        self.rejecting = False
        self.txn = None
        self.cur_entry = None
        self.rec = {
            "id": cid, "local": fmt_hostport(*local), "local_host": local[0], "local_port": local[1],
            "peer": fmt_hostport(*peer[:2]), "peer_host": peer[0], "start": time.time(), "end": None,
            "tls": False, "auth_user": None, "helo": None, "messages": [], "commands": [],
            "closed_by": None, "starttls_injection": False, "greeting": None,
            "tls_version": None, "tls_cipher": None, "sni": None,
        }

    # -- options
    def opt(self, k):
        return self.srv._opts[k]

    def R(self, code, enh, text):
        if self.opt("enhancedstatuscodes") and enh:
            return [f"{code} {enh} {text}"]
        return [f"{code} {text}"]

    # -- output
    def reply(self, lines):
        if isinstance(lines, str):
            lines = [lines]
        code = reply_code(lines)
        if self.cur_entry is not None and self.cur_entry.get("reply") is None:
            self.cur_entry["reply"] = code
        for ln in lines:
            log.debug("[%s] >>> %s", self.cid, ln)
        self.out.append("".join(ln + "\r\n" for ln in lines).encode("utf-8", "surrogateescape"))
        if code == 421:
            self.closing = True

    def flush(self):
        if not self.out:
            return
        data = b"".join(self.out)
        self.out = []
        try:
            self.sock.settimeout(30)
            self.sock.sendall(data)
        except OSError as e:
            raise _Gone(f"send failed: {e}")

    # -- input
    def _recv(self, wait=None):
        """Read more into self.buf; wait up to idle_timeout (or `wait`)."""
        total = self.opt("idle_timeout") if wait is None else wait
        deadline = time.monotonic() + total
        while True:
            if self.srv._stop.is_set():
                raise _Stop()
            rem = deadline - time.monotonic()
            if rem <= 0:
                if wait is not None:
                    return False
                raise _Timeout()
            self.sock.settimeout(min(rem, 0.2))
            try:
                d = self.sock.recv(DATA_CHUNK)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except OSError as e:
                raise _Gone(str(e))
            if not d:
                raise _Gone("eof")
            self.buf += d
            if len(self.buf) > MAX_BUFFER:
                raise _Gone("input buffer overflow")
            return True

    def stall(self, seconds):
        self.flush()
        with self.srv._lock:
            self.srv._stats["stalls"] += 1
        deadline = time.monotonic() + seconds
        while True:
            rem = deadline - time.monotonic()
            if rem <= 0:
                return
            self._recv(wait=min(rem, 0.2))

    def read_command(self):
        """-> (line, pipelined, error_lines_or_None)."""
        pipelined = True
        too_long = False
        max_line = self.opt("max_line")
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                break
            if len(self.buf) > max_line:
                too_long = True
                del self.buf[:-1]
            self.flush()
            pipelined = False
            self._recv()
        raw = bytes(self.buf[:i + 1])
        del self.buf[:i + 1]
        if too_long or len(raw) > max_line:
            return None, pipelined, self.R(500, "5.5.2", "Error: line too long")
        bare = not raw.endswith(b"\r\n")
        line = raw[:-1] if bare else raw[:-2]
        text = line.decode("utf-8", "surrogateescape")
        if bare:
            with self.srv._lock:
                self.srv._stats["bare_lf_commands"] += 1
            if self.opt("strict_crlf"):
                return text, pipelined, self.R(500, "5.5.2", "Error: bare <LF> received")
        return text, pipelined, None

    # -- rules
    def rules(self, event, subject, addr=None):
        """Apply the rules for an event: stalls happen here; a drop raises;
        -> _RuleReply or None (default behaviour)."""
        for r in self.srv._match_rules(event, subject, self, addr):
            if r.action == "stall":
                log.debug("[%s] stall %.3fs at %s", self.cid, r.seconds, event)
                self.stall(r.seconds)
            if r.action == "drop":
                self.flush()
                with self.srv._lock:
                    self.srv._stats["drops"] += 1
                raise _Drop(r.rst)
            if r.action == "accept":
                return None
            if r.reply is not None:
                return _RuleReply(r.reply, r.close or r.action == "close")
            if r.action == "close":
                self.flush()
                raise _Close()
        return None

    def send_rule(self, rr):
        self.reply(rr.lines)
        if rr.close:
            self.closing = True

    # -- main loop
    def run(self):
        try:
            if self.opt("implicit_tls"):
                self.handshake()
            rr = self.rules("CONNECT", self.peer_host)
            if rr is not None:
                self.rec["greeting"] = rr.code
                self.send_rule(rr)
                if rr.code // 100 != 2:
                    self.rejecting = rr.code != 421
            else:
                self.rec["greeting"] = 220
                g = self.opt("greeting") or f"{self.opt('hostname')} ESMTP relayd-test"
                self.reply([f"220 {g}"])
            while True:
                if self.closing:
                    self.flush()
                    raise _Close()
                line, pipelined, err = self.read_command()
                log.debug("[%s] <<< %s", self.cid, line)
                self.cur_entry = {"t": time.time(), "cmd": line, "reply": None, "pipelined": pipelined}
                with self.srv._lock:
                    if len(self.rec["commands"]) < MAX_CMD_LOG:
                        self.rec["commands"].append(self.cur_entry)
                if err:
                    self.reply(err)
                    continue
                self.handle(line)
        except _Close:
            self.rec["closed_by"] = "server"
            self._close()
        except _Drop as d:
            self.rec["closed_by"] = "drop"
            self._close(rst=d.rst)
        except _Gone as e:
            self.rec["closed_by"] = "client"
            log.debug("[%s] client gone: %s", self.cid, e)
            self._close()
        except _Timeout:
            self.rec["closed_by"] = "timeout"
            try:
                self.reply(self.R(421, "4.4.2", f"{self.opt('hostname')} Error: timeout exceeded"))
                self.flush()
            except _Gone:
                pass
            self._close()
        except _Stop:
            self.rec["closed_by"] = "stop"
            self._close()
        except Exception:  # never take the server down with one client
            log.exception("[%s] connection error", self.cid)
            self.rec["closed_by"] = "error"
            with self.srv._lock:
                self.srv._stats["errors"] += 1
            self._close()
        finally:
            self.srv._conn_done(self)

    def _close(self, rst=False):
        try:
            if rst:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.sock.close()
        except OSError:
            pass

    # -- TLS
    def handshake(self):
        ctx = self.srv._tls_context()
        if ctx is None:
            raise _Close()
        self.sock.settimeout(15)
        try:
            s = ctx.wrap_socket(self.sock, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with self.srv._lock:
                self.srv._stats["tls_failures"] += 1
            raise _Gone(f"TLS handshake failed: {e}")
        self.sock = s
        self.tls = True
        self.tls_version = s.version()
        self.tls_cipher = (s.cipher() or [None])[0]
        self.sni = getattr(s, "_test_sni", None)
        with self.srv._lock:
            self.srv._stats["tls"] += 1
            self.rec.update(tls=True, tls_version=self.tls_version, tls_cipher=self.tls_cipher,
                            sni=self.sni)

    # -- commands
    def handle(self, line):
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        with self.srv._lock:
            c = self.srv._stats["commands"]
            c[verb] = c.get(verb, 0) + 1
        if self.rejecting and verb != "QUIT":
            self.reply(self.R(503, "5.5.1", "Error: access denied"))
            return
        addr = None
        if verb in ("MAIL", "RCPT"):
            addr = extract_addr(arg.partition(":")[2]).lower()
        rr = self.rules(verb, line, addr)
        h = getattr(self, "cmd_" + verb, None)
        if h is None:
            if rr is not None:
                self.send_rule(rr)
            else:
                self.reply(self.R(502, "5.5.2", "Error: command not recognized"))
            return
        h(arg.strip(), rr)

    def refused(self, rr, ok_codes=(2,)):
        """A rule reply that is a refusal: send it, True."""
        if rr is not None and rr.code // 100 not in ok_codes:
            self.send_rule(rr)
            return True
        return False

    def ok(self, rr, lines):
        if rr is not None:
            self.send_rule(rr)
        else:
            self.reply(lines)

    def ehlo_lines(self):
        o = self.srv._opts
        caps = []
        if o["pipelining"]:
            caps.append("PIPELINING")
        if o["size"] is not None:
            caps.append(f"SIZE {o['size']}" if o["size"] else "SIZE")
        if o["eightbitmime"]:
            caps.append("8BITMIME")
        if o["smtputf8"]:
            caps.append("SMTPUTF8")
        if o["enhancedstatuscodes"]:
            caps.append("ENHANCEDSTATUSCODES")
        if o["dsn"]:
            caps.append("DSN")
        if self.starttls_offered():
            caps.append("STARTTLS")
        if self.auth_offered():
            caps.append("AUTH " + " ".join(o["auth_mechanisms"]))
        caps.extend(o["extra_ehlo"] or [])
        lines = [o["hostname"]] + caps
        return [("250 " if i == len(lines) - 1 else "250-") + x for i, x in enumerate(lines)]

    def starttls_offered(self):
        return (not self.tls and self.opt("starttls") and self.opt("tls_cert") is not None)

    def auth_offered(self):
        return (bool(self.opt("auth_users")) and self.auth_user is None
                and (self.tls or not self.opt("auth_require_tls")))

    def reset_txn(self):
        self.txn = None

    def cmd_EHLO(self, arg, rr):
        if self.refused(rr):
            return
        if self.opt("helo_only") and rr is None:
            self.reply(self.R(502, "5.5.2", "Error: command not recognized"))
            return
        if not arg:
            self.reply(self.R(501, "5.5.4", "Syntax: EHLO hostname"))
            return
        self.reset_txn()
        self.helo, self.esmtp = arg, True
        self.rec["helo"] = arg
        self.ok(rr, self.ehlo_lines())

    def cmd_HELO(self, arg, rr):
        if self.refused(rr):
            return
        if not arg:
            self.reply(self.R(501, "5.5.4", "Syntax: HELO hostname"))
            return
        self.reset_txn()
        self.helo, self.esmtp = arg, False
        self.rec["helo"] = arg
        self.ok(rr, [f"250 {self.opt('hostname')}"])

    def _params(self, text):
        params = {}
        for p in text.split():
            k, _, v = p.partition("=")
            params[k.upper()] = v if "=" in p else None
        return params

    def cmd_MAIL(self, arg, rr):
        if self.refused(rr):
            return
        if self.helo is None:
            return self.reply(self.R(503, "5.5.1", "Error: send HELO/EHLO first"))
        if self.txn is not None:
            return self.reply(self.R(503, "5.5.1", "Error: nested MAIL command"))
        if self.opt("auth_required") and self.auth_user is None:
            return self.reply(self.R(530, "5.7.0", "Authentication required"))
        m = re.match(r"(?i)FROM:\s*<([^<>]*)>(.*)$", arg)
        if not m:
            return self.reply(self.R(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
        params = self._params(m.group(2))
        if params and not self.esmtp:
            return self.reply(self.R(555, "5.5.4", "Error: parameters need EHLO"))
        if self.opt("strict_params"):
            allowed = {"SIZE": self.opt("size") is not None, "BODY": True,
                       "SMTPUTF8": self.opt("smtputf8"), "AUTH": self.auth_offered() or self.auth_user,
                       "RET": self.opt("dsn"), "ENVID": self.opt("dsn")}
            for k, v in params.items():
                if not allowed.get(k):
                    return self.reply(self.R(555, "5.5.4", f"Unsupported option: {k}"))
                if k == "BODY" and (v or "").upper() == "8BITMIME" and not self.opt("eightbitmime"):
                    return self.reply(self.R(555, "5.5.4", "Unsupported option: BODY=8BITMIME"))
        limit = self.opt("size")
        if "SIZE" in params:
            try:
                n = int(params["SIZE"])
            except (TypeError, ValueError):
                return self.reply(self.R(501, "5.5.4", "Bad SIZE parameter"))
            if limit and n > limit:
                return self.reply(self.R(552, "5.3.4", "Message size exceeds fixed limit"))
        self.txn = {"mail_from": m.group(1), "mail_params": params, "rcpt_to": [],
                    "rcpt_params": [], "rejected_rcpts": [], "time_mail": time.time()}
        self.ok(rr, self.R(250, "2.1.0", "Ok"))

    def cmd_RCPT(self, arg, rr):
        m = re.match(r"(?i)TO:\s*<([^<>]*)>(.*)$", arg)
        addr = m.group(1) if m else extract_addr(arg.partition(":")[2])
        if rr is not None and rr.code // 100 != 2:
            out = rr.lines
            self.send_rule(rr)
        else:
            out, params = self._rcpt_check(m)
            if reply_code(out) // 100 == 2:
                self.txn["rcpt_to"].append(addr)
                self.txn["rcpt_params"].append(params)
                if rr is not None:
                    out = rr.lines
                    self.send_rule(rr)
                else:
                    self.reply(out)
            else:
                self.reply(out)
        if self.txn is not None and reply_code(out) // 100 != 2:
            self.txn["rejected_rcpts"].append({"addr": addr, "reply": "\n".join(out)})
        self.srv._log_rcpt(self, addr, out)

    def _rcpt_check(self, m):
        """Default verdict for a RCPT -> (reply lines, params)."""
        if self.txn is None:
            return self.R(503, "5.5.1", "Error: need MAIL command"), None
        if not m or not m.group(1):
            return self.R(501, "5.1.3", "Bad recipient address syntax"), None
        params = self._params(m.group(2))
        if params and not self.esmtp:
            return self.R(555, "5.5.4", "Error: parameters need EHLO"), None
        if params and self.opt("strict_params"):
            allowed = {"NOTIFY", "ORCPT"} if self.opt("dsn") else set()
            bad = [k for k in params if k not in allowed]
            if bad:
                return self.R(555, "5.5.4", f"Unsupported option: {bad[0]}"), None
        if len(self.txn["rcpt_to"]) >= self.opt("max_recipients"):
            return self.R(452, "4.5.3", "Error: too many recipients"), None
        return self.R(250, "2.1.5", "Ok"), params

    def cmd_DATA(self, arg, rr):
        if self.refused(rr, ok_codes=(3,)):
            return
        if self.txn is None:
            return self.reply(self.R(503, "5.5.1", "Error: need RCPT command"))
        if not self.txn["rcpt_to"]:
            return self.reply(self.R(554, "5.5.1", "Error: no valid recipients"))
        if arg:
            return self.reply(self.R(501, "5.5.4", "Syntax: DATA"))
        self.ok(rr, ["354 End data with <CR><LF>.<CR><LF>"])
        self.flush()
        self.txn["time_data"] = time.time()
        self.read_body()

    def read_body(self):
        opts = self.srv._opts
        limit = opts["size"] or 0
        cap = limit + 1 if limit else opts["max_message_bytes"]
        body_rules = self.srv._rules_for("DATA_BODY")
        data = bytearray()
        size = 0          # unstuffed size
        wire = 0          # bytes read from the wire
        flags = {"bare_lf": False, "bare_cr": False, "long_lines": False, "eight_bit": False,
                 "dot_lines": 0}
        at_start = True

        def add(chunk, complete):
            nonlocal size, at_start
            if at_start and chunk.startswith(b"."):
                chunk = chunk[1:]
                flags["dot_lines"] += 1
            if b"\n" in chunk:
                flags["bare_lf"] = True
            if b"\r" in chunk:
                flags["bare_cr"] = True
            if not flags["eight_bit"] and any(b > 127 for b in chunk):
                flags["eight_bit"] = True
            if complete:
                chunk += b"\r\n"
            size += len(chunk)
            if len(data) < cap:
                data.extend(chunk[:cap - len(data)])
            at_start = complete

        def check_body_rules():
            for r in list(body_rules):
                if wire >= r.bytes:
                    body_rules.remove(r)
                    if not self.srv._consume_rule(r, "DATA_BODY", data.decode("latin-1"), self):
                        continue
                    if r.action == "stall":
                        self.stall(r.seconds)
                    if r.action == "drop":
                        with self.srv._lock:
                            self.srv._stats["drops"] += 1
                        raise _Drop(r.rst)
                    if r.reply is not None:
                        self.reply(r.reply)
                        self.flush()
                        raise _Close()
                    if r.action == "close":
                        raise _Close()

        line_len = 0
        while True:
            i = self.buf.find(b"\r\n")
            if i < 0:
                if len(self.buf) > DATA_CHUNK:
                    # a very long line: take it in pieces (keep a trailing CR)
                    n = len(self.buf) - 1
                    chunk = bytes(self.buf[:n])
                    del self.buf[:n]
                    wire += n
                    line_len += n
                    flags["long_lines"] = True
                    add(chunk, False)
                    check_body_rules()
                    continue
                self._recv()
                continue
            line = bytes(self.buf[:i])
            del self.buf[:i + 2]
            wire += i + 2
            if at_start and line == b".":
                break
            if line_len + i > 998:
                flags["long_lines"] = True
            line_len = 0
            add(line, True)
            check_body_rules()
        self.srv._dot(self, bytes(data), size, flags)

    def cmd_RSET(self, arg, rr):
        if self.refused(rr):
            return
        self.reset_txn()
        self.ok(rr, self.R(250, "2.0.0", "Ok"))

    def cmd_NOOP(self, arg, rr):
        if self.refused(rr):
            return
        self.ok(rr, self.R(250, "2.0.0", "Ok"))

    def cmd_VRFY(self, arg, rr):
        if self.refused(rr):
            return
        self.ok(rr, self.R(252, "2.0.0", "Cannot VRFY user"))

    def cmd_HELP(self, arg, rr):
        self.ok(rr, self.R(214, "2.0.0", "See RFC 5321"))

    def cmd_QUIT(self, arg, rr):
        self.ok(rr, self.R(221, "2.0.0", "Bye"))
        self.flush()
        raise _Close()

    def cmd_STARTTLS(self, arg, rr):
        if self.refused(rr):
            return
        if self.tls_context_missing():
            return self.reply(self.R(502, "5.5.1", "Error: command not implemented"))
        if self.tls:
            return self.reply(self.R(503, "5.5.1", "Error: TLS already active"))
        if arg:
            return self.reply(self.R(501, "5.5.4", "Syntax: STARTTLS"))
        self.ok(rr, self.R(220, "2.0.0", "Ready to start TLS"))
        self.flush()
        if rr is not None and rr.close:
            raise _Close()      # a broken TLS peer: 220, then no handshake
        if self.buf:
            # plaintext pipelined after STARTTLS: never answered (CVE-2011-0411)
            self.rec["starttls_injection"] = True
            with self.srv._lock:
                self.srv._stats["starttls_injection"] += 1
            self.buf.clear()
        self.handshake()
        self.helo, self.esmtp, self.txn, self.auth_user = None, False, None, None

    def tls_context_missing(self):
        return not self.opt("starttls") or self.srv._tls_context() is None

    def _read_auth_line(self, challenge):
        self.reply([f"334 {challenge}"])
        line, _, err = self.read_command()
        if err:
            return None
        return line

    def cmd_AUTH(self, arg, rr):
        if self.refused(rr, ok_codes=(2, 3)):
            return
        users = self.opt("auth_users")
        if not users:
            return self.reply(self.R(503, "5.5.1", "Error: authentication not enabled"))
        if self.auth_user is not None:
            return self.reply(self.R(503, "5.5.1", "Error: already authenticated"))
        if self.txn is not None:
            return self.reply(self.R(503, "5.5.1", "Error: MAIL transaction in progress"))
        if self.opt("auth_require_tls") and not self.tls:
            return self.reply(self.R(538, "5.7.11", "Encryption required for requested authentication mechanism"))
        parts = arg.split()
        if not parts:
            return self.reply(self.R(501, "5.5.4", "Syntax: AUTH mechanism"))
        mech = parts[0].upper()
        initial = parts[1] if len(parts) > 1 else None
        if mech not in [m.upper() for m in self.opt("auth_mechanisms")]:
            return self.reply(self.R(504, "5.5.4", "Unrecognized authentication type"))

        def b64(s):
            if s == "=":
                return b""
            return base64.b64decode(s.encode("ascii"), validate=True)

        try:
            if mech == "PLAIN":
                resp = initial if initial is not None else self._read_auth_line("")
                if resp is None or resp == "*":
                    return self.reply(self.R(501, "5.7.0", "Authentication aborted"))
                f = b64(resp).split(b"\0")
                if len(f) != 3:
                    return self.reply(self.R(501, "5.5.2", "Invalid PLAIN response"))
                user, pw = f[1].decode("utf-8", "replace"), f[2].decode("utf-8", "replace")
            elif mech == "LOGIN":
                u = initial if initial is not None else self._read_auth_line("VXNlcm5hbWU6")
                if u is None or u == "*":
                    return self.reply(self.R(501, "5.7.0", "Authentication aborted"))
                user = b64(u).decode("utf-8", "replace")
                p = self._read_auth_line("UGFzc3dvcmQ6")
                if p is None or p == "*":
                    return self.reply(self.R(501, "5.7.0", "Authentication aborted"))
                pw = b64(p).decode("utf-8", "replace")
            elif mech in ("XOAUTH2", "OAUTHBEARER"):
                return self._auth_bearer(mech, initial, users, rr)
            else:
                return self.reply(self.R(504, "5.5.4", "Unrecognized authentication type"))
        except (binascii.Error, ValueError, UnicodeError):
            return self.reply(self.R(501, "5.5.2", "Invalid base64 data"))
        good = users.get(user) == pw
        if rr is not None and rr.code // 100 == 2:
            good = True
        self.srv._log_auth(self, mech, user, good)
        if good:
            self.auth_user = user
            self.rec["auth_user"] = user
            self.ok(rr if rr is not None and rr.code == 235 else None,
                    self.R(235, "2.7.0", "Authentication successful"))
        else:
            self.reply(self.R(535, "5.7.8", "Error: authentication failed"))

    # XOAUTH2: "user=U^Aauth=Bearer T^A^A"; OAUTHBEARER (RFC 7628): "n,a=U,^Aauth=Bearer T^A^A".
    _XOAUTH2_RE = re.compile(rb"^user=([^\x01]+)\x01auth=Bearer ([^\x01]+)\x01\x01$")
    _OAUTHBEARER_RE = re.compile(rb"^n,a=([^,\x01]+),\x01(?:[a-z]+=[^\x01]*\x01)*?"
                                 rb"auth=Bearer ([^\x01]+)\x01(?:[a-z]+=[^\x01]*\x01)*\x01$")

    def _auth_bearer(self, mech, initial, users, rr):
        resp = initial if initial is not None else self._read_auth_line("")
        if resp is None or resp == "*":
            return self.reply(self.R(501, "5.7.0", "Authentication aborted"))
        raw = base64.b64decode(resp.encode("ascii"), validate=True)
        m = (self._XOAUTH2_RE if mech == "XOAUTH2" else self._OAUTHBEARER_RE).match(raw)
        if not m:
            return self.reply(self.R(501, "5.5.2", f"Invalid {mech} response"))
        user = m.group(1).decode("utf-8", "replace")
        if mech == "OAUTHBEARER":
            user = user.replace("=2C", ",").replace("=3D", "=")
        token = m.group(2).decode("utf-8", "replace")
        good = users.get(user) == token or (rr is not None and rr.code // 100 == 2)
        self.srv._log_auth(self, mech, user, good, token)
        if good:
            self.auth_user = user
            self.rec["auth_user"] = user
            return self.ok(rr if rr is not None and rr.code == 235 else None,
                           self.R(235, "2.7.0", "Accepted"))
        err = json.dumps({"status": "401", "schemes": "Bearer", "scope": "https://mail.test/"})
        ack = self._read_auth_line(base64.b64encode(err.encode()).decode("ascii"))
        expected = "" if mech == "XOAUTH2" else "AQ=="
        if ack != expected:
            return self.reply(self.R(501, "5.5.2", f"Expected the dummy response {expected!r}"))
        self.reply(self.R(535, "5.7.8", "Username and Password not accepted (test server)"))


# ---------------------------------------------------------------- server

class SMTPTestServer:
    """Scriptable SMTP server; see the module doc. Thread-safe accessors return copies."""

    def __init__(self, listen=("127.0.0.1", 0), rules=None, *, maildir=None, **options):
        if isinstance(listen, str) or (isinstance(listen, tuple) and len(listen) == 2
                                       and isinstance(listen[1], int)):
            listen = [listen]
        self._listen_spec = [parse_hostport(x) for x in listen]
        unknown = set(options) - set(DEFAULT_OPTIONS)
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}")
        self._opts = dict(DEFAULT_OPTIONS)
        self._opts.update(options)
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._rules = [Rule(r) for r in (rules or [])]
        self.maildir = maildir
        if maildir:
            os.makedirs(maildir, exist_ok=True)
        self._ctx = None
        self._ctx_key = None
        self._listeners = []
        self._threads = []
        self._conns = set()
        self._control = None
        self.addresses = []
        self._next_msg = 1
        self._next_conn = 1
        self._reset_state()

    # ---- lifecycle
    def start(self, attempts=10):
        """Bind every listener (port 0: one free port shared by all) and serve."""
        for attempt in range(attempts):
            try:
                self._bind_all()
                break
            except OSError:
                self._close_listeners()
                if attempt == attempts - 1 or any(p for _, p in self._listen_spec):
                    raise
        for s, local in zip(self._listeners, self.addresses):
            t = threading.Thread(target=self._accept_loop, args=(s, local),
                                 name=f"smtp-accept-{local[0]}:{local[1]}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _bind_all(self):
        port = 0
        for host, p in self._listen_spec:
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            s = socket.socket(fam, socket.SOCK_STREAM)
            self._listeners.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, p or port))
            s.listen(256)
            s.settimeout(0.2)
            bound = s.getsockname()[1]
            port = port or bound
            self.addresses.append((host, bound))

    def _close_listeners(self):
        for s in self._listeners:
            try:
                s.close()
            except OSError:
                pass
        self._listeners = []
        self.addresses = []

    @property
    def port(self):
        return self.addresses[0][1]

    @property
    def host(self):
        return self.addresses[0][0]

    def stop(self, timeout=5):
        """Stop listening, end every connection (within ~0.2 s each, in parallel)."""
        self._stop.set()
        for s in self._listeners:
            try:
                s.close()
            except OSError:
                pass
        if self._control is not None:
            self._control.close()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = self._threads + list(self._conns)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self):
        return self.start() if not self.addresses else self

    def __exit__(self, *exc):
        self.stop()

    # ---- configuration
    def set_rules(self, rules):
        new = [Rule(r) for r in rules]
        with self._lock:
            self._rules = new

    def add_rule(self, rule):
        r = Rule(rule)
        with self._lock:
            self._rules.append(r)

    def add_rules(self, rules):
        new = [Rule(r) for r in rules]
        with self._lock:
            self._rules.extend(new)

    def clear_rules(self):
        self.set_rules([])

    def rules(self):
        with self._lock:
            return [r.describe() for r in self._rules]

    def set_options(self, **options):
        unknown = set(options) - set(DEFAULT_OPTIONS)
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}")
        with self._lock:
            o = dict(self._opts)
            o.update(options)
            self._opts = o   # connections read self._opts: swap, never mutate

    def options(self):
        with self._lock:
            return copy.deepcopy(self._opts)

    # ---- inspection
    def _reset_state(self):
        self._messages = []
        self._rcpt_log = []
        self._auth_log = []
        self._conn_records = []
        self._stats = {
            "connections": 0, "current_connections": 0, "max_concurrent": 0, "rejected_connections": 0,
            "messages": 0, "dot_rejected": 0, "drops": 0, "stalls": 0, "errors": 0,
            "tls": 0, "tls_failures": 0, "starttls_injection": 0, "bare_lf_commands": 0,
            "auth_success": 0, "auth_failure": 0,
            "commands": {}, "rcpt": {}, "delivered": {}, "by_local": {},
        }

    def reset(self):
        """Forget messages, logs and counters (current connections stay counted)."""
        with self._lock:
            cur = self._stats["current_connections"]
            by_local_cur = {k: v["current"] for k, v in self._stats["by_local"].items()}
            self._reset_state()
            self._stats["current_connections"] = cur
            self._stats["max_concurrent"] = cur
            for k, v in by_local_cur.items():
                self._stats["by_local"][k] = {"connections": 0, "current": v, "max_concurrent": v,
                                              "messages": 0, "connect_times": []}
            for r in self._rules:
                r.counts.clear()
                r.fired = 0
            self._cond.notify_all()

    def messages(self):
        with self._lock:
            return copy.deepcopy(self._messages)

    def stats(self):
        """connections, current_connections, max_concurrent, rejected_connections
        (over max_connections), messages, dot_rejected, drops, stalls, errors, tls,
        tls_failures, starttls_injection, bare_lf_commands, auth_success,
        auth_failure, commands {VERB: n}, rcpt {addr: {attempts, accepted,
        rejected}}, delivered {addr: messages}, by_local {"host:port":
        {connections, current, max_concurrent, messages, connect_times}},
        connect_times [epoch seconds]."""
        with self._lock:
            s = copy.deepcopy(self._stats)
            s["connect_times"] = [c["start"] for c in self._conn_records]
            return s

    def connections(self):
        """One record per connection: id, local, local_host, local_port, peer,
        peer_host, start, end, tls, tls_version, tls_cipher, sni, auth_user,
        helo, greeting (code), messages [ids], commands [{t, cmd, reply,
        pipelined}], closed_by (client|server|drop|timeout|stop|error),
        starttls_injection."""
        with self._lock:
            return copy.deepcopy(self._conn_records)

    def rcpt_log(self):
        """Every RCPT: {t, conn_id, local, addr, reply}."""
        with self._lock:
            return copy.deepcopy(self._rcpt_log)

    def auth_log(self):
        with self._lock:
            return copy.deepcopy(self._auth_log)

    def wait_for(self, pred, timeout=10.0):
        """Wait until pred(server) is true (re-checked on each event); -> bool."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if pred(self):
                    return True
                rem = deadline - time.monotonic()
                if rem <= 0:
                    return False
                self._cond.wait(min(rem, 0.5))

    def wait_messages(self, count, timeout=10.0):
        return self.wait_for(lambda s: len(s._messages) >= count, timeout)

    def wait_connections(self, count, timeout=10.0):
        return self.wait_for(lambda s: s._stats["connections"] >= count, timeout)

    def wait_idle(self, timeout=10.0):
        """Wait until no connection is open."""
        return self.wait_for(lambda s: s._stats["current_connections"] == 0, timeout)

    # ---- internals
    def _tls_context(self):
        o = self._opts
        if not o["tls_cert"]:
            return None
        key = (o["tls_cert"], o["tls_key"], o["tls_min_version"])
        with self._lock:
            if self._ctx is None or self._ctx_key != key:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.minimum_version = getattr(ssl.TLSVersion, o["tls_min_version"].replace(".", "_"))
                ctx.load_cert_chain(o["tls_cert"], o["tls_key"] or None)

                def sni(sock, name, _ctx):
                    try:
                        sock._test_sni = name
                    except AttributeError:
                        pass
                ctx.sni_callback = sni
                self._ctx, self._ctx_key = ctx, key
            return self._ctx

    def _accept_loop(self, lsock, local):
        while not self._stop.is_set():
            try:
                sock, peer = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.05)
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stats["current_connections"] >= self._opts["max_connections"]:
                    self._stats["rejected_connections"] += 1
                    try:
                        sock.sendall(b"421 4.7.0 Too many connections\r\n")
                        sock.close()
                    except OSError:
                        pass
                    continue
                cid = self._next_conn
                self._next_conn += 1
                conn = _Conn(self, sock, peer, local, cid)
                st = self._stats
                st["connections"] += 1
                st["current_connections"] += 1
                st["max_concurrent"] = max(st["max_concurrent"], st["current_connections"])
                bl = st["by_local"].setdefault(conn.rec["local"], {
                    "connections": 0, "current": 0, "max_concurrent": 0, "messages": 0,
                    "connect_times": []})
                bl["connections"] += 1
                bl["current"] += 1
                bl["max_concurrent"] = max(bl["max_concurrent"], bl["current"])
                bl["connect_times"].append(conn.rec["start"])
                self._conn_records.append(conn.rec)
                t = threading.Thread(target=conn.run, name=f"smtp-conn-{cid}", daemon=True)
                self._conns.add(t)
                self._cond.notify_all()
            log.debug("[%s] connect from %s to %s", cid, conn.rec["peer"], conn.rec["local"])
            t.start()

    def _conn_done(self, conn):
        with self._lock:
            conn.rec["end"] = time.time()
            self._stats["current_connections"] -= 1
            bl = self._stats["by_local"].get(conn.rec["local"])
            if bl is not None and bl["current"] > 0:
                bl["current"] -= 1
            self._conns.discard(threading.current_thread())
            self._cond.notify_all()

    def _rule_key(self, r, event, subject, conn, addr):
        if r.per == "connection":
            return conn.cid
        if r.per == "peer":
            return conn.peer_host
        if r.per == "local":
            return conn.rec["local"]
        if r.per == "arg":
            return addr if addr is not None else subject
        return None

    def _match_rules(self, event, subject, conn, addr=None):
        out = []
        with self._lock:
            for r in self._rules:
                if not r.applies(event, subject, conn):
                    continue
                if not r.consume(self._rule_key(r, event, subject, conn, addr)):
                    continue
                out.append(r)
                if r.terminal():
                    break
        return out

    def _rules_for(self, event):
        with self._lock:
            return [r for r in self._rules if r.on == event]

    def _consume_rule(self, r, event, subject, conn):
        with self._lock:
            return r.applies(event, subject, conn) and r.consume(
                self._rule_key(r, event, subject, conn, None))

    def _log_rcpt(self, conn, addr, out):
        code = reply_code(out) if out else 0
        with self._lock:
            self._rcpt_log.append({"t": time.time(), "conn_id": conn.cid, "local": conn.rec["local"],
                                   "addr": addr, "reply": "\n".join(out) if out else None})
            st = self._stats["rcpt"].setdefault(addr.lower(), {"attempts": 0, "accepted": 0, "rejected": 0})
            st["attempts"] += 1
            st["accepted" if code // 100 == 2 else "rejected"] += 1
            self._cond.notify_all()

    def _log_auth(self, conn, mech, user, ok, token=None):
        with self._lock:
            self._auth_log.append({"t": time.time(), "conn_id": conn.cid, "mech": mech,
                                   "user": user, "ok": ok, "tls": conn.tls})
            if token is not None:  # XOAUTH2 / OAUTHBEARER: the bearer token it got
                self._auth_log[-1]["token"] = token
            self._stats["auth_success" if ok else "auth_failure"] += 1
            self._cond.notify_all()

    def _dot(self, conn, data, size, flags):
        txn = conn.txn
        rr = conn.rules("DOT", data.decode("latin-1"))
        limit = self._opts["size"]
        if rr is not None and rr.code // 100 != 2:
            conn.send_rule(rr)
        elif limit and size > limit:
            conn.reply(conn.R(552, "5.3.4", "Error: message file too big"))
        else:
            with self._lock:
                n = self._next_msg
                self._next_msg += 1
            msg = dict(txn)
            msg.update(flags)
            msg.update({
                "id": n, "queue_id": str(n), "conn_id": conn.cid, "local": conn.rec["local"],
                "local_host": conn.local_host, "local_port": conn.local_port, "peer": conn.rec["peer"],
                "helo": conn.helo, "esmtp": conn.esmtp, "data": data, "size": size,
                "tls": conn.tls, "tls_version": conn.tls_version, "tls_cipher": conn.tls_cipher,
                "sni": conn.sni, "auth_user": conn.auth_user, "time_connect": conn.rec["start"],
                "time_received": time.time(),
            })
            if self.maildir:
                self._write_maildir(msg)
            with self._lock:
                self._messages.append(msg)
                self._stats["messages"] += 1
                bl = self._stats["by_local"].get(conn.rec["local"])
                if bl is not None:
                    bl["messages"] += 1
                for r in msg["rcpt_to"]:
                    d = self._stats["delivered"]
                    d[r.lower()] = d.get(r.lower(), 0) + 1
                conn.rec["messages"].append(n)
                self._cond.notify_all()
            log.debug("[%s] stored message %d from <%s> to %s (%d bytes)", conn.cid, n,
                      msg["mail_from"], msg["rcpt_to"], size)
            if rr is not None:
                conn.send_rule(rr)
            else:
                conn.reply(conn.R(250, "2.0.0", f"Ok: queued as {n}"))
            conn.txn = None
            return
        with self._lock:
            self._stats["dot_rejected"] += 1
        conn.txn = None

    def _write_maildir(self, msg):
        base = os.path.join(self.maildir, str(msg["id"]))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(msg["data"])
        os.rename(base + ".eml.tmp", base + ".eml")
        env = {k: v for k, v in msg.items() if k != "data"}
        with open(base + ".json.tmp", "w") as f:
            json.dump(env, f, indent=1, default=str)
        os.rename(base + ".json.tmp", base + ".json")

    # ---- control interface
    def start_control(self, host="127.0.0.1", port=0):
        self._control = _ControlServer(self, host, port)
        return self._control.port

    def control_request(self, req):
        """Run one control command (a dict) -> reply dict."""
        cmd = req.get("cmd")
        try:
            if cmd == "ping":
                return {"ok": True}
            if cmd == "set_rules":
                self.set_rules(req.get("rules", []))
                return {"ok": True}
            if cmd == "add_rules":
                self.add_rules(req.get("rules", []))
                return {"ok": True}
            if cmd == "get_rules":
                return {"ok": True, "rules": self.rules()}
            if cmd == "set_options":
                self.set_options(**req.get("options", {}))
                return {"ok": True}
            if cmd == "stats":
                return {"ok": True, "stats": self.stats()}
            if cmd == "messages":
                out = []
                for m in self.messages():
                    d = m.pop("data")
                    if req.get("data", True):
                        m["data"] = d.decode("utf-8", "replace")
                    if req.get("b64"):
                        m["data_b64"] = base64.b64encode(d).decode("ascii")
                    out.append(m)
                return {"ok": True, "messages": out}
            if cmd == "connections":
                return {"ok": True, "connections": self.connections()}
            if cmd == "rcpt_log":
                return {"ok": True, "rcpt_log": self.rcpt_log()}
            if cmd == "auth_log":
                return {"ok": True, "auth_log": self.auth_log()}
            if cmd == "reset":
                self.reset()
                return {"ok": True}
            if cmd == "wait_messages":
                ok = self.wait_messages(int(req.get("count", 1)), float(req.get("timeout", 10)))
                with self._lock:
                    return {"ok": ok, "messages": len(self._messages)}
            if cmd == "shutdown":
                threading.Thread(target=self._shutdown_soon, daemon=True).start()
                return {"ok": True}
            return {"ok": False, "error": f"unknown cmd {cmd!r}"}
        except Exception as e:  # report, never crash
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}

    def _shutdown_soon(self):
        time.sleep(0.05)
        self.stop()
        cb = getattr(self, "on_shutdown", None)
        if cb:
            cb()


class _ControlServer:
    def __init__(self, server, host, port):
        self.srv = server
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._loop, name="smtp-control", daemon=True).start()

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _loop(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._client, args=(c,), daemon=True).start()

    def _client(self, c):
        try:
            f = c.makefile("rwb")
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    req = json.loads(line)
                    rep = self.srv.control_request(req) if isinstance(req, dict) else \
                        {"ok": False, "error": "request must be a JSON object"}
                except json.JSONDecodeError as e:
                    rep = {"ok": False, "error": f"bad JSON: {e}"}
                f.write(json.dumps(rep, default=str).encode() + b"\n")
                f.flush()
        except OSError:
            pass
        finally:
            c.close()


# ---------------------------------------------------------------- clients for tests

class ControlClient:
    """Talks to a running CLI server's control port (JSON lines)."""

    def __init__(self, port, host="127.0.0.1", timeout=30):
        self.addr = (host, port)
        self.timeout = timeout

    def call(self, cmd, **kw):
        req = dict(kw, cmd=cmd)
        timeout = self.timeout + float(kw.get("timeout", 0))
        with socket.create_connection(self.addr, timeout=timeout) as s:
            s.sendall(json.dumps(req).encode() + b"\n")
            f = s.makefile("rb")
            line = f.readline()
        if not line:
            raise ConnectionError("control: no reply")
        return json.loads(line)

    def _ok(self, rep):
        if not rep.get("ok"):
            raise RuntimeError(f"control error: {rep.get('error')}")
        return rep

    def ping(self):
        return self._ok(self.call("ping"))

    def set_rules(self, rules):
        return self._ok(self.call("set_rules", rules=rules))

    def add_rules(self, rules):
        return self._ok(self.call("add_rules", rules=rules))

    def get_rules(self):
        return self._ok(self.call("get_rules"))["rules"]

    def set_options(self, **options):
        return self._ok(self.call("set_options", options=options))

    def stats(self):
        return self._ok(self.call("stats"))["stats"]

    def messages(self, data=True):
        return self._ok(self.call("messages", data=data))["messages"]

    def connections(self):
        return self._ok(self.call("connections"))["connections"]

    def rcpt_log(self):
        return self._ok(self.call("rcpt_log"))["rcpt_log"]

    def auth_log(self):
        return self._ok(self.call("auth_log"))["auth_log"]

    def reset(self):
        return self._ok(self.call("reset"))

    def wait_messages(self, count, timeout=10):
        return bool(self.call("wait_messages", count=count, timeout=timeout).get("ok"))

    def shutdown(self):
        return self.call("shutdown")


class ServerProcess:
    """A CLI server started by spawn_server(): .port, .addresses, .control, .stop()."""

    def __init__(self, proc, addresses, control_port, tmp_script=None):
        self.tmp_script = tmp_script
        self.proc = proc
        self.addresses = addresses
        self.port = addresses[0][1]
        self.control = ControlClient(control_port) if control_port else None

    def stop(self, timeout=5):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        if self.tmp_script:
            try:
                os.unlink(self.tmp_script)
            except OSError:
                pass
            self.tmp_script = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _pdeathsig():
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def spawn_server(listen=("127.0.0.1:0",), script=None, maildir=None, control=True, args=(),
                 stderr=None, timeout=10):
    """Start this file as a child process (killed with its parent) and wait
    for `ready`. listen: list of "host:port"; script: a path, or rules (list)
    or a {"rules", "options"} dict, written next to maildir or to a temp file;
    args: extra CLI flags. -> ServerProcess."""
    import tempfile
    tmp_script = None
    cmd = [sys.executable, os.path.abspath(__file__)]
    for x in ([listen] if isinstance(listen, str) else listen):
        cmd += ["--listen", x if isinstance(x, str) else fmt_hostport(*x)]
    if script is not None:
        if not isinstance(script, (str, os.PathLike)):
            fd, path = tempfile.mkstemp(prefix="smtp-test-rules-", suffix=".json",
                                        dir=maildir if maildir and os.path.isdir(maildir) else None)
            with os.fdopen(fd, "w") as f:
                json.dump(script, f)
            script = tmp_script = path
        cmd += ["--script", str(script)]
    if maildir:
        cmd += ["--maildir", maildir]
    if control:
        cmd += ["--control-port", "0"]
    cmd += list(args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True,
                            preexec_fn=_pdeathsig)
    addrs, cport = [], None
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("smtp_test_server did not become ready")
        line = proc.stdout.readline()
        if not line:
            proc.wait()
            raise RuntimeError(f"smtp_test_server exited with {proc.returncode}")
        line = line.strip()
        if line.startswith("listening on "):
            addrs.append(parse_hostport(line[len("listening on "):]))
        elif line.startswith("control on "):
            cport = parse_hostport(line[len("control on "):])[1]
        elif line == "ready":
            break
    return ServerProcess(proc, addrs, cport, tmp_script)


# ---------------------------------------------------------------- CLI

def load_script(path):
    """-> (rules, options) from a JSON file (a list, or {"rules", "options"})."""
    with open(path) as f:
        doc = json.load(f)
    if isinstance(doc, list):
        return doc, {}
    if isinstance(doc, dict):
        return doc.get("rules", []), doc.get("options", {})
    raise ValueError("script must be a list of rules or an object")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Scriptable SMTP test server (see the module doc).")
    ap.add_argument("--listen", action="append", default=[], help="HOST:PORT (repeatable; port 0 = free)")
    ap.add_argument("--script", help="JSON rules file (re-read on SIGHUP)")
    ap.add_argument("--maildir", help="write <n>.eml and <n>.json here")
    ap.add_argument("--control-port", type=int, help="JSON-lines control port on --control-host (0 = free)")
    ap.add_argument("--control-host", default="127.0.0.1")
    ap.add_argument("--hostname")
    ap.add_argument("--size", type=int, help="SIZE limit (0 = SIZE with no limit)")
    ap.add_argument("--no-size", action="store_true")
    ap.add_argument("--no-pipelining", action="store_true")
    ap.add_argument("--no-8bitmime", action="store_true")
    ap.add_argument("--no-smtputf8", action="store_true")
    ap.add_argument("--no-enhancedstatuscodes", action="store_true")
    ap.add_argument("--dsn", action="store_true")
    ap.add_argument("--ehlo-extra", action="append", default=[])
    ap.add_argument("--helo-only", action="store_true")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--implicit-tls", action="store_true")
    ap.add_argument("--auth-user", action="append", default=[], help="USER:PASSWORD (repeatable)")
    ap.add_argument("--auth-require-tls", action="store_true")
    ap.add_argument("--auth-required", action="store_true")
    ap.add_argument("--lenient", action="store_true", help="accept bare LF and unoffered parameters")
    ap.add_argument("--idle-timeout", type=float)
    ap.add_argument("--max-connections", type=int)
    ap.add_argument("-v", "--verbose", action="store_true", help="log the dialogues to stderr")
    a = ap.parse_args(argv)

    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if a.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    opts = {}
    if a.hostname:
        opts["hostname"] = a.hostname
    if a.size is not None:
        opts["size"] = a.size
    if a.no_size:
        opts["size"] = None
    for flag, key in (("no_pipelining", "pipelining"), ("no_8bitmime", "eightbitmime"),
                      ("no_smtputf8", "smtputf8"), ("no_enhancedstatuscodes", "enhancedstatuscodes")):
        if getattr(a, flag):
            opts[key] = False
    if a.dsn:
        opts["dsn"] = True
    if a.ehlo_extra:
        opts["extra_ehlo"] = a.ehlo_extra
    if a.helo_only:
        opts["helo_only"] = True
    if a.tls_cert:
        opts["tls_cert"] = a.tls_cert
        opts["tls_key"] = a.tls_key
    if a.implicit_tls:
        opts["implicit_tls"] = True
    if a.auth_user:
        opts["auth_users"] = dict(u.split(":", 1) for u in a.auth_user)
    if a.auth_require_tls:
        opts["auth_require_tls"] = True
    if a.auth_required:
        opts["auth_required"] = True
    if a.lenient:
        opts["strict_crlf"] = False
        opts["strict_params"] = False
    if a.idle_timeout is not None:
        opts["idle_timeout"] = a.idle_timeout
    if a.max_connections is not None:
        opts["max_connections"] = a.max_connections

    rules, script_opts = load_script(a.script) if a.script else ([], {})
    opts = {**opts, **script_opts}
    srv = SMTPTestServer(a.listen or ["127.0.0.1:0"], rules, maildir=a.maildir, **opts)
    srv.start()
    done = threading.Event()
    srv.on_shutdown = done.set
    for host, port in srv.addresses:
        print(f"listening on {fmt_hostport(host, port)}", flush=True)
    if a.control_port is not None:
        cport = srv.start_control(a.control_host, a.control_port)
        print(f"control on {fmt_hostport(a.control_host, cport)}", flush=True)

    def on_hup(*_):
        try:
            r, o = load_script(a.script)
            if o:
                srv.set_options(**o)
            srv.set_rules(r)
            log.warning("reloaded %s", a.script)
        except Exception as e:
            log.error("reload of %s failed: %s", a.script, e)

    if a.script:
        signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print("ready", flush=True)
    while not done.wait(0.5):
        pass
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
