#!/usr/bin/env python3
"""sendmail (cli/sendmail, also run as mailq): the real binary against a real
relayd delivering to the scripted test SMTP server (smarthost mode).

- exit 0: a message on stdin reaches the next hop with From:, Date: and
  Message-ID: added and the sender qualified with [local] domain;
- -t: recipients from To/Cc/Bcc (folded, with a group), Bcc: removed;
- without -i a lone "." ends the input; with -oi it is content;
- exit 64 (unknown option), 65 (no recipients with -t, malformed address),
  75 (the daemon is not running: nothing listens on [local] socket);
- -bp / mailq: the queue listing, with the deferred message's ID;
- --wait: 0 and to=<..> status=delivered for a delivered message, 75 with
  status=deferred when the next hop keeps answering 451 past the timeout,
  69 with status=failed for a 550;
- -bs: an SMTP dialogue on stdin/stdout, answered with relayd's queue ID.

relayd's [local] socket listener is built elsewhere (issue 12 point 2). When the
daemon does not serve [local] socket itself, this test serves it with a byte
proxy to relayd's SMTP listener on loopback (relaying allowed from mynetworks),
so sendmail still talks SMTP over the Unix socket named in the config.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402

SENDMAIL_BIN = os.environ.get("SENDMAIL_BIN") or os.path.join(h.REPO, "build/release/cli/sendmail")


class UnixToTcpProxy:
    """Accepts on a Unix socket and copies bytes both ways to 127.0.0.1:port."""

    def __init__(self, path, port):
        self.path, self.port = path, port
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            except OSError:
                conn.close()
                continue
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.closed = True
        self.sock.close()


class SendmailTest(c.DeliveryTestCase):
    def setUp(self):
        if not os.access(SENDMAIL_BIN, os.X_OK):
            self.skipTest(f"no sendmail binary at {SENDMAIL_BIN}")
        self.tmp = tempfile.mkdtemp(prefix="relayd-sendmail-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    # -- fixtures
    def daemon(self, srv_port, overrides=None):
        """relayd in smarthost mode with [local] socket/domain set, and a proxy
        serving the local socket when relayd does not."""
        local_sock = os.path.join(self.tmp, "submit.sock")
        cfg = {"local.socket": local_sock, "local.domain": "users.test"}
        cfg.update(overrides or {})
        d = self.smarthost_relayd(srv_port, cfg)
        deadline = time.monotonic() + 2
        while not os.path.exists(local_sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not os.path.exists(local_sock):
            proxy = UnixToTcpProxy(local_sock, d.port)
            self.addCleanup(proxy.close)
        return d

    def sendmail(self, d, args, stdin=b"", program=SENDMAIL_BIN, timeout=60):
        """Runs sendmail (argv[0] = `program`, e.g. a symlink named mailq) on d's config."""
        env = dict(os.environ)
        env.pop("RELAYD_CONFIG", None)
        return subprocess.run([program, "-C", d.config_path] + args, input=stdin,
                              capture_output=True, timeout=timeout, env=env)

    def assertExit(self, p, code):
        self.assertEqual(p.returncode, code,
                         f"exit {p.returncode}, stdout {p.stdout!r}, stderr {p.stderr!r}")

    def one_message(self, srv, timeout=10):
        self.assertTrue(srv.wait_messages(1, timeout=timeout), "a message at the next hop")
        return srv.messages()[-1]

    # -- tests
    def test_message_on_stdin_is_delivered_with_headers_added(self):
        srv = self.start_server(["127.0.0.1:0"])
        d = self.daemon(srv.port)
        p = self.sendmail(d, ["-F", "Cron Daemon", "-f", "cron", "ann@example.com"],
                          b"Subject: nightly\n\nall good\n")
        self.assertExit(p, 0)
        self.assertEqual(p.stderr, b"")
        m = self.one_message(srv)
        self.assertEqual(m["mail_from"], "cron@users.test")
        self.assertEqual(m["rcpt_to"], ["ann@example.com"])
        header, _, body = m["data"].partition(b"\r\n\r\n")
        self.assertIn(b"\r\nFrom: Cron Daemon <cron@users.test>", header)
        self.assertRegex(header, rb"\r\nDate: \w{3}, \d\d \w{3} \d{4} ")
        self.assertRegex(header, rb"\r\nMessage-ID: <[^@>]+@relay\.test>")
        self.assertEqual(body, b"all good\r\n")

    def test_dash_t_takes_to_cc_bcc_and_removes_bcc(self):
        srv = self.start_server(["127.0.0.1:0"])
        d = self.daemon(srv.port)
        msg = (b"From: app@example.org\n"
               b"To: \"Doe, Ann\" <ann@example.com>,\n bob@example.com (Bob)\n"
               b"Cc: Team: carol@example.com;\n"
               b"Bcc: secret@example.net\n"
               b"Subject: t\n\nbody\n")
        p = self.sendmail(d, ["-t", "-oi"], msg)
        self.assertExit(p, 0)
        m = self.one_message(srv)
        self.assertEqual(sorted(m["rcpt_to"]), ["ann@example.com", "bob@example.com",
                                                "carol@example.com", "secret@example.net"])
        self.assertNotIn(b"Bcc", m["data"])
        self.assertNotIn(b"secret@", m["data"])
        self.assertIn(b"From: app@example.org\r\n", m["data"])

    def test_lone_dot_ends_input_unless_dash_i(self):
        srv = self.start_server(["127.0.0.1:0"])
        d = self.daemon(srv.port)
        self.assertExit(self.sendmail(d, ["a@example.com"], b"Subject: one\n\nbefore\n.\nafter\n"), 0)
        m = self.one_message(srv)
        self.assertTrue(m["data"].endswith(b"\r\n\r\nbefore\r\n"), m["data"])
        srv.reset()
        self.assertExit(self.sendmail(d, ["-i", "a@example.com"],
                                      b"Subject: two\n\nbefore\n.\nafter\n"), 0)
        m = self.one_message(srv)
        self.assertTrue(m["data"].endswith(b"before\r\n.\r\nafter\r\n"), m["data"])

    def test_usage_and_bad_input_exit_codes(self):
        srv = self.start_server(["127.0.0.1:0"])
        d = self.daemon(srv.port)
        p = self.sendmail(d, ["-Z", "a@example.com"], b"x\n")
        self.assertExit(p, 64)
        self.assertTrue(p.stderr.startswith(b"sendmail: unknown option -Z\n"), p.stderr)
        p = self.sendmail(d, ["-t"], b"Subject: nobody\n\nx\n")
        self.assertExit(p, 65)
        self.assertIn(b"no recipients", p.stderr)
        p = self.sendmail(d, ["bad@@example.com"], b"x\n")
        self.assertExit(p, 65)
        self.assertIn(b"bad address <bad@@example.com>", p.stderr)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        time.sleep(0.5)
        self.assertEqual(srv.messages(), [], "nothing was sent")
        self.assertEqual(d.queue(), [])

    def test_daemon_not_running_is_75(self):
        # relayd is down and the drop directory cannot be written either: 75.
        cfg = os.path.join(self.tmp, "down.toml")
        with open(cfg, "w") as f:
            f.write(f'hostname = "relay.test"\n[local]\nsocket = "{self.tmp}/nobody.sock"\n'
                    f'maildrop = "{self.tmp}/no-such-dir"\n'
                    f'[control]\nsocket = "{self.tmp}/nocontrol.sock"\n')
        p = subprocess.run([SENDMAIL_BIN, "-C", cfg, "a@example.com"], input=b"x\n",
                           capture_output=True, timeout=30)
        self.assertExit(p, 75)
        self.assertRegex(p.stderr.decode(),
                         r"^sendmail: relayd is not running and .*/no-such-dir could not be "
                         r"written: .* \(mail not sent\)\n$")
        self.assertEqual(p.stderr.count(b"\n"), 1, "one line")
        # RELAYD_CONFIG names the file as -C does.
        p = subprocess.run([SENDMAIL_BIN, "a@example.com"], input=b"x\n", capture_output=True,
                           timeout=30, env=dict(os.environ, RELAYD_CONFIG=cfg))
        self.assertExit(p, 75)

    def test_mailq_lists_the_queue(self):
        srv = self.start_server(["127.0.0.1:0"],
                                rules=[{"on": "RCPT", "reply": "451 4.3.0 Try again later"}])
        d = self.daemon(srv.port)
        p = self.sendmail(d, ["-v", "later@example.com"], b"Subject: q\n\nx\n")
        self.assertExit(p, 0)
        qid = h.QUEUED_RE.search(p.stderr.decode().split("sendmail: ", 1)[1].strip())
        self.assertTrue(qid, p.stderr)
        qid = qid.group(1)
        self.wait_until(lambda: self.attempts(d, qid), 10, "a first attempt")
        link = os.path.join(self.tmp, "mailq")
        os.symlink(SENDMAIL_BIN, link)
        for args, program in ((["-bp"], SENDMAIL_BIN), ([], link)):
            p = self.sendmail(d, args, program=program)
            self.assertExit(p, 0)
            self.assertIn(qid.encode(), p.stdout)
            self.assertIn(b"later@example.com", p.stdout)

    def test_wait_delivered_is_0(self):
        srv = self.start_server(["127.0.0.1:0"])
        d = self.daemon(srv.port)
        p = self.sendmail(d, ["--wait=30", "a@example.com", "b@example.com"], b"Subject: w\n\nx\n")
        self.assertExit(p, 0)
        lines = sorted(p.stdout.decode().splitlines())
        self.assertEqual(len(lines), 2, p.stdout)
        self.assertRegex(lines[0], r'^to=<a@example\.com> status=delivered reply=".*250')
        self.assertRegex(lines[1], r'^to=<b@example\.com> status=delivered reply=".*250')

    def test_wait_deferred_past_the_timeout_is_75(self):
        srv = self.start_server(["127.0.0.1:0"],
                                rules=[{"on": "RCPT", "reply": "451 4.3.0 Try again later"}])
        d = self.daemon(srv.port)
        started = time.monotonic()
        p = self.sendmail(d, ["--wait=3", "later@example.com"], b"Subject: w\n\nx\n")
        self.assertExit(p, 75)
        self.assertGreaterEqual(time.monotonic() - started, 2.5)
        self.assertRegex(p.stdout.decode(),
                         r'^to=<later@example\.com> status=deferred reply=".*451 4\.3\.0 Try again later[^"]*"\n$')
        self.assertIn(b"not every recipient is final", p.stderr)

    def test_wait_failed_is_69(self):
        srv = self.start_server(["127.0.0.1:0"],
                                rules=[{"on": "RCPT", "match": "gone@", "reply": "550 5.1.1 No such user"}])
        d = self.daemon(srv.port)
        p = self.sendmail(d, ["--wait=30", "gone@example.com", "ok@example.com"], b"Subject: w\n\nx\n")
        self.assertExit(p, 69)
        out = p.stdout.decode()
        self.assertRegex(out, r'(?m)^to=<gone@example\.com> status=failed reply=".*550 5\.1\.1 No such user[^"]*"$')
        self.assertRegex(out, r'(?m)^to=<ok@example\.com> status=delivered ')

    def test_bs_smtp_dialogue_on_stdin(self):
        srv = self.start_server(["127.0.0.1:0"])
        d = self.daemon(srv.port)
        dialogue = (b"EHLO client\r\nMAIL FROM:<me@users.test>\r\nRCPT TO:<you@example.com>\r\nDATA\r\n"
                    b"Subject: bs\r\n\r\nhello\r\n.\r\nQUIT\r\n")
        p = self.sendmail(d, ["-bs"], dialogue)
        self.assertExit(p, 0)
        replies = p.stdout.decode().splitlines()
        self.assertTrue(replies[0].startswith("220 "), replies)
        queued = [r for r in replies if h.QUEUED_RE.match(r)]
        self.assertEqual(len(queued), 1, replies)
        qid = h.QUEUED_RE.match(queued[0]).group(1)
        self.assertTrue(replies[-1].startswith("221"), replies)
        m = self.one_message(srv)
        self.assertEqual(m["mail_from"], "me@users.test")
        self.assertEqual(m["rcpt_to"], ["you@example.com"])
        self.assertTrue(self.attempts(d, qid, status="sent"), "relayd's queue ID in the reply")
        self.assertEqual(m["data"].count(b"Received:"), 1, "one Received: field (relayd's)")


if __name__ == "__main__":
    h.main()
