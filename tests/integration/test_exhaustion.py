"""Resource exhaustion (DESIGN contract 4, THREATS #14): a full disk, ten
thousand idle connections, a client that drips its message octet by octet,
and a client that opens connections in a loop. Tern must refuse what it
cannot take with the right 4xx, lose nothing it acknowledged, and keep
serving everyone else."""

import os
import re
import resource
import smtplib
import socket
import subprocess
import time

import pytest

from tern_helpers import SMTPClient, expect, make_message, new_token

DEMO = "demo@example.test"
REMOTE = "someone@remote.test"  # deferred: the default resolver answers SERVFAIL


def send(srv, rcpt, size, port=None):
    tok = new_token("x")
    body = (b"%s filler line\r\n" % tok.encode()) * max(1, size // 40)
    c = SMTPClient(port or srv.mx_port, timeout=20)
    c.ehlo()
    r = c.send_message("alice@example.org", [rcpt], make_message(tok, body, rcpt=rcpt))
    c.close()
    return tok, r


def wait_deferred(srv, n):
    """Wait until n deferrals of REMOTE are logged (their records follow)."""
    end = time.monotonic() + 10
    while len(re.findall(r"to=<%s> .*status=deferred" % REMOTE, srv.log())) < n:
        assert time.monotonic() < end, "deferrals not logged"
        time.sleep(0.02)
    time.sleep(0.1)


# -- a full disk ---------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs (root only), unmounted at the end even if the test
    failed (lazily if a server still holds it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.strip())
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)])


def test_full_disk(small_disk, tern):
    """Queued mail fills the spool's file system: the next message gets
    452 4.3.1 (never 250), and once space is back mail is accepted again;
    every message acknowledged before is still queued."""
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (3 << 20))  # leaves room for about 5 MiB of mail
    s = tern({"spool_dir": str(small_disk / "spool"), "spool_segment_size": "256K",
              "trusted_networks": "127.0.0.1/32"})
    acked, refused = [], None
    for _ in range(40):
        tok, r = send(s, REMOTE, 300000)
        if r.code == 250:
            acked.append(tok)
            continue
        refused = r
        break
    assert refused is not None, "8 MiB took %d messages of 300 KB" % len(acked)
    expect(refused, 452, "4.3.1")
    assert len(acked) >= 5, "the disk was full after %d messages" % len(acked)
    s.wait_log(r"event=spool_segment_create_failed .*No space left on device")
    s.wait_log(r"event=reject .*reply=\"452 4.3.1")
    # It keeps refusing while the disk is full, and says so at once.
    expect(send(s, REMOTE, 300000)[1], 452, "4.3.1")
    wait_deferred(s, len(acked))
    # Space comes back: accepted again.
    filler.unlink()
    tok, r = send(s, REMOTE, 300000)
    expect(r, 250)
    acked.append(tok)
    tok, r = send(s, DEMO, 2000)
    expect(r, 250)
    s.wait_token(tok, timeout=10)
    wait_deferred(s, len(acked))
    # Nothing acknowledged was lost.
    s.restart()
    assert s.recovered_count() == len(acked), s.log()[-3000:]
    assert "spool_message_skipped" not in s.all_logs()


# -- ten thousand idle connections ---------------------------------------------

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as fh:
        return int(re.search(r"VmRSS:\s+(\d+) kB", fh.read()).group(1))


def open_files_limit(pid):
    with open("/proc/%d/limits" % pid) as fh:
        m = re.search(r"Max open files\s+(\d+)\s+(\d+)", fh.read())
    return int(m.group(1)), int(m.group(2))


def is_asan(pid):
    with open("/proc/%d/maps" % pid) as fh:
        return "libasan" in fh.read()


IDLE = 10000


def test_ten_thousand_idle_connections(tern):
    """10,000 connections that say nothing cost Tern less than 128 MiB, and a
    legitimate client still gets its greeting and its message accepted
    within a second. Tern is started with a soft limit of 1024 open files
    and raises it to the hard limit itself."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < IDLE + 2000:
        pytest.skip("the hard limit on open files (%d) is below %d" % (hard, IDLE + 2000))
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    s = tern({"max_connections": "12000", "max_connections_per_client": "12000"}, start=False)
    s.wrapper = ["prlimit", "--nofile=1024:%d" % hard]
    s.start()
    pid = s.proc.pid
    assert open_files_limit(pid) == (hard, hard), "tern did not raise its soft limit"
    s.wait_log(r"event=open_files_limit soft=%d raised_from=1024" % hard)
    assert "tern[warn]: event=open_files_limit" not in s.log()
    before = rss_kib(pid)
    socks = []
    try:
        t0 = time.monotonic()
        for i in range(IDLE):
            c = socket.create_connection(("127.0.0.1", s.mx_port), timeout=10)
            socks.append(c)
        opened = time.monotonic() - t0
        # every one of them is served: its greeting comes
        for c in socks[:: IDLE // 50]:
            assert c.recv(512).startswith(b"220 "), "no greeting on an idle connection"
        end = time.monotonic() + 20
        while s.log().count("event=connect ") < IDLE + 1 and time.monotonic() < end:
            time.sleep(0.1)
        assert s.log().count("event=connect ") >= IDLE + 1  # + the readiness probe
        time.sleep(0.5)
        after = rss_kib(pid)
        cost = (after - before) / 1024.0
        print("%d idle connections opened in %.1f s; tern RSS %d -> %d KiB (+%.1f MiB, %.0f "
              "octets each)" % (IDLE, opened, before, after, cost, (after - before) * 1024.0 / IDLE))
        if not is_asan(pid):
            assert cost < 128, "10,000 idle connections cost %.0f MiB" % cost
        # a legitimate client meanwhile
        t0 = time.monotonic()
        c = SMTPClient(s.mx_port, timeout=5)
        greeted = time.monotonic() - t0
        expect(c.greeting, 220)
        c.ehlo()
        tok = new_token("legit")
        expect(c.send_message("alice@example.org", [DEMO], make_message(tok)), 250)
        took = time.monotonic() - t0
        c.quit()
        print("legitimate client: greeting after %.3f s, 250 after %.3f s" % (greeted, took))
        assert took < 1.0, "the legitimate client waited %.2f s" % took
        s.wait_token(tok, timeout=5)
    finally:
        for c in socks:
            c.close()
    end = time.monotonic() + 30
    while s.log().count("event=disconnect ") < IDLE + 2 and time.monotonic() < end:
        time.sleep(0.2)
    assert s.log().count("event=disconnect ") >= IDLE + 2


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors(tern):
    """More clients than descriptors (a hard limit of 256, max_connections
    1000: Tern warns at start). accept() fails with EMFILE: the listener rests
    instead of spinning (no busy loop, no log flood), the connections wait in
    the backlog, and they are served as soon as others close."""
    s = tern({"max_connections": "1000", "max_connections_per_client": "1000"}, start=False)
    s.wrapper = ["prlimit", "--nofile=256:256"]
    s.start()
    s.wait_log(r"tern\[warn\]: event=open_files_limit soft=256 hard=256 need=\d+")
    pid = s.proc.pid
    socks = []
    try:
        for _ in range(400):
            socks.append(socket.create_connection(("127.0.0.1", s.mx_port), timeout=5))
        s.wait_log(r"event=accept_error error=\"Too many open files\"")
        time.sleep(0.5)
        c0, lines0 = cpu_seconds(pid), s.log().count("event=accept_error")
        time.sleep(2)
        cpu, lines = cpu_seconds(pid) - c0, s.log().count("event=accept_error") - lines0
        print("out of descriptors: %.2f s of CPU and %d accept_error lines in 2 s" % (cpu, lines))
        assert cpu < 0.3, "tern spins while out of descriptors (%.2f s of CPU in 2 s)" % cpu
        assert lines <= 4, "%d accept_error lines in 2 s" % lines
        for c in socks[:200]:
            c.close()
        # the ones that waited in the backlog are served now
        for c in socks[-20:]:
            c.settimeout(5)
            assert c.recv(512).startswith(b"220 "), "a waiting connection was not served"
    finally:
        for c in socks:
            c.close()
    tok, r = send(s, DEMO, 1000)
    expect(r, 250)
    s.wait_token(tok)


# -- slow drip ------------------------------------------------------------------

RATE = {"min_data_rate": "500", "min_data_rate_grace": "3s", "idle_timeout": "20s"}


def test_slow_drip_data_cut_off(tern):
    """An octet a second after DATA: cut off by the minimum data rate (the
    idle timeout alone never would), 421 4.4.2, logged; nothing delivered."""
    s = tern(RATE)
    c = SMTPClient(s.mx_port, timeout=10)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    expect(c.cmd("DATA"), 354)
    t0 = time.monotonic()
    r = None
    msg = make_message(new_token("drip"))
    for i in range(30):
        try:
            c.send(msg[i:i + 1])
        except OSError:
            break
        r = c.reply(timeout=1.0)
        if not r.timeout:
            break
    took = time.monotonic() - t0
    expect(r, 421, "4.4.2")
    assert "rate" in r.text
    assert 3 <= took < 6, "cut off after %.1f s" % took
    assert c.closed(2)
    line = s.wait_log(r"event=data_rate_limit ")
    assert "min_data_rate=500" in line and "octets=" in line, line
    time.sleep(0.2)
    assert not s.all_delivered()


def test_slow_drip_bdat_cut_off(tern):
    """The same with BDAT: one-octet chunks a second apart."""
    s = tern(RATE)
    c = SMTPClient(s.mx_port, timeout=10)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    t0 = time.monotonic()
    r = None
    for i in range(30):
        try:
            c.send(b"BDAT 1\r\nx")
        except OSError:
            break
        r = c.reply(timeout=1.0)
        if r.code != 250:
            break
        time.sleep(1.0)
    took = time.monotonic() - t0
    expect(r, 421, "4.4.2")
    assert 3 <= took < 7, "cut off after %.1f s" % took
    s.wait_log(r"event=data_rate_limit ")


def test_slow_but_reasonable_client_passes(tern):
    """2 KB every half second for 8 seconds (4 KB/s, far above 500 octets/s
    but much longer than the grace): accepted and delivered intact."""
    s = tern(RATE)
    tok = new_token("slow")
    msg = make_message(tok, b"a slow but honest line of forty octets.\r\n" * 800)
    c = SMTPClient(s.mx_port, timeout=10)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    expect(c.cmd("DATA"), 354)
    data = msg + b".\r\n"
    t0 = time.monotonic()
    for i in range(0, len(data), 2000):
        c.send(data[i:i + 2000])
        time.sleep(0.5)
    r = c.reply(timeout=10)
    took = time.monotonic() - t0
    expect(r, 250)
    assert took > 6, "the client was not slow (%.1f s)" % took
    c.quit()
    (path, got), = s.wait_token(tok)
    assert got.endswith(msg)
    assert "event=data_rate_limit" not in s.log()


def test_min_data_rate_off(tern):
    """min_data_rate = 0: only the idle timeout applies."""
    s = tern({"min_data_rate": "0", "min_data_rate_grace": "1s", "idle_timeout": "4s"})
    c = SMTPClient(s.mx_port, timeout=10)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    expect(c.cmd("DATA"), 354)
    for i in range(5):
        c.send(b"x")
        r = c.reply(timeout=1.0)
        assert r.timeout, "cut off at %d s with min_data_rate = 0: %r" % (i, r)
    c.send(b"\r\n.\r\n")
    expect(c.reply(), 250)
    assert "event=data_rate_limit" not in s.log()


# -- connection flood ----------------------------------------------------------

def test_connection_flood(tern):
    """One address opening connections in a loop gets 421 4.7.0 past
    max_connections_per_client, each refusal logged; another address is
    served meanwhile, and the flooder is served again once it lets go."""
    limit = 20
    s = tern({"max_connections_per_client": str(limit), "max_connections": "1000"})
    held, refused = [], 0
    try:
        for i in range(200):
            c = SMTPClient(s.mx_port, timeout=5)
            if c.greeting.code == 220:
                held.append(c)
                continue
            expect(c.greeting, 421, "4.7.0")
            assert c.closed(2), "a refused connection stays open"
            c.sock.close()
            refused += 1
        assert len(held) == limit and refused == 200 - limit, (len(held), refused)
        tok = new_token("other")
        with smtplib.SMTP("127.0.0.1", s.mx_port, source_address=("127.0.0.2", 0),
                          timeout=5) as other:
            assert not other.sendmail("bob@example.org", [DEMO], make_message(tok))
        s.wait_token(tok)
    finally:
        for c in held:
            c.close()
    log = s.log()
    n = len(re.findall(r"event=connection_refused client=127\.0\.0\.1 "
                       r"reason=max_connections_per_client limit=%d" % limit, log))
    assert n == 200 - limit, "%d refusals logged" % n
    end = time.monotonic() + 5
    while True:
        c = SMTPClient(s.mx_port, timeout=5)
        if c.greeting.code == 220 or time.monotonic() > end:
            break
        c.sock.close()
        time.sleep(0.1)
    expect(c.greeting, 220)
    c.quit()
