#!/usr/bin/env python3
"""relayctl's queue filters (--from --to --domain --older --reason), -p --shape
and the audit lines of its actions, against a real relayd and a test smarthost.

The smarthost defers every recipient with a reply that depends on its domain
(gmail.test 450 RATE1, yahoo.test 451 TSS04, any other 452 mailbox full), and
the backoff is an hour, so every message stays deferred with a known reason.
Ages come from libfaketime: relayd runs 125 minutes in the past for the first
messages, then 30 minutes in the past, then on the real clock, on the same spool.
- Listings (-j, -p) with each filter show exactly the expected IDs; --to,
  --domain and --reason must hold for the same recipient.
- -p --shape: the TOTAL row and the domain rows count the messages per age
  column (qshape's minutes), busiest domain first; --top cuts the list.
- Bulk actions by filter (-h, -H, -r, -f, -d, dead replay, dead purge) touch
  exactly the matching messages: the others keep their state, and the daemon's
  log has one "ID: placed on hold by relayctl (uid N)" line per message changed.
- Bad filter values exit 64 with one line on stderr; a filter where none is
  taken, or an action with neither ID nor filter, is a usage error (2).
"""

import os
import re
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayd_harness as h  # noqa: E402
import test_delivery_common as c  # noqa: E402

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"

RULES = [
    # (no 4.7.x: relayd would hold back the whole smarthost after it)
    {"on": "RCPT", "match": "@gmail.test", "reply": "450 4.2.1 RATE1 Gmail rate limited",
     "always": True},
    {"on": "RCPT", "match": "@yahoo.test", "reply": "451 4.3.0 TSS04 temporarily deferred",
     "always": True},
    {"on": "RCPT", "match": "@perm.test", "reply": "550 5.1.1 No such user", "always": True},
    {"on": "RCPT", "match": "@policy.test", "reply": "550 5.7.1 Relaying denied", "always": True},
    {"on": "RCPT", "reply": "452 4.2.2 Mailbox full", "always": True},
]

# name -> (age phase, sender, recipients)
MAIL = {
    "o1": ("old", "alice@src.test", ["a1@gmail.test"]),
    "o2": ("old", "bob@other.test", ["b1@yahoo.test", "b2@gmail.test"]),
    "m1": ("mid", "alice@src.test", ["c1@yahoo.test"]),
    "m2": ("mid", "carol@src.test", ["c2@aol.test"]),
    "n1": ("new", "bob@other.test", ["d1@gmail.test"]),
    "n2": ("new", "", ["d2@aol.test"]),
    "n3": ("new", "Alice@SRC.test", ["d3@Gmail.Test"]),
}
PHASES = [("old", "-125m"), ("mid", "-30m"), ("new", None)]


def audit_ids(log, what):
    """IDs with an "ID: <what> by relayctl (uid N)" line in the log -> {id: uid}."""
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(rf"\b([0-9A-F]{{16}}): {re.escape(what)} by relayctl \(uid (\d+)\)$",
                        log, re.M)}


class QueueFilterTest(c.DeliveryTestCase):
    def setUp(self):
        self.srv = self.start_server(["127.0.0.1:0"], RULES)

    def daemon(self):
        return self.smarthost_relayd(self.srv.port, {
            "queue.min_backoff": "1h", "queue.max_backoff": "1h", "queue.delay_warning": "0",
        }, start=False)

    def wait_deferred(self, d, ids):
        """Every message in `ids` attempted, its result stored, none in flight."""
        def done():
            q = {m["id"]: m for m in d.queue()}
            return all(i in q and q[i]["state"] == "deferred" and not q[i]["in_flight"]
                       for i in ids)
        self.wait_until(done, 15, f"{ids} deferred")

    def populate(self):
        """The spool of MAIL, aged by phase -> (relayd, {name: id})."""
        if not os.path.exists(FAKETIME_LIB):
            self.skipTest(f"{FAKETIME_LIB} missing (Debian package faketime)")
        d = self.daemon()
        ids = {}
        for phase, offset in PHASES:
            # A sanitizer build checks that its runtime comes first among the
            # libraries; the preloaded libfaketime is before it, and harmless.
            asan = os.environ.get("ASAN_OPTIONS", "")
            d.extra_env = ({"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": offset,
                            "DONT_FAKE_MONOTONIC": "1",
                            "ASAN_OPTIONS": (asan + ":" if asan else "") +
                            "verify_asan_link_order=0"} if offset else {})
            d.start()
            for name, (p, sender, rcpts) in MAIL.items():
                if p == phase:
                    ids[name] = self.send(d, rcpts, subject=name, sender=sender)
            self.wait_deferred(d, list(ids.values()))
            if offset:
                d.stop()
        return d, ids

    def listed(self, d, *args):
        r = d.ctl("-j", *args)
        self.assertEqual(r.rc, 0, r)
        return {m["id"] for m in h.parse_json_lines(r.out)}

    def names(self, ids, *names):
        return {ids[n] for n in names}

    def test_listing_filters(self):
        d, ids = self.populate()
        n = lambda *names: self.names(ids, *names)  # noqa: E731
        arrivals = {m["id"]: m["arrival"] for m in d.queue()}
        now = time.time()
        self.assertGreater(now - arrivals[ids["o1"]], 120 * 60, "faketime made old mail")
        self.assertTrue(25 * 60 < now - arrivals[ids["m1"]] < 40 * 60, arrivals)
        cases = [
            ((), n(*MAIL)),
            (("--from", "alice@src.test"), n("o1", "m1", "n3")),
            (("--from", "SRC.TEST"), n("o1", "m1", "m2", "n3")),
            (("--from", "@other.test"), n("o2", "n1")),
            (("--from", "<>"), n("n2")),
            (("--to", "B1@yahoo.test"), n("o2")),
            (("--to", "gmail.test"), n("o1", "o2", "n1", "n3")),
            (("--domain", "gmail.test"), n("o1", "o2", "n1", "n3")),
            (("--domain", "aol.test"), n("m2", "n2")),
            (("--domain", "test"), set()),
            (("--older", "1h"), n("o1", "o2")),
            (("--older", "20m"), n("o1", "o2", "m1", "m2")),
            (("--older", "3h"), set()),
            (("--reason", "tss04"), n("o2", "m1")),
            (("--reason", "4.2.1 rate1"), n("o1", "o2", "n1", "n3")),
            # the same recipient: o2's TSS04 reply is for its yahoo recipient
            (("--domain", "gmail.test", "--reason", "TSS04"), set()),
            (("--domain", "yahoo.test", "--older", "1h"), n("o2")),
            (("--from", "alice@src.test", "--domain", "gmail.test"), n("o1", "n3")),
        ]
        for args, want in cases:
            with self.subTest(args=args):
                self.assertEqual(self.listed(d, *args), want)
        # -p with a filter: those messages only, and the total line counts them
        p = d.ctl("-p", "--domain", "aol.test")
        self.assertEqual(p.rc, 0, p)
        shown = set(re.findall(r"(?m)^([0-9A-F]{16})[ *!]", p.out))
        self.assertEqual(shown, n("m2", "n2"), p.out)
        self.assertRegex(p.out, r"-- \d+ Kbytes in 2 Requests\.\n$")
        p = d.ctl("-p", "--older", "3h")
        self.assertEqual((p.rc, p.out), (0, "Mail queue is empty\n"), p)

    def test_shape(self):
        d, ids = self.populate()
        r = d.ctl("-p", "--shape")
        self.assertEqual(r.rc, 0, r)
        lines = r.out.rstrip("\n").split("\n")
        head = lines[0].split()
        self.assertEqual(head, ["T", "5", "10", "20", "40", "80", "160", "320", "640", "1280",
                                "1280+"], r.out)
        rows = {ln.split()[0]: [int(x) for x in ln.split()[1:]] for ln in lines[1:]}
        #                    T  5 10 20 40 80 160 320 640 1280 1280+
        self.assertEqual(rows["TOTAL"], [7, 3, 0, 0, 2, 0, 2, 0, 0, 0, 0], r.out)
        self.assertEqual(rows["gmail.test"], [4, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0], r.out)
        self.assertEqual(rows["yahoo.test"], [2, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0], r.out)
        self.assertEqual(rows["aol.test"], [2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0], r.out)
        self.assertEqual([ln.split()[0] for ln in lines[1:]],
                         ["TOTAL", "gmail.test", "aol.test", "yahoo.test"], "busiest first")
        # filtered, and cut to the busiest domain
        r = d.ctl("-p", "--shape", "--from", "src.test", "--top", "1")
        self.assertEqual(r.rc, 0, r)
        lines = r.out.rstrip("\n").split("\n")
        rows = {ln.split()[0]: ln.split()[1:] for ln in lines[1:-1]}
        self.assertEqual(rows["TOTAL"][0], "4", r.out)  # o1, m1, m2, n3
        self.assertEqual(list(rows), ["TOTAL", "gmail.test"], r.out)
        self.assertEqual(lines[-1], "(2 more domains; --top N shows more)", r.out)

    def test_bulk_actions_by_filter(self):
        d, ids = self.populate()
        n = lambda *names: self.names(ids, *names)  # noqa: E731
        uid = os.getuid()

        def states():
            return {m["id"]: m["state"] for m in d.queue()}

        # hold: exactly the yahoo.test messages
        r = d.ctl("-h", "--domain", "yahoo.test")
        self.assertEqual((r.rc, r.out), (0, "relayctl: held 2 messages\n"), r)
        held = {i for i, s in states().items() if s == "held"}
        self.assertEqual(held, n("o2", "m1"))
        self.assertEqual(audit_ids(d.log(), "placed on hold"), {i: uid for i in n("o2", "m1")})
        # release: only the held one older than an hour
        r = d.ctl("-H", "ALL", "--older", "1h")
        self.assertEqual((r.rc, r.out), (0, "relayctl: released 1 message\n"), r)
        self.assertEqual({i for i, s in states().items() if s == "held"}, n("m1"))
        self.assertEqual(set(audit_ids(d.log(), "released from hold")), n("o2"))
        self.wait_deferred(d, n("o2"))  # released = due now: attempted again

        # requeue by sender: the null sender's message is attempted again now
        before = {m["id"]: m["recipients"][0]["attempts"] for m in d.queue()}
        r = d.ctl("-r", "--from", "<>")
        self.assertEqual((r.rc, r.out), (0, "relayctl: requeued 1 message\n"), r)
        self.assertEqual(set(audit_ids(d.log(), "requeued")), n("n2"))
        self.wait_until(lambda: self.entry(d, ids["n2"])["recipients"][0]["attempts"]
                        > before[ids["n2"]], 10, "n2 attempted again")
        self.wait_deferred(d, n("n2"))

        # flush by reason: the gmail.test ones (held m1 is not a gmail one anyway)
        r = d.ctl("-f", "--reason", "RATE1")
        self.assertEqual((r.rc, r.out), (0, "relayctl: flushed 4 messages\n"), r)
        self.assertEqual(set(audit_ids(d.log(), "flushed")), n("o1", "o2", "n1", "n3"))
        self.wait_until(lambda: all(self.entry(d, ids[x])["recipients"][-1]["attempts"]
                                    > before[ids[x]] for x in ("o1", "n1", "n3")),
                        10, "gmail messages attempted again")

        # delete by domain and age: only m2 (aol.test, 30 minutes old)
        r = d.ctl("-d", "--domain", "aol.test", "--older", "20m")
        self.assertEqual((r.rc, r.out), (0, "relayctl: deleted 1 message\n"), r)
        left = set(states())
        self.assertEqual(left, n(*MAIL) - n("m2"))
        self.assertEqual(audit_ids(d.log(), "removed"), {ids["m2"]: uid})
        # an ID and a filter: the ID only if it matches
        r = d.ctl("-d", ids["n1"], "--from", "alice@src.test")
        self.assertEqual((r.rc, r.out), (0, "relayctl: deleted 0 messages\n"), r)
        self.assertIn(ids["n1"], states())
        # a filter that matches nothing changes nothing
        r = d.ctl("-d", "--domain", "nowhere.test")
        self.assertEqual((r.rc, r.out), (0, "relayctl: deleted 0 messages\n"), r)
        self.assertEqual(set(states()), n(*MAIL) - n("m2"))
        # ALL still means all, and each ID is logged
        r = d.ctl("-d", "ALL")
        self.assertEqual((r.rc, r.out), (0, "relayctl: deleted 6 messages\n"), r)
        self.assertEqual(set(audit_ids(d.log(), "removed")), n(*MAIL))

    def test_dead_actions_by_filter(self):
        d = self.daemon()
        d.start()
        perm = self.send(d, ["x@perm.test"], subject="perm")
        policy = self.send(d, ["y@policy.test"], subject="policy", sender="other@src.test")
        self.wait_until(lambda: len(h.parse_json_lines(d.ctl("dead", "list", "--json").out)) == 2,
                        15, "two dead entries")

        def dead_ids(*args):
            r = d.ctl("dead", "list", "--json", *args)
            self.assertEqual(r.rc, 0, r)
            return {e["id"] for e in h.parse_json_lines(r.out)}

        self.assertEqual(dead_ids("--reason", "5.7.1"), {policy})
        self.assertEqual(dead_ids("--domain", "PERM.test"), {perm})
        self.assertEqual(dead_ids("--from", "other@src.test"), {policy})
        # replay by domain: only perm.test goes back (and fails again)
        r = d.ctl("dead", "replay", "--domain", "perm.test")
        self.assertEqual((r.rc, r.out), (0, "relayctl: replayed 1 dead entry\n"), r)
        self.assertEqual(set(audit_ids(d.log(), "replayed from the dead spool")), {perm})
        self.wait_until(lambda: dead_ids() == {perm, policy}, 15, "perm dead again")
        # purge by reason: only the 5.7.1 one
        r = d.ctl("dead", "purge", "--reason", "relaying denied")
        self.assertEqual((r.rc, r.out), (0, "relayctl: purged 1 dead entry\n"), r)
        self.assertEqual(dead_ids(), {perm})
        self.assertEqual(set(audit_ids(d.log(), "purged from the dead spool")), {policy})

    def test_bad_filters(self):
        d = self.daemon()
        d.start()
        for args, why in [
            (("-p", "--older", "5x"), r"--older: bad duration \"5x\""),
            (("-d", "--domain", "a@b.test"), r"--domain: give a domain"),
            (("-j", "--from", ""), r"--from needs a value"),
            (("-h", "--to", "<>"), r"--to: a recipient is never the null sender"),
            (("-p", "--reason", "a\tb"), r"--reason: control characters"),
            (("-p", "--shape", "--top", "0"), r"--top: want a number"),
        ]:
            with self.subTest(args=args):
                r = d.ctl(*args)
                self.assertEqual(r.rc, 64, r)
                self.assertEqual(r.out, "", r)
                lines = r.err.strip("\n").split("\n")
                self.assertEqual(len(lines), 1, r)
                self.assertRegex(lines[0], r"^relayctl: " + why, r)
        for args in [("stats", "--domain", "x.test"), ("-s", "0000000000000001", "--older", "1h"),
                     ("-d",), ("-h",), ("dead", "purge"), ("-j", "--top", "3")]:
            with self.subTest(args=args):
                r = d.ctl(*args)
                self.assertEqual(r.rc, 2, r)


if __name__ == "__main__":
    h.main()
