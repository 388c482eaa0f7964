#!/usr/bin/env python3
"""Who may use the control socket (issue 12): every local user may list the
queue (mailq) and read the counts; deleting, holding, flushing, requeueing and
showing another user's message need root, the daemon's own user or a member of
[control] admin_group. The daemon decides from the client's SO_PEERCRED and
SO_PEERGROUPS, so no client can claim to be someone else."""

import os
import pwd
import grp
import subprocess
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402

NOBODY = "nobody"
ADMIN_GROUP = "mail"  # a Debian system group nobody is not a member of


def as_user(d, args, user, extra_groups=()):
    """relayctl for daemon `d` as `user` (with only `extra_groups` as supplementary groups)."""
    pw = pwd.getpwnam(user)
    p = subprocess.run([h.RELAYCTL_BIN, "-c", d.config_path] + list(args), capture_output=True, timeout=60,
                       user=pw.pw_uid, group=pw.pw_gid, extra_groups=list(extra_groups))
    return h.Result(list(args), p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"))


class ControlAccessTest(h.RelaydTestCase):
    def setUp(self):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root to run relayctl as other users")
        try:
            pwd.getpwnam(NOBODY)
            grp.getgrnam(ADMIN_GROUP)
        except KeyError as e:
            raise unittest.SkipTest(f"no such user or group: {e}")

    def start(self, admin_group=""):
        d = self.relayd({"control.admin_group": admin_group} if admin_group else None)
        os.chmod(d.dir, 0o711)  # other users reach the socket, nothing else
        code, qid, stage = h.submit(d.port, "alice@src.test", ["bob@dst.test"],
                                    h.make_message("access", "body"))
        self.assertEqual(stage, "queued", (code, qid))
        return d, qid

    def test_any_user_lists_the_queue_and_reads_the_counts(self):
        d, qid = self.start()
        r = as_user(d, ["-p"], NOBODY)
        self.assertEqual(r.rc, 0, r)
        self.assertIn(qid, r.out)
        r = as_user(d, ["stats"], NOBODY)
        self.assertEqual(r.rc, 0, r)

    def test_other_users_cannot_change_or_read_messages(self):
        d, qid = self.start()
        for args in (["-d", qid], ["-h", qid], ["-f"], ["-r", qid], ["-s", qid],
                     ["dead", "purge", "ALL"]):
            r = as_user(d, args, NOBODY)
            self.assertEqual(r.rc, 1, r)
            self.assertIn("permission denied", r.err, r)
        self.assertIn(qid, [m["id"] for m in d.queue()], "the message is still queued")
        self.assertIn("control: delete refused: permission denied", d.log())
        # root still may
        r = d.ctl("-d", qid)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(d.queue(), [])

    def test_members_of_the_admin_group_may_act(self):
        d, qid = self.start(admin_group=ADMIN_GROUP)
        r = as_user(d, ["-s", qid], NOBODY, extra_groups=[grp.getgrnam(ADMIN_GROUP).gr_gid])
        self.assertEqual(r.rc, 0, r)
        r = as_user(d, ["-d", qid], NOBODY, extra_groups=[grp.getgrnam(ADMIN_GROUP).gr_gid])
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(d.queue(), [])

    def test_unknown_admin_group_is_a_start_error(self):
        d = self.relayd({"control.admin_group": "no-such-group-x"}, start=False)
        d.start(wait=False)
        self.assertNotEqual(d.proc.wait(15), 0)
        self.assertIn('control.admin_group: no group named "no-such-group-x"', d.log())


if __name__ == "__main__":
    h.main()
