#!/usr/bin/env python3
"""Connection reuse against a next hop that closed the cached connection.

The delivery agent keeps a connection open for a moment after a message
(linger) and gives the next message for the same destination to it. When the
smarthost restarted (or closed the idle connection) meanwhile, the first thing
the agent hears is the end of the connection, before any reply to this
transaction's MAIL: that is not an attempt. The message goes at once over a new
connection, with no deferral and min_backoff (5 minutes here) never waited.

- Smarthost restarted between two messages: the second is delivered at once by
  the new server, one attempt, no "deferred" line.
- The smarthost's idle timeout closed the lingering connection with a 421: the
  421 answered nothing of ours; delivered at once, no destination backoff.
- The connection ends as the transaction begins, before MAIL is answered: the
  same, through the other check (the one after the transaction).
- Smarthost gone for good: the retry on a new connection fails too, and the
  message is deferred normally (one attempt, the connection error as reason).
- The server answered MAIL and then dropped the connection: the server has
  heard this transaction, so it is an attempt: deferred, not resent at once.
"""

import os
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_delivery_common as c  # noqa: E402

# Long enough that a deferral could never pass for an immediate retry.
SLOW_RETRY = {"queue.min_backoff": "5m", "queue.max_backoff": "10m"}


class DeliveryReuseTest(c.DeliveryTestCase):
    def first_message_delivered(self, d, srv):
        qid = self.send(d, "one@a.example", "first")
        self.wait_until(lambda: self.attempts(d, qid, status="sent"), 10, "the first delivery")
        self.assertEqual(len(srv.messages()), 1)
        return qid

    def assertSentAtOnce(self, d, srv, qid, count=2):
        """The message reached `srv` (its count-th) without a deferral."""
        self.wait_until(lambda: len(srv.messages()) == count, 10, "the second message")
        self.wait_until(lambda: self.attempts(d, qid), 5, "the second message's log line")
        atts = self.attempts(d, qid)
        self.assertEqual([a.status for a in atts], ["sent"], atts)
        self.assertEqual(self.subject_of(srv.messages()[count - 1]), "second")
        self.assertNoBounce(d)

    def test_restarted_smarthost_gets_the_next_message_at_once(self):
        srv = self.start_server(["127.0.0.1:0"])
        port = srv.port
        d = self.smarthost_relayd(port, SLOW_RETRY)
        self.first_message_delivered(d, srv)
        # The delivery connection now lingers for more mail; the smarthost
        # restarts under it, so the cached connection is closed at the far end.
        srv.stop()
        srv2 = self.start_server([f"127.0.0.1:{port}"])
        qid = self.send(d, "two@a.example", "second")
        self.assertSentAtOnce(d, srv2, qid, count=1)
        self.assertNotIn("(in phase mail)", d.log())
        self.wait_queue_empty(d, 5)

    def test_idle_timeout_421_is_not_an_attempt(self):
        srv = self.start_server(["127.0.0.1:0"], idle_timeout=1.0)
        d = self.smarthost_relayd(srv.port, SLOW_RETRY)
        self.first_message_delivered(d, srv)
        # The server says 421 and closes after a second of silence; relayd's
        # connection lingers for two.
        time.sleep(1.3)
        qid = self.send(d, "two@a.example", "second")
        self.assertSentAtOnce(d, srv, qid)
        self.assertNotIn("throttled", d.log())

    def test_drop_before_mail_is_answered_is_not_an_attempt(self):
        srv = self.start_server(["127.0.0.1:0"])
        d = self.smarthost_relayd(srv.port, SLOW_RETRY)
        self.first_message_delivered(d, srv)
        # The next MAIL is met with a closed connection and no reply.
        srv.set_rules([{"on": "MAIL", "action": "drop", "times": 1}])
        qid = self.send(d, "two@a.example", "second")
        self.assertSentAtOnce(d, srv, qid)

    def test_smarthost_gone_for_good_defers_once(self):
        srv = self.start_server(["127.0.0.1:0"])
        d = self.smarthost_relayd(srv.port, SLOW_RETRY)
        self.first_message_delivered(d, srv)
        srv.stop()  # and nothing listens on its port any more
        qid = self.send(d, "two@a.example", "second")
        self.wait_until(lambda: self.attempts(d, qid), 10, "the second message's attempt")
        atts = self.attempts(d, qid)
        self.assertEqual([a.status for a in atts], ["deferred"], atts)
        self.assertIn("Connection refused", atts[0].reply, atts[0])
        m = self.entry(d, qid)
        self.assertIsNotNone(m, "the message stays queued")
        self.assertEqual(m["recipients"][0]["attempts"], 1, m)
        self.assertNoBounce(d)

    def test_drop_after_mail_was_answered_is_an_attempt(self):
        # The server has heard this transaction (MAIL answered 250): the message
        # may not be sent again at once, it is deferred like any lost connection.
        srv = self.start_server(["127.0.0.1:0"])
        d = self.smarthost_relayd(srv.port, SLOW_RETRY)
        self.first_message_delivered(d, srv)
        srv.set_rules([{"on": "RCPT", "action": "drop", "times": 1}])
        qid = self.send(d, "two@a.example", "second")
        self.wait_until(lambda: self.attempts(d, qid), 10, "the second message's attempt")
        atts = self.attempts(d, qid)
        self.assertEqual([a.status for a in atts], ["deferred"], atts)
        self.assertEqual(atts[0].dsn, "4.4.2", atts[0])
        self.assertEqual(len(srv.messages()), 1, "nothing resent")
        m = self.entry(d, qid)
        self.assertEqual(m["recipients"][0]["attempts"], 1, m)


if __name__ == "__main__":
    unittest.main(verbosity=2)
