#!/usr/bin/env python3
"""Local submission (issue 12, point 2): relayd's [local] socket, a Unix socket
that speaks the same ESMTP as the TCP listeners, records who submitted.

Clients are forked children of this test that stay root or switch to www-data
(uid 33) or nobody (uid 65534) with setgid/setuid; each connects to the
socket, which lives in a 0755 directory relayd creates.

- Every submitter is recorded: relayctl -j has a `submitter` object (uid, gid,
  pid of the client process, user, its executable, its unit), relayctl -s
  prints it, the accepted-message log line says `client=local, uid=33
  user=www-data unit=...`, and the message that reaches the test sink (the
  relayhost) starts with `Received: from local (uid 33, www-data)`.
- The socket is 0666 in a 0755 directory, a stale socket file is replaced at
  start, and the socket is gone after relayd stops.
- [local] allowed_users: another user gets 550 5.7.1 at MAIL, root is always
  allowed; [local] senders: a listed user gets 553 5.7.1 for another sender and
  for the null sender, and may use its own.
- Bare addresses ("<root>") get [local] domain, when the session qualifies
  them (skipped, saying so, on a build that does not).
Needs root (to switch users); exits 77 otherwise.
"""

import json
import os
import re
import shutil
import socket
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402

WWW_DATA, NOBODY = 33, 65534
DOMAIN = "example.org"

def transaction(path, sender, rcpts, message):
    """One SMTP transaction over the Unix socket, stopping at the first refusal;
    -> [[command, code, text], ...]."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(path)
        return dialogue(s.makefile("rwb"), sender, rcpts, message)


def dialogue(f, sender, rcpts, message):
    out = []

    def reply():
        while True:
            line = f.readline().decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                return 0, "connection closed"
            if line[3:4] != "-":
                return int(line[:3]), line[4:]

    def step(command, data=None):
        f.write((data if data is not None else command).encode() + b"\r\n")
        f.flush()
        code, text = reply()
        out.append([command, code, text])
        return 200 <= code < 400

    code, text = reply()
    out.append(["connect", code, text])
    if (code == 220 and step("EHLO client.local") and step(f"MAIL FROM:<{sender}>")
            and all(step(f"RCPT TO:<{r}>") for r in rcpts) and step("DATA")):
        step("DOT", message.replace("\n", "\r\n") + "\r\n.")
    step("QUIT")
    return out


def as_user(uid, fn, *args):
    """fn(*args) in a forked child that switched to uid (gid = uid, no
    supplementary groups) -> (its JSON-able result, the child's pid)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            if uid != 0:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            result = {"ok": fn(*args)}
        except BaseException as e:  # reported to the parent, never raised in the child
            result, code = {"error": repr(e)}, 1
        with os.fdopen(w, "w") as f:
            f.write(json.dumps(result))
        os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    result = json.loads(data)
    if "error" in result:
        raise AssertionError(f"client as uid {uid} failed: {result['error']}")
    return result["ok"], pid


class LocalSubmitTest(c.DeliveryTestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to submit as other users")
        self.sockdir = tempfile.mkdtemp(prefix="relayd-local-")
        os.chmod(self.sockdir, 0o755)  # any user may reach the socket below it
        self.addCleanup(shutil.rmtree, self.sockdir, True)
        self.sock = os.path.join(self.sockdir, "run", "submit.sock")

    def local_relayd(self, port, extra=None, senders=None):
        cfg = {"local.socket": self.sock, "local.domain": DOMAIN}
        cfg.update(extra or {})
        d = self.smarthost_relayd(port, cfg, start=False)
        if senders:
            # [local.senders] is a table of tables, which the harness does not write.
            with open(d.config_path, "a", encoding="utf-8") as f:
                f.write("\n[local.senders]\n")
                for user, patterns in senders.items():
                    f.write(f"{json.dumps(user)} = {json.dumps(patterns)}\n")
        d.start()
        return d

    def submit(self, sender, rcpts, subject, uid=0):
        """One transaction as `uid` -> (steps, pid of the client process)."""
        msg = (f"From: <{sender or 'nobody@' + DOMAIN}>\nTo: <{rcpts[0]}>\n"
               f"Subject: {subject}\n\nbody of {subject}")
        return as_user(uid, transaction, self.sock, sender, rcpts, msg)

    def queued_id(self, steps):
        last = [s for s in steps if s[0] == "DOT"]
        self.assertTrue(last and last[0][1] == 250, f"not queued: {steps}")
        m = re.fullmatch(r"2\.0\.0 Ok: queued as ([0-9A-F]{16})", last[0][2])
        self.assertTrue(m, steps)
        return m.group(1)

    def refusal(self, steps, command_prefix):
        for command, code, text in steps:
            if command.startswith(command_prefix):
                return f"{code} {text}"
        self.fail(f"no {command_prefix} in {steps}")

    # ------------------------------------------------------------------ tests

    def test_submitters_recorded_in_queue_log_and_received_header(self):
        port = h.free_port()  # the sink starts later: first the queue is inspected
        d = self.local_relayd(port)
        python = os.path.realpath(sys.executable)
        sent = {}
        for uid, user in ((0, "root"), (WWW_DATA, "www-data"), (NOBODY, "nobody")):
            steps, pid = self.submit(f"{user}@{DOMAIN}", [f"{user}-rcpt@dst.test"],
                                     f"from {user}", uid=uid)
            sent[self.queued_id(steps)] = (uid, user, pid)

        # relayctl -j: the submitter object, per message.
        entries = {m["id"]: m for m in d.queue()}
        self.assertEqual(set(entries), set(sent))
        for qid, (uid, user, pid) in sent.items():
            who = entries[qid].get("submitter")
            self.assertIsNotNone(who, entries[qid])
            self.assertEqual((who["uid"], who["gid"], who["pid"], who["user"]),
                             (uid, uid, pid, user), who)
            self.assertEqual(who["executable"], python, who)
            self.assertIn("unit", who)
            # The log line of the accepted message, with the same unit.
            unit = who["unit"] or "-"
            self.assertRegex(d.log(), re.compile(
                rf"(?m){qid}: from=<{re.escape(user)}@{DOMAIN}>, size=\d+, nrcpt=1, "
                rf"client=local, uid={uid} user={re.escape(user)} unit={re.escape(unit)}, "
                rf"message-id=<[^>\s]+>$"))
            # relayctl -s: the submitter line and the stored Received: field.
            env, stored = d.show(qid)
            keys = dict(env)
            self.assertEqual(keys.get("submitter"),
                             f"uid={uid} gid={uid} pid={pid} user={user} unit={unit}", env)
            self.assertEqual(keys.get("executable"), python, env)
            self.assertEqual(keys.get("client"), "local (helo client.local)", env)
            self.assertTrue(stored.startswith(
                f"Received: from local (uid {uid}, {user})\r\n\tby relay.test (relayd) "
                f"with ESMTP id {qid}\r\n".encode()), stored[:200])
        self.assertRegex(d.log(), rf"connect from local \(uid {WWW_DATA}, www-data, pid \d+\)")

        # The sink comes up: every message arrives with its Received: field.
        srv = self.start_server([f"127.0.0.1:{port}"])
        self.assertEqual(d.ctl("-f").rc, 0)
        self.wait_until(lambda: len(srv.messages()) >= 3, 20, "delivery of the 3 messages")
        by_rcpt = {m["rcpt_to"][0]: m for m in srv.messages()}
        for qid, (uid, user, pid) in sent.items():
            m = by_rcpt[f"{user}-rcpt@dst.test"]
            self.assertEqual(m["mail_from"], f"{user}@{DOMAIN}")
            self.assertIn(f"Received: from local (uid {uid}, {user})\r\n".encode(), m["data"])
            self.assertIn(f"body of from {user}".encode(), m["data"])

    def test_socket_mode_stale_file_and_removal_at_stop(self):
        # A socket file left by a daemon that was killed: nobody accepts on it.
        os.makedirs(os.path.dirname(self.sock), mode=0o755)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(self.sock)
        stale.close()
        self.assertTrue(os.path.exists(self.sock))
        d = self.local_relayd(h.free_port())
        self.assertIn(f"replaced the stale socket {self.sock}", d.log())
        self.assertEqual(os.stat(self.sock).st_mode & 0o7777, 0o666)
        self.assertEqual(os.stat(os.path.dirname(self.sock)).st_mode & 0o7777, 0o755)
        steps, _ = self.submit(f"nobody@{DOMAIN}", ["x@dst.test"], "after stale", uid=NOBODY)
        self.queued_id(steps)
        self.assertEqual(d.stop(), 0)
        self.assertFalse(os.path.exists(self.sock), "the socket must be removed at stop")

    def test_parent_directory_created_0755(self):
        old = os.umask(0o077)  # relayd inherits it: the modes must not depend on it
        try:
            d = self.local_relayd(h.free_port())
        finally:
            os.umask(old)
        self.assertEqual(os.stat(self.sock).st_mode & 0o7777, 0o666)
        self.assertEqual(os.stat(os.path.dirname(self.sock)).st_mode & 0o7777, 0o755)
        steps, _ = self.submit(f"www-data@{DOMAIN}", ["x@dst.test"], "new dir", uid=WWW_DATA)
        self.queued_id(steps)
        d.stop()

    def test_allowed_users(self):
        d = self.local_relayd(h.free_port(), {"local.allowed_users": ["www-data"]})
        steps, _ = self.submit(f"nobody@{DOMAIN}", ["x@dst.test"], "refused", uid=NOBODY)
        self.assertEqual(self.refusal(steps, "MAIL"),
                         "550 5.7.1 user nobody is not allowed to submit mail")
        self.assertFalse(any(s[0] == "DOT" for s in steps), steps)
        allowed, _ = self.submit(f"www-data@{DOMAIN}", ["x@dst.test"], "allowed", uid=WWW_DATA)
        root, _ = self.submit(f"root@{DOMAIN}", ["x@dst.test"], "root", uid=0)
        self.assertEqual({m["id"] for m in d.queue()},
                         {self.queued_id(allowed), self.queued_id(root)})
        self.assertRegex(d.log(), r"reject: from local \(uid 65534, nobody, pid \d+\): "
                                  r"550 5\.7\.1 user nobody is not allowed to submit mail")

    def test_senders_policy(self):
        d = self.local_relayd(h.free_port(), senders={
            "www-data": ["app@example.org", "*@billing.example.org"]})
        steps, _ = self.submit("ceo@example.org", ["x@dst.test"], "spoof", uid=WWW_DATA)
        self.assertEqual(self.refusal(steps, "MAIL"),
                         "553 5.7.1 user www-data may not send as <ceo@example.org>")
        steps, _ = self.submit("", ["x@dst.test"], "null", uid=WWW_DATA)
        self.assertEqual(self.refusal(steps, "MAIL"),
                         "553 5.7.1 user www-data may not send as <>")
        ok = [self.queued_id(self.submit(s, ["x@dst.test"], s, uid=WWW_DATA)[0])
              for s in ("app@example.org", "invoice@billing.example.org")]
        # Users not listed are not restricted; root may use the null sender.
        ok.append(self.queued_id(self.submit("", ["x@dst.test"], "bounce", uid=0)[0]))
        ok.append(self.queued_id(self.submit("ceo@example.org", ["x@dst.test"], "nobody",
                                             uid=NOBODY)[0]))
        self.assertEqual({m["id"] for m in d.queue()}, set(ok))

    def test_bare_addresses_get_the_local_domain(self):
        d = self.local_relayd(h.free_port())
        steps, _ = self.submit("www-data", ["postmaster@dst.test"], "bare sender", uid=WWW_DATA)
        if self.refusal(steps, "MAIL").startswith("501"):
            self.skipTest("this build's session does not qualify bare addresses "
                          "(session_options::qualify_domain)")
        qid = self.queued_id(steps)
        entry = {m["id"]: m for m in d.queue()}[qid]
        self.assertEqual(entry["sender"], f"www-data@{DOMAIN}")
        full, _ = self.submit(f"www-data@{DOMAIN}", ["root@dst.test"], "full", uid=WWW_DATA)
        self.queued_id(full)


if __name__ == "__main__":
    h.main()
