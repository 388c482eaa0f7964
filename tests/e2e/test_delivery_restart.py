#!/usr/bin/env python3
"""kill -9 in the middle of deliveries: nothing delivered is sent twice, nothing
is lost (at-least-once, DESIGN.md "Durability contract").

200 messages (one recipient each, a unique subject each) go to an MX that holds
every message 0.1 s before its 250, over concurrency_per_destination = 4. When
about a third has arrived, relayd gets SIGKILL. It restarts on the same spool
while the MX greets with 421, so nothing can be delivered yet and relayctl -j
lists exactly what the spool still holds. Then:
- every accepted message is either at the server or still queued (none lost);
- messages both at the server and still queued (remote 250 came, "delivered"
  not yet committed) are, on each connection, the last ones it carried (the
  spool's single writer commits results in order);
- after the MX recovers, the queue empties, every message arrived, and a
  message that had left the queue before the kill was never sent again.
"""

import collections
import os
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_delivery_common as c  # noqa: E402

N = int(os.environ.get("RELAYD_RESTART_MESSAGES", "200"))
CONC = 4
STALL = 0.1


class RestartTest(c.DeliveryTestCase):
    def test_kill9_mid_delivery(self):
        dns = self.start_dns(mx=[("bulk.test", "mx.bulk.test", 10)],
                             a={"mx.bulk.test": "127.0.0.2"}, ttl=60)
        srv = self.start_server(["127.0.0.2:0"], [
            {"on": "DOT", "action": "stall", "seconds": STALL, "always": True}])
        d = self.mx_relayd(dns, srv.port, {"delivery.concurrency_per_destination": CONC})
        subject = lambda i: f"restart {i:04d}"  # noqa: E731
        ids = self.send_many(d, lambda i: f"r{i}@bulk.test", N, subject)
        by_subject = {subject(i): ids[i] for i in range(N)}

        def at_server():
            return collections.Counter(by_subject[self.subject_of(m)] for m in srv.messages())

        kill_at = N // 3
        self.wait_until(lambda: len(srv.messages()) >= kill_at, 60,
                        f"{kill_at} deliveries before the kill")
        d.kill9()
        # A stalled DOT whose 0.1 s ended as the kill landed is still recorded by
        # the server: let it finish with every connection of the killed relayd
        # before counting what it holds.
        self.wait_until(lambda: srv.stats()["current_connections"] == 0, 10,
                        "the MX to close the killed relayd's connections")
        before = at_server()
        self.assertLess(sum(before.values()), N,
                        "everything was delivered before the kill: the test proves nothing")
        self.assertLessEqual(srv.stats()["max_concurrent"], CONC)

        # Restart while the MX greets with 421: the queue is what the spool kept.
        srv.set_rules([{"greeting": "421 4.3.2 Not now", "always": True}])
        d.start()
        remaining = {m["id"] for m in d.queue()}
        self.assertTrue(remaining, "messages were left after the kill")
        lost = set(ids) - set(before) - remaining
        self.assertEqual(lost, set(), f"{len(lost)} accepted messages neither delivered nor "
                                      f"queued after the restart")
        unknown = remaining - set(ids)
        self.assertEqual(unknown, set())
        twice = set(before) & remaining
        # The single spool writer commits results in the order the 250s came, so
        # on each connection the messages delivered but not yet committed are the
        # last ones it carried: never one followed by a committed message.
        per_conn = collections.defaultdict(list)
        for m in srv.messages():
            per_conn[m["conn_id"]].append(by_subject[self.subject_of(m)])
        for conn, qids in per_conn.items():
            flags = [q in twice for q in qids]
            first = flags.index(True) if True in flags else len(flags)
            self.assertTrue(all(flags[first:]),
                            f"connection {conn}: a delivery committed after one that was not: "
                            f"{qids}")
        self.assertEqual(len(srv.messages()), sum(before.values()),
                         "nothing delivered while the MX greets with 421")

        srv.set_rules([])
        self.wait_queue_empty(d, 60, "the rest to be delivered after the restart")
        after = at_server()
        self.assertEqual(set(after), set(ids), "every message arrived")
        for qid in set(before) - remaining:
            self.assertEqual(after[qid], 1, f"{qid} had been delivered and left the queue "
                                            f"before the kill, and was sent again")
        dups = {q: n for q, n in after.items() if n > 1}
        self.assertEqual(set(dups), twice, "exactly the messages delivered but still queued "
                                           "repeat")
        self.assertTrue(all(n == 2 for n in dups.values()), dups)
        for m in srv.messages():
            qid = by_subject[self.subject_of(m)]
            i = ids.index(qid)
            self.assertEqual(m["rcpt_to"], [f"r{i}@bulk.test"])
            self.assertIn(f"message {i}\r\n".encode(), m["data"])
        self.assertNoBounce(d)
        print(f"\nkilled after {sum(before.values())} of {N} deliveries; "
              f"{len(remaining)} left in the spool; {len(dups)} delivered twice", file=sys.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
