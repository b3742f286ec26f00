"""Fault injection: file system calls that fail under a running Tern.

tests/crash/faults.c, loaded with LD_PRELOAD, makes fdatasync, fsync,
pwrite/pwritev, posix_fallocate, write and rename fail with EIO or ENOSPC on
the files under a path, as a control file that the test writes says. What
must hold (DESIGN contract 1):

- a failure on the spool path before a message is durable gives the client
  451 4.3.0 (EIO) or 452 4.3.1 (ENOSPC) at the end of DATA, never 250, and
  is logged;
- Tern goes on serving: the next message is accepted and delivered;
- nothing acknowledged is lost, even by a power failure right after the
  fault: the shim logs the extents a failed fdatasync left unwritten (the
  pages Linux marks clean after a writeback error, "fsyncgate"), and the
  test zeroes them after SIGKILL, which is what the disk would hold; the
  restarted spool must still hold every message acknowledged before;
- a failure in a Maildir delivery defers the recipient (the message stays
  queued) and leaves no partial file in new/.

Two tests check that the spool trusts nothing written before a failed
fdatasync (Linux marks the failed pages clean, so a later successful sync
says nothing about them): after such a failure every commit fails and Tern
stops (exit status 1), and a restart recovers from the journal.
"""

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, tail, tern_bin
from tern_helpers import SMTPClient, check_delivered, expect, make_message, new_token

DEMO = "demo@example.test"
REMOTE = "someone@remote.test"  # deferred: the default resolver answers SERVFAIL


@pytest.fixture(scope="session")
def shim(tmp_path_factory):
    """faults.so: the one meson built next to the binary under test, else
    one compiled here."""
    built = tern_bin().parent / "tests" / "crash" / "faults.so"
    if built.is_file():
        return built
    out = tmp_path_factory.mktemp("shim") / "faults.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out),
                    str(REPO / "tests" / "crash" / "faults.c"), "-ldl", "-lpthread"], check=True)
    return out


class Faulty:
    """A TernServer under the shim, with its control file and fault log."""

    def __init__(self, srv, shim):
        self.srv = srv
        self.ctl = srv.dir / "faults.ctl"
        self.flog = srv.dir / "faults.log"
        srv.wrapper = ["env", "LD_PRELOAD=%s" % shim, "TERN_FAULTS=%s" % self.ctl,
                       "TERN_FAULTS_LOG=%s" % self.flog, "TERN_FAULTS_TRACK=%s" % srv.spool_dir,
                       "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"]

    def arm(self, *rules):
        tmp = self.ctl.with_suffix(".new")
        tmp.write_text("".join(r + "\n" for r in rules))
        os.replace(tmp, self.ctl)

    def disarm(self):
        try:
            self.ctl.unlink()
        except FileNotFoundError:
            pass

    def _lines(self, kind):
        try:
            text = self.flog.read_text()
        except FileNotFoundError:
            return []
        return [ln for ln in text.splitlines() if ln.startswith(kind + " ")]

    def faults(self):
        return self._lines("fault")

    def power_loss(self):
        """SIGKILL, then what a power failure leaves: every extent a failed
        sync left unwritten reads as zeros (it was preallocated). A server
        that already stopped on its own (a spool that cannot sync stops it)
        is simply not running any more."""
        if self.srv.running:
            self.srv.kill9()
        else:
            self.srv.killed_runs.add(len(self.srv.logs) - 1)
        zeroed = 0
        for ln in self._lines("lost"):
            f = dict(kv.split("=", 1) for kv in ln.split()[1:])
            try:
                with open(f["path"], "r+b") as fh:
                    fh.seek(int(f["offset"]))
                    fh.write(bytes(int(f["length"])))
                zeroed += int(f["length"])
            except FileNotFoundError:
                pass
        os.sync()
        return zeroed


@pytest.fixture
def faulty(tern, shim):
    def make(overrides=None):
        # the shim reads its rules and writes its journal outside the paths
        # the sandbox allows (and an LD_PRELOAD is not the sandbox's test)
        o = {"trusted_networks": "127.0.0.1/32", "sandbox": "no"}
        o.update(overrides or {})
        f = Faulty(tern(o, start=False), shim)
        f.srv.start()
        return f

    return make


def send(srv, rcpt, size=200, token=None):
    """One message; returns (token, reply to the end of data)."""
    token = token or new_token("f")
    body = (b"%s line\r\n" % token.encode()) * max(1, size // 30)
    c = SMTPClient(srv.mx_port, timeout=10)
    c.ehlo()
    r = c.send_message("alice@example.org", [rcpt], make_message(token, body, rcpt=rcpt))
    c.close()
    return token, r


def queue_remote(srv, n):
    """n messages for a domain that cannot be resolved: acknowledged, then
    deferred (and that recorded), so they stay in the queue."""
    want = len(re.findall(r"to=<%s> .*status=deferred" % REMOTE, srv.log()))
    for _ in range(n):
        expect(send(srv, REMOTE)[1], 250)
    end = time.monotonic() + 10
    while len(re.findall(r"to=<%s> .*status=deferred" % REMOTE, srv.log())) < want + n:
        assert time.monotonic() < end, tail(srv.log())
        time.sleep(0.02)
    time.sleep(0.1)  # the deferrals' records are flushed within 20 ms


def still_serving_or_stopped(f):
    """After a spool fault Tern either goes on serving (a new message gets 250
    and is delivered) or stops with a non-zero status and an error line (a
    design that treats the fault as fatal). Returns True when it serves."""
    s = f.srv
    time.sleep(0.3)
    end = time.monotonic() + 15
    while s.running and "event=spool_broken" in s.log() and time.monotonic() < end:
        time.sleep(0.05)  # a spool that cannot sync stops the server
    if not s.running:
        assert s.proc.returncode != 0, "tern stopped with status 0 after a spool fault"
        assert "tern[error]" in s.log()
        s.killed_runs.add(len(s.logs) - 1)
        s.start()
        return False
    tok, r = send(s, DEMO)
    expect(r, 250)
    s.wait_token(tok, timeout=10)
    return True


def recovered_cleanly(s, messages):
    """The last start recovered `messages` live messages and logged no damage."""
    assert s.recovered_count() == messages, tail(s.log())
    for bad in ("spool_segment_damaged", "spool_message_skipped", "spool_chunk_gap"):
        assert bad not in s.log(), tail(s.log())


# -- the spool ----------------------------------------------------------------

@pytest.mark.parametrize("err,code,enh", [("EIO", 451, "4.3.0"), ("ENOSPC", 452, "4.3.1")])
def test_spool_sync_failure(faulty, err, code, enh):
    f = faulty()
    s = f.srv
    queue_remote(s, 3)
    f.arm("fdatasync %s path=%s count=1" % (err, s.spool_dir))
    tok, r = send(s, DEMO)
    expect(r, code, enh)
    assert len(f.faults()) == 1, f.faults()
    s.wait_log(r"event=spool_sync_failed .*error=")
    s.wait_log(r"event=commit_failed")
    time.sleep(0.3)
    assert not s.find_token(tok), "a message refused with %d was delivered" % code
    f.disarm()
    still_serving_or_stopped(f)
    f.power_loss()
    s.start()
    recovered_cleanly(s, 3)


@pytest.mark.parametrize("err,code,enh", [("EIO", 451, "4.3.0"), ("ENOSPC", 452, "4.3.1")])
def test_spool_write_failure(faulty, err, code, enh):
    f = faulty()
    s = f.srv
    queue_remote(s, 2)
    f.arm("pwrite %s path=%s count=1" % (err, s.spool_dir))
    tok, r = send(s, DEMO, size=100000)  # a write of the content fails
    expect(r, code, enh)
    assert len(f.faults()) == 1
    s.wait_log(r"event=spool_write_failed .*error=")
    s.wait_log(r"event=reject .*reply=\"%d %s" % (code, enh))
    f.disarm()
    still_serving_or_stopped(f)
    queue_remote(s, 1)
    s.restart()
    recovered_cleanly(s, 3)
    time.sleep(0.3)
    assert not s.find_token(tok)


def test_spool_preallocation_failure(faulty):
    """No room for a new segment (posix_fallocate: ENOSPC) while a large
    message needs one: 452 4.3.1, and mail is accepted again once there is."""
    f = faulty({"spool_segment_size": "64K"})
    s = f.srv
    queue_remote(s, 2)
    f.arm("fallocate ENOSPC path=%s count=-1" % s.spool_dir)
    tok, r = send(s, DEMO, size=400000)
    expect(r, 452, "4.3.1")
    assert f.faults()
    s.wait_log(r"event=spool_segment_create_failed .*No space left on device")
    f.disarm()
    tok2, r = send(s, DEMO, size=400000)
    expect(r, 250)
    s.wait_token(tok2, timeout=10)
    still_serving_or_stopped(f)
    s.restart()
    recovered_cleanly(s, 2)
    assert not s.find_token(tok)


def test_spool_segment_fsync_failure(faulty):
    """A new segment whose fsync fails is not used: 451 4.3.0."""
    f = faulty({"spool_segment_size": "64K"})
    s = f.srv
    queue_remote(s, 1)
    f.arm("fsync EIO path=%s count=-1" % s.spool_dir)
    tok, r = send(s, DEMO, size=400000)
    expect(r, 451, "4.3.0")
    s.wait_log(r"event=spool_segment_create_failed .*Input/output error")
    f.disarm()
    still_serving_or_stopped(f)
    f.power_loss()
    s.start()
    recovered_cleanly(s, 1)
    assert not s.find_token(tok)


# -- Maildir deliveries --------------------------------------------------------

@pytest.mark.parametrize("rule,what", [
    ("write ENOSPC", "cannot write the message file"),
    ("fsync EIO", "cannot fsync"),
    ("rename EIO", "cannot move the file into new/"),
])
def test_maildir_failure_defers(faulty, rule, what):
    """The spool is fine, so the client gets 250; the delivery fails, is
    deferred with 4.3.0, and the message stays queued; new/ holds no partial
    file and no later good delivery is disturbed."""
    f = faulty()
    s = f.srv
    f.arm("%s path=%s count=1" % (rule, s.maildir_root))
    tok, r = send(s, DEMO, size=5000)
    expect(r, 250)
    line = s.wait_log(r"to=<%s> relay=maildir .*status=deferred" % DEMO, timeout=10)
    assert "dsn=4.3.0" in line and what in line, line
    assert len(f.faults()) == 1
    assert not s.find_token(tok), "a failed delivery left a file in new/"
    tok2, r = send(s, DEMO)
    expect(r, 250)
    (path, data), = s.wait_token(tok2, timeout=10)
    check_delivered(data, "alice@example.org", DEMO, make_message(
        tok2, (b"%s line\r\n" % tok2.encode()) * 6, rcpt=DEMO))
    s.restart()
    assert s.recovered_count() == 1, "the deferred message left the queue"
    for p, d in s.all_delivered():
        assert re.search(rb"\r\n\r\n", d), "partial file %s" % p


def test_maildir_retry_follows_retry_min(faulty):
    """A deferred local delivery is retried after the smaller of retry_min and
    a minute (retry_max is the ceiling): with retry_min = 2s the message
    arrives a few seconds after the failure, not a minute later."""
    f = faulty({"retry_min": "2s", "retry_max": "4s"})
    s = f.srv
    f.arm("write ENOSPC path=%s count=1" % s.maildir_root)
    tok, r = send(s, DEMO, size=5000)
    expect(r, 250)
    line = s.wait_log(r"to=<%s> relay=maildir .*status=deferred" % DEMO, timeout=10)
    assert "retry_in=2s" in line, line
    s.wait_token(tok, timeout=15)
    assert len(f.faults()) == 1


# -- fsyncgate: data written before a failed fdatasync -------------------------

def test_sync_failure_then_ack_of_data_written_before_it(faulty):
    """A message whose first chunks were written before a failed fdatasync
    must not get 250 unless they are written again: after the failure, those
    pages are clean in the page cache but not on disk."""
    f = faulty()
    s = f.srv
    queue_remote(s, 1)
    tok = new_token("a")
    msg = make_message(tok, (b"%s line of the big one\r\n" % tok.encode()) * 8000, rcpt=REMOTE)
    a = SMTPClient(s.mx_port, timeout=10)
    a.ehlo()
    expect(a.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(a.cmd("RCPT TO:<%s>" % REMOTE), 250)
    expect(a.cmd("DATA"), 354)
    a.send(msg[:len(msg) // 2])  # > 64 KiB: appended to the journal now
    time.sleep(0.5)
    f.arm("fdatasync EIO path=%s count=1" % s.spool_dir)
    expect(send(s, REMOTE)[1], 451, "4.3.0")  # its commit's sync fails
    f.disarm()
    rest = msg[len(msg) // 2:]
    a.send(rest + b".\r\n")
    r = a.reply(timeout=10)
    a.close()
    if r.code != 250:
        return  # refused: nothing to keep
    f.power_loss()
    s.start()
    recovered_cleanly(s, 2)


def test_sync_failure_during_compaction_keeps_the_old_copy(faulty):
    """A queued message copied forward by compaction, whose copy's fdatasync
    fails, must keep its old copy: the old segment may go only once the copy
    is durable."""
    f = faulty({"spool_segment_size": "64K"})
    s = f.srv
    queue_remote(s, 1)  # this one is copied forward
    for _ in range(40):  # 40 x 20 KB through 64 KiB segments, delivered at once
        tok, r = send(s, DEMO, size=20000)
        expect(r, 250)
    s.wait_token(tok, timeout=10)
    time.sleep(0.3)
    seen = len(s.log())
    f.arm("fdatasync EIO path=%s count=-1" % s.spool_dir)
    end = time.monotonic() + 10
    while "event=spool_compact" not in s.log()[seen:] and time.monotonic() < end:
        time.sleep(0.05)
    assert "event=spool_compact" in s.log()[seen:], "no compaction within 10 s"
    time.sleep(0.5)  # the copy's lazy flush fails; old segments are freed or not
    f.disarm()
    assert f.faults()
    f.power_loss()
    s.start()
    assert s.recovered_count() == 1, "the queued message is gone:\n" + tail(s.log())
