#!/usr/bin/env python3
"""Power loss, not just kill -9: no acknowledged message is lost when every write
that no completed flush covers is lost too (a kill -9 cannot show that: the page
cache survives it).

relayd runs with power_loss_shim.so preloaded ($RELAYD_POWER_LOSS_SHIM): before each
write to a file in the spool it logs the old bytes of the range to an undo log, and
a completed fdatasync/fsync of the file empties that log. Several smtplib clients
submit mail and record every "250 ... queued as ID"; relayd is killed -9 at a random
moment, or (every other round) right after a 250 that came at a random moment; the spool's files are copied and their undo logs replayed backwards: the
disk after a power cut. relayd (no shim, delivery to a closed port) opens that image
and relayctl -j must list every ID acknowledged so far, in this round and the ones
before (each round starts on the previous round's image).

test_shim_models_a_power_cut checks the shim's model itself on writes LMDB does
not make here (an O_DSYNC descriptor, write() at the file offset, a shrink).
The negative control runs the same rounds with RELAYD_SHIM_NOFLUSH=1 (every flush a
no-op that returns 0, a "missing flush"): the test must then see acknowledged
messages lost, or it could not catch a missing or misplaced flush. Skipped (77)
when the shim is not built or LD_PRELOAD does not take effect here."""

import os
import random
import shutil
import signal
import smtplib
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import relayd_harness as h  # noqa: E402

SHIM = os.environ.get("RELAYD_POWER_LOSS_SHIM", "")
ROUNDS = int(os.environ.get("RELAYD_DURABILITY_ROUNDS", "6"))
CONTROL_ROUNDS = 2
CLIENTS = 6
RECORD = struct.Struct("=cQQQ")  # kind, offset, length of the write, file size before it


def read_records(path):
    """The complete records of an undo log (a record cut short by the kill is
    dropped: its write had not started)."""
    with open(path, "rb") as f:
        data = f.read()
    out, pos = [], 0
    while pos + RECORD.size <= len(data):
        kind, off, length, size = RECORD.unpack_from(data, pos)
        n = length if kind == b"D" else (min(length, size - off) if off < size else 0)
        if pos + RECORD.size + n > len(data):
            break
        out.append((kind, off, size, data[pos + RECORD.size:pos + RECORD.size + n]))
        pos += RECORD.size + n
    return out


def apply_undo(path, records):
    """What `path` holds after a power cut: undo records newest first (each puts
    back the size and bytes from before its write), then the O_DSYNC writes, which
    were durable at once, oldest first."""
    with open(path, "r+b") as f:
        for kind, off, size, old in reversed(records):
            if kind == b"U":
                f.truncate(size)
                f.seek(off)
                f.write(old)
        for kind, off, _, new in records:
            if kind == b"D":
                f.seek(off)
                f.write(new)


def power_loss_image(spool, undo_dir, dest):
    """Copies the spool's files (less LMDB's lock file) to `dest` and replays their
    undo logs; returns how many undo records were replayed. Directories under the
    spool (events/: the report record) hold no queued mail and are left out."""
    os.makedirs(dest, mode=0o700)
    replayed = 0
    for name in os.listdir(spool):
        if name == "lock.mdb" or not os.path.isfile(os.path.join(spool, name)):
            continue
        shutil.copyfile(os.path.join(spool, name), os.path.join(dest, name))
        log = os.path.join(undo_dir, name + ".undo")
        if os.path.exists(log):
            records = read_records(log)
            apply_undo(os.path.join(dest, name), records)
            replayed += len(records)
    return replayed


def shim_works():
    """'' when a preloaded shim logs a write here, else why not."""
    if not SHIM or not os.path.exists(SHIM):
        return f"power_loss_shim not built ($RELAYD_POWER_LOSS_SHIM={SHIM!r})"
    with tempfile.TemporaryDirectory(prefix="relayd-shim-check-") as d:
        watched, undo = os.path.join(d, "w"), os.path.join(d, "u")
        os.mkdir(watched)
        os.mkdir(undo)
        code = (f"import os; fd = os.open({os.path.join(watched, 'f')!r}, os.O_RDWR | os.O_CREAT);"
                "os.pwrite(fd, b'x', 0)")
        env = dict(os.environ, LD_PRELOAD=SHIM, RELAYD_SHIM_DIR=watched, RELAYD_SHIM_UNDO_DIR=undo)
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(os.path.join(undo, "f.undo")):
            return f"LD_PRELOAD of the shim has no effect here (rc {r.returncode}: {r.stderr[-300:]})"
    return ""


class Client(threading.Thread):
    """Submits messages over one SMTP session after another until `stop`; records
    the ID of every 250 it received (even one read after the kill: it was sent)
    and then calls on_ack()."""

    def __init__(self, n, port, stop, acked, lock, on_ack):
        super().__init__(daemon=True)
        self.n, self.port, self.stop_ev, self.acked, self.lock = n, port, stop, acked, lock
        self.on_ack = on_ack

    def run(self):
        i = 0
        while not self.stop_ev.is_set():
            try:
                s = smtplib.SMTP("127.0.0.1", self.port, timeout=10)
                s.ehlo(f"client{self.n}.test")
                while not self.stop_ev.is_set():
                    i += 1
                    msg = h.make_message(f"c{self.n} m{i}", f"client {self.n} message {i}\r\n")
                    if s.mail("alice@src.test")[0] != 250 or s.rcpt("bob@dst.test")[0] != 250:
                        break
                    code, text = s.data(msg)
                    m = h.QUEUED_RE.match(f"{code} {text.decode('ascii', 'replace')}")
                    if m:
                        with self.lock:
                            self.acked.append(m.group(1))
                        self.on_ack()
                s.close()
            except (OSError, smtplib.SMTPException):
                time.sleep(0.02)  # relayd is gone (the kill) or busy: try again


class DurabilityTest(h.RelaydTestCase):
    @classmethod
    def setUpClass(cls):
        why = shim_works()
        if why:
            raise unittest.SkipTest(why)

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="relayd-durability-")
        if not os.environ.get("RELAYD_E2E_KEEP"):
            self.addCleanup(shutil.rmtree, self.work, True)

    def daemon(self, name, spool, shim_env=None):
        """relayd on `spool` (a directory in self.work), with the shim if shim_env."""
        d = self.relayd({"spool": spool, "smtp.max_connections_per_client": 1000},
                        start=False, name=name)
        if shim_env is not None:
            d.extra_env = dict(shim_env, LD_PRELOAD=SHIM)
        return d.start()

    def power_cut_round(self, n, spool, no_flush, rnd):
        """One round on `spool`: clients submit, relayd is killed -9 at a random
        moment (odd rounds) or right after a 250 that came at a random moment (even
        rounds: when a premature answer's commit would most likely be unflushed);
        the power-loss image is built. Returns (acked IDs, image dir, records)."""
        os.makedirs(spool, mode=0o700, exist_ok=True)
        undo = os.path.join(self.work, f"undo{n}")
        os.mkdir(undo)
        env = {"RELAYD_SHIM_DIR": spool, "RELAYD_SHIM_UNDO_DIR": undo}
        if no_flush:
            env["RELAYD_SHIM_NOFLUSH"] = "1"
        d = self.daemon(f"relayd-round{n}", spool, env)
        self.assertTrue(os.path.exists(os.path.join(undo, "data.mdb.undo")),
                        "the shim did not see relayd open its data file")
        acked, lock, stop, armed = [], threading.Lock(), threading.Event(), threading.Event()
        pid = d.proc.pid

        def on_ack():
            if armed.is_set():
                os.kill(pid, signal.SIGKILL)  # reaped by kill9() below

        clients = [Client(i, d.port, stop, acked, lock, on_ack) for i in range(CLIENTS)]
        for c in clients:
            c.start()
        try:
            deadline = time.monotonic() + 20
            while len(acked) < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertGreaterEqual(len(acked), 5, "relayd acknowledged (almost) nothing")
            time.sleep(rnd.uniform(0.0, 1.5))
            if n % 2 == 0:
                armed.set()
                deadline = time.monotonic() + 10
                while d.proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.005)
            d.kill9()
        finally:
            stop.set()
            for c in clients:
                c.join(15)
        image = os.path.join(self.work, f"image{n}")
        replayed = power_loss_image(spool, undo, image)
        return list(acked), image, replayed

    def run_rounds(self, rounds, no_flush, seed):
        """`rounds` power cuts, each on the previous round's image; returns
        [(round, acked this round, acked so far, lost so far)]."""
        rnd = random.Random(seed)
        spool = os.path.join(self.work, "spool0")
        acked_all, report = set(), []
        for n in range(1, rounds + 1):
            acked, image, replayed = self.power_cut_round(n, spool, no_flush, rnd)
            acked_all.update(acked)
            d = self.daemon(f"relayd-check{n}", image)
            present = {m["id"] for m in d.queue()}
            self.assertEqual(d.stop(), 0, d.log_tail())
            lost = sorted(acked_all - present)
            report.append((n, len(acked), len(acked_all), len(lost), replayed))
            print(f"\n{'no-flush ' if no_flush else ''}round {n}: {len(acked)} acknowledged, "
                  f"{len(acked_all)} so far, {len(lost)} lost, {replayed} undo records replayed",
                  file=sys.stderr)
            if lost and not no_flush:
                self.fail(f"round {n}: {len(lost)} of {len(acked_all)} acknowledged messages "
                          f"missing after the power cut: {lost[:20]}")
            spool = image
        return report

    def test_shim_models_a_power_cut(self):
        # Writes the shim must model, through a child process: an unflushed
        # overwrite, an O_DSYNC write (durable at once), writes that extend the
        # file (pwrite, and write() at the descriptor's offset), a shrink; then
        # the image each flush setting leaves.
        code = """if True:
            import os, sys
            path = sys.argv[1]
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.pwrite(fd, b"A" * 10, 0)
            os.fsync(fd)                                 # A*10 is on disk
            os.pwrite(fd, b"B" * 5, 2)                   # lost
            os.pwrite(fd, b"D" * 6, 10)                  # lost, and the growth to 16
            sync = os.open(path, os.O_WRONLY | os.O_DSYNC)
            os.pwrite(sync, b"C" * 4, 8)                 # durable at once
            os.lseek(fd, 16, os.SEEK_SET)
            os.write(fd, b"E" * 4)                       # lost
            os.ftruncate(fd, 14)                         # lost
        """
        for no_flush, want in ((False, b"A" * 8 + b"C" * 4), (True, b"\0" * 8 + b"C" * 4)):
            work = tempfile.mkdtemp(dir=self.work)
            watched, undo = os.path.join(work, "w"), os.path.join(work, "u")
            os.mkdir(watched)
            os.mkdir(undo)
            env = dict(os.environ, LD_PRELOAD=SHIM, RELAYD_SHIM_DIR=watched,
                       RELAYD_SHIM_UNDO_DIR=undo)
            if no_flush:
                env["RELAYD_SHIM_NOFLUSH"] = "1"
            subprocess.run([sys.executable, "-c", code, os.path.join(watched, "f")], env=env,
                           check=True)
            with open(os.path.join(watched, "f"), "rb") as f:
                self.assertEqual(f.read(), b"A" * 2 + b"B" * 5 + b"A" + b"C" * 4 + b"DD")
            power_loss_image(watched, undo, os.path.join(work, "image"))
            with open(os.path.join(work, "image", "f"), "rb") as f:
                self.assertEqual(f.read(), want, f"no_flush={no_flush}")

    def test_acknowledged_mail_survives_power_loss(self):
        report = self.run_rounds(ROUNDS, no_flush=False, seed=11)
        self.assertTrue(all(lost == 0 for _, _, _, lost, _ in report), report)
        # A cut that found everything flushed proves no more than kill -9 does.
        self.assertTrue(any(replayed > 0 for *_, replayed in report),
                        f"no kill fell on an unflushed write: {report}")

    def test_negative_control_missing_flush_loses_mail(self):
        # Same rounds, every flush a no-op: the check above must see mail go.
        report = self.run_rounds(CONTROL_ROUNDS, no_flush=True, seed=6)
        self.assertGreater(report[-1][3], 0,
                           f"no acknowledged message lost without flushes: the test has no "
                           f"teeth ({report})")


if __name__ == "__main__":
    h.main()
