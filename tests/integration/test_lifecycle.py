"""The server's lifecycle: SIGHUP reloads of the configuration and aliases
files (a bad file keeps the old ones; new sessions get the new ones while a
session opened before keeps its own; keys that need a restart are logged and
kept), the switch from root to run_user, and SIGTERM under load (nothing that
got its 250 is lost, and the process exits 0)."""

import os
import pwd
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from queue_helpers import links, sendmail
from tern_helpers import (SMTPClient, dot_stuff, expect, free_ports, header_token_of, make_message,
                          new_token)

DEMO = "demo@example.test"
POSTMASTER = "postmaster@example.test"
BOB = "bob@example.net"


def append_config(srv, text):
    """Append lines to the server's configuration (a key given again takes the
    last value); returns the line number of the first appended line."""
    old = srv.conf.read_text()
    if not old.endswith("\n"):
        old += "\n"
    srv.conf.write_text(old + text)
    return old.count("\n") + 1


def reload(srv, pattern, timeout=10.0):
    """SIGHUP, then wait for a log line of this run that matches pattern and
    was not there before; returns it."""
    before = len(srv.log().splitlines())
    srv.proc.send_signal(signal.SIGHUP)
    rx = re.compile(pattern)
    end = time.monotonic() + timeout
    while True:
        lines = srv.log().splitlines()[before:]
        for line in lines:
            if rx.search(line):
                return line
        if time.monotonic() > end:
            raise AssertionError("no log line matching %r within %.0fs after SIGHUP; new lines:\n%s"
                                 % (pattern, timeout, "\n".join(lines[-40:])))
        time.sleep(0.05)


def send(srv, rcpt, token, port=None):
    """One message to rcpt in a new session; asserts the 250."""
    c = SMTPClient(port or srv.mx_port)
    c.ehlo()
    expect(c.send_message("alice@example.org", [rcpt], make_message(token, rcpt=rcpt)), 250)
    c.quit()


# -- SIGHUP ---------------------------------------------------------------------

def test_reload_bad_config_keeps_the_old_one(tern):
    srv = tern()
    # a valid change (demo is no longer a mailbox) and an error further on
    first = append_config(srv, "mailboxes = postmaster@example.test\n"
                               "max_recipients = 5\n")
    line = reload(srv, r"event=reload_failed file=\S*tern\.conf line=\d+ error=")
    assert "line=%d " % (first + 1) in line, line
    assert "max_recipients" in line, line
    assert "event=config_reloaded" not in srv.log()
    # still the old configuration: demo exists, and mail to it is delivered
    token = new_token("badconf")
    send(srv, DEMO, token)
    srv.wait_token(token)

    # a good configuration with a bad aliases file: nothing changes either
    srv.conf.write_text(srv.conf.read_text().replace("max_recipients = 5\n", ""))
    good_aliases = srv.aliases_file.read_text()
    srv.aliases_file.write_text(good_aliases + "broken line without a colon\n")
    bad_line = good_aliases.count("\n") + 1
    line = reload(srv, r"event=reload_failed file=\S*aliases line=\d+ error=")
    assert "line=%d " % bad_line in line, line
    token = new_token("badaliases")
    send(srv, DEMO, token)
    srv.wait_token(token)

    # both fixed: the change applies to new sessions
    srv.aliases_file.write_text(good_aliases)
    line = reload(srv, r"event=config_reloaded ")
    assert "changed=mailboxes " in line, line
    c = SMTPClient(srv.mx_port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 550, "5.1.1")
    expect(c.cmd("RCPT TO:<%s>" % POSTMASTER), 250)
    c.close()


def test_reload_applies_to_new_sessions_only(tern, tmp_path):
    srv = tern()
    before = SMTPClient(srv.mx_port)  # opened under the first configuration
    before.ehlo()
    append_config(srv, "local_domains = example.test, example.net\n"
                       "mailboxes = postmaster@example.test, bob@example.net\n")
    srv.aliases_file.write_text(srv.aliases_file.read_text() + "sales@example.net: bob@example.net\n")
    line = reload(srv, r"event=config_reloaded ")
    assert "changed=local_domains,mailboxes " in line, line
    assert "aliases=4" in line, line

    # the session opened before keeps its rules, for every transaction
    expect(before.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(before.cmd("RCPT TO:<%s>" % BOB), 554, "5.7.1")  # not a local domain for it
    expect(before.cmd("RCPT TO:<sales@example.net>"), 554, "5.7.1")
    expect(before.cmd("RCPT TO:<%s>" % DEMO), 250)
    expect(before.cmd("DATA"), 354)
    old_token = new_token("before")
    before.send(dot_stuff(make_message(old_token)))
    expect(before.reply(), 250)
    expect(before.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(before.cmd("RCPT TO:<%s>" % BOB), 554, "5.7.1")
    expect(before.cmd("RSET"), 250)

    # new sessions have the new rules
    c = SMTPClient(srv.mx_port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 550, "5.1.1")
    expect(c.cmd("RCPT TO:<%s>" % POSTMASTER), 250)
    expect(c.cmd("RSET"), 250)
    c.close()
    bob_token, sales_token = new_token("bob"), new_token("sales")
    send(srv, BOB, bob_token)
    send(srv, "sales@example.net", sales_token)
    # delivered to the new domain's Maildir (the queue routes by the new local_domains)
    found = srv.wait_token(bob_token)
    assert found[0][0].parent.parent == srv.maildir(BOB), found
    found = srv.wait_token(sales_token)
    assert found[0][0].parent.parent == srv.maildir(BOB), found
    found = srv.wait_token(old_token)
    assert found[0][0].parent.parent == srv.maildir(DEMO), found
    before.quit()  # the last session under the first configuration ends
    # local submission through the control socket follows the reload too
    local_token = new_token("local")
    p = sendmail(links(tmp_path), srv, ["-i", "sales@example.net"],
                 make_message(local_token, rcpt="sales@example.net"))
    assert p.returncode == 0, p.stderr
    found = srv.wait_token(local_token)
    assert found[0][0].parent.parent == srv.maildir(BOB), found


def test_reload_ignores_keys_that_need_a_restart(tern):
    srv = tern()
    (new_port,) = free_ports(1)
    append_config(srv, "mx_listen = 127.0.0.1:%d\n"
                       "spool_dir = %s\n"
                       "delivery_concurrency = 3\n"
                       "log_level = debug\n" % (new_port, srv.dir / "elsewhere"))
    line = reload(srv, r"event=config_reloaded ")
    assert "changed=log_level " in line, line
    log = srv.log()
    for key in ("mx_listen", "spool_dir", "delivery_concurrency"):
        assert re.search(r'event=reload_ignored key=%s note="needs a restart"' % key, log), log
    assert "event=reload_ignored key=log_level" not in log
    # still on the old port, not on the new one
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", new_port), timeout=1).close()
    token = new_token("oldport")
    send(srv, DEMO, token)
    srv.wait_token(token)
    assert not (srv.dir / "elsewhere").exists()
    # log_level applied at once: the protocol trace of that session is there
    srv.wait_log(r"event=command cmd=MAIL")
    # asked again, it says so again
    line = reload(srv, r'event=reload_ignored key=mx_listen note="needs a restart"')
    srv.wait_log(r"event=config_reloaded .*changed=none")


# -- run_user ---------------------------------------------------------------------

def privileged_port():
    """A free TCP port below 1024 on 127.0.0.1."""
    for port in random.sample(range(600, 1000), 400):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free port between 600 and 999")


def proc_ids(pid):
    """{'Uid': [...], 'Gid': [...], 'Groups': [...], 'CapEff': 'hex'} from /proc/PID/status."""
    out = {}
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            out[key] = [int(v) for v in value.split()]
        elif key == "CapEff":
            out[key] = value.strip()
    return out


def test_privilege_drop(tern, request):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    pw = tern_user()
    # a directory the tern user can reach (the test's tmp_path is root's alone)
    work = Path(tempfile.mkdtemp(prefix="tern-privdrop-"))
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    os.chmod(work, 0o755)
    port = privileged_port()
    srv = tern(overrides={"run_user": "tern", "mx_listen": "127.0.0.1:%d" % port},
               start=False, workdir=work / "tern")
    srv.mx_port = port
    srv.aliases_file.chmod(0o600)  # root's: loaded at start, not readable after the switch
    srv.start()
    srv.wait_log(r"event=privileges_dropped user=tern uid=%d gid=%d" % (pw.pw_uid, pw.pw_gid))
    srv.wait_log(r"event=listening listener=mx address=127\.0\.0\.1 port=%d" % port)
    ids = proc_ids(srv.proc.pid)
    assert ids["Uid"] == [pw.pw_uid] * 4, ids
    assert ids["Gid"] == [pw.pw_gid] * 4, ids
    assert 0 not in ids["Groups"], ids
    assert int(ids["CapEff"], 16) == 0, ids
    srv.wait_log(r"event=reload_unreadable key=aliases_file .*Permission denied")
    # what it writes belongs to tern
    for d in (srv.spool_dir, srv.maildir_root):
        assert d.stat().st_uid == pw.pw_uid, d
    # so does the control socket, which tern's own user may use
    st = os.stat(srv.control_socket)
    assert (st.st_uid, st.st_gid) == (pw.pw_uid, pw.pw_gid)
    r = subprocess.run(["runuser", "-u", "tern", "--", str(srv_binary()), "queue", "-c",
                        str(srv.conf), "list"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    # mail is still accepted on the privileged port and delivered by the tern user
    token = new_token("dropped")
    send(srv, DEMO, token)
    path, _ = srv.wait_token(token)[0]
    assert path.stat().st_uid == pw.pw_uid
    assert path.parent.stat().st_uid == pw.pw_uid
    # the root-only file cannot be read any more: the reload fails and keeps the old aliases
    line = reload(srv, r"event=reload_failed file=\S*aliases ")
    assert "Permission denied" in line, line
    c = SMTPClient(port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<abuse@example.test>"), 250)  # an alias loaded at start
    c.close()
    srv.stop_clean()
    assert "event=stopped" in srv.log()


def tern_user():
    """The tern system user, created (as scripts/install.sh does) when missing."""
    try:
        return pwd.getpwnam("tern")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "tern"],
                       check=True, capture_output=True, timeout=30)
        return pwd.getpwnam("tern")


def wait_file(path, pattern, timeout=10.0):
    rx = re.compile(pattern)
    end = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        if rx.search(text):
            return text
        if time.monotonic() > end:
            raise AssertionError("%s: no line matching %r; it holds:\n%s" % (path, pattern, text[-3000:]))
        time.sleep(0.05)


def test_log_file_reopened_after_the_switch(tern, request):
    """A log_target file opened as root is given to run_user, so that SIGUSR1
    (logrotate) can open it again after the switch."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    pw = tern_user()
    work = Path(tempfile.mkdtemp(prefix="tern-privlog-"))
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    os.chmod(work, 0o755)
    logfile = work / "tern.log"
    srv = tern(overrides={"run_user": "tern", "log_target": str(logfile)}, start=False,
               workdir=work / "tern")
    srv.start()
    wait_file(logfile, r"event=privileges_dropped user=tern")
    assert logfile.stat().st_uid == pw.pw_uid
    srv.proc.send_signal(signal.SIGUSR1)
    text = wait_file(logfile, r"event=log_reopened|event=log_reopen_failed")
    assert "event=log_reopened" in text and "log_reopen_failed" not in text, text[-2000:]
    assert "reopen_unwritable" not in text
    srv.stop_clean()


def test_missing_run_user_is_fatal(tern):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    srv = tern(overrides={"run_user": "no-such-user-tern"}, start=False)
    r = subprocess.run([str(srv_binary()), "serve", "-c", str(srv.conf)], capture_output=True,
                       timeout=30, cwd=str(srv.dir))
    assert r.returncode == 1
    assert b'event=fatal reason="run_user does not exist" run_user=no-such-user-tern' in r.stderr
    # nothing was created or bound
    assert not srv.spool_dir.exists()


def srv_binary():
    from conftest import tern_bin
    return tern_bin()


# -- SIGTERM ----------------------------------------------------------------------

CLIENTS = 50


def test_sigterm_under_load_loses_nothing(tern):
    srv = tern(overrides={"max_connections_per_client": "200"})
    acked = []  # tokens that got their 250
    lock = threading.Lock()
    started = threading.Barrier(CLIENTS + 1)

    def client(i):
        c = None
        try:
            c = smtplib.SMTP("127.0.0.1", srv.mx_port, timeout=30)
            c.ehlo("load%d.example.org" % i)
        except (smtplib.SMTPException, OSError):
            c = None
        try:
            started.wait(30)
        except threading.BrokenBarrierError:
            pass
        if c is None:
            return
        while True:
            token = new_token("load%d" % i)
            try:
                c.sendmail("alice@example.org", [DEMO], make_message(token))
            except (smtplib.SMTPException, OSError):
                break  # 421 or the connection closed: the server is stopping
            with lock:
                acked.append(token)
        try:
            c.close()
        except OSError:
            pass

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    started.wait(30)
    end = time.monotonic() + 30
    while len(acked) < 300 and time.monotonic() < end:
        time.sleep(0.05)
    assert acked, "no message was acknowledged under load; log:\n%s" % srv.log()[-4000:]
    srv.proc.send_signal(signal.SIGTERM)
    rc = srv.proc.wait(30)
    for t in threads:
        t.join(30)
    assert rc == 0, "exit status %s; log tail:\n%s" % (rc, srv.log()[-4000:])
    assert "event=stopped" in srv.log()
    with lock:
        tokens = list(acked)

    print("acknowledged before SIGTERM: %d" % len(tokens))
    # start again on the same spool: whatever was still queued is delivered
    srv.start()
    want = set(tokens)
    end = time.monotonic() + 60
    while True:
        delivered = [header_token_of(d) for _, d in srv.messages(DEMO)]
        missing = want - set(delivered)
        if not missing:
            break
        if time.monotonic() > end:
            raise AssertionError("%d of %d acknowledged messages never delivered, e.g. %s"
                                 % (len(missing), len(want), sorted(missing)[:5]))
        time.sleep(0.2)
    # a clean stop records every delivery: nothing acknowledged is delivered twice
    dups = [t for t in want if delivered.count(t) > 1]
    assert not dups, "delivered twice: %s" % dups[:5]
