"""Secure submission: STARTTLS, implicit TLS, SMTP AUTH and the MSA role.

Real clients against the real server: smtplib (starttls + login, SMTP_SSL),
swaks (--tls, --tlsc), msmtp configured as a user's mail client, openssl
s_client, and raw sockets where the exact bytes matter (STARTTLS injection,
state reset, SASL edge cases). The demo user of the embedded default is
demo@example.test with the password tern-demo.
"""

import base64
import hashlib
import hmac
import os
import re
import signal
import smtplib
import ssl
import subprocess
import time

import pytest

from conftest import tern_bin
from tern_helpers import (HOSTNAME, SMTPClient, client_tls_context, dot_stuff, expect,
                          make_message, new_token)

USER = "demo@example.test"
PASSWORD = "tern-demo"


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def plain(user, password):
    return b64("\0%s\0%s" % (user, password))


def tls_session(srv, port=None, implicit=False):
    """A session inside TLS with EHLO sent: STARTTLS on submission, or implicit TLS."""
    if implicit:
        c = SMTPClient(srv.submissions_port, tls=True)
    else:
        c = SMTPClient(port or srv.submission_port)
        c.ehlo()
        c.starttls()
    expect(c.greeting, 220) if implicit else None
    c.ehlo()
    return c


def authed(srv, implicit=False, user=USER, password=PASSWORD):
    c = tls_session(srv, implicit=implicit)
    expect(c.cmd("AUTH PLAIN " + plain(user, password), timeout=10), 235, "2.7.0")
    return c


def ehlo_keywords(reply):
    return [l[4:].split(" ")[0].upper() for l in reply.lines[1:]]


def ehlo_auth_mechs(reply):
    for l in reply.lines[1:]:
        if l[4:].upper().startswith("AUTH "):
            return l[9:].split()
    return []


def tern_cli(*args, stdin=None, cwd=None):
    return subprocess.run([str(tern_bin())] + list(args), input=stdin, capture_output=True,
                          cwd=cwd, timeout=60)


# -- TLS -------------------------------------------------------------------------

def test_starttls_offered_and_state_reset(tern):
    srv = tern()
    for port in (srv.mx_port, srv.submission_port):
        c = SMTPClient(port)
        e = c.ehlo()
        assert "STARTTLS" in ehlo_keywords(e)
        assert "AUTH" not in ehlo_keywords(e)  # never before TLS
        expect(c.cmd("STARTTLS now"), 501, "5.5.4")
        c.starttls()
        # RFC 3207 4.2: the EHLO state is forgotten
        expect(c.cmd("MAIL FROM:<a@example.org>"), 503, "5.5.1")
        e = c.ehlo()
        assert "STARTTLS" not in ehlo_keywords(e)
        expect(c.cmd("STARTTLS"), 554, "5.5.1")
        if port == srv.mx_port:
            assert "AUTH" not in ehlo_keywords(e)  # no AUTH on mx
        else:
            assert ehlo_auth_mechs(e)[:2] == ["PLAIN", "LOGIN"]
        c.quit()


def test_starttls_injection_discarded(tern):
    """CVE-2011-0411: commands pipelined after STARTTLS in plaintext must not be
    executed inside TLS."""
    srv = tern()
    c = SMTPClient(srv.mx_port)
    c.ehlo()
    c.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@example.org>\r\n")
    expect(c.reply(), 220)
    assert c.buf == b"", "plaintext reply after 220: %r" % c.buf
    c.sock = client_tls_context().wrap_socket(c.sock, server_hostname=HOSTNAME)
    unsolicited = c.read_rest(1.0)
    assert unsolicited == [], unsolicited
    expect(c.cmd("NOOP"), 250)
    assert c.read_rest(0.5) == []
    expect(c.cmd("MAIL FROM:<a@example.org>"), 503)  # no EHLO inside TLS yet
    c.quit()
    srv.wait_log(r"event=starttls client=127\.0\.0\.1 discarded=\d+ note=plaintext_after_starttls")


def test_tls_versions(tern):
    """TLS 1.2 minimum: a client that can do at most TLS 1.1 is refused; 1.2 and
    1.3 work, on STARTTLS and implicit TLS alike."""
    srv = tern()
    old = client_tls_context(maximum=ssl.TLSVersion.TLSv1_1)
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        SMTPClient(srv.submissions_port, tls=True, context=old)
    c = SMTPClient(srv.mx_port)
    c.ehlo()
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        c.starttls(old)
    c.close()
    srv.wait_log(r"event=tls_failed client=127\.0\.0\.1 reason=")
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_tls_context(minimum=version, maximum=version)
        c = SMTPClient(srv.submissions_port, tls=True, context=ctx)
        expect(c.greeting, 220)
        assert c.sock.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                    ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
        e = c.ehlo()
        assert "STARTTLS" not in ehlo_keywords(e)  # not inside implicit TLS
        c.quit()


def test_openssl_s_client_sees_certificate(tern):
    srv = tern()
    p = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect",
                        "127.0.0.1:%d" % srv.submission_port, "-servername", HOSTNAME],
                       input=b"QUIT\r\n", capture_output=True, timeout=30)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert re.search(r"subject=\s*CN\s*=\s*mail\.example\.test", out), out
    assert re.search(r"New, TLSv1\.3, Cipher is TLS_", out), out
    # the self-signed pair the embedded default made on first start
    key = srv.dir / "tls" / "key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    x = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                        str(srv.dir / "tls" / "cert.pem")], capture_output=True, timeout=30)
    assert b"DNS:mail.example.test" in x.stdout
    srv.wait_log(r"event=tls_selfsigned hostname=mail\.example\.test")


def test_certificate_reload_on_sighup(tern):
    srv = tern()
    open_session = authed(srv)  # opened with the first certificate
    first = open_session.sock.getpeercert(binary_form=True)
    cert, key = srv.dir / "tls" / "cert.pem", srv.dir / "tls" / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=reloaded.example.test", "-days", "2", "-keyout", str(key) + ".new",
                    "-out", str(cert) + ".new"], check=True, capture_output=True, timeout=60)
    os.replace(str(key) + ".new", key)
    os.replace(str(cert) + ".new", cert)
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"event=tls_loaded .*reloaded\.example\.test")
    # the session opened before the reload goes on with its handshake
    token = new_token("reload")
    msg = make_message(token, sender=USER, rcpt=USER)
    expect(open_session.send_message(USER, [USER], msg), 250)
    open_session.quit()
    srv.wait_token(token)
    # new handshakes use the new certificate
    c = SMTPClient(srv.submissions_port, tls=True)
    second = c.sock.getpeercert(binary_form=True)
    c.quit()
    assert second != first
    pem = cert.read_text()
    assert second == ssl.PEM_cert_to_DER_cert(pem)
    # a broken certificate on reload keeps the working one
    cert.write_text("garbage\n")
    srv.proc.send_signal(signal.SIGHUP)
    srv.wait_log(r"event=reload_failed what=tls")
    c = SMTPClient(srv.submissions_port, tls=True)
    assert c.sock.getpeercert(binary_form=True) == second
    c.quit()


# -- AUTH ------------------------------------------------------------------------

def test_smtplib_starttls_login_and_relay(tern):
    """A real mail client setup: 587 + STARTTLS + user + password; sends to a
    local user and to another domain (queued for relay)."""
    srv = tern()
    token = new_token("smtplib")
    msg = make_message(token, sender=USER, rcpt="friend@remote.example")
    with smtplib.SMTP("127.0.0.1", srv.submission_port, timeout=10) as s:
        s.starttls(context=client_tls_context())
        s.login(USER, PASSWORD)
        refused = s.sendmail(USER, ["friend@remote.example", "postmaster@example.test"], msg)
        assert refused == {}
    srv.wait_token(token)
    srv.wait_log(r"event=auth_ok client=127\.0\.0\.1 mech=\S+ user=demo@example\.test")
    srv.wait_log(r"to=<friend@remote\.example>.*status=deferred")
    found = srv.find_token(token)
    head = found[0][1].split(b"\r\n\r\n", 1)[0]
    assert re.search(rb"with ESMTPSA id [0-9A-F]{16}\r\n\t\(using TLSv1\.[23] with cipher \S+",
                     head), head[:400]
    assert b"tern-demo" not in srv.log().encode()


def test_smtp_ssl_implicit_tls(tern):
    srv = tern()
    token = new_token("ssl")
    msg = make_message(token, sender=USER, rcpt=USER)
    with smtplib.SMTP_SSL("127.0.0.1", srv.submissions_port, context=client_tls_context(),
                          timeout=10) as s:
        s.login(USER, PASSWORD)
        assert s.sendmail(USER, [USER], msg) == {}
    srv.wait_token(token)


@pytest.mark.parametrize("mode,mech", [("--tls", "PLAIN"), ("--tls", "LOGIN"),
                                       ("--tlsc", "PLAIN"), ("--tlsc", "LOGIN")])
def test_swaks(tern, mode, mech):
    srv = tern()
    token = new_token("swaks")
    port = srv.submission_port if mode == "--tls" else srv.submissions_port
    p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port, mode, "--auth", mech,
                        "--auth-user", USER, "--auth-password", PASSWORD, "--from", USER,
                        "--to", USER, "--header", "X-Tern-Test: " + token,
                        "--ehlo", "client.example.org", "--timeout", "20"],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    srv.wait_token(token)
    srv.wait_log(r"event=auth_ok client=127\.0\.0\.1 mech=%s user=demo@example\.test" % mech)


def test_msmtp_as_a_user_client(tern, tmp_path):
    srv = tern()
    token = new_token("msmtp")
    rc = tmp_path / "msmtprc"
    rc.write_text("defaults\nlogfile %s\n\naccount tern\nhost 127.0.0.1\nport %d\n"
                  "from %s\nauth on\nuser %s\npassword %s\ntls on\ntls_starttls on\n"
                  "tls_certcheck off\n\naccount default : tern\n"
                  % (tmp_path / "msmtp.log", srv.submission_port, USER, USER, PASSWORD))
    rc.chmod(0o600)
    msg = ("From: Demo <%s>\r\nTo: postmaster@example.test\r\nSubject: msmtp\r\n"
           "X-Tern-Test: %s\r\n\r\nsent by msmtp\r\n" % (USER, token)).encode()
    p = subprocess.run(["msmtp", "-C", str(rc), "-t"], input=msg, capture_output=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    (path, data), = srv.wait_token(token)
    head = data.split(b"\r\n\r\n", 1)[0]
    assert re.search(rb"with ESMTPSA id ", head)
    # msmtp adds Date: and Message-ID: itself; the MSA must not add a second one
    assert len(re.findall(rb"(?m)^Date: ", head)) == 1
    assert len(re.findall(rb"(?im)^Message-ID: ", head)) == 1


def test_auth_refused_without_tls(tern):
    srv = tern()
    c = SMTPClient(srv.submission_port)
    c.ehlo()
    expect(c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)), 538, "5.7.11")
    expect(c.cmd("MAIL FROM:<%s>" % USER), 530, "5.7.0")
    c.quit()
    # the loopback exception, when an administrator turns it on
    srv2 = tern({"auth_plaintext_loopback": "yes"})
    c = SMTPClient(srv2.submission_port)
    assert "AUTH" in ehlo_keywords(c.ehlo())
    expect(c.cmd("AUTH PLAIN " + plain(USER, PASSWORD), timeout=10), 235)
    c.quit()


def test_auth_errors(tern):
    srv = tern()
    c = tls_session(srv)
    expect(c.cmd("MAIL FROM:<%s>" % USER), 530, "5.7.0")
    expect(c.cmd("AUTH PLAIN " + plain(USER, "wrong"), timeout=10), 535, "5.7.8")
    expect(c.cmd("AUTH PLAIN " + plain("nobody@example.test", "x"), timeout=10), 535, "5.7.8")
    expect(c.cmd("AUTH PLAIN !!!not-base64!!!"), 501, "5.5.2")
    expect(c.cmd("AUTH NOSUCHMECH"), 504, "5.5.4")
    expect(c.cmd("AUTH"), 501, "5.5.4")
    r = c.cmd("AUTH PLAIN")
    assert r.code == 334 and r.lines == ["334 "], r
    expect(c.cmd("*"), 501, "5.7.0")
    r = c.cmd("AUTH LOGIN")
    assert r.lines == ["334 VXNlcm5hbWU6"], r
    r = c.cmd(b64(USER))
    assert r.lines == ["334 UGFzc3dvcmQ6"], r
    expect(c.cmd(b64(PASSWORD), timeout=10), 235, "2.7.0")
    expect(c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)), 503, "5.5.1")
    c.quit()
    # AUTH inside a transaction (loopback plaintext to reach that state quickly)
    srv2 = tern({"auth_plaintext_loopback": "yes", "trusted_networks": "127.0.0.0/8"})
    c = SMTPClient(srv2.mx_port)
    c.ehlo()
    expect(c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)), 502, "5.5.1")  # no AUTH on mx
    c.quit()
    log = srv.log()
    assert log.count("event=auth_failed client=127.0.0.1") == 2
    assert "user=nobody@example.test" in log
    assert "wrong" not in log and PASSWORD not in log


def test_auth_in_transaction_refused(tern):
    srv = tern()
    c = authed(srv)
    expect(c.cmd("MAIL FROM:<%s>" % USER), 250)
    c2 = tls_session(srv)
    expect(c2.cmd("MAIL FROM:<%s>" % USER), 530)
    c2.quit()
    # after success a second AUTH is refused even inside the transaction
    expect(c.cmd("AUTH PLAIN " + plain(USER, PASSWORD)), 503, "5.5.1")
    expect(c.cmd("RSET"), 250)
    c.quit()


def test_auth_mail_parameter(tern):
    srv = tern()
    c = authed(srv)
    token = new_token("authparam")
    msg = make_message(token, sender=USER, rcpt=USER)
    expect(c.send_message(USER, [USER], msg, mail_params=" AUTH=demo+40example.test"), 250)
    expect(c.cmd("MAIL FROM:<%s> AUTH=<>" % USER), 250)
    expect(c.cmd("RSET"), 250)
    expect(c.cmd("MAIL FROM:<%s> AUTH=bad+zz" % USER), 501, "5.5.4")
    c.quit()
    srv.wait_token(token)
    # not advertised on mx: an unknown parameter there
    c = SMTPClient(srv.mx_port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<a@example.org> AUTH=<>"), 555, "5.5.4")
    c.quit()


def test_brute_force_per_connection(tern):
    """Failures get slower after auth_delay_after, then 421 and disconnect."""
    srv = tern()
    c = tls_session(srv)
    times, last = [], None
    for i in range(10):
        t = time.monotonic()
        last = c.cmd("AUTH PLAIN " + plain(USER, "wrong%d" % i), timeout=15)
        times.append(time.monotonic() - t)
        if last.code != 535:
            break
    assert last.code == 421 and last.enhanced == "4.7.0", last
    assert len(times) == 5  # auth_max_failures
    assert c.closed(3)
    assert times[0] < 1.0 and times[1] < 1.0  # auth_delay_after = 2
    assert times[2] >= 0.9 and times[3] >= 1.9  # then one second more each time
    srv.wait_log(r"event=auth_limit client=127\.0\.0\.1 failures=5")


def test_brute_force_per_client_address(tern):
    srv = tern({"auth_client_max_failures": "3", "auth_max_failures": "10"})
    c = tls_session(srv)
    expect(c.cmd("AUTH PLAIN " + plain(USER, "w1"), timeout=10), 535)
    expect(c.cmd("AUTH PLAIN " + plain(USER, "w2"), timeout=10), 535)
    c.quit()
    c = tls_session(srv)
    r = c.cmd("AUTH PLAIN " + plain(USER, "w3"), timeout=15)
    assert r.code == 421 and r.enhanced == "4.7.0", r
    assert c.closed(3)
    # the address is now blocked for the window, even with the right password
    c = tls_session(srv)
    r = c.cmd("AUTH PLAIN " + plain(USER, PASSWORD), timeout=10)
    assert r.code == 421 and r.enhanced == "4.7.0", r
    assert c.closed(3)
    srv.wait_log(r"event=auth_blocked client=127\.0\.0\.1")


def test_scram_and_cram_md5(tern):
    """SCRAM-SHA-256 and CRAM-MD5 are offered once the store holds what they need."""
    srv = tern(start=False)
    c = SMTPClient  # noqa: F841 (keeps the import list honest)
    for login, flag in (("scram@example.test", "--scram"), ("cram@example.test", "--cram")):
        p = tern_cli("user", "add", "-f", str(srv.users_file), "--password-stdin", flag, login,
                     stdin=b"s3cret-" + login.encode() + b"\n")
        assert p.returncode == 0, p.stderr.decode()
    srv.start()
    c = tls_session(srv)
    mechs = ehlo_auth_mechs(c.ehlo())
    assert "SCRAM-SHA-256" in mechs and "CRAM-MD5" in mechs, mechs
    # SCRAM-SHA-256 (RFC 5802 / 7677), client side written here
    user, password = "scram@example.test", "s3cret-scram@example.test"
    cnonce = b64(os.urandom(18))
    first_bare = "n=%s,r=%s" % (user, cnonce)
    r = c.cmd("AUTH SCRAM-SHA-256 " + b64("n,," + first_bare))
    assert r.code == 334, r
    server_first = base64.b64decode(r.lines[0][4:]).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    assert attrs["r"].startswith(cnonce)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    final_wo_proof = "c=%s,r=%s" % (b64("n,,"), attrs["r"])
    auth_message = ",".join([first_bare, server_first, final_wo_proof]).encode()
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    r = c.cmd(b64(final_wo_proof + ",p=" + b64(proof)), timeout=10)
    assert r.code == 334, r
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    want = "v=" + b64(hmac.new(server_key, auth_message, hashlib.sha256).digest())
    assert base64.b64decode(r.lines[0][4:]).decode() == want
    expect(c.cmd(""), 235, "2.7.0")
    c.quit()
    # a wrong SCRAM proof fails
    c = tls_session(srv)
    r = c.cmd("AUTH SCRAM-SHA-256 " + b64("n,," + first_bare))
    server_first = base64.b64decode(r.lines[0][4:]).decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    r = c.cmd(b64("c=%s,r=%s,p=%s" % (b64("n,,"), attrs["r"], b64(b"x" * 32))), timeout=10)
    expect(r, 535, "5.7.8")
    c.quit()
    # CRAM-MD5 through smtplib (it prefers CRAM-MD5 when offered)
    with smtplib.SMTP("127.0.0.1", srv.submission_port, timeout=10) as s:
        s.starttls(context=client_tls_context())
        s.login("cram@example.test", "s3cret-cram@example.test")
    srv.wait_log(r"event=auth_ok client=127\.0\.0\.1 mech=CRAM-MD5 user=cram@example\.test")
    srv.wait_log(r"event=auth_ok client=127\.0\.0\.1 mech=SCRAM-SHA-256 user=scram@example\.test")


def test_users_file_reloaded_on_change(tern):
    srv = tern()
    p = tern_cli("user", "add", "-f", str(srv.users_file), "--password-stdin",
                 "new@example.test", stdin=b"fresh-password\n")
    assert p.returncode == 0, p.stderr.decode()
    srv.wait_log(r"event=users_loaded file=\S+ users=2", timeout=10)
    c = authed(srv, user="new@example.test", password="fresh-password")
    c.quit()
    p = tern_cli("user", "del", "-f", str(srv.users_file), "new@example.test")
    assert p.returncode == 0, p.stderr.decode()
    end = time.monotonic() + 10
    while len(re.findall(r"event=users_loaded file=\S+ users=", srv.log())) < 3:
        assert time.monotonic() < end, "users file not reloaded after del"
        time.sleep(0.1)
    assert re.findall(r"event=users_loaded file=\S+ users=(\d+)", srv.log()) == ["1", "2", "1"]
    c = tls_session(srv)
    expect(c.cmd("AUTH PLAIN " + plain("new@example.test", "fresh-password"), timeout=10), 535)
    c.quit()


# -- the MSA ---------------------------------------------------------------------

def test_sender_must_be_owned(tern, tmp_path):
    srv = tern()
    c = authed(srv)
    expect(c.cmd("MAIL FROM:<postmaster@example.test>"), 553, "5.7.1")
    expect(c.cmd("MAIL FROM:<>"), 250)  # the null sender belongs to nobody
    expect(c.cmd("RSET"), 250)
    # the envelope is ours, the From: header is not
    token = new_token("from")
    msg = make_message(token, sender="postmaster@example.test", rcpt=USER)
    r = c.send_message(USER, [USER], msg)
    assert r.code == 553 and r.enhanced == "5.7.1" and "From:" in r.text, r
    # display names and comments are fine as long as the address is ours
    token2 = new_token("from-ok")
    msg = make_message(token2, sender=USER, rcpt=USER).replace(
        b"From: <demo@example.test>", b"From: \"Demo, User\" (home) <demo@example.test>")
    expect(c.send_message(USER, [USER], msg), 250)
    c.quit()
    srv.wait_token(token2)
    assert srv.find_token(token) == []
    # a sender_login_maps entry lets demo use postmaster@
    m = tmp_path / "senders"
    m.write_text("postmaster@example.test  demo@example.test, other@example.test\n")
    srv2 = tern({"sender_login_maps": str(m)})
    c = authed(srv2)
    token3 = new_token("mapped")
    msg = make_message(token3, sender="postmaster@example.test", rcpt=USER)
    expect(c.send_message("postmaster@example.test", [USER], msg), 250)
    c.quit()
    srv2.wait_token(token3)


def test_msa_fixups(tern):
    srv = tern()
    c = authed(srv)
    t1, t2 = new_token("bare"), new_token("complete")
    bare = ("From: %s\r\nTo: %s\r\nSubject: no date\r\nX-Tern-Test: %s\r\n\r\nbody\r\n"
            % (USER, USER, t1)).encode()
    expect(c.send_message(USER, [USER], bare), 250)
    expect(c.send_message(USER, [USER], make_message(t2, sender=USER, rcpt=USER)), 250)
    c.quit()
    (p1, d1), = srv.wait_token(t1)
    head, body = d1.split(b"\r\n\r\n", 1)
    assert body == b"body\r\n"
    assert len(re.findall(rb"(?m)^Date: ", head)) == 1
    assert len(re.findall(rb"(?m)^Message-ID: ", head)) == 1
    (p2, d2), = srv.wait_token(t2)
    head = d2.split(b"\r\n\r\n", 1)[0]
    assert re.findall(rb"(?m)^Date: .*$", head) == [b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r"]
    assert len(re.findall(rb"(?im)^Message-ID: ", head)) == 1
    srv.wait_log(r"event=msa_fixup added=date,message-id")


def test_relay_needs_auth(tern):
    srv = tern()
    # mx: no relay for an unauthenticated client
    c = SMTPClient(srv.mx_port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<a@example.org>"), 250)
    expect(c.cmd("RCPT TO:<victim@remote.example>"), 554, "5.7.1")
    c.quit()
    # submission: authenticated users may send anywhere
    c = authed(srv, implicit=True)
    expect(c.cmd("MAIL FROM:<%s>" % USER), 250)
    expect(c.cmd("RCPT TO:<victim@remote.example>"), 250)
    expect(c.cmd("RSET"), 250)
    c.quit()


def test_user_rate_limits(tern):
    srv = tern({"user_message_rate": "2", "user_recipient_rate": "3"})
    c = authed(srv)
    expect(c.cmd("MAIL FROM:<%s>" % USER), 250)
    for r in ("a@remote.example", "b@remote.example", "c@remote.example"):
        expect(c.cmd("RCPT TO:<%s>" % r), 250)
    expect(c.cmd("RCPT TO:<d@remote.example>"), 450, "4.7.1")
    expect(c.cmd("RSET"), 250)
    expect(c.cmd("MAIL FROM:<%s>" % USER), 250)
    expect(c.cmd("RSET"), 250)
    expect(c.cmd("MAIL FROM:<%s>" % USER), 450, "4.7.1")
    c.quit()


def test_mx_auth(tern):
    """mx_auth = yes: AUTH on port 25 after STARTTLS, local mail still open."""
    srv = tern({"mx_auth": "yes"})
    c = SMTPClient(srv.mx_port)
    assert "AUTH" not in ehlo_keywords(c.ehlo())
    token = new_token("mx-open")
    expect(c.send_message("a@example.org", ["postmaster@example.test"],
                          make_message(token, rcpt="postmaster@example.test")), 250)
    c.starttls()
    assert ehlo_auth_mechs(c.ehlo())[:2] == ["PLAIN", "LOGIN"]
    expect(c.cmd("MAIL FROM:<a@example.org>"), 250)
    expect(c.cmd("RCPT TO:<victim@remote.example>"), 554, "5.7.1")
    expect(c.cmd("RSET"), 250)
    expect(c.cmd("AUTH PLAIN " + plain(USER, PASSWORD), timeout=10), 235)
    expect(c.cmd("MAIL FROM:<a@example.org>"), 553, "5.7.1")
    expect(c.cmd("MAIL FROM:<%s>" % USER), 250)
    expect(c.cmd("RCPT TO:<victim@remote.example>"), 250)
    c.quit()
    srv.wait_token(token)
