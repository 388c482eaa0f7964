#!/usr/bin/env python3
"""Smarthost mode: relayhost = "[127.0.0.1]:PORT" with AUTH against the test
SMTP server (on loopback, so AUTH over plaintext is allowed).

- AUTH PLAIN, and AUTH LOGIN when the server offers only LOGIN: delivered, the
  server saw our relayhost_user; every recipient domain goes to the smarthost.
- Wrong password: the server answers 535; the message stays deferred (retried,
  never bounced, nothing at the server), relayctl -p and -j show the 535. Once
  the server accepts the configured password, relayctl -f delivers it.
- A relayhost name that does not resolve (NXDOMAIN): deferred with 4.4.3, never
  bounced or moved to the dead spool.
- A relayhost_password_file that cannot be read: relayd says so and exits 1.
"""

import os
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_delivery_common as c  # noqa: E402

USER, PASSWORD = "relayuser", "s3cret pass:word"


class SmarthostTest(c.DeliveryTestCase):
    def auth_relayd(self, port, password=PASSWORD):
        path = os.path.join(self.tmp_dir(), "relayhost.pw")
        with open(path, "w") as f:
            f.write(password + "\n")
        os.chmod(path, 0o600)
        return self.smarthost_relayd(port, {"delivery.relayhost_user": USER,
                                            "delivery.relayhost_password_file": path})

    def tmp_dir(self):
        import tempfile
        import shutil
        t = tempfile.mkdtemp(prefix="relayd-smarthost-")
        self.addCleanup(shutil.rmtree, t, True)
        return t

    def check_auth_delivery(self, mechanisms):
        srv = self.start_server(["127.0.0.1:0"], auth_users={USER: PASSWORD},
                                auth_mechanisms=mechanisms, auth_required=True)
        d = self.auth_relayd(srv.port)
        rcpts = ["x@one.example", "y@two.example"]
        qid = self.send(d, rcpts, "via smarthost")
        self.wait_until(lambda: sum(len(m["rcpt_to"]) for m in srv.messages()) >= 2, 10,
                        "delivery through the smarthost")
        self.wait_queue_empty(d, 5)
        msgs = srv.messages()
        self.assertEqual(sorted(r for m in msgs for r in m["rcpt_to"]), rcpts)
        for m in msgs:
            self.assertEqual(m["auth_user"], USER, m)
            self.assertEqual(m["mail_from"], c.SENDER)
            self.assertEqual(self.subject_of(m), "via smarthost")
        ok = [a for a in srv.auth_log() if a["ok"]]
        self.assertTrue(ok, srv.auth_log())
        self.assertEqual({a["mech"].upper() for a in ok}, {mechanisms[0]}, srv.auth_log())
        self.assertEqual({a["user"] for a in srv.auth_log()}, {USER})
        sent = self.attempts(d, qid, status="sent")
        self.assertEqual(sorted(a.rcpt for a in sent), rcpts, self.attempts(d, qid))
        for a in sent:
            self.assertRegex(a.relay, c.relay_re(r"[^\[\]]+", "127.0.0.1", srv.port))
        self.assertNoBounce(d)

    def test_auth_plain(self):
        self.check_auth_delivery(["PLAIN"])

    def test_auth_login(self):
        self.check_auth_delivery(["LOGIN"])

    def test_wrong_password_stays_deferred(self):
        srv = self.start_server(["127.0.0.1:0"], auth_users={USER: "the right one"},
                                auth_mechanisms=["PLAIN", "LOGIN"], auth_required=True)
        d = self.auth_relayd(srv.port)
        qid = self.send(d, "z@three.example", "bad credentials")
        # min_backoff 1 s: give it time for a few attempts
        self.wait_until(lambda: len(self.attempts(d, qid)) >= 2, 10, "two attempts with a 535")
        time.sleep(0.5)
        self.assertEqual(srv.messages(), [], "nothing may be sent without AUTH")
        fails = [a for a in srv.auth_log() if not a["ok"]]
        self.assertGreaterEqual(len(fails), 2, srv.auth_log())
        self.assertEqual({a["user"] for a in srv.auth_log()}, {USER})
        atts = self.attempts(d, qid)
        self.assertEqual({a.status for a in atts}, {"deferred"}, atts)
        self.assertIn("535", atts[0].reply, atts[0])
        self.assertNoBounce(d)
        m = self.entry(d, qid)
        self.assertIsNotNone(m, "the message stays in the queue")
        r = m["recipients"][0]
        self.assertEqual(r["state"], "pending", m)
        self.assertGreaterEqual(r["attempts"], 1, m)
        self.assertIn("535", r["last_reply"], m)
        p = d.ctl("-p")
        self.assertEqual(p.rc, 0, p)
        self.assertRegex(p.out, r"\(.*535.*\)", f"-p shows the 535 as the reason:\n{p.out}")
        self.assertIn("z@three.example", p.out)

        # Fix the server side (it now knows our password): -f delivers.
        srv.set_options(auth_users={USER: PASSWORD})
        r = d.ctl("-f")
        self.assertEqual(r.rc, 0, r)
        self.wait_until(lambda: srv.messages(), 8, "delivery once the credentials work")
        self.wait_queue_empty(d, 5)
        self.assertEqual(srv.messages()[0]["auth_user"], USER)
        self.assertEqual(srv.messages()[0]["rcpt_to"], ["z@three.example"])
        self.assertNoBounce(d)

    def test_unreadable_password_file_stops_the_start(self):
        missing = os.path.join(self.tmp_dir(), "no-such.pw")
        d = self.smarthost_relayd(2525, {"delivery.relayhost_user": USER,
                                         "delivery.relayhost_password_file": missing},
                                  start=False)
        d.start(wait=False)
        self.assertEqual(d.proc.wait(15), 1, d.log())
        self.assertIn(f"delivery.relayhost_password_file: cannot read {missing}", d.log())

    def test_relayhost_that_does_not_resolve_defers(self):
        # NXDOMAIN for the relayhost is our configuration or our DNS, not the
        # recipient's domain: the mail stays queued, it is never bounced.
        srv = self.start_server(["127.0.0.1:0"])
        dns = self.start_dns()  # names under .test without records: NXDOMAIN
        d = self.smarthost_relayd(srv.port, {"delivery.dns_servers": [dns.server]},
                                  host="smarthost.test")
        qid = self.send(d, "w@four.example", "relayhost missing")
        self.wait_until(lambda: len(self.attempts(d, qid)) >= 2, 15, "two attempts")
        atts = self.attempts(d, qid)
        self.assertEqual({a.status for a in atts}, {"deferred"}, atts)
        self.assertEqual({a.dsn for a in atts}, {"4.4.3"}, atts)
        self.assertIn("relayhost smarthost.test", atts[0].reply, atts[0])
        self.assertIn("relayhost smarthost.test", d.log())
        self.assertNoBounce(d)
        dead = d.ctl("dead", "list", "--json")
        self.assertEqual((dead.rc, dead.out), (0, ""), dead)
        m = self.entry(d, qid)
        self.assertIsNotNone(m, "the message stays in the queue")
        self.assertEqual(m["recipients"][0]["state"], "pending", m)
        self.assertEqual(srv.messages(), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
