"""The sandbox of `tern serve` (docs/sandbox.md): Landlock and seccomp.

The sandbox is on by default, so every other test of the suite runs under
it too (a system call missing from the allow-list kills Tern there). These
tests check that it is in force (the start line; Seccomp: 2 and
NoNewPrivs: 1 in /proc for every thread), that the usual flow works under
it (mx to a Maildir, relay to a remote MX, submission with STARTTLS, AUTH
and a DKIM signature, the control socket, SIGHUP, SIGTERM), that a file
outside its paths is refused while serving goes on, and that a system call
outside the filter is refused (sandbox_selftest = yes: EPERM with
sandbox_seccomp_action = errno, SIGSYS with kill, allowed and audited with
log). `sandbox = no` turns all of it off.
"""

import base64
import re
import signal
import smtplib
import subprocess
import time
from pathlib import Path

from conftest import tern_bin
from queue_helpers import queue
from relay_helpers import send, world  # noqa: F401 (world is a fixture)
from tern_helpers import SMTPClient, client_tls_context, expect, make_message, new_token

USER = "demo@example.test"
PASSWORD = "tern-demo"

SANDBOX_LINE = r"event=sandbox landlock=(abi(\d+)|unsupported) seccomp=on seccomp_action=(\w+)"


def sandbox_line(srv):
    line = srv.wait_log(SANDBOX_LINE)
    m = re.search(SANDBOX_LINE, line)
    abi = int(m.group(2)) if m.group(2) else 0
    return line, abi, m.group(3)


def thread_status(pid):
    """{tid: {field: value}} from /proc/PID/task/*/status."""
    out = {}
    for t in Path("/proc/%d/task" % pid).iterdir():
        fields = {}
        try:
            text = (t / "status").read_text()
        except FileNotFoundError:
            continue  # the thread ended
        for l in text.splitlines():
            k, _, v = l.partition(":")
            fields[k] = v.strip()
        out[int(t.name)] = fields
    return out


def assert_confined(srv):
    """Every thread has the seccomp filter (mode 2) and no_new_privs."""
    threads = thread_status(srv.proc.pid)
    assert len(threads) >= 3, threads  # the loop, the spool flusher, workers
    for tid, f in threads.items():
        assert f.get("Seccomp") == "2", "thread %d: Seccomp %r" % (tid, f.get("Seccomp"))
        assert int(f.get("Seccomp_filters", "0")) >= 1, "thread %d: %r" % (tid, f)
        assert f.get("NoNewPrivs") == "1", "thread %d: NoNewPrivs %r" % (tid, f.get("NoNewPrivs"))
    return threads


def dkim_keygen(srv):
    """A DKIM key for example.test in the server's dkim_key_dir."""
    p = subprocess.run([str(tern_bin()), "dkim", "keygen", "-c", str(srv.conf), "example.test",
                        "--selector", "sel"], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")


def test_sandbox_full_flow(tern, world, tmp_path):  # noqa: F811 (world is a fixture)
    """Receive, deliver, relay, submit with TLS, AUTH and DKIM, talk to the
    control socket, reload and stop, all inside the sandbox."""
    mx1 = world.peer("127.0.0.2")
    srv = tern(overrides=dict(world.overrides, dkim_key_dir=str(tmp_path / "dkim")), start=False)
    dkim_keygen(srv)
    srv.start()
    line, abi, action = sandbox_line(srv)
    assert action == "kill"  # the default
    if abi:
        assert re.search(r"paths=\d+", line), line
        if abi >= 4:
            assert "tcp_bind=denied" in line, line
    assert_confined(srv)

    # mx: a local recipient into its Maildir, a remote one relayed
    token, _ = send(srv, ["postmaster@example.test", "bob@remote.test"])
    srv.wait_token(token)
    txn = mx1.wait(1)
    assert txn[0][1] == ["bob@remote.test"]
    assert token.encode() in txn[0][2]
    srv.wait_log(r"to=<bob@remote\.test>.*status=sent")

    # submission: STARTTLS, AUTH (the password check runs on a worker
    # thread), a DKIM signature (on another)
    token2 = new_token("sandbox-submit")
    msg = make_message(token2, sender=USER, rcpt=USER)
    with smtplib.SMTP("127.0.0.1", srv.submission_port, timeout=15) as s:
        s.starttls(context=client_tls_context())
        s.login(USER, PASSWORD)
        assert s.sendmail(USER, [USER], msg) == {}
    found = srv.wait_token(token2)
    assert b"DKIM-Signature:" in found[0][1], found[0][1][:800]

    # the control socket: a queue listing (peer credentials, user lookup)
    q = queue(srv, "list")
    assert q.returncode == 0

    # SIGHUP: the certificate, the user store and the sender map again
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"event=reload signal=SIGHUP")
    srv.wait_log(r"event=users_loaded .*", timeout=5)
    n_tls = len(re.findall(r"event=tls_loaded", srv.log()))
    end = time.monotonic() + 5
    while len(re.findall(r"event=tls_loaded", srv.log())) < 2 and time.monotonic() < end:
        time.sleep(0.05)
    assert len(re.findall(r"event=tls_loaded", srv.log())) >= 2, n_tls
    # and it still serves, in every thread
    token3, _ = send(srv, ["demo@example.test"])
    srv.wait_token(token3)
    assert_confined(srv)
    assert "reload_failed" not in srv.log()
    assert "Permission denied" not in srv.log(), srv.log()
    # SIGTERM: the fixture requires exit status 0 (no SIGSYS on the way out)
    srv.stop_clean()
    assert "event=stopped" in srv.log()


def test_sandbox_refuses_a_file_outside(tern, tmp_path):
    """users_file replaced by a link to a file outside the sandbox's paths:
    the reload fails with EACCES and the users loaded before stay; the
    same file is read at once without the sandbox."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "users-elsewhere"
    srv = tern()
    sandbox_line(srv)
    # a valid user store: only the sandbox can keep Tern from reading it
    secret.write_text(srv.users_file.read_text())
    secret.chmod(0o600)
    before = srv.log().count("event=users_loaded")
    srv.users_file.unlink()
    srv.users_file.symlink_to(secret)
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"event=config_error file=\S*users error=\"cannot open: Permission denied\"")
    srv.wait_log(r"event=reload_failed file=\S*users")
    assert srv.log().count("event=users_loaded") == before
    # serving goes on, with the users loaded before
    token, _ = send(srv, ["demo@example.test"])
    srv.wait_token(token)
    c = SMTPClient(srv.submissions_port, tls=True)
    c.ehlo()
    auth = base64.b64encode(("\0%s\0%s" % (USER, PASSWORD)).encode()).decode()
    expect(c.cmd("AUTH PLAIN " + auth, timeout=10), 235)
    c.quit()
    srv.stop_clean()

    # without the sandbox the same link is followed
    srv2 = tern(overrides={"sandbox": "no"})
    srv2.wait_log(r"event=sandbox landlock=off seccomp=off")
    before = srv2.log().count("event=users_loaded")
    srv2.users_file.unlink()
    srv2.users_file.symlink_to(secret)
    srv2.proc.send_signal(signal.SIGHUP)
    end = time.monotonic() + 5
    while srv2.log().count("event=users_loaded") <= before and time.monotonic() < end:
        time.sleep(0.05)
    assert srv2.log().count("event=users_loaded") > before, srv2.log()
    assert "reload_failed" not in srv2.log()


def test_sandbox_selftest_errno(tern):
    """sandbox_selftest with errno: the file outside is refused (EACCES),
    the forbidden system call fails with EPERM, and serving goes on."""
    srv = tern(overrides={"sandbox_selftest": "yes", "sandbox_seccomp_action": "errno"})
    _, abi, action = sandbox_line(srv)
    assert action == "errno"
    if abi:
        srv.wait_log(r"event=sandbox_selftest check=file path=/ result=denied "
                     r"error=\"Permission denied\"")
    srv.wait_log(r"event=sandbox_selftest check=syscall syscall=personality result=denied "
                 r"error=\"Operation not permitted\"")
    assert_confined(srv)
    token, _ = send(srv, ["demo@example.test"])
    srv.wait_token(token)


def test_sandbox_selftest_kill(tern):
    """sandbox_selftest with kill (the default): the forbidden system
    call ends the process with SIGSYS."""
    srv = tern(overrides={"sandbox_selftest": "yes", "sandbox_seccomp_action": "kill"},
               start=False)
    srv.start(wait=False)
    try:
        rc = srv.proc.wait(15)
    except subprocess.TimeoutExpired:
        raise AssertionError("tern survived a forbidden system call; log:\n" + srv.log())
    srv.killed_runs.add(len(srv.logs) - 1)  # the exit status is this test's to check
    assert rc == -signal.SIGSYS, "exit status %r; log:\n%s" % (rc, srv.log())
    log = srv.log()
    assert re.search(r"event=sandbox_selftest check=syscall syscall=personality action=kill", log)
    assert "result=" not in log.split("syscall=personality action=kill", 1)[1]


def test_sandbox_selftest_log(tern):
    """With log the forbidden system call is allowed (and audited by the
    kernel): for finding what the allow-list lacks."""
    srv = tern(overrides={"sandbox_selftest": "yes", "sandbox_seccomp_action": "log"})
    _, _, action = sandbox_line(srv)
    assert action == "log"
    srv.wait_log(r"event=sandbox_selftest check=syscall syscall=personality result=allowed")
    assert_confined(srv)


def test_sandbox_off(tern):
    """sandbox = no: no filter, no Landlock, and the start line says so."""
    srv = tern(overrides={"sandbox": "no", "sandbox_selftest": "yes"})
    srv.wait_log(r"event=sandbox landlock=off seccomp=off")
    assert "event=sandbox_selftest" not in srv.log()
    for tid, f in thread_status(srv.proc.pid).items():
        assert f.get("Seccomp") == "0", (tid, f)
    token, _ = send(srv, ["demo@example.test"])
    srv.wait_token(token)
