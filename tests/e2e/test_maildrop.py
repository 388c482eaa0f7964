#!/usr/bin/env python3
"""The drop directory (issue 12, "never lose a message"), against the real relayd
and the real writer (tests/tools/maildrop_write.cpp calls relayd/maildrop_file's
write(), as sendmail does when relayd is down), with a test smarthost.

- Files dropped while relayd is stopped (by www-data through the maildrop group,
  as a set-group-id sendmail would) are imported at start, attributed to the
  file's owner (log line, Received: header), delivered and removed; a second
  start imports nothing twice.
- A file dropped while relayd runs is delivered within seconds (inotify; the
  fallback rescan is every 30 s).
- A crash between the import's commit and the file's removal (the state seeded
  with maildrop_write --seed-spool) does not queue the message twice.
- A malformed or truncated file is moved to maildrop/corrupt/ and logged with
  its reason; the other files are still delivered.
- The directory is created 1730, owned by relayd's user and the maildrop group;
  a local user cannot list it or read or delete another user's file; relayd
  refuses a world-writable directory without the sticky bit.
Needs root (other users, chown); skips otherwise.
"""

import grp
import os
import pwd
import re
import stat
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402

WRITER = os.environ.get("MAILDROP_WRITE_BIN") or os.path.join(
    h.REPO, "build/release/tests/e2e/maildrop_write")
GROUP = "mail"
USER = "www-data"
PYTHON = "/usr/bin/python3"  # one that other users may run
IMPORT_RE = re.compile(r"\b([0-9A-F]{16}): from=<([^>]*)>, size=(\d+), nrcpt=(\d+), "
                       r"client=maildrop uid=(\d+) user=(\S+), message-id=(<[^>\s]+>)$",
                       re.M)


def sendmail_like(uid, gid, egid):
    """preexec: run as `uid` with real gid `gid` and effective gid `egid` (a
    set-group-id program's view), no supplementary groups."""
    def pre():
        os.setgroups([])
        os.setresgid(gid, egid, gid)
        os.setresuid(uid, uid, uid)
    return pre


def message(subject, body="hello\r\n"):
    return (f"From: app@src.test\r\nTo: root@dst.test\r\nSubject: {subject}\r\n\r\n{body}").encode()


class MaildropTest(c.DeliveryTestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (drop files from other users)")
        if not os.access(PYTHON, os.X_OK):
            raise unittest.SkipTest(f"{PYTHON} missing")
        if not os.access(WRITER, os.X_OK):
            raise unittest.SkipTest(f"{WRITER} not built")
        cls.www = pwd.getpwnam(USER)
        cls.group = grp.getgrnam(GROUP)

    def daemon(self):
        srv = self.start_server(["127.0.0.1:0"])
        d = self.smarthost_relayd(srv.port, {"local.maildrop_group": GROUP}, start=False)
        d.maildrop = os.path.join(d.spool, "maildrop")
        os.chmod(d.dir, 0o711)  # as /var/spool is: others may pass through
        # The spool and the drop directory: made by a first start, as the
        # package's first start would.
        d.start()
        self.assertEqual(d.stop(), 0)
        return srv, d

    def drop(self, d, subject, rcpts=("root@dst.test",), as_user=True, extra=(), seed=False):
        args = [WRITER] + (["--seed-spool", d.spool] if seed else []) + \
            [d.maildrop, "-f", "app@src.test"] + list(extra) + list(rcpts)
        # Seeding opens the spool: root does it, and gives the file to the user.
        pre = sendmail_like(self.www.pw_uid, self.www.pw_gid, self.group.gr_gid) \
            if as_user and not seed else None
        p = subprocess.run(args, input=message(subject), capture_output=True, preexec_fn=pre,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        name = p.stdout.decode().strip()
        if seed and as_user:
            os.chown(os.path.join(d.maildrop, name), self.www.pw_uid, self.group.gr_gid)
        return name

    def drops_left(self, d):
        return sorted(n for n in os.listdir(d.maildrop) if n != "corrupt")

    def delivered_subjects(self, srv):
        return sorted(self.subject_of(m) for m in srv.messages())

    def test_dropped_while_stopped_are_imported_once_and_delivered(self):
        srv, d = self.daemon()
        names = [self.drop(d, f"dropped {i}") for i in range(3)]
        root_name = self.drop(d, "dropped by root", as_user=False)
        for n in names:
            st = os.stat(os.path.join(d.maildrop, n))
            self.assertEqual((st.st_uid, st.st_gid), (self.www.pw_uid, self.group.gr_gid))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        d.start()
        self.wait_until(lambda: len(srv.messages()) >= 4, 15, "four deliveries")
        self.wait_queue_empty(d, 10)
        self.assertEqual(self.delivered_subjects(srv),
                         ["dropped 0", "dropped 1", "dropped 2", "dropped by root"])
        self.assertEqual(self.drops_left(d), [])
        imports = IMPORT_RE.findall(d.log())
        self.assertEqual(len(imports), 4, d.log())
        self.assertEqual(sorted((i[1], i[3], i[4], i[5]) for i in imports),
                         [("app@src.test", "1", "0", "root")] +
                         [("app@src.test", "1", str(self.www.pw_uid), USER)] * 3)
        for m in srv.messages():
            self.assertEqual(m["mail_from"], "app@src.test")
            self.assertEqual(m["rcpt_to"], ["root@dst.test"])
            if self.subject_of(m) != "dropped by root":
                self.assertIn(f"Received: from local (uid {self.www.pw_uid}, {USER})".encode(),
                              m["data"])
            self.assertRegex(m["data"], rb"(?mi)^Message-ID: <[0-9A-F]{16}@relay\.test>")
        self.assertNotIn(root_name, self.drops_left(d))
        # A second start imports nothing again.
        self.assertEqual(d.stop(), 0)
        d.start()
        time.sleep(1.5)
        self.assertEqual(len(srv.messages()), 4)
        self.assertEqual(len(IMPORT_RE.findall(d.log())), 4)

    def test_file_dropped_while_running_is_picked_up_at_once(self):
        srv, d = self.daemon()
        d.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        self.drop(d, "while running")
        self.wait_until(lambda: srv.messages(), 5, "delivery of the file dropped while running")
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(self.delivered_subjects(srv), ["while running"])
        self.wait_until(lambda: not self.drops_left(d), 5, "the file's removal")

    def test_crash_between_commit_and_unlink_queues_nothing_twice(self):
        srv, d = self.daemon()
        # The importer's commit is in the spool, the file still in the directory.
        seeded = self.drop(d, "committed before the crash", seed=True)
        fresh = self.drop(d, "not yet imported")
        d.start()
        self.wait_until(lambda: len(srv.messages()) >= 2, 15, "two deliveries")
        self.wait_queue_empty(d, 10)
        time.sleep(1)
        self.assertEqual(self.delivered_subjects(srv),
                         ["committed before the crash", "not yet imported"])
        self.assertRegex(d.log(), rf"maildrop {seeded}: already queued as [0-9A-F]{{16}}: removed")
        self.assertEqual(self.drops_left(d), [])
        self.assertEqual([i[5] for i in IMPORT_RE.findall(d.log())], [USER])
        self.assertNotIn(fresh, self.drops_left(d))

    def test_malformed_files_are_set_aside_and_others_delivered(self):
        srv, d = self.daemon()
        good = self.drop(d, "good one")
        truncated = self.drop(d, "truncated one")
        path = os.path.join(d.maildrop, truncated)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 5)
        garbage = "0000000000000001.1.0123456789abcdef"
        with open(os.path.join(d.maildrop, garbage), "wb") as f:
            f.write(b"From: someone\r\n\r\nnot a drop file\r\n")
        d.start()
        self.wait_until(lambda: srv.messages(), 10, "the good file's delivery")
        self.wait_until(lambda: not self.drops_left(d), 10, "every file handled")
        time.sleep(0.5)
        self.assertEqual(self.delivered_subjects(srv), ["good one"])
        corrupt = os.path.join(d.maildrop, "corrupt")
        self.assertEqual(sorted(os.listdir(corrupt)), sorted([truncated, garbage]))
        self.assertNotIn(good, os.listdir(corrupt))
        log = d.log()
        self.assertRegex(log, rf"maildrop {truncated}: malformed \(uid {self.www.pw_uid}\): "
                              r"line \d+: truncated.*moved to")
        self.assertRegex(log, rf"maildrop {garbage}: malformed \(uid 0\): not a relayd drop file")
        self.assertTrue(d.running())

    def test_directory_permissions(self):
        srv, d = self.daemon()
        st = os.stat(d.maildrop)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o1730, oct(st.st_mode))
        self.assertEqual((st.st_uid, st.st_gid), (os.geteuid(), self.group.gr_gid))
        spool = os.stat(d.spool)
        self.assertEqual(stat.S_IMODE(spool.st_mode), 0o711)
        for f in ("data.mdb", "lock.mdb", "relayd.lock"):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(d.spool, f)).st_mode), 0o600, f)
        name = self.drop(d, "private", as_user=False)
        nobody = pwd.getpwnam("nobody")
        probe = ("import os, sys\n"
                 "d, n = sys.argv[1], sys.argv[2]\n"
                 "for what, f in (('list', lambda: os.listdir(d)),\n"
                 "                ('read', lambda: open(os.path.join(d, n), 'rb').read()),\n"
                 "                ('delete', lambda: os.unlink(os.path.join(d, n)))):\n"
                 "    try:\n"
                 "        f(); print(what, 'ALLOWED')\n"
                 "    except PermissionError:\n"
                 "        print(what, 'denied')\n")
        # A plain local user, and one running with the maildrop group (what a
        # set-group-id sendmail could do): neither lists, reads nor deletes.
        for who, egid in (("plain user", nobody.pw_gid), ("with the maildrop group",
                                                           self.group.gr_gid)):
            p = subprocess.run([PYTHON, "-c", probe, d.maildrop, name],
                               capture_output=True, timeout=30,
                               preexec_fn=sendmail_like(nobody.pw_uid, nobody.pw_gid, egid))
            out = p.stdout.decode()
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertNotIn("ALLOWED", out, f"{who}: {out}")
            self.assertEqual(out.count("denied"), 3, f"{who}: {out} {p.stderr}")
        self.assertIn(name, os.listdir(d.maildrop))
        # Writable by others without the sticky bit: refused, nothing imported.
        os.chmod(d.maildrop, 0o777)
        d.start()
        time.sleep(1)
        self.assertRegex(d.log(), r"maildrop .*: refused: mode 0777 is unsafe")
        self.assertIn(name, os.listdir(d.maildrop))
        self.assertEqual(srv.messages(), [])


if __name__ == "__main__":
    h.main()
