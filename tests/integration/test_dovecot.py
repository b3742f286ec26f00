"""Dovecot (Debian's dovecot-imapd) serves a message from Tern's Maildir.

Dovecot runs in the foreground with its own configuration, base_dir and
state_dir on a loopback port; a passwd-file userdb gives the test user the
Maildir <maildir_root>/example.test/demo. Dovecot refuses mail access as
uid 0, so the user is 'nobody' and the test chowns that Maildir to it (and
places maildir_root under a world-traversable temporary directory, since
pytest's own temporary tree is 0700).

What IMAP returns for BODY[] is the Maildir file as Tern wrote it: Dovecot
keeps the Return-Path: line (it does not strip or regenerate it for Maildir),
so the fetched bytes must be exactly Return-Path + Delivered-To + Received +
the message as sent.
"""

import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tern_helpers import check_delivered, free_ports, make_message, new_token, SMTPClient, expect

DEMO = "demo@example.test"
DOVECOT = "/usr/sbin/dovecot"


def chown_tree(path, uid, gid):
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        for f in files:
            os.chown(os.path.join(root, f), uid, gid)


@pytest.fixture
def world_tmp():
    d = Path(tempfile.mkdtemp(prefix="tern-dovecot-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start_dovecot(base, maildir, port):
    nobody = pwd.getpwnam("nobody")
    base.mkdir()
    for sub in ("run", "state", "home"):
        (base / sub).mkdir()
    os.chown(base / "home", nobody.pw_uid, nobody.pw_gid)
    passwd = base / "passwd"
    passwd.write_text("demo:{PLAIN}secret:%d:%d::%s::userdb_mail=maildir:%s\n"
                      % (nobody.pw_uid, nobody.pw_gid, base / "home", maildir))
    conf = base / "dovecot.conf"
    conf.write_text(f"""
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
instance_name = tern-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")
    proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=open(base / "dovecot.stderr", "wb"))
    end = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            raise AssertionError("dovecot exited: %s %s" % (
                (base / "dovecot.stderr").read_text(errors="replace"),
                (base / "dovecot.log").read_text(errors="replace") if (base / "dovecot.log").exists() else ""))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            if time.monotonic() > end:
                proc.kill()
                raise AssertionError("dovecot did not listen on %d" % port)
            time.sleep(0.1)


def test_dovecot_reads_tern_maildir(tern, world_tmp):
    mail_root = world_tmp / "mail"
    s = tern({"maildir_root": str(mail_root)})
    tok = new_token()
    msg = make_message(tok, b"Read me over IMAP.\r\n.dot line\r\n\r\nEnd.\r\n",
                       subject="Dovecot test")
    c = SMTPClient(s.mx_port)
    c.ehlo()
    expect(c.send_message("alice@example.org", [DEMO], msg), 250)
    c.close()
    (path, data), = s.wait_token(tok)
    check_delivered(data, "alice@example.org", DEMO, msg)
    box = s.maildir(DEMO)
    nobody = pwd.getpwnam("nobody")
    os.chmod(mail_root, 0o755)
    os.chmod(mail_root / "example.test", 0o755)
    chown_tree(box, nobody.pw_uid, nobody.pw_gid)
    port, = free_ports(1)
    proc = start_dovecot(world_tmp / "dovecot", box, port)
    try:
        m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        try:
            typ, _ = m.login("demo", "secret")
            assert typ == "OK"
            typ, d = m.select("INBOX", readonly=True)
            assert typ == "OK" and d[0] == b"1", d
            typ, d = m.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
            assert typ == "OK", d
            fetched = d[0][1]
            assert b"RFC822.SIZE %d" % len(data) in d[0][0], d[0][0]
            typ, d2 = m.fetch("1", "(RFC822)")
            assert typ == "OK"
            assert d2[0][1] == fetched
        finally:
            m.logout()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert fetched == data, "IMAP returned other bytes than the Maildir file:\n%r\n%r" % (fetched, data)
    d = check_delivered(fetched, "alice@example.org", DEMO, msg)
    assert fetched.startswith(b"Return-Path: <alice@example.org>\r\nDelivered-To: ")
    assert d.queue_id
