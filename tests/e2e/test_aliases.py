#!/usr/bin/env python3
"""Local addresses (issue 12, point 5) with the real relayd on its TCP listener:
[local] domains are relay.test (the host name) and localhost, [local] aliases a
file in the test's directory.

- root@relay.test and postmaster@Relay.Test (postmaster: root) reach the test
  smarthost once, as the admin address root expands to; relayctl -j shows the
  original address as ORCPT while the message waits.
- An unknown local user is refused at RCPT with 550 5.1.1 and nothing is queued;
  with local.fallback set the same recipient is queued for the fallback.
- A recipient outside the local domains is queued as given.
- relayctl aliases-reload (newaliases) makes a running relayd use the edited
  file; a broken file is refused by relayctl (exit 65, FILE:LINE) and, asked
  directly on the control socket, by the daemon, which keeps the old table.
  SIGHUP reloads too; with the daemon down the file is still checked (exit 0).
- A broken aliases file at start: relayd exits 1 naming FILE:LINE.
"""

import json
import os
import signal
import socket
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402

ALIASES = """\
# test aliases
postmaster: root
MAILER-DAEMON: postmaster
root: admin@corp.test
team: alice@corp.test,
      bob@corp.test
"""


class AliasesTest(c.DeliveryTestCase):
    def aliases_relayd(self, text=ALIASES, overrides=None, smarthost_port=None, start=True):
        cfg = dict(overrides or {})
        d = (self.smarthost_relayd(smarthost_port, cfg, start=False) if smarthost_port
             else self.relayd(cfg, start=False))
        path = os.path.join(d.dir, "aliases")
        with open(path, "w") as f:
            f.write(text)
        d.reconfigure({"local.aliases": path})
        d.aliases_path = path
        if start:
            d.start()
        return d

    def rewrite(self, d, text):
        with open(d.aliases_path, "w") as f:
            f.write(text)

    def recipients(self, d, qid):
        """[(address, orcpt or None)] of a queued message, from relayctl -j."""
        m = self.entry(d, qid)
        self.assertIsNotNone(m, f"{qid} not in the queue")
        return [(r["address"], r.get("orcpt")) for r in m["recipients"]]

    def control(self, d, request):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as u:
            u.settimeout(10)
            u.connect(d.socket_path)
            u.sendall(json.dumps(request).encode() + b"\n")
            buf = b""
            while b"\n" not in buf:
                chunk = u.recv(4096)
                if not chunk:
                    break
                buf += chunk
        return json.loads(buf.split(b"\n")[0])

    def test_root_goes_to_the_admin_address(self):
        srv = self.start_server(["127.0.0.1:0"])
        d = self.aliases_relayd(smarthost_port=srv.port)
        self.send(d, ["root@relay.test", "postmaster@Relay.Test", "friend@elsewhere.test"],
                  "for root")
        self.wait_until(lambda: srv.messages(), 10, "delivery to the smarthost")
        self.wait_queue_empty(d, 10)
        rcpts = sorted(r for m in srv.messages() for r in m["rcpt_to"])
        self.assertEqual(rcpts, ["admin@corp.test", "friend@elsewhere.test"])
        self.assertEqual(self.subject_of(srv.messages()[0]), "for root")
        sent = [a.rcpt for a in self.attempts(d, status="sent")]
        self.assertEqual(sorted(sent), ["admin@corp.test", "friend@elsewhere.test"])

    def test_queued_expansion_keeps_the_original_as_orcpt(self):
        # The default relayhost is a closed port: the message stays queued.
        d = self.aliases_relayd()
        qid = self.send(d, ["Team@localhost", "root@relay.test", "x@elsewhere.test"], "orcpt")
        self.assertEqual(self.recipients(d, qid), [
            ("alice@corp.test", "rfc822;Team@localhost"),
            ("bob@corp.test", "rfc822;Team@localhost"),
            ("admin@corp.test", "rfc822;root@relay.test"),
            ("x@elsewhere.test", None),
        ])

    def test_unknown_local_user_refused_at_rcpt(self):
        d = self.aliases_relayd()
        msg = h.make_message("nobody", "hi\r\n", rcpt="nobody@relay.test")
        for rcpt in ("nobody@relay.test", "Nobody@LOCALHOST"):
            code, text, stage = h.submit(d.port, c.SENDER, [rcpt], msg)
            self.assertEqual((code, stage), (550, "rcpt"), text)
            self.assertEqual(text, f"5.1.1 <{rcpt}>: Recipient address rejected: user unknown "
                                   "in local recipient table")
        self.assertEqual(d.queue(), [])
        self.assertEqual(d.accepted_log_entries(), [])
        # A known one in the same transaction still goes through.
        with d.smtplib() as s:
            s.ehlo("client.test")
            s.mail(c.SENDER)
            self.assertEqual(s.rcpt("nobody@relay.test")[0], 550)
            self.assertEqual(s.rcpt("root@relay.test")[0], 250)
            code, _ = s.data(msg)
            self.assertEqual(code, 250)
        [m] = d.queue()
        self.assertEqual([r["address"] for r in m["recipients"]], ["admin@corp.test"])

    def test_fallback_catches_unknown_local_users(self):
        d = self.aliases_relayd(overrides={"local.fallback": "catchall@corp.test"})
        qid = self.send(d, ["nobody@relay.test", "root@localhost"], "fallback")
        self.assertEqual(self.recipients(d, qid), [
            ("catchall@corp.test", "rfc822;nobody@relay.test"),
            ("admin@corp.test", "rfc822;root@localhost"),
        ])

    def test_non_local_domain_untouched(self):
        d = self.aliases_relayd()
        qid = self.send(d, ["root@elsewhere.test", "root@sub.relay.test"], "not local")
        self.assertEqual(self.recipients(d, qid),
                         [("root@elsewhere.test", None), ("root@sub.relay.test", None)])

    def test_reload_picks_up_edits_and_keeps_the_old_table_on_errors(self):
        d = self.aliases_relayd()
        self.rewrite(d, "root: new-admin@corp.test\n")
        r = d.ctl("aliases-reload")
        self.assertEqual(r.rc, 0, r)
        self.assertIn(f"newaliases: {d.aliases_path}: 1 aliases", r.out)
        self.assertIn("relayd reloaded 1 aliases", r.out)
        qid = self.send(d, ["root@relay.test"], "after reload")
        self.assertEqual(self.recipients(d, qid), [("new-admin@corp.test", "rfc822;root@relay.test")])
        # postmaster is gone with the edit.
        code, _, stage = h.submit(d.port, c.SENDER, ["postmaster@relay.test"],
                                  h.make_message("pm", "x\r\n"))
        self.assertEqual((code, stage), (550, "rcpt"))

        self.rewrite(d, "root: other@corp.test\nbounce: \"|/usr/bin/procmail\"\n")
        r = d.ctl("aliases-reload")
        self.assertEqual(r.rc, 65, r)
        self.assertIn(f"newaliases: {d.aliases_path}:2: alias \"bounce\"", r.err)
        self.assertIn("|command targets are not supported", r.err)
        # The daemon itself refuses it too and keeps the table it had.
        reply = self.control(d, {"cmd": "aliases_reload"})
        self.assertFalse(reply["ok"], reply)
        self.assertTrue(reply["error"].startswith(f"{d.aliases_path}:2: "), reply)
        qid = self.send(d, ["root@relay.test"], "after a bad reload")
        self.assertEqual(self.recipients(d, qid)[0][0], "new-admin@corp.test")
        self.assertIn("the previous aliases stay in use", d.log())

    def test_sighup_reloads_aliases(self):
        d = self.aliases_relayd()
        self.rewrite(d, "root: hup@corp.test\n")
        d.proc.send_signal(signal.SIGHUP)
        self.wait_until(lambda: "SIGHUP: aliases" in d.log(settle=0.05, at_most=0.5), 10,
                        "the SIGHUP reload")
        qid = self.send(d, ["root@relay.test"], "after SIGHUP")
        self.assertEqual(self.recipients(d, qid)[0][0], "hup@corp.test")

    def test_newaliases_with_the_daemon_down(self):
        d = self.aliases_relayd(start=False)
        r = d.ctl("aliases-reload")
        self.assertEqual(r.rc, 0, r)
        self.assertIn(f"newaliases: {d.aliases_path}: 4 aliases", r.out)
        self.assertIn("relayd is not running", r.err)

    def test_broken_file_at_start_is_fatal(self):
        d = self.aliases_relayd("a: b\nb: a\n", start=False)
        d.start(wait=False)
        try:
            rc = d.proc.wait(10)
        except Exception:
            self.fail("relayd kept running with an aliases loop")
        self.assertEqual(rc, 1)
        log = d.log()
        self.assertRegex(log, rf"local\.aliases: {d.aliases_path}:[12]: alias loop: (a -> b -> a|b -> a -> b)")


if __name__ == "__main__":
    unittest.main()
