#!/usr/bin/python3
"""crash - the crash-consistency harness: SIGKILL Tern again and again under
load and check that nothing it acknowledged is ever lost (DESIGN contracts 1
and 2).

A real `tern serve` ($TERN_BIN, default build/tern) takes mail from 50 client
threads (smtplib), each message carrying a unique token in an X-Tern-Test
field and in every body line. Recipients are local mailboxes (Maildir
delivery) and addresses at remote.test, which a DNS server on loopback
(python3-dnslib) sends to an aiosmtpd peer on 127.0.0.2 that defers a share
of its transactions with 451, so that mail stays queued, is retried and is
copied forward by the spool's compaction: segments are small
(spool_segment_size = 128K by default), so they rotate many times a second.

Tern is killed with SIGKILL many times, each kill aimed at a moment:

  random      a random time
  commit      when many clients are between DATA and its reply
  maildir     when a Maildir delivery has a file in tmp/ (mid-delivery)
  relay       when the peer holds a transaction after its final dot,
              before its 250 (so Tern never hears it)
  compaction  right after the log says the spool copied messages forward

and restarted on the same spool at once. With --power-loss (every other kill
by default: "alternate"), a kill is also a power failure for the spool:
tests/crash/faults.c, preloaded, journals every write and sync of the spool's
files, and after SIGKILL every write that no completed sync covered is lost
(zeroed), kept, or torn at a page boundary, at random, as a disk may leave
it. Only the spool is treated so: Maildir files keep what was written. Then the load stops, the peer stops
deferring, and everything drains. The checks:

  - every acknowledged (250) token reached every one of its recipients:
    Maildir new/ or the peer (lost must be 0);
  - a token delivered twice to the same recipient is a duplicate, allowed
    only when a kill fell between the two deliveries (counted);
  - every Maildir file parses (Return-Path, Delivered-To, Received, then the
    message exactly as sent), its S= size is its size, and every message
    the peer took is exactly what was sent;
  - every start logged its recovery, no run logged an error line or a
    spool_segment_damaged / size_mismatch / chunk_gap event, no file was set
    aside as corrupt, and a last clean restart finds the queue empty.

    tests/crash/run.sh --kills 60          # the full form
    /usr/bin/python3 tests/crash/crash.py --kills 12 --seed 7

tests/integration/test_crash.py runs the reduced form (12 kills) in the test
suite. Only loopback addresses are used; every loop is bounded in count and
time.
"""

import argparse
import asyncio
import json
import os
import random
import re
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from aiosmtpd.controller import Controller  # noqa: E402

from conftest import TernServer, tail, tern_bin  # noqa: E402
from dns_server import DNSTestServer  # noqa: E402
from tern_helpers import Delivered, free_ports, header_token_of  # noqa: E402

LOCAL = ["demo@example.test", "postmaster@example.test"]
REMOTE = ["ann@remote.test", "bob@remote.test"]
RECIPIENT_SETS = [
    [LOCAL[0]],
    [LOCAL[0], LOCAL[1]],
    [REMOTE[0]],
    [LOCAL[0], REMOTE[1]],
    [REMOTE[0], REMOTE[1]],
    [LOCAL[1], REMOTE[0], REMOTE[1]],
]
SIZES = [(400, 30), (3000, 30), (20000, 20), (70000, 12), (200000, 8)]
KILL_MODES = ["random", "commit", "maildir", "relay", "compaction"]
QUEUE_MAX = 2000  # deliveries acknowledged and not yet made, before the clients pause

# Log events that must never appear after a process crash (no power loss):
# every write Tern made before SIGKILL is in the page cache, so a record can
# be torn only at the very end of the journal.
BAD_EVENTS = ("spool_segment_damaged", "reason=size_mismatch", "spool_chunk_gap",
              "reason=bad_envelope", "spool_segment_set_aside", "event=bounce")


def find_shim(workdir):
    """faults.so: built by meson next to the binary under test, else compiled."""
    built = tern_bin().parent / "tests" / "crash" / "faults.so"
    if built.is_file():
        return built
    out = Path(workdir) / "faults.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-o", str(out),
                    str(HERE / "faults.c"), "-ldl", "-lpthread"], check=True)
    return out


class PowerCut:
    """What a power failure leaves of the spool's files: reads the journal
    the shim wrote since the last cut and, for every write no completed sync
    covered, zeroes it, keeps it, or keeps only its first pages."""

    PAGE = 4096

    def __init__(self, journal, rng):
        self.journal = Path(journal)
        self.rng = rng
        self.stats = {"cuts": 0, "writes_unsynced": 0, "zeroed": 0, "kept": 0, "torn": 0,
                      "octets_lost": 0}
        self.hit = []  # (run cut short, file name, offset, length) of every write not kept

    def tore(self, name, offset, before_run):
        """Whether a cut before this run left octet `offset` of file `name`
        zeroed or torn: an invalid record there is what the cut made."""
        return any(r < before_run and n == name and off <= offset < off + ln
                   for r, n, off, ln in self.hit)

    def cut(self, run):
        try:
            lines = self.journal.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        self.journal.write_text("")
        unsynced = {}  # path -> [(line index, offset, length)]
        started = {}  # sync number -> (path, line index)
        for i, ln in enumerate(lines):
            parts = ln.split(" ", 3)
            if parts[0] == "w" and len(parts) == 4:
                unsynced.setdefault(parts[3], []).append((i, int(parts[1]), int(parts[2])))
            elif parts[0] == "S" and len(parts) == 3:
                started[parts[1]] = (parts[2], i)
            elif parts[0] == "s" and len(parts) == 3 and parts[1] in started:
                path, at = started.pop(parts[1])
                unsynced[path] = [w for w in unsynced.get(path, []) if w[0] > at]
        self.stats["cuts"] += 1
        for path, writes in unsynced.items():
            for _, off, length in writes:
                self.stats["writes_unsynced"] += 1
                fate = self.rng.random()
                if fate < 0.25:
                    self.stats["kept"] += 1
                    continue
                keep = 0
                if fate < 0.5 and length > self.PAGE:
                    first = (off // self.PAGE + 1) * self.PAGE  # the first page boundary inside
                    pages = max(0, (off + length - first) // self.PAGE)
                    keep = first - off + self.PAGE * self.rng.randint(0, pages)
                    keep = min(keep, length)
                    self.stats["torn"] += 1
                else:
                    self.stats["zeroed"] += 1
                self.hit.append((run, os.path.basename(path), off, length))
                try:
                    with open(path, "r+b") as fh:
                        fh.seek(off + keep)
                        fh.write(bytes(length - keep))
                    self.stats["octets_lost"] += length - keep
                except FileNotFoundError:
                    pass
        os.sync()


def benign_skip(qid, run, removed, active, queued):
    """Whether recovery's complaint about message qid in this run (a chunk
    gap, an envelope whose data is incomplete) concerns records that no
    longer matter: the rest of a message removed before, of one never
    committed, or of a copy that a later copy forward replaced (the message
    is still queued and handled after this recovery). Its first segments were
    freed while a later segment, holding the rest, is kept for other
    messages. Anything else is a message recovery lost."""
    if any(r < run for r in removed.get(qid, ())):
        return True  # finished before this start
    if any(r >= run for r in active.get(qid, ())):
        return True  # alive after this recovery: a later copy was taken
    return qid not in queued  # never committed: nothing to keep


def make_message(tok, size):
    """A message whose every body line names its token, so that a torn or
    mixed-up file shows."""
    head = ("From: <sender@example.test>\r\nTo: <rcpt@example.test>\r\n"
            "Subject: crash %s\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
            "Message-ID: <%s@example.test>\r\nX-Tern-Test: %s\r\n\r\n" % (tok, tok, tok)).encode()
    line = ("%s " % tok).encode() * 4 + b"\r\n"
    n = max(1, size // len(line))
    body = b"".join(b"%06d " % i + line for i in range(n)) + b"END " + tok.encode() + b"\r\n"
    return head + body


def strip_tern_fields(data):
    """The message as its client sent it: drop the fields Tern puts in front
    (DKIM-Signature, Authentication-Results, then its own Received)."""
    pos = 0
    for name in (b"DKIM-Signature", b"Authentication-Results", b"Received"):
        while data.startswith(name + b": ", pos):
            m = re.compile(rb"\r\n(?![ \t])").search(data, pos)
            if not m:
                return None
            pos = m.end()
            if name == b"Received":
                break
    return data[pos:]


class PeerHandler:
    """The remote MX (aiosmtpd on 127.0.0.2): records what it accepts, with the
    time of its 250; defers a share of RCPTs and DATAs with 451; on request,
    holds the next transaction after its final dot so that a kill lands while
    Tern waits for the reply."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.defer_rate = 0.2
        self.received = []  # (time, [rcpts], content)
        self.want_hold = threading.Event()
        self.holding = threading.Event()
        self.in_data = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            defer = self.rng.random() < self.defer_rate / 2
        if defer:
            return "451 4.3.0 Deferred by the test peer"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            defer = self.rng.random() < self.defer_rate / 2
            self.in_data += 1
        try:
            if defer:
                return "451 4.3.0 Deferred by the test peer"
            if self.want_hold.is_set():
                self.want_hold.clear()
                self.holding.set()
                await asyncio.sleep(0.3)
            with self.lock:
                self.received.append((time.time(), list(envelope.rcpt_tos),
                                      envelope.original_content or envelope.content))
            return "250 2.0.0 Ok: queued by the test peer"
        finally:
            with self.lock:
                self.in_data -= 1


class Load:
    """n client threads (smtplib) sending continuously. sent: token ->
    (message, recipients); acked: token -> time of the 250; in_data: how
    many clients are between DATA and its reply. While `go` is clear (the
    queue is too long: see Harness._pace) no client starts a message."""

    def __init__(self, port, n, seed):
        self.port, self.n = port, n
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.go = threading.Event()
        self.go.set()
        self.lock = threading.Lock()
        self.sent, self.acked = {}, {}
        self.in_data = 0
        self.errors = 0
        self.refused = 0
        self.threads = [threading.Thread(target=self._client, args=(i, self.rng.random()),
                                         daemon=True) for i in range(n)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads), "client threads hang"

    def _client(self, i, seed):
        rng = random.Random(seed)
        load = self

        class SMTP(smtplib.SMTP):
            def data(self, msg):
                with load.lock:
                    load.in_data += 1
                try:
                    return super().data(msg)
                finally:
                    with load.lock:
                        load.in_data -= 1

        seq = 0
        sizes = [s for s, w in SIZES for _ in range(w)]
        while not self.stop.is_set():
            c = None
            try:
                c = SMTP("127.0.0.1", self.port, local_hostname="load%d.example.org" % i, timeout=15)
                for _ in range(rng.randint(1, 6)):
                    while not self.go.wait(0.1) and not self.stop.is_set():
                        pass
                    if self.stop.is_set():
                        break
                    seq += 1
                    tok = "k%02d-%05d-%08x" % (i, seq, rng.getrandbits(32))
                    rcpts = rng.choice(RECIPIENT_SETS)
                    msg = make_message(tok, rng.choice(sizes))
                    with self.lock:
                        self.sent[tok] = (msg, rcpts)
                    refused = c.sendmail("load%d@example.test" % i, rcpts, msg)
                    if refused:
                        with self.lock:
                            self.refused += 1
                        continue
                    with self.lock:
                        self.acked[tok] = time.time()
                c.quit()
            except (smtplib.SMTPException, OSError):
                with self.lock:
                    self.errors += 1
                time.sleep(0.05)
            finally:
                if c is not None:
                    try:
                        c.close()
                    except OSError:
                        pass


class Harness:
    """One run of the harness. make_server(overrides) returns a TernServer
    that is not started (the pytest fixture's factory, or TernServer)."""

    def __init__(self, workdir, make_server, kills=60, clients=50, seed=None,
                 segment_size="128K", power_loss="alternate", drain_timeout=120,
                 faults=None, out=print):
        self.workdir = Path(workdir)
        self.make_server = make_server
        self.kills = kills
        self.clients = clients
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self.segment_size = segment_size
        assert power_loss in ("off", "alternate", "all"), power_loss
        self.power_loss = power_loss
        self.drain_timeout = drain_timeout
        self.faults = faults  # lines for the shim's control file (the harness's own test)
        self.out = out
        self.rng = random.Random(self.seed)
        self.kill_log = []  # dicts: mode, landed, time, ...

    # -- the world -------------------------------------------------------------
    def _start_world(self):
        port = free_ports(1)[0]
        self.dns = DNSTestServer({
            "remote.test": [("MX", (10, "mx1.remote.test"))],
            "mx1.remote.test": [("A", "127.0.0.2")],
        }).start()
        self.peer = PeerHandler(self.seed + 1)
        self.peer_ctrl = Controller(self.peer, hostname="127.0.0.2", port=port)
        self.peer_ctrl.start()
        self.server = self.make_server({
            "dns_forwarders": self.dns.forwarder,
            "outbound_port": str(port),
            "trusted_networks": "127.0.0.0/8",
            "spool_segment_size": self.segment_size,
            "retry_min": "1s",
            "retry_max": "2s",
            "max_connections_per_client": "500",
            "max_connections": "1000",
            "dkim_sign": "no",
            # the fault shim writes its journal outside the sandbox's paths
            "sandbox": "no",
        })
        self.power = None
        if self.power_loss != "off":
            journal = self.server.dir / "power.journal"
            self.power = PowerCut(journal, random.Random(self.seed + 3))
            self.server.wrapper = [
                "env", "LD_PRELOAD=%s" % find_shim(self.workdir),
                "TERN_FAULTS_TRACK=%s" % self.server.spool_dir,
                "TERN_FAULTS_JOURNAL=%s" % journal,
                "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"]
            if self.faults:
                ctl = self.server.dir / "faults.ctl"
                ctl.write_text("".join(f.replace("SPOOL", str(self.server.spool_dir)) + "\n"
                                       for f in self.faults))
                self.server.wrapper.insert(1, "TERN_FAULTS=%s" % ctl)

    def _stop_world(self):
        try:
            self.peer_ctrl.stop()
        except Exception:  # noqa - best effort at teardown
            pass
        self.dns.stop()

    # -- observation -----------------------------------------------------------
    def _tmp_files(self):
        out = set()
        for box in LOCAL:
            local, dom = box.split("@")
            d = self.server.maildir_root / dom / local / "tmp"
            try:
                out.update(os.listdir(d))
            except FileNotFoundError:
                pass
        return out

    def _wait(self, pred, timeout, step=0.001):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(step)
        return False

    def _aim(self, mode):
        """Wait for the moment a kill of this mode aims at; True when it came."""
        s = self.server
        if mode == "random":
            time.sleep(self.rng.uniform(0.2, 2.0))
            return True
        if mode == "commit":
            self.load.go.wait(15)  # not while the load waits for the queue to shrink
            time.sleep(0.3)
            want = max(2, self.clients * 2 // 5)
            ok = self._wait(lambda: self.load.in_data >= want, 4.0)
            time.sleep(self.rng.uniform(0, 0.01))
            return ok
        if mode == "maildir":
            time.sleep(0.2)
            before = self._tmp_files()
            return self._wait(lambda: bool(self._tmp_files() - before), 4.0, 0.0005)
        if mode == "relay":
            time.sleep(0.2)
            self.peer.holding.clear()
            self.peer.want_hold.set()
            ok = self._wait(self.peer.holding.is_set, 5.0)
            self.peer.want_hold.clear()
            time.sleep(self.rng.uniform(0, 0.05))
            return ok
        if mode == "compaction":
            seen = len(s.log())
            ok = self._wait(lambda: "event=spool_compact" in s.log()[seen:], 6.0, 0.002)
            time.sleep(self.rng.uniform(0, 0.015))
            return ok
        raise ValueError(mode)

    # -- the run ---------------------------------------------------------------
    def run(self):
        t0 = time.monotonic()
        self.out("crash harness: seed %d, %d kills, %d clients, segments %s, power loss %s"
                 % (self.seed, self.kills, self.clients, self.segment_size, self.power_loss))
        self._start_world()
        try:
            return self._run()
        finally:
            self._stop_world()
            self.out("crash harness: %.0f s" % (time.monotonic() - t0))

    def _pace(self):
        """Keep the queue within QUEUE_MAX undelivered deliveries: Tern accepts
        faster than this machine's peer and Maildirs take mail (and restarts
        cost it its deliveries in flight), and a queue that grows for minutes
        only makes every recovery slower."""
        while not self.load.stop.is_set():
            made = self._delivered_count()
            with self.load.lock:
                acked = list(self.load.acked)
            want = sum(len(self.load.sent[t][1]) for t in acked)
            if want - made > QUEUE_MAX:
                self.load.go.clear()
                self.paused += 1
            else:
                self.load.go.set()
            time.sleep(0.25)
        self.load.go.set()

    def _delivered_count(self):
        """Deliveries made so far, duplicates included (cheap: names only)."""
        n = 0
        for box in LOCAL:
            local, dom = box.split("@")
            try:
                n += len(os.listdir(self.server.maildir_root / dom / local / "new"))
            except FileNotFoundError:
                pass
        with self.peer.lock:
            return n + sum(len(r) for _, r, _ in self.peer.received)

    def _run(self):
        s = self.server
        s.start()
        self.load = Load(s.mx_port, self.clients, self.seed + 2)
        self.load.start()
        self.paused = 0
        pacer = threading.Thread(target=self._pace, daemon=True)
        pacer.start()
        modes = []
        try:
            for k in range(self.kills):
                if not modes:
                    modes = list(KILL_MODES)
                    self.rng.shuffle(modes)
                mode = modes.pop()
                landed = self._aim(mode)
                info = {"mode": mode, "landed": landed, "in_data": self.load.in_data,
                        "peer_in_data": self.peer.in_data, "acked": len(self.load.acked)}
                info["time"] = time.time()
                s.kill9()
                info["power"] = self.power is not None and (self.power_loss == "all" or k % 2 == 1)
                if info["power"]:
                    self.power.cut(len(s.logs) - 1)
                elif self.power is not None:
                    self.power.journal.write_text("")  # a process crash: the page cache survives
                self.kill_log.append(info)
                time.sleep(self.rng.uniform(0, 0.2))
                s.start()
                if (k + 1) % 10 == 0 or k + 1 == self.kills:
                    self.out("  %d kills, %d acknowledged" % (k + 1, len(self.load.acked)))
            time.sleep(1.0)
        finally:
            self.load.finish()
            pacer.join(5)
        return self._drain_and_check()

    def _deliveries(self):
        """(token, recipient) -> [times], and problems with what was delivered."""
        got, problems, maildir_files = {}, [], 0
        sent = self.load.sent
        for box in LOCAL:
            local, dom = box.split("@")
            d = s_new = self.server.maildir_root / dom / local / "new"
            try:
                names = sorted(os.listdir(s_new))
            except FileNotFoundError:
                continue
            for name in names:
                p = d / name
                data = p.read_bytes()
                maildir_files += 1
                m = re.search(r",S=(\d+)", name)
                if not m or int(m.group(1)) != len(data):
                    problems.append("%s: S= does not match its %d octets" % (p, len(data)))
                dv = Delivered(data)
                tok = header_token_of(dv.rest) if dv.error is None else None
                if tok not in sent:
                    problems.append("%s: not a message of the load (%s)"
                                    % (p, dv.error or data[:200]))
                    continue
                if dv.rest != sent[tok][0]:
                    problems.append("%s: content differs from what was sent (%d vs %d octets)"
                                    % (p, len(dv.rest), len(sent[tok][0])))
                when = float(name.split(".M")[0]) + int(name.split(".M")[1][:6]) / 1e6
                got.setdefault((tok, box), []).append(when)
        with self.peer.lock:
            received = list(self.peer.received)
        for when, rcpts, content in received:
            rest = strip_tern_fields(content)
            tok = header_token_of(rest) if rest is not None else None
            if tok not in sent:
                problems.append("peer: not a message of the load: %r" % content[:200])
                continue
            if rest != sent[tok][0]:
                problems.append("peer: %s differs from what was sent (%d vs %d octets)"
                                % (tok, len(rest), len(sent[tok][0])))
            for r in rcpts:
                got.setdefault((tok, r), []).append(when)
        return got, problems, maildir_files, len(received)

    def _missing(self, got):
        out = []
        for tok in self.load.acked:
            for r in self.load.sent[tok][1]:
                if (tok, r) not in got:
                    out.append((tok, r))
        return out

    def _drain_and_check(self):
        s = self.server
        self.peer.defer_rate = 0.0
        # Wait for every acknowledged delivery, then for a clean restart that
        # finds the queue empty (messages committed but never acknowledged are
        # delivered too).
        end = time.monotonic() + self.drain_timeout
        while True:
            got, problems, nfiles, npeer = self._deliveries()
            missing = self._missing(got)
            if not missing or time.monotonic() > end:
                break
            time.sleep(0.5)
        left = None
        for _ in range(10):
            if missing:
                break
            time.sleep(1.0)
            s.stop_clean()
            s.start()
            left = s.recovered_count()
            if left == 0:
                break
        got, problems, nfiles, npeer = self._deliveries()
        missing = self._missing(got)

        kill_times = sorted(k["time"] for k in self.kill_log)
        dups, unexplained = 0, []
        for key, times in got.items():
            if len(times) < 2:
                continue
            times.sort()
            dups += len(times) - 1
            for a, b in zip(times, times[1:]):
                if not any(a - 0.5 <= k <= b + 0.5 for k in kill_times):
                    unexplained.append((key, a, b))
        delivered_unacked = {tok for tok, _ in got} - set(self.load.acked)

        logs = [s.run_log(i) for i in range(len(s.logs))]
        # Per message id: the runs that delivered or removed it, and whether
        # it was ever committed (queued).
        removed, active, queued = {}, {}, set()
        for i, text in enumerate(logs):
            for m in re.finditer(r"qid=([0-9A-F]{16}) (to=|event=removed)", text):
                active.setdefault(m.group(1), set()).add(i)
                if m.group(2) != "to=":
                    removed.setdefault(m.group(1), set()).add(i)
            queued.update(re.findall(r"qid=([0-9A-F]{16}) event=queued", text))
        log_problems, torn, recovered = [], 0, []
        false_alarms = set()
        # A power cut may tear the unsynced end of several segments at once
        # (a rotation needs no sync), and recovery calls an invalid record in
        # any segment but the last "damaged": allowed where the cut tore it.
        cut_damage = set()
        for i, text in enumerate(logs):
            for m in re.finditer(r"event=spool_segment_damaged seg=([0-9a-f]{16}) offset=(\d+)",
                                 text):
                if self.power and self.power.tore("seg-" + m.group(1), int(m.group(2)), i):
                    cut_damage.add(m.group(1))
        for i, text in enumerate(logs):
            m = re.search(r"event=spool_recovered .*", text)
            if not m:
                log_problems.append("run %d logged no spool_recovered line" % i)
            else:
                line = m.group(0)
                recovered.append(int(re.search(r"messages=(\d+)", line).group(1)))
                if "truncated_at=none" not in line:
                    torn += 1
            for line in text.splitlines():
                if not ("tern[error]" in line or any(b in line for b in BAD_EVENTS)):
                    continue
                m = re.search(r"event=(?:spool_chunk_gap|spool_message_skipped) id=([0-9A-F]{16})",
                              line)
                if m and benign_skip(m.group(1), i, removed, active, queued):
                    false_alarms.add(m.group(1))
                    continue
                m = re.search(r"event=spool_segment_(?:damaged|set_aside) seg=([0-9a-f]{16})", line)
                if m and m.group(1) in cut_damage:
                    continue
                log_problems.append("run %d: %s" % (i, line))
        corrupt = [n for n in os.listdir(s.spool_dir)
                   if n.startswith("corrupt-") and n[-16:] not in cut_damage]
        compactions = sum(t.count("event=spool_compact") for t in logs)
        rotations_freed = sum(t.count("event=spool_segment_freed") for t in logs)
        tmp_left = len(self._tmp_files())

        by_mode = {}
        for k in self.kill_log:
            m = by_mode.setdefault(k["mode"], [0, 0])
            m[0] += 1
            m[1] += 1 if k["landed"] else 0
        result = {
            "seed": self.seed,
            "kills": len(self.kill_log),
            "kills_by_mode": {m: {"kills": v[0], "landed": v[1]} for m, v in by_mode.items()},
            "power_failures": sum(1 for k in self.kill_log if k.get("power")),
            "power_failure_writes": self.power.stats if self.power else None,
            "kills_with_clients_in_data": sum(1 for k in self.kill_log if k["in_data"] > 0),
            "kills_with_peer_in_data": sum(1 for k in self.kill_log if k["peer_in_data"] > 0),
            "messages_sent": len(self.load.sent),
            "acknowledged": len(self.load.acked),
            "acknowledged_deliveries": sum(len(self.load.sent[t][1]) for t in self.load.acked),
            "lost": len(missing),
            "duplicates": dups,
            "duplicates_unexplained": len(unexplained),
            "delivered_without_ack": len(delivered_unacked),
            "maildir_files": nfiles,
            "peer_messages": npeer,
            "maildir_tmp_left": tmp_left,
            "client_errors": self.load.errors,
            "load_paused_checks": self.paused,
            "torn_tails_recovered": torn,
            "max_recovered_messages": max(recovered) if recovered else 0,
            "compaction_passes": compactions,
            "segments_freed": rotations_freed,
            "queue_left_after_drain": left,
            "corrupt_files": len(problems),
            "log_problems": len(log_problems),
            "recovery_false_alarms": len(false_alarms),
            "segments_damaged_by_power_cuts": len(cut_damage),
        }
        failures = []
        if missing:
            failures.append("%d acknowledged deliveries lost, e.g. %r" % (len(missing), missing[:10]))
        if unexplained:
            failures.append("%d duplicates with no kill between them, e.g. %r"
                            % (len(unexplained), unexplained[:5]))
        if problems:
            failures.append("bad delivered messages:\n  " + "\n  ".join(problems[:20]))
        if log_problems:
            failures.append("unexpected log lines:\n  " + "\n  ".join(log_problems[:30]))
        if corrupt:
            failures.append("segments set aside as corrupt: %r" % corrupt)
        if left != 0:
            failures.append("the queue still held %r message(s) after the drain; log tail:\n%s"
                            % (left, tail(s.log(), 30)))
        result["failures"] = failures
        self.out(json.dumps({k: v for k, v in result.items() if k != "failures"}, indent=1))
        for f in failures:
            self.out("FAIL: " + f)
        return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=60)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--segment-size", default="128K")
    ap.add_argument("--power-loss", default="alternate", choices=["off", "alternate", "all"],
                    help="which kills are also power failures for the spool")
    ap.add_argument("--workdir", default=None, help="kept after the run (default: a temporary "
                    "directory, removed when the run passes)")
    ap.add_argument("--json", default=None, help="write the result to this file")
    args = ap.parse_args()
    keep = args.workdir is not None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tern-crash-"))
    workdir.mkdir(parents=True, exist_ok=True)
    servers = []

    def make(overrides):
        srv = TernServer(workdir / "tern", overrides)
        servers.append(srv)
        return srv

    h = Harness(workdir, make, kills=args.kills, clients=args.clients, seed=args.seed,
                segment_size=args.segment_size, power_loss=args.power_loss)
    try:
        result = h.run()
    finally:
        problems = []
        for srv in servers:
            problems += srv.finish()
    for p in problems:
        print("FAIL: " + p)
    result["failures"] += problems
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    ok = not result["failures"]
    print("%d passed, %d failed" % (1 if ok else 0, 0 if ok else 1))
    if ok and not keep:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    elif not ok:
        print("work directory kept: %s" % workdir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
