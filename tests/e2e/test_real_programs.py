#!/usr/bin/env python3
"""relayd as the host's MTA, driven by real programs (issue 12, "Must show").

Each case starts the scripted test SMTP server (the sink, relayd's smarthost) and
relayd with a [local] section (submission socket, drop directory, aliases with
`root: admin@example.org`, local domains relay.test and localhost), then:
  a. cron: Debian's cron, in a private mount namespace whose /usr/sbin/sendmail is
     relayd's (tests/e2e/private_sendmail.sh), runs an @reboot job as www-data
     (a private /run makes it "system startup", so no minute boundary is waited
     for); the job's output, mailed through MAILTO=root, reaches the sink.
  b. PHP mail() as www-data, with -d sendmail_path="SENDMAIL -C CONF -t -i".
  c. s-nail as daemon, with -S mta=SENDMAIL and RELAYD_CONFIG in its environment.
  d. Python subprocess `sendmail -t -oi` as nobody, To/Cc/Bcc: every recipient
     delivered, no Bcc: header in any copy, a lone "." line kept.
  Each of a-d: delivered to admin@example.org (aliases applied) and the sink's
  copy says `Received: from local (uid N, user)` for the submitting user.
  e. Daemon stopped: sendmail exits 0, the message is in the drop directory;
     relayd starts and delivers it and removes the file; a second start delivers
     nothing again.
  f. 500 concurrent sendmail calls from 5 users while relayd is killed with
     SIGKILL and restarted twice: every call exits 0 or 75 (and at least 90% exit
     0); every call that exited 0 is delivered exactly once, no message twice,
     each attributed to its user. The sink refuses delivery (451) during the
     kills so that a kill in the middle of a delivery cannot duplicate; only
     submission and import are under test.
  g. Permissions: another user can neither list, read nor remove a dropped file;
     cannot delete (relayctl -d) nor read (relayctl -s) another user's queued
     message; mailq and sendmail -bp work for any user; root can delete.
  The submitter is shown by relayctl -j ("submitter": {uid, user}) and logged.

sendmail is $SENDMAIL_BIN, else build/release/cli/sendmail: point it at another
program to try the harness (one variable). The test installs a copy of it as the
package does (set-group-id to [local] maildrop_group, here `mail`) and creates the
drop directory as the package's postinst would (1730 root:mail).
Needs root (other users' uids, mount namespaces): otherwise every case skips.
A case whose program (cron, unshare, php, s-nail) is missing skips with the reason
(each of those runs as its own ctest entry). A missing sendmail binary fails.
"""

import grp
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import unittest
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402

# The one place that names the sendmail under test.
SENDMAIL_BIN = os.environ.get("SENDMAIL_BIN") or os.path.join(h.REPO, "build/release/cli/sendmail")
PRIVATE_SENDMAIL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "private_sendmail.sh")

ADMIN = "admin@example.org"
DOMAIN = "relay.test"
DROP_GROUP = "mail"
STORM_USERS = ["daemon", "bin", "sys", "www-data", "nobody"]  # none in DROP_GROUP
STORM_CALLS = 500  # the daemon is killed after 1/5 and 3/5 of them, started after 2/5 and 4/5
HOLD = [{"on": "MAIL", "reply": "451 4.3.0 sink holds mail for now"}]


def token():
    return "tok" + uuid.uuid4().hex


def headers_of(data):
    """Header section of a message, unfolded, as text."""
    head = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
    return re.sub(r"\n[ \t]+", " ", head)


def received_local(data):
    """(uid, user) of every `Received: from local (uid N, user)` of a message."""
    return [(int(u), n) for u, n in
            re.findall(r"(?mi)^Received:\s+from local \(uid (\d+), ([^)\s]+)\)", headers_of(data))]


def files_under(path):
    out = []
    for root, _, names in os.walk(path):
        out += [os.path.join(root, n) for n in names]
    return out


class RealProgramsTest(c.DeliveryTestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root: runs programs as other users and in mount namespaces")
        if not os.access(SENDMAIL_BIN, os.X_OK):
            raise AssertionError(f"sendmail under test {SENDMAIL_BIN} is missing: build the "
                                 "sendmail target (or set SENDMAIL_BIN)")
        for u in STORM_USERS:
            pwd.getpwnam(u)  # KeyError names a missing user
        grp.getgrnam(DROP_GROUP)

    def setUp(self):
        self.sink = self.start_server(["127.0.0.1:0"])
        self.d = self.local_relayd()

    # ------------------------------------------------------------ fixtures
    def local_relayd(self):
        d = self.smarthost_relayd(self.sink.port, {"queue.max_backoff": "2s"}, start=False)
        os.chmod(d.dir, 0o755)  # other users reach the sockets, the config and sendmail
        self.maildrop = os.path.join(d.dir, "maildrop")
        os.mkdir(self.maildrop)  # as postinst: writable through the group, listable by none
        os.chown(self.maildrop, 0, grp.getgrnam(DROP_GROUP).gr_gid)
        os.chmod(self.maildrop, 0o1730)
        aliases = os.path.join(d.dir, "aliases")
        with open(aliases, "w") as f:
            f.write(f"# test aliases\npostmaster: root\nMAILER-DAEMON: postmaster\nroot: {ADMIN}\n")
        os.chmod(aliases, 0o644)
        d.reconfigure({
            "local.socket": os.path.join(d.dir, "submit.sock"),
            "local.maildrop": self.maildrop,
            "local.maildrop_group": DROP_GROUP,
            "local.domain": DOMAIN,
            "local.domains": [DOMAIN, "localhost"],
            "local.aliases": aliases,
        })
        os.chmod(d.config_path, 0o644)
        # The package's install: sendmail set-group-id to the drop group, and
        # mailq as another name of it.
        self.sendmail = os.path.join(d.dir, "sendmail")
        shutil.copy(SENDMAIL_BIN, self.sendmail)
        os.chown(self.sendmail, 0, grp.getgrnam(DROP_GROUP).gr_gid)
        os.chmod(self.sendmail, 0o2755)
        self.mailq = os.path.join(d.dir, "mailq")
        os.symlink("sendmail", self.mailq)
        d.start()
        return d

    def wrapper(self):
        """A script that runs sendmail with -C CONF: for programs that take only a path."""
        path = os.path.join(self.d.dir, "sendmail-wrapper")
        with open(path, "w") as f:
            f.write(f'#!/bin/sh\nexec "{self.sendmail}" -C "{self.d.config_path}" "$@"\n')
        os.chmod(path, 0o755)
        return path

    def need(self, *programs):
        for p in programs:
            if shutil.which(p) is None and not os.access(p, os.X_OK):
                self.skipTest(f"{p} is not installed")

    def run_as(self, user, argv, input=None, env=None, timeout=60):
        """argv as `user` (its uid, primary gid, no supplementary groups), in /.
        A number is a uid without a passwd entry (gid = uid)."""
        uid, gid = (user, user) if isinstance(user, int) else pwd.getpwnam(user)[2:4]
        base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8",
                "USER": str(user), "LOGNAME": str(user)}
        base.update(env or {})
        p = h.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    user=uid, group=gid, extra_groups=[], cwd="/", env=base)
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            self.fail(f"{argv} as {user} did not finish within {timeout}s: {out!r} {err!r}")
        return subprocess.CompletedProcess(argv, p.returncode, out.decode("utf-8", "replace"),
                                           err.decode("utf-8", "replace"))

    def sendmail_as(self, user, args, msg, env=None):
        return self.run_as(user, [self.sendmail, "-C", self.d.config_path] + list(args),
                           input=msg.encode() if isinstance(msg, str) else msg, env=env)

    # ------------------------------------------------------------ observation
    def copies(self, tok):
        return [m for m in self.sink.messages() if tok.encode() in m["data"]]

    def wait_copies(self, tok, timeout=30, what=None):
        return self.wait_until(lambda: self.copies(tok), timeout,
                               what or f"the message with {tok} at the sink", interval=0.1)

    def assertAdminGotIt(self, tok, uid_user, more_rcpts=()):
        """tok reached the sink for admin@example.org (root, aliased) and the
        recipients in more_rcpts, exactly once each, attributed to uid_user."""
        self.wait_copies(tok)
        want = sorted([ADMIN] + list(more_rcpts))
        deadline = time.monotonic() + 20
        while True:  # the recipients may arrive in several transactions
            copies = self.copies(tok)
            got = [r for m in copies for r in m["rcpt_to"]]
            if len(got) >= len(want) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(sorted(r for m in copies for r in m["rcpt_to"]), want,
                         "recipients at the sink (root must be aliased to the admin)")
        uid = pwd.getpwnam(uid_user).pw_uid
        for m in copies:
            self.assertIn((uid, uid_user), received_local(m["data"]),
                          f"the copy must say 'Received: from local (uid {uid}, {uid_user})':\n"
                          f"{headers_of(m['data'])}")
        self.wait_queue_empty(self.d, 10)
        return copies

    def holding(self, tok):
        """Files of the drop directory that hold tok (read as root)."""
        out = []
        for f in files_under(self.maildrop):
            try:
                with open(f, "rb") as fh:
                    if tok.encode() in fh.read():
                        out.append(f)
            except FileNotFoundError:  # imported meanwhile
                pass
        return out

    def queued_entry(self):
        """The only message in the queue (relayctl -j as root)."""
        q = self.d.queue()
        self.assertEqual(len(q), 1, f"one message queued: {q}")
        return q[0]

    # ------------------------------------------------------------ a. cron
    def test_cron_mailto(self):
        self.need("/usr/sbin/cron", "unshare", "mount")
        tok = token()
        t = os.path.join(self.d.dir, "cron")
        crond, spool = os.path.join(t, "cron.d"), os.path.join(t, "crontabs")
        os.makedirs(crond)
        os.makedirs(spool)
        crontab = os.path.join(t, "crontab")
        with open(crontab, "w") as f:
            f.write("# empty: the host's /etc/crontab is hidden\n")
        job = os.path.join(crond, "relayd-e2e")
        with open(job, "w") as f:
            f.write("SHELL=/bin/sh\nPATH=/usr/bin:/bin\nMAILTO=root\n"
                    f"@reboot www-data echo 'cron job output {tok}'; id -un\n")
        os.chmod(job, 0o644)
        env = dict(os.environ, TMPDIR=t)
        cron = h.spawn([PRIVATE_SENDMAIL, self.wrapper(),
                        "--bind", crond, "/etc/cron.d", "--bind", crontab, "/etc/crontab",
                        "--bind", spool, "/var/spool/cron/crontabs", "--tmpfs", "/run",
                        "--", "/usr/sbin/cron", "-f", "-L", "15"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                       start_new_session=True)

        def stop_cron():
            try:
                os.killpg(cron.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            out = cron.communicate(timeout=10)[0]
            return out.decode("utf-8", "replace")
        try:
            self.wait_until(lambda: self.copies(tok) or cron.poll() is not None, 30,
                            "cron's mail at the sink")
            self.assertIsNone(cron.poll(), f"cron exited: {stop_cron()}")
            copies = self.assertAdminGotIt(tok, "www-data")
        finally:
            out = stop_cron()
        data = copies[0]["data"].decode("utf-8", "replace")
        self.assertRegex(data, r"(?m)^www-data\r?$", f"the job ran as www-data\n{out}")
        self.assertRegex(headers_of(copies[0]["data"]), r"(?mi)^Subject: Cron <www-data@")

    # ------------------------------------------------------------ b. PHP
    def test_php_mail(self):
        self.need("php")
        tok = token()
        path = f"{self.sendmail} -C {self.d.config_path} -t -i"
        r = self.run_as("www-data", [
            "php", "-n", "-d", f"sendmail_path={path}", "-r",
            f"exit(mail('root', 'php {tok}', \"body {tok}\\n.\\nafter a lone dot\\n\") ? 0 : 3);"])
        self.assertEqual(r.returncode, 0, f"mail() must return true: {r}")
        copies = self.assertAdminGotIt(tok, "www-data")
        self.assertIn(b"after a lone dot", copies[0]["data"], "-i: a lone dot does not end input")
        self.assertRegex(headers_of(copies[0]["data"]), rf"(?mi)^Subject: php {tok}$")

    # ------------------------------------------------------------ c. s-nail
    def test_s_nail(self):
        self.need("s-nail")
        tok = token()
        r = self.run_as("daemon", ["s-nail", "-:/", "-S", f"mta={self.sendmail}",
                                   "-S", "sendwait", "-s", f"s-nail {tok}", "root"],
                        input=f"body {tok}\n".encode(),
                        env={"RELAYD_CONFIG": self.d.config_path})
        self.assertEqual(r.returncode, 0, r)
        copies = self.assertAdminGotIt(tok, "daemon")
        self.assertRegex(headers_of(copies[0]["data"]), rf"(?mi)^Subject: s-nail {tok}$")

    # ------------------------------------------------------------ d. Python -t -oi
    def test_python_subprocess_t_oi(self):
        tok = token()
        msg = (f"From: Monitor <monitor@{DOMAIN}>\nTo: alice@example.net, root\n"
               f"Cc: bob@example.net\nBcc: carol@example.net,\n dave@example.net\n"
               f"Subject: python {tok}\n\nline one\n.\nafter a lone dot {tok}\n")
        r = self.sendmail_as("nobody", ["-t", "-oi"], msg)
        self.assertEqual(r.returncode, 0, r)
        copies = self.assertAdminGotIt(tok, "nobody", ["alice@example.net", "bob@example.net",
                                                       "carol@example.net", "dave@example.net"])
        for m in copies:
            head = headers_of(m["data"])
            self.assertNotRegex(head, r"(?mi)^Bcc:", "-t removes Bcc:")
            self.assertNotIn("carol@", head)
            self.assertIn(f"after a lone dot {tok}".encode(), m["data"], "-oi keeps a lone dot")

    # ------------------------------------------------------------ submitter shown
    def test_submitter_shown_by_relayctl_and_log(self):
        self.sink.set_rules(HOLD)
        tok = token()
        r = self.sendmail_as("www-data", ["root"], f"Subject: who {tok}\n\nbody\n")
        self.assertEqual(r.returncode, 0, r)
        m = self.queued_entry()
        sub = m.get("submitter")
        self.assertIsInstance(sub, dict, f"relayctl -j shows a submitter object: {m}")
        self.assertEqual((sub.get("uid"), sub.get("user")), (33, "www-data"), m)
        self.assertEqual([x["address"] for x in m["recipients"]], [ADMIN],
                         "aliases are applied at submission")
        log = self.d.log()
        self.assertRegex(log, rf"{m['id']}.*\buid=33\b.*\buser=www-data\b",
                         "the log names the submitter")
        self.sink.set_rules([])
        self.assertEqual(self.d.ctl("-f").rc, 0)
        self.assertAdminGotIt(tok, "www-data")

    def test_default_sender_and_from_name_are_the_callers_account(self):
        # sendmail is static and reads the passwd entry itself (no NSS in it):
        # the login gives the envelope sender, the GECOS name the From: header.
        tok = token()
        r = self.sendmail_as("list", ["root"], f"Subject: account {tok}\n\nbody\n")
        self.assertEqual(r.returncode, 0, r)
        m = self.assertAdminGotIt(tok, "list")[0]
        self.assertEqual(m["mail_from"], f"list@{DOMAIN}")
        self.assertRegex(headers_of(m["data"]),
                         rf"(?mi)^From: \"?Mailing List Manager\"? <list@{re.escape(DOMAIN)}>$")
        # A uid without any passwd entry (getent finds none either) is "uidN".
        tok = token()
        r = self.sendmail_as(54321, ["root"], f"Subject: no account {tok}\n\nbody\n")
        self.assertEqual(r.returncode, 0, r)
        self.wait_copies(tok)
        m = self.copies(tok)[0]
        self.assertEqual(m["mail_from"], f"uid54321@{DOMAIN}")
        head = headers_of(m["data"])
        self.assertRegex(head, rf"(?mi)^From: <uid54321@{re.escape(DOMAIN)}>$")
        self.assertRegex(head, r"(?mi)^Received: from local \(uid 54321\) ")

    # ------------------------------------------------------------ e. daemon down
    def test_daemon_down_drop_directory(self):
        self.assertEqual(self.d.stop(), 0, "relayd stops cleanly on SIGTERM")
        tok = token()
        r = self.sendmail_as("bin", ["root"], f"Subject: dropped {tok}\n\nbody {tok}\n")
        self.assertEqual(r.returncode, 0, f"sendmail exits 0 once the drop file is durable: {r}")
        dropped = self.holding(tok)
        self.assertEqual(len(dropped), 1, f"one drop file holds it: {files_under(self.maildrop)}")
        self.assertEqual(self.sink.messages(), [])

        self.d.start()
        self.assertAdminGotIt(tok, "bin")
        self.wait_until(lambda: not os.path.exists(dropped[0]), 10, "the imported file's removal")
        self.assertEqual(self.holding(tok), [], "no copy left in the drop directory")

        self.assertEqual(self.d.stop(), 0)
        self.d.start()
        self.assertEqual(self.d.ctl("-f").rc, 0)
        time.sleep(5)  # a second import would be queued and delivered by now (backoff 1-2 s)
        self.assertEqual(self.d.queue(), [], "the second start queues nothing")
        self.assertEqual(len(self.copies(tok)), 1, "delivered once, not again after a restart")

    # ------------------------------------------------------------ f. kill -9 storm
    def test_500_calls_from_5_users_through_two_kill9(self):
        self.sink.set_rules(HOLD)
        msgdir = os.path.join(self.d.dir, "storm")
        os.mkdir(msgdir)
        filler = ("x" * 70 + "\n") * 200  # ~14 KB: a submission takes a moment
        calls = []
        for i in range(STORM_CALLS):
            tok = token()
            path = os.path.join(msgdir, f"{i}.eml")
            with open(path, "w") as f:
                f.write(f"Subject: storm {i} {tok}\nTo: root\n\n{tok}\n{filler}")
            calls.append({"i": i, "user": STORM_USERS[i % len(STORM_USERS)], "tok": tok,
                          "path": path})
        events = []  # (call index, what) for the failure message
        fifth = STORM_CALLS // 5
        actions = {fifth: "kill", 2 * fifth: "start", 3 * fifth: "kill", 4 * fifth: "start"}
        # Launched from this thread: children get PR_SET_PDEATHSIG, which fires
        # when the thread that forked them ends.
        t0 = time.monotonic()
        for call in calls:
            self.assertLess(time.monotonic() - t0, 180, f"launching {STORM_CALLS} calls took "
                            f"over 3 minutes (at call {call['i']})")
            what = actions.get(call["i"])
            if what == "kill":
                self.d.kill9()
            elif what == "start":
                self.d.start(wait=False)
            if what:
                events.append((call["i"], what, round(time.monotonic() - t0, 2)))
            pw = pwd.getpwnam(call["user"])
            with open(call["path"], "rb") as stdin, open(call["path"] + ".err", "wb") as err:
                call["proc"] = h.spawn(
                    [self.sendmail, "-C", self.d.config_path, "-oi", "root"],
                    stdin=stdin, stdout=subprocess.DEVNULL, stderr=err,
                    user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], cwd="/",
                    env={"PATH": "/usr/bin:/bin"})
            time.sleep(0.004)
        for call in calls:
            try:
                call["rc"] = call["proc"].wait(90)
            except subprocess.TimeoutExpired:
                call["proc"].kill()
                self.fail(f"sendmail call {call['i']} as {call['user']} hung over 90 s")
            with open(call["path"] + ".err", "rb") as err:
                call["err"] = err.read().decode("utf-8", "replace").strip()
        self.d.wait_ready(20)

        bad = [(c_["i"], c_["user"], c_["rc"], c_["err"]) for c_ in calls if c_["rc"] not in (0, 75)]
        self.assertEqual(bad, [], f"exit codes other than 0 and 75 (events {events})")
        ok = [c_ for c_ in calls if c_["rc"] == 0]
        tempfail = [(c_["i"], c_["err"]) for c_ in calls if c_["rc"] == 75]
        self.assertGreaterEqual(len(ok), STORM_CALLS * 9 // 10,
                                f"75 is for the calls caught by a kill, not the rule: {tempfail[:20]}")

        self.sink.set_rules([])
        self.assertEqual(self.d.ctl("-f").rc, 0)
        wanted = {c_["tok"] for c_ in ok}

        def delivered():
            seen = set()
            for m in self.sink.messages():
                t = re.search(rb"tok[0-9a-f]{32}", m["data"])
                if t:
                    seen.add(t.group(0).decode())
            return wanted <= seen
        try:
            self.wait_until(delivered, 180, "delivery of every call that exited 0", interval=0.5)
        finally:
            sys.stderr.write(f"storm: {len(ok)} exited 0, {len(tempfail)} exited 75, "
                             f"events {events}\n")
        self.wait_queue_empty(self.d, 60)
        self.wait_until(lambda: not self.holding("tok"), 20,
                        "a drop directory with no storm message left", interval=0.5)
        time.sleep(1)

        count, attributed = {}, {}
        for m in self.sink.messages():
            t = re.search(rb"tok[0-9a-f]{32}", m["data"])
            self.assertIsNotNone(t, "only the storm's messages reach the sink")
            t = t.group(0).decode()
            count[t] = count.get(t, 0) + len(m["rcpt_to"])
            attributed[t] = received_local(m["data"])
        lost = [c_["i"] for c_ in ok if c_["tok"] not in count]
        self.assertEqual(lost, [], "calls that exited 0 but whose message was lost")
        twice = {t: n for t, n in count.items() if n != 1}
        self.assertEqual(twice, {}, "messages delivered more than once")
        for c_ in calls:
            if c_["tok"] in attributed:
                uid = pwd.getpwnam(c_["user"]).pw_uid
                self.assertIn((uid, c_["user"]), attributed[c_["tok"]],
                              f"call {c_['i']} attributed to its user")

    # ------------------------------------------------------------ g. permissions
    def test_other_users_cannot_touch_a_message(self):
        # A queued message of www-data (the sink holds it).
        self.sink.set_rules(HOLD)
        tok = token()
        r = self.sendmail_as("www-data", ["root"], f"Subject: private {tok}\n\nsecret {tok}\n")
        self.assertEqual(r.returncode, 0, r)
        qid = self.queued_entry()["id"]

        for argv, env in (([self.mailq], {"RELAYD_CONFIG": self.d.config_path}),
                          ([self.sendmail, "-C", self.d.config_path, "-bp"], None)):
            q = self.run_as("nobody", argv, env=env)
            self.assertEqual(q.returncode, 0, f"{argv[0]} -bp/mailq works for any user: {q}")
            self.assertIn(qid, q.stdout, q)

        ctl = [h.RELAYCTL_BIN, "-c", self.d.config_path]
        shown = self.run_as("nobody", ctl + ["-s", qid])
        self.assertNotEqual(shown.returncode, 0, f"relayctl -s of another user's message: {shown}")
        self.assertNotIn(f"secret {tok}", shown.stdout)
        deleted = self.run_as("nobody", ctl + ["-d", qid])
        self.assertNotEqual(deleted.returncode, 0, f"relayctl -d by a non-admin user: {deleted}")
        self.assertEqual([m["id"] for m in self.d.queue()], [qid], "the message is still queued")
        root = self.d.ctl("-d", qid)
        self.assertEqual(root.rc, 0, f"root may delete: {root}")
        self.assertEqual(self.d.queue(), [])

        # A dropped message of www-data.
        self.assertEqual(self.d.stop(), 0)
        tok = token()
        r = self.sendmail_as("www-data", ["root"], f"Subject: dropped {tok}\n\nsecret {tok}\n")
        self.assertEqual(r.returncode, 0, r)
        dropped = self.holding(tok)
        self.assertEqual(len(dropped), 1, files_under(self.maildrop))
        f = dropped[0]
        self.assertFalse(os.stat(f).st_mode & stat.S_IROTH, "a drop file is not world-readable")
        listing = self.run_as("nobody", ["ls", "-a", self.maildrop, os.path.dirname(f)])
        self.assertNotIn(os.path.basename(f), listing.stdout, f"another user lists it: {listing}")
        cat = self.run_as("nobody", ["cat", f])
        self.assertNotEqual(cat.returncode, 0, cat)
        self.assertNotIn(tok, cat.stdout)
        rm = self.run_as("nobody", ["rm", "-f", f])
        self.assertTrue(os.path.exists(f), f"another user removed a drop file: {rm}")
        self.sink.set_rules([])
        self.d.start()
        self.assertAdminGotIt(tok, "www-data")


if __name__ == "__main__":
    h.main()
