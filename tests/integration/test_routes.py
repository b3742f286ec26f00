"""Routes: the relayhost (smarthost) with AUTH, the transport file, LMTP
(to a scripted peer and to a real Dovecot), the 8BITMIME downgrade and
PIPELINING in the client.

Peers come from relay_helpers: aiosmtpd (Peer, with AUTH) and RawPeer (no
8BITMIME, per-recipient LMTP replies, every read recorded), all on loopback
addresses on one port, which is Tern's outbound_port; mail enters Tern from
a trusted client on its mx listener.
"""

import email
import email.policy
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from aiosmtpd.smtp import AuthResult, LoginPassword

from relay_helpers import SENDER, send, world  # noqa: F401  (world is a fixture)
from test_dovecot import chown_tree

PASSWORD = "s3cr3t-Pa55 word"


def auth_file(tmp_path, line, mode=0o600):
    p = tmp_path / "relay-auth"
    p.write_text(line + "\n")
    os.chmod(p, mode)
    return str(p)


class Authenticator:
    """aiosmtpd authenticator: accepts relayuser with PASSWORD, records tries."""

    def __init__(self):
        self.tries = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        self.tries.append((mechanism, auth_data.login, auth_data.password))
        ok = auth_data.login == b"relayuser" and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)


def smarthost_overrides(world, tmp_path, line="relayuser " + PASSWORD, mode=0o600):
    return dict(world.overrides, relayhost="[127.0.0.5]:%d" % world.port,
                relayhost_auth_file=auth_file(tmp_path, line, mode), log_level="debug")


def test_relayhost_auth_plain(tern, world, tmp_path):
    mx1 = world.peer("127.0.0.2")
    auth = Authenticator()
    smart = world.peer("127.0.0.5", authenticator=auth, auth_require_tls=False)
    srv = tern(smarthost_overrides(world, tmp_path))
    token, msg = send(srv, ["bob@remote.test", "carol@elsewhere.test"])
    txs = smart.wait()
    assert sorted(r for t in txs for r in t[1]) == ["bob@remote.test", "carol@elsewhere.test"]
    assert auth.tries and auth.tries[0][:2] == ("PLAIN", b"relayuser")
    srv.wait_log(r"event=relay_auth host=127\.0\.0\.5\[127\.0\.0\.5\] user=relayuser mech=PLAIN "
                 r"result=ok")
    srv.wait_log(r"to=<bob@remote\.test> relay=127\.0\.0\.5\[127\.0\.0\.5\]:%d .*status=sent"
                 % world.port)
    assert mx1.transactions == []  # the MX of remote.test is not used
    assert PASSWORD not in srv.all_logs()


def test_relayhost_wrong_password_defers(tern, world, tmp_path):
    auth = Authenticator()
    smart = world.peer("127.0.0.5", authenticator=auth, auth_require_tls=False)
    srv = tern(smarthost_overrides(world, tmp_path, line="relayuser wrong-" + PASSWORD))
    send(srv, ["bob@remote.test"])
    line = srv.wait_log(r"to=<bob@remote\.test> .*status=")
    assert "status=deferred" in line and "dsn=4.7.8" in line and "535" in line, line
    srv.wait_log(r"event=relay_auth .*result=failed reply=535")
    time.sleep(1.5)  # retry_min is 1 s: a second try must defer again, never bounce
    log = srv.all_logs()
    assert "status=bounced" not in log and "event=bounce" not in log
    assert smart.transactions == []
    assert PASSWORD not in log and auth.tries


def test_relayhost_auth_file_must_be_private(tern, world, tmp_path):
    srv = tern(smarthost_overrides(world, tmp_path, mode=0o644), start=False)
    srv.start(wait=False)
    rc = srv.proc.wait(10)
    srv.killed_runs.add(len(srv.logs) - 1)  # the failed start is what this test wants
    assert rc != 0
    log = srv.log()
    assert "mode 0644 gives access to group or others" in log, log
    assert PASSWORD not in log


def test_relayhost_auth_login_only(tern, world, tmp_path):
    raw = world.raw_peer("127.0.0.5", ext=["AUTH LOGIN", "8BITMIME"])
    import base64
    steps = []

    # RawPeer does not know AUTH: teach this one the LOGIN exchange.
    def session(sock):
        f = sock.makefile("rb")
        sock.sendall(b"220 raw ESMTP\r\n")
        mail = None
        rcpts = []
        while True:
            ln = f.readline().rstrip(b"\r\n")
            if not ln:
                return
            v = ln.split(b" ", 1)[0].upper()
            if v == b"EHLO":
                sock.sendall(b"250-raw\r\n250-AUTH LOGIN\r\n250 8BITMIME\r\n")
            elif v == b"AUTH":
                sock.sendall(b"334 VXNlcm5hbWU6\r\n")
                steps.append(base64.b64decode(f.readline().strip()))
                sock.sendall(b"334 UGFzc3dvcmQ6\r\n")
                steps.append(base64.b64decode(f.readline().strip()))
                sock.sendall(b"235 2.7.0 ok\r\n")
            elif v == b"MAIL":
                mail = ln
                sock.sendall(b"250 ok\r\n")
            elif v == b"RCPT":
                rcpts.append(ln)
                sock.sendall(b"250 ok\r\n")
            elif v == b"DATA":
                sock.sendall(b"354 go\r\n")
                while f.readline() != b".\r\n":
                    pass
                with raw.lock:
                    raw.transactions.append((mail, rcpts, b""))
                sock.sendall(b"250 queued\r\n")
            elif v == b"QUIT":
                sock.sendall(b"221 bye\r\n")
                return
            else:
                sock.sendall(b"250 ok\r\n")

    raw._session = session
    srv = tern(smarthost_overrides(world, tmp_path))
    send(srv, ["bob@remote.test"])
    raw.wait()
    assert steps == [b"relayuser", PASSWORD.encode()]
    srv.wait_log(r"event=relay_auth .*mech=LOGIN result=ok")
    assert PASSWORD not in srv.all_logs()


def test_transport_file_routes(tern, world, tmp_path):
    mx1 = world.peer("127.0.0.2")
    direct = world.peer("127.0.0.5")
    t = tmp_path / "transport"
    t.write_text("# routes\n"
                 "remote.test      smtp:[127.0.0.5]\n"          # bypasses the MX of remote.test
                 ".sub.test        smtp:remote.test:%d\n"       # MX lookup of remote.test
                 % world.port)
    srv = tern(dict(world.overrides, transport_file=str(t)))
    srv.wait_log(r"event=transport_loaded file=\S+ entries=2")
    send(srv, ["bob@remote.test"])
    (mail_from, rcpts, content), = direct.wait()
    assert rcpts == ["bob@remote.test"]
    srv.wait_log(r"to=<bob@remote\.test> relay=127\.0\.0\.5\[127\.0\.0\.5\]:%d .*status=sent"
                 % world.port)
    send(srv, ["eve@a.sub.test"])
    (_, rcpts, _), = mx1.wait()
    assert rcpts == ["eve@a.sub.test"]
    srv.wait_log(r"to=<eve@a\.sub\.test> relay=mx1\.remote\.test\[127\.0\.0\.2\].*status=sent")
    assert len(direct.transactions) == 1


def test_transport_file_errors_stop_start(tern, world, tmp_path):
    t = tmp_path / "transport"
    t.write_text("remote.test smtp:[127.0.0.5\n")
    srv = tern(dict(world.overrides, transport_file=str(t)), start=False)
    srv.start(wait=False)
    assert srv.proc.wait(10) != 0
    srv.killed_runs.add(len(srv.logs) - 1)
    assert "%s:1: remote.test: \"smtp:[127.0.0.5\": missing ']'" % t in srv.log()


def eight_bit_message(token):
    return ("From: <alice@example.org>\r\n"
            "To: <bob@remote.test>\r\n"
            "Subject: 8-bit test\r\n"
            "X-Tern-Test: %s\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n"
            "\r\n"
            "Gr\u00fc\u00dfe aus K\u00f6ln, \u00e9t\u00e9 \u2013 caf\u00e9.\r\n"
            ".a line with a leading dot and = sign\r\n"
            "%s\r\n" % (token, "long line \u00e4 " * 20)).encode("utf-8")


def send_raw(srv, rcpts, msg, body8=True):
    from tern_helpers import SMTPClient, dot_stuff, expect
    c = SMTPClient(srv.mx_port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<%s>%s" % (SENDER, " BODY=8BITMIME" if body8 else "")), 250)
    for r in rcpts:
        expect(c.cmd("RCPT TO:<%s>" % r), 250)
    expect(c.cmd("DATA"), 354)
    c.send(dot_stuff(msg))
    expect(c.reply(), 250)
    c.quit()


def test_8bit_converted_for_peer_without_8bitmime(tern, world):
    raw = world.raw_peer("127.0.0.2", ext=["PIPELINING", "SIZE 10000000"])
    srv = tern(world.overrides)
    token = "eightbit-%d" % os.getpid()
    msg = eight_bit_message(token)
    send_raw(srv, ["bob@remote.test"], msg)
    (mail, rcpts, content), = raw.wait()
    assert b"BODY=8BITMIME" not in mail
    assert all(b < 0x80 for b in content), "8-bit octets reached a 7-bit peer"
    m = email.message_from_bytes(content, policy=email.policy.default)
    assert m["Content-Transfer-Encoding"] == "quoted-printable"
    orig = email.message_from_bytes(msg, policy=email.policy.default)
    assert m.get_payload(decode=True) == orig.get_payload(decode=True)
    assert ("X-Tern-Test: %s" % token).encode() in content
    srv.wait_log(r"event=relay_8bit_convert host=mx1\.remote\.test\[127\.0\.0\.2\]")
    srv.wait_log(r"to=<bob@remote\.test> .*status=sent")
    # SIZE= is the converted size
    size = int(mail.split(b"SIZE=")[1].split()[0])
    assert abs(size - len(content)) < 300, (size, len(content))


def test_8bit_not_convertible_bounces(tern, world):
    raw = world.raw_peer("127.0.0.2", ext=["PIPELINING"])
    srv = tern(world.overrides)
    msg = ("From: <alice@example.org>\r\nTo: <bob@remote.test>\r\nSubject: multi\r\n"
           "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nK\u00f6ln\r\n--b--\r\n"
           ).encode("utf-8")
    send_raw(srv, ["bob@remote.test"], msg)
    srv.wait_log(r"to=<bob@remote\.test> .*dsn=5\.6\.3 status=bounced")
    assert raw.transactions == []
    assert not any(c.startswith(b"DATA") for c in raw.commands)


def test_7bit_content_declared_8bit_sent_unchanged(tern, world):
    raw = world.raw_peer("127.0.0.2", ext=["PIPELINING"])
    srv = tern(world.overrides)
    msg = b"From: <alice@example.org>\r\nSubject: ascii\r\n\r\nplain ascii\r\n"
    send_raw(srv, ["bob@remote.test"], msg)
    (mail, _, content), = raw.wait()
    assert b"BODY=" not in mail
    assert content.endswith(b"\r\n\r\nplain ascii\r\n")
    assert b"Content-Transfer-Encoding" not in content


def test_pipelining_envelope_in_one_read(tern, world):
    raw = world.raw_peer("127.0.0.2", ext=["PIPELINING", "8BITMIME"])
    raw.rcpt_reply = lambda a: "550 5.1.1 no such user" if a.startswith("nosuch") else None
    srv = tern(world.overrides)
    send(srv, ["a@remote.test", "nosuch@remote.test", "b@remote.test"])
    (mail, rcpts, _), = raw.wait()
    assert rcpts == ["a@remote.test", "b@remote.test"]
    chunk = next(r for r in raw.reads if r.startswith(b"MAIL FROM"))
    assert chunk.count(b"RCPT TO:") == 3 and chunk.endswith(b"DATA\r\n"), chunk
    srv.wait_log(r"to=<nosuch@remote\.test> .*dsn=5\.1\.1 status=bounced")
    srv.wait_log(r"to=<b@remote\.test> .*status=sent")


def test_no_pipelining_one_command_at_a_time(tern, world):
    raw = world.raw_peer("127.0.0.2", ext=["8BITMIME"])
    srv = tern(world.overrides)
    send(srv, ["a@remote.test", "b@remote.test"])
    raw.wait()
    assert not any(r.count(b"\r\n") > 1 and r.startswith(b"MAIL") for r in raw.reads)


def test_lmtp_per_recipient_replies_and_pool(tern, world, tmp_path):
    raw = world.raw_peer("127.0.0.6", ext=["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"],
                         lmtp=True)
    raw.dot_reply = lambda a: ("552 5.2.2 <%s> mailbox full" % a if a.startswith("full")
                               else "452 4.2.2 <%s> try later" % a if a.startswith("later")
                               else None)
    t = tmp_path / "transport"
    t.write_text("lmtp.test lmtp:[127.0.0.6]:%d\n" % world.port)
    srv = tern(dict(world.overrides, transport_file=str(t), log_level="debug",
                    retry_min="30s", retry_max="30s"))
    send(srv, ["ok@lmtp.test", "full@lmtp.test", "later@lmtp.test"])
    (mail, rcpts, _), = raw.wait()
    assert rcpts == ["ok@lmtp.test", "full@lmtp.test", "later@lmtp.test"]
    srv.wait_log(r"to=<ok@lmtp\.test> relay=127\.0\.0\.6\[127\.0\.0\.6\]:\d+ .*dsn=2\.0\.0 "
                 r"status=sent")
    srv.wait_log(r"to=<full@lmtp\.test> .*dsn=5\.2\.2 status=bounced")
    srv.wait_log(r"to=<later@lmtp\.test> .*dsn=4\.2\.2 status=deferred")
    assert raw.commands[0].startswith(b"LHLO ")
    # the next message reuses the idle connection (RSET, no new session)
    send(srv, ["ok2@lmtp.test"])
    raw.wait(2)
    srv.wait_log(r"to=<ok2@lmtp\.test> .*status=sent")
    assert raw.sessions == 1
    assert b"RSET" in raw.commands


DOVECOT = "/usr/sbin/dovecot"


@pytest.fixture
def world_tmp():
    d = Path(tempfile.mkdtemp(prefix="tern-lmtp-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start_dovecot_lmtp(base, maildir, port):
    """Dovecot with LMTP only, on a unix socket <base>/run/lmtp and on
    127.0.0.1:port; the one user demo@lmtp.test stores into maildir."""
    nobody = pwd.getpwnam("nobody")
    base.mkdir()
    for sub in ("run", "state", "home"):
        (base / sub).mkdir()
    os.chown(base / "home", nobody.pw_uid, nobody.pw_gid)
    passwd = base / "passwd"
    passwd.write_text("demo@lmtp.test:{PLAIN}x:%d:%d::%s::userdb_mail=maildir:%s\n"
                      % (nobody.pw_uid, nobody.pw_gid, base / "home", maildir))
    conf = base / "dovecot.conf"
    conf.write_text(f"""
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
instance_name = tern-lmtp-{port}
protocols = lmtp
listen = 127.0.0.1
ssl = no
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
postmaster_address = postmaster@lmtp.test
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {port}
  }}
}}
""")
    proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=open(base / "dovecot.stderr", "wb"))
    end = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            raise AssertionError("dovecot exited: %s" % (base / "dovecot.stderr").read_text())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            if (base / "run" / "lmtp").exists():
                return proc
        except OSError:
            pass
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError("dovecot LMTP did not start")
        time.sleep(0.1)


@pytest.mark.skipif(not Path("/usr/lib/dovecot/lmtp").exists(),
                    reason="dovecot-lmtpd is not installed")
@pytest.mark.parametrize("via", ["unix", "tcp"])
def test_lmtp_to_dovecot(tern, world, world_tmp, via):
    from tern_helpers import free_ports
    nobody = pwd.getpwnam("nobody")
    box = world_tmp / "Maildir"
    box.mkdir()
    chown_tree(box, nobody.pw_uid, nobody.pw_gid)
    port, = free_ports(1)
    base = world_tmp / "dovecot"
    proc = start_dovecot_lmtp(base, box, port)
    try:
        route = ("lmtp:unix:%s" % (base / "run" / "lmtp") if via == "unix"
                 else "lmtp:[127.0.0.1]:%d" % port)
        t = world_tmp / "transport"
        t.write_text("lmtp.test %s\n" % route)
        srv = tern(dict(world.overrides, transport_file=str(t), retry_min="30s"))
        token, msg = send(srv, ["demo@lmtp.test", "unknown@lmtp.test"])
        srv.wait_log(r"to=<demo@lmtp\.test> .*dsn=2\.0\.0 status=sent", timeout=15)
        line = srv.wait_log(r"to=<unknown@lmtp\.test> .*status=", timeout=15)
        assert "status=bounced" in line and "dsn=5.1.1" in line, line
        end = time.monotonic() + 10
        files = []
        while time.monotonic() < end and not files:
            files = list((box / "new").glob("*")) if (box / "new").exists() else []
            time.sleep(0.1)
        assert len(files) == 1, files
        data = files[0].read_bytes().replace(b"\n", b"\r\n")
        assert ("X-Tern-Test: %s" % token).encode() in data
        assert data.endswith(msg.split(b"\r\n\r\n", 1)[1])
        # a second message reuses the pooled connection
        send(srv, ["demo@lmtp.test"])
        srv.wait_log(r"to=<demo@lmtp\.test> .*status=sent.*", timeout=15)
        end = time.monotonic() + 10
        while time.monotonic() < end and len(list((box / "new").glob("*"))) < 2:
            time.sleep(0.1)
        assert len(list((box / "new").glob("*"))) == 2
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_local_domain_routed_to_lmtp(tern, world, tmp_path):
    """The transport file applies to local domains too: example.test (Tern's
    local domain) goes to an LMTP server instead of Tern's Maildir."""
    raw = world.raw_peer("127.0.0.6", ext=["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"],
                         lmtp=True)
    t = tmp_path / "transport"
    t.write_text("example.test lmtp:[127.0.0.6]:%d\n" % world.port)
    srv = tern(dict(world.overrides, transport_file=str(t)))
    token, msg = send(srv, ["demo@example.test"])
    (mail, rcpts, content), = raw.wait()
    assert rcpts == ["demo@example.test"]
    assert ("X-Tern-Test: %s" % token).encode() in content
    srv.wait_log(r"to=<demo@example\.test> relay=127\.0\.0\.6\[127\.0\.0\.6\]:\d+ .*dsn=2\.0\.0 "
                 r"status=sent")
    assert srv.messages("demo@example.test") == []
    assert "relay=maildir" not in srv.log()


def test_catch_all_route_leaves_local_domains_alone(tern, world, tmp_path):
    """"*" stands for other domains (as the relayhost does): local mail stays
    in the Maildir tree."""
    direct = world.peer("127.0.0.5")
    t = tmp_path / "transport"
    t.write_text("* smtp:[127.0.0.5]\n")
    srv = tern(dict(world.overrides, transport_file=str(t)))
    send(srv, ["demo@example.test", "bob@remote.test"])
    srv.wait_messages("demo@example.test", 1)
    (_, rcpts, _), = direct.wait()
    assert rcpts == ["bob@remote.test"]
    srv.wait_log(r"to=<demo@example\.test> relay=maildir .*status=sent")


def test_maildir_route_for_other_domain(tern, world, tmp_path):
    """`other.test maildir`: mail for a domain that is not local, accepted
    from a trusted client, is delivered into the Maildir tree
    (maildir_root/other.test/bob) instead of being relayed."""
    mx1 = world.peer("127.0.0.2")
    t = tmp_path / "transport"
    t.write_text("other.test maildir\n")
    srv = tern(dict(world.overrides, transport_file=str(t)))
    token, msg = send(srv, ["bob@other.test", "eve@remote.test"])
    (path, data), = srv.wait_messages("bob@other.test", 1)
    assert ("X-Tern-Test: %s" % token).encode() in data
    assert str(path).startswith(str(srv.maildir_root / "other.test" / "bob"))
    srv.wait_log(r"to=<bob@other\.test> relay=maildir .*dsn=2\.0\.0 status=sent")
    (_, rcpts, _), = mx1.wait()
    assert rcpts == ["eve@remote.test"]
    assert "4.3.5" not in srv.log()
