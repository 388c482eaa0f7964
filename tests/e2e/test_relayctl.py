#!/usr/bin/env python3
"""relayctl -p/-j/-d/-s output formats and exit codes (0 ok, 1 failed action
with one line on stderr, 2 usage), and relayd --check-config / --config on bad
configurations (exit 2, message naming the key)."""

import copy
import os
import re
import socket
import stat
import subprocess
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402

# postqueue's header; the gap after "-Queue ID-" widens to fit 16-digit IDs
HEADER_RE = r"-Queue ID- +--Size-- ----Arrival Time---- -Sender/Recipient-------"
UNKNOWN_ID = "0000000000000001"


class RelayctlTest(h.RelaydTestCase):
    def assertOneLineError(self, r, rc=1):
        self.assertEqual(r.rc, rc, r)
        lines = r.err.strip("\n").split("\n")
        self.assertEqual(len(lines), 1, f"stderr is one line: {r}")
        self.assertTrue(lines[0].startswith("relayctl: "), r)
        self.assertEqual(r.out, "", f"nothing on stdout: {r}")

    def test_control_socket_mode(self):
        d = self.relayd()
        st = os.stat(d.socket_path)
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        # every local user may connect (mailq); each verb checks who asks
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o666, oct(st.st_mode))

    def test_listen_port_in_use(self):
        # a start-up failure: non-zero exit, promptly, naming the address
        d = self.relayd(start=False)
        with socket.socket() as blocker:
            blocker.bind(("127.0.0.1", d.port))
            blocker.listen()
            d.start(wait=False)
            try:
                rc = d.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.fail("relayd keeps running although its listen port is taken")
        self.assertNotEqual(rc, 0)
        self.assertIn(f"127.0.0.1:{d.port}", d.log())

    def test_empty_queue(self):
        d = self.relayd()
        self.assertIn(f"listening on 127.0.0.1:{d.port} (smtp)", d.log())
        r = d.ctl("-p")
        self.assertEqual((r.rc, r.out), (0, "Mail queue is empty\n"), r)
        r = d.ctl("-j")
        self.assertEqual((r.rc, r.out), (0, ""), r)
        # -S with the socket path works as -c does
        r = h.run_relayctl(["-S", d.socket_path, "-p"])
        self.assertEqual((r.rc, r.out), (0, "Mail queue is empty\n"), r)

    def test_formats_and_delete(self):
        d = self.relayd()
        t0 = int(time.time())
        m1 = h.make_message("one", "first\r\n")
        m2 = h.make_message("two", "second\r\n" * 300)
        m3 = h.make_message("three", "bounce\r\n")
        id1 = self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"], m1))
        id2 = self.assertQueued(h.submit(d.port, "carol@src.test",
                                         ["dave@dst.test", "erin@dst.test"], m2))
        id3 = self.assertQueued(h.submit(d.port, "", ["frank@dst.test"], m3))
        t1 = int(time.time()) + 1
        self.assertTrue(id1 < id2 < id3, "IDs are time-ordered")

        # -j
        r = d.ctl("-j")
        self.assertEqual(r.rc, 0, r)
        q = h.parse_json_lines(r.out)
        self.assertEqual(len(r.out.strip().splitlines()), 3, "one JSON object per line")
        self.assertEqual([m["id"] for m in q], [id1, id2, id3], "listed in ID (arrival) order")
        want = {id1: ("alice@src.test", ["bob@dst.test"], m1),
                id2: ("carol@src.test", ["dave@dst.test", "erin@dst.test"], m2),
                id3: ("", ["frank@dst.test"], m3)}
        sizes = {}
        for m in q:
            sender, rcpts, raw = want[m["id"]]
            self.assertEqual(set(m), {"id", "state", "size", "arrival", "sender", "in_flight", "recipients"}, m)
            self.assertIn(m["state"], ("active", "deferred", "held"))
            self.assertIsInstance(m["size"], int)
            self.assertGreater(m["size"], len(raw))
            self.assertIsInstance(m["arrival"], int)
            self.assertTrue(t0 - 1 <= m["arrival"] <= t1, (t0, m["arrival"], t1))
            self.assertEqual(m["sender"], sender)
            self.assertEqual([x["address"] for x in m["recipients"]], rcpts)
            for x in m["recipients"]:
                base = {"address", "state", "attempts", "last_reply", "next_attempt", "expires",
                        "destination"}
                # Once an outcome is stored, its typed facts (record v3):
                # the next hop here refuses connections, so no reply and no command
                # (and no TLS session, so no tls_policy or tls_outcome).
                self.assertEqual(set(x), base | ({"cause", "reply_text"} if x["last_reply"] else set()), x)
                # A pending recipient's destination: here the relayhost.
                relay = d.cfg["delivery"]["relayhost"].replace("[", "").replace("]", "")
                self.assertEqual(x["destination"], relay, x)
                if x["last_reply"]:
                    self.assertEqual(x["cause"], "refused", x)
                    self.assertIn("Connection refused", x["reply_text"], x)
                self.assertEqual(x["state"], "pending")
                self.assertIsInstance(x["attempts"], int)
                self.assertIsInstance(x["last_reply"], str)
                self.assertIsInstance(x["next_attempt"], int)
                self.assertIsInstance(x["expires"], int)
                # max_lifetime defaults to 5d
                self.assertLessEqual(abs(x["expires"] - (m["arrival"] + 5 * 86400)), 2, x)
            sizes[m["id"]] = m["size"]

        # -p
        r = d.ctl("-p")
        self.assertEqual(r.rc, 0, r)
        lines = r.out.split("\n")
        self.assertRegex(lines[0], "^" + HEADER_RE + "$")
        self.assertEqual(lines[-1], "", "ends with a newline")
        lines = lines[1:-1]
        trailer = lines[-1]
        total = sum(sizes.values())
        m = re.fullmatch(r"-- (\d+) Kbytes in (\d+) Requests\.", trailer)
        self.assertTrue(m, trailer)
        self.assertEqual(int(m.group(2)), 3)
        self.assertLessEqual(abs(int(m.group(1)) - total / 1024), 1, (trailer, total))
        blocks = "\n".join(lines[:-1]).strip("\n").split("\n\n")
        self.assertEqual(len(blocks), 3, f"a blank line between messages:\n{r.out}")
        for block, qid in zip(blocks, [id1, id2, id3]):
            blines = block.split("\n")
            mm = re.fullmatch(r"([0-9A-F]{16})([*!]?)\s+(\d+)\s+(\S.*\S)\s+(\S+)", blines[0])
            self.assertTrue(mm, f"message line: {blines[0]!r}")
            self.assertEqual(mm.group(1), qid)
            self.assertEqual(int(mm.group(3)), sizes[qid])
            self.assertRegex(mm.group(4), r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d$",
                             "arrival like postqueue: 'Mon Nov 23 11:19:00'")
            sender = want[qid][0]
            self.assertEqual(mm.group(5), sender or "MAILER-DAEMON")
            rcpt_lines = [l.strip() for l in blines[1:] if not l.strip().startswith("(")]
            for l in blines[1:]:
                self.assertTrue(l.startswith((" ", "\t")), f"recipient lines are indented: {l!r}")
            self.assertEqual(rcpt_lines, want[qid][1])

        # -s
        for qid, (sender, rcpts, raw) in want.items():
            env, stored = self.assertIntact(d, qid, raw, sender=sender, rcpts=rcpts)
            keys = [k for k, _ in env]
            for k in ("id", "arrival", "size", "sender", "client", "recipient"):
                self.assertIn(k, keys, env)
            self.assertEqual(dict(env)["client"].split()[0].strip("[]"), "127.0.0.1", env)
            self.assertEqual(int(dict(env)["size"]), sizes[qid])
            self.assertNotIn(b"\n", stored.replace(b"\r\n", b""), "CRLF line endings only")

        # -d ID
        r = d.ctl("-d", id2)
        self.assertEqual(r.rc, 0, r)
        self.assertIn("1", r.out, r)
        self.assertEqual([m["id"] for m in d.queue()], [id1, id3])
        self.assertOneLineError(d.ctl("-d", id2))
        self.assertOneLineError(d.ctl("-s", id2))
        # -d ALL
        r = d.ctl("-d", "ALL")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("2", r.out, r)
        self.assertEqual(d.queue(), [])
        self.assertEqual(d.ctl("-p").out, "Mail queue is empty\n")

    def test_unknown_id(self):
        d = self.relayd()
        self.assertQueued(h.submit(d.port, "alice@src.test", ["bob@dst.test"],
                                   h.make_message("keep", "keep\r\n")))
        for args in (["-s", UNKNOWN_ID], ["-d", UNKNOWN_ID], ["-s", "not-an-id"],
                     ["-d", "not-an-id"]):
            r = d.ctl(*args)
            self.assertOneLineError(r)
        self.assertEqual(len(d.queue()), 1, "failed deletes delete nothing")

    def test_usage_errors(self):
        d = self.relayd()
        for args in ([], ["-x"], ["--bogus"], ["-d"], ["-s"], ["frobnicate"]):
            r = d.ctl(*args)
            self.assertEqual(r.rc, 2, r)
            self.assertNotEqual(r.err.strip(), "", f"usage on stderr: {r}")
        r = h.run_relayctl([])
        self.assertEqual(r.rc, 2, r)

    def test_daemon_not_running(self):
        d = self.relayd(start=False)
        self.assertOneLineError(d.ctl("-p"))
        self.assertOneLineError(d.ctl("-j"))
        self.assertOneLineError(h.run_relayctl(["-S", os.path.join(d.dir, "nope.sock"), "-p"]))
        # and after a stop (the socket file may be left behind or removed)
        d.start()
        self.assertEqual(d.ctl("-p").rc, 0)
        self.assertEqual(d.stop(), 0)
        self.assertOneLineError(d.ctl("-p"))

    def test_config_that_does_not_load(self):
        # -c names the file the socket comes from: a missing or invalid one is a
        # failed action (exit 1, one line naming it), not a usage error.
        d = self.relayd(start=False)
        missing = os.path.join(d.dir, "missing.toml")
        r = h.run_relayctl(["-c", missing, "-p"])
        self.assertOneLineError(r)
        self.assertIn(missing, r.err)
        bad = os.path.join(d.dir, "bad.toml")
        with open(d.config_path) as f, open(bad, "w") as g:
            g.write(f.read() + "\n[bogus_table]\nx = 1\n")
        r = h.run_relayctl(["-c", bad, "-j"])
        self.assertOneLineError(r)
        self.assertIn("bogus_table", r.err)


class CheckConfigTest(unittest.TestCase):
    def setUp(self):
        self.d = h.Relayd()
        self.addCleanup(self.d.cleanup)
        self.base = copy.deepcopy(self.d.cfg)

    def check(self, overrides, key=None, extra_text=None):
        self.d.cfg = copy.deepcopy(self.base)
        h.apply_overrides(self.d.cfg, overrides)
        self.d.write_config()
        if extra_text:
            with open(self.d.config_path, "a") as f:
                f.write(extra_text)
        p = subprocess.run([h.RELAYD_BIN, "--check-config", self.d.config_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                           preexec_fn=h._pdeathsig)
        return p.returncode, p.stderr.decode("utf-8", "replace")

    def test_good_config(self):
        rc, err = self.check({})
        self.assertEqual(rc, 0, err)

    def test_bad_values_name_the_key(self):
        cases = [
            ({"smtp.bogus_key": 1}, "smtp.bogus_key"),
            ({"nonsense": "x"}, "nonsense"),
            ({"smtp.idle_timeout": "5 parsecs"}, "smtp.idle_timeout"),
            ({"queue.min_backoff": "-5m"}, "queue.min_backoff"),
            ({"smtp.max_message_size": "lots"}, "smtp.max_message_size"),
            ({"queue.max_spool_size": "2X"}, "queue.max_spool_size"),
            ({"smtp.listen": ["127.0.0.1:99999"]}, "smtp.listen"),
            ({"smtp.listen": ["::1:25"]}, "smtp.listen"),
            ({"smtp.mynetworks": ["10.0.0.0/33"]}, "smtp.mynetworks"),
            ({"smtp.max_recipients": "many"}, "smtp.max_recipients"),
            ({"delivery.tls": "sometimes"}, "delivery.tls"),
        ]
        for overrides, key in cases:
            with self.subTest(key=key):
                rc, err = self.check(overrides)
                self.assertEqual(rc, 2, f"{overrides}: {err}")
                self.assertIn(f"{self.d.config_path}: {key}:", err, f"{overrides}")
                self.assertEqual(len(err.strip().splitlines()), 1, err)

    def test_unknown_table(self):
        rc, err = self.check({}, extra_text="\n[bogus_table]\nx = 1\n")
        self.assertEqual(rc, 2, err)
        self.assertIn("bogus_table", err)

    def test_config_with_bad_value_does_not_start(self):
        rc, _ = self.check({"smtp.idle_timeout": "soon"})
        self.assertEqual(rc, 2)
        p = subprocess.run([h.RELAYD_BIN, "--config", self.d.config_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                           preexec_fn=h._pdeathsig)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(b"smtp.idle_timeout", p.stderr)

    def test_missing_file(self):
        p = subprocess.run([h.RELAYD_BIN, "--check-config", "/nonexistent/relayd.toml"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"/nonexistent/relayd.toml", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
