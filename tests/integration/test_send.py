"""`tern send`: the scripting SMTP client, against a real Tern.

Messages go through the submission port (STARTTLS and AUTH as the demo user),
the submissions port (implicit TLS) and the mx port (plain); what arrives in
the Maildir is parsed with Python's email package: the UTF-8 subject decodes,
the attachments (with non-ASCII file names) come back byte for byte, the text
keeps its lines (a line starting with a dot included). Refusals give the
server's reply and the documented exit status; a peer that answers 451 is a
small scripted server on loopback.
"""

import email
import email.policy
import os
import pty
import random
import re
import select
import socket
import subprocess
import threading
import time

import pytest

from conftest import tern_bin
from tern_helpers import Delivered, free_ports

USER = "demo@example.test"
PASSWORD = "tern-demo"


def run_send(args, stdin=None, timeout=60, **kw):
    return subprocess.run([str(tern_bin()), "send"] + args, input=stdin, capture_output=True,
                          timeout=timeout, **kw)


def pwfile(tmp_path, password=PASSWORD):
    p = tmp_path / "password"
    p.write_text(password + "\n")
    p.chmod(0o600)
    return p


def parse(data):
    """The delivered file as an email message (Tern's trace fields first)."""
    return email.message_from_bytes(data, policy=email.policy.default)


def submission_args(srv, tmp_path):
    return ["--server", "127.0.0.1", "--port", str(srv.submission_port), "--insecure",
            "--user", USER, "--password-file", str(pwfile(tmp_path))]


def test_submission_with_attachments(tern, tmp_path):
    srv = tern()
    rnd = random.Random(7)
    blob = bytes(rnd.getrandbits(8) for _ in range(300 * 1024))
    att1 = tmp_path / "Bericht – März 2026.pdf"
    att1.write_bytes(blob)
    att2 = tmp_path / "notes.txt"
    att2.write_bytes(b"line one\r\nline two without end")
    body = ("Hello,\n.this line starts with a dot\n..and this one with two\n.\n"
            "Grüße aus Köln ✓\n" + "x" * 1500 + "\nbye\n")
    (tmp_path / "body").write_text(body)
    subject = "Grüße aus Köln ✓ — a subject long enough to be folded over more than one line"

    r = run_send(submission_args(srv, tmp_path) + [
        "--from", "Demo User <demo@example.test>", "--to", "demo@example.test",
        "--cc", "Post Master <postmaster@example.test>", "--subject", subject,
        "--body-file", str(tmp_path / "body"), "--attach", str(att1), "--attach", str(att2),
        "--header", "X-Tern-Test: send-1", "--header", "Reply-To: other@example.org"])
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    m = re.match(r'^message_id=(<[^>]+>) recipients=2 reply="250 2\.0\.0 Ok: queued as '
                 r'([0-9A-F]+)"\n$', out)
    assert m, out
    msgid, qid = m.group(1), m.group(2)
    assert r.stderr == b""

    for box in ("demo@example.test", "postmaster@example.test"):
        (path, data), = srv.wait_messages(box, 1)
        d = Delivered(data)
        assert d.error is None, d.error
        assert d.queue_id == qid
        assert d.with_proto == "ESMTPSA"  # TLS and AUTH
        assert d.return_path == "<demo@example.test>"
        for line in data.split(b"\r\n"):
            assert len(line) <= 998
        msg = parse(data)
        assert msg["Subject"] == subject
        assert msg["Message-ID"] == msgid
        assert msg["MIME-Version"] == "1.0"
        assert msg["X-Tern-Test"] == "send-1"
        assert msg["Reply-To"] == "other@example.org"
        assert msg["From"].addresses[0].display_name == "Demo User"
        assert msg["From"].addresses[0].addr_spec == "demo@example.test"
        assert msg["Cc"].addresses[0].display_name == "Post Master"
        assert [a.addr_spec for a in msg["To"].addresses] == ["demo@example.test"]
        assert msg["Date"].datetime is not None
        assert msg.get_content_type() == "multipart/mixed"
        text = msg.get_body(("plain",))
        assert text.get_content() == body.replace("\n", "\r\n")  # CRLF on the wire
        atts = list(msg.iter_attachments())
        assert [a.get_filename() for a in atts] == [att1.name, "notes.txt"]
        assert atts[0].get_content_type() == "application/pdf"
        assert atts[1].get_content_type() == "text/plain"
        assert atts[0].get_payload(decode=True) == blob
        assert atts[1].get_payload(decode=True) == att2.read_bytes()
        assert atts[0]["Content-Transfer-Encoding"] == "base64"
    log = srv.log()
    assert re.search(r"event=auth_ok client=127\.0\.0\.1 mech=PLAIN user=demo@example\.test", log)
    assert re.search(r"qid=%s event=queued from=<demo@example.test> nrcpt=2" % qid, log)


def test_implicit_tls_and_stdin(tern, tmp_path):
    """--tls implicit on the submissions port; the password on stdin, then the text."""
    srv = tern()
    r = run_send(["--server", "127.0.0.1", "--port", str(srv.submissions_port), "--tls",
                  "implicit", "--insecure", "--user", USER, "--password-stdin",
                  "--to", "demo@example.test", "--subject", "plain ascii", "--quiet"],
                 stdin=(PASSWORD + "\nfirst line\nsecond line\n").encode())
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"" and r.stderr == b""
    (path, data), = srv.wait_messages("demo@example.test", 1)
    msg = parse(data)
    assert msg["Subject"] == "plain ascii"
    assert msg["From"].addresses[0].addr_spec == USER  # the login is the default sender
    assert msg.get_content_type() == "text/plain"
    assert msg["Content-Transfer-Encoding"] == "7bit"
    assert msg.get_content() == "first line\r\nsecond line\r\n"
    assert b"tern-demo" not in data


def test_mx_plain_refused_recipient(tern, tmp_path):
    srv = tern()
    (tmp_path / "body").write_text("hi\n")
    r = run_send(["--server", "127.0.0.1", "--port", str(srv.mx_port), "--tls", "none",
                  "--from", "alice@example.org", "--to", "nobody@example.test",
                  "--to", "demo@example.test", "--subject", "ünïcödé",
                  "--body-file", str(tmp_path / "body")])
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert re.search(r"^tern send: RCPT TO:<nobody@example\.test> refused: 550 5\.1\.1 \S", err,
                     re.M), err
    assert "recipients=1" in r.stdout.decode()
    (path, data), = srv.wait_messages("demo@example.test", 1)
    d = Delivered(data)
    assert d.with_proto == "ESMTP"
    assert parse(data)["Subject"] == "ünïcödé"

    # every recipient refused: nothing sent, status 1, the reply in the message
    r = run_send(["--server", "127.0.0.1", "--port", str(srv.mx_port), "--tls", "none",
                  "--from", "alice@example.org", "--to", "nobody@example.test",
                  "--body-file", str(tmp_path / "body")])
    err = r.stderr.decode()
    assert r.returncode == 1
    assert "RCPT TO:<nobody@example.test> refused: 550 5.1.1" in err
    assert "no recipient was accepted: nothing sent" in err
    assert r.stdout == b""

    # relaying refused on mx: 554 5.7.1
    r = run_send(["--server", "127.0.0.1", "--port", str(srv.mx_port), "--tls", "none",
                  "--from", "alice@example.org", "--to", "someone@elsewhere.example",
                  "--body-file", str(tmp_path / "body")])
    assert r.returncode == 1
    assert re.search(r"RCPT TO:<someone@elsewhere\.example> refused: 554 5\.7\.1",
                     r.stderr.decode()), r.stderr.decode()
    time.sleep(0.3)
    assert len(srv.messages("demo@example.test")) == 1


def test_auth_failures(tern, tmp_path):
    srv = tern()
    args = ["--server", "127.0.0.1", "--port", str(srv.submission_port), "--insecure",
            "--user", USER, "--password-file", str(pwfile(tmp_path, "wrong")),
            "--to", "demo@example.test", "--body-file", "/dev/null"]
    r = run_send(args)
    assert r.returncode == 1
    assert re.search(r"^tern send: AUTH PLAIN refused: 535 5\.7\.8 ", r.stderr.decode(), re.M), \
        r.stderr.decode()

    # no TLS: the submission port offers no AUTH before it
    r = run_send(["--server", "127.0.0.1", "--port", str(srv.submission_port), "--tls", "none",
                  "--user", USER, "--password-file", str(pwfile(tmp_path)),
                  "--to", "demo@example.test", "--body-file", "/dev/null"])
    assert r.returncode == 1
    assert "offers neither AUTH PLAIN nor AUTH LOGIN (no AUTH at all: it may want TLS first)" \
        in r.stderr.decode()
    assert srv.messages("demo@example.test") == []


def test_certificate_verification(tern, tmp_path):
    srv = tern({"hostname": "localhost"})
    cert = srv.dir / "tls" / "cert.pem"
    base = ["--port", str(srv.submission_port), "--user", USER, "--password-file",
            str(pwfile(tmp_path)), "--to", "demo@example.test", "--body-file", "/dev/null",
            "--quiet"]
    # a self-signed certificate is not trusted by default
    r = run_send(["--server", "127.0.0.1"] + base)
    assert r.returncode == 1
    assert "certificate verification failed: self-signed certificate" in r.stderr.decode(), \
        r.stderr.decode()
    # trusted, but not for this address
    r = run_send(["--server", "127.0.0.1", "--ca-file", str(cert)] + base)
    assert r.returncode == 1
    assert "certificate verification failed" in r.stderr.decode(), r.stderr.decode()
    # trusted and for this name
    r = run_send(["--server", "localhost", "--ca-file", str(cert)] + base)
    assert r.returncode == 0, r.stderr.decode()
    srv.wait_messages("demo@example.test", 1)


class ScriptedSMTP:
    """A one-connection SMTP server on loopback that answers each command
    from a script: {verb: reply}; the rest gets 250."""

    def __init__(self, replies):
        self.replies = replies
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.commands = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        conn, _ = self.sock.accept()
        conn.settimeout(10)
        f = conn.makefile("rb")
        conn.sendall(b"220 scripted ESMTP\r\n")
        data = False
        while True:
            line = f.readline()
            if not line:
                break
            if data:
                if line == b".\r\n":
                    data = False
                    conn.sendall(self.replies.get("DOT", b"250 2.0.0 ok\r\n"))
                continue
            cmd = line.decode(errors="replace").strip()
            self.commands.append(cmd)
            verb = cmd.split(" ")[0].split(":")[0].upper()
            if verb == "EHLO":
                conn.sendall(b"250-scripted\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 2.0.0 bye\r\n")
                break
            elif verb == "DATA" and verb not in self.replies:
                conn.sendall(b"354 go on\r\n")
                data = True
            else:
                conn.sendall(self.replies.get(verb, b"250 2.0.0 ok\r\n"))
        conn.close()
        self.sock.close()


def test_temporary_failures(tmp_path):
    """4xx replies and an unreachable server exit 75 (EX_TEMPFAIL)."""
    peer = ScriptedSMTP({"RCPT": b"451-4.3.0 mailbox busy,\r\n451 4.3.0 try again later\r\n"})
    r = run_send(["--server", "127.0.0.1", "--port", str(peer.port), "--tls", "none",
                  "--from", "a@example.org", "--to", "b@example.org", "--body-file", "/dev/null"])
    assert r.returncode == 75, r.stderr.decode()
    assert ("tern send: RCPT TO:<b@example.org> refused: 451 4.3.0 mailbox busy, try again later"
            in r.stderr.decode()), r.stderr.decode()
    peer.thread.join(10)
    assert peer.commands[0].startswith("EHLO ")
    assert peer.commands[1] == "MAIL FROM:<a@example.org> SIZE=%s" % peer.commands[1].split("=")[-1]
    assert peer.commands[-1] == "QUIT"
    assert not any(c == "DATA" for c in peer.commands)

    # the final dot refused for good
    peer = ScriptedSMTP({"DOT": b"554 5.6.0 content rejected\r\n"})
    r = run_send(["--server", "127.0.0.1", "--port", str(peer.port), "--tls", "none",
                  "--from", "a@example.org", "--to", "b@example.org", "--body-file", "/dev/null"])
    assert r.returncode == 1
    assert "the message was refused: 554 5.6.0 content rejected" in r.stderr.decode()

    # STARTTLS required (the default) but not offered
    peer = ScriptedSMTP({})
    r = run_send(["--server", "127.0.0.1", "--port", str(peer.port),
                  "--from", "a@example.org", "--to", "b@example.org", "--body-file", "/dev/null"])
    assert r.returncode == 1
    assert "does not offer STARTTLS (--tls none sends without TLS)" in r.stderr.decode()

    # nobody listening
    port, = free_ports(1)
    r = run_send(["--server", "127.0.0.1", "--port", str(port), "--tls", "none",
                  "--to", "b@example.org", "--body-file", "/dev/null"])
    assert r.returncode == 75
    assert "cannot connect to 127.0.0.1 port %d: Connection refused" % port in r.stderr.decode()

    # SIZE: a message larger than the peer takes is not sent
    big = tmp_path / "big"
    big.write_bytes(b"y" * 1200000)
    peer = ScriptedSMTP({})
    r = run_send(["--server", "127.0.0.1", "--port", str(peer.port), "--tls", "none",
                  "--from", "a@example.org", "--to", "b@example.org", "--attach", str(big),
                  "--body-file", "/dev/null"])
    assert r.returncode == 1
    assert "is larger than 127.0.0.1 accepts (SIZE 1000000)" in r.stderr.decode()


def test_usage_errors(tmp_path):
    for args, msg in [
        ([], "no recipient"),
        (["--to", "not-an-address"], "is not an address"),
        (["--to", "a@b.example", "--tls", "sometimes"], "is not starttls, implicit or none"),
        (["--to", "a@b.example", "--user", "u"], "--user needs --password-file"),
        (["--to", "a@b.example", "--header", "Content-Type: text/html", "--body-file",
          "/dev/null"], "Tern writes the MIME fields itself"),
        (["--to", "a@b.example", "--header", "no colon", "--body-file", "/dev/null"],
         "write \"Name: value\""),
        (["--to", "a@b.example", "--port", "70000"], "is not a port number"),
    ]:
        r = run_send(args, stdin=b"")
        assert r.returncode == 2, (args, r.stderr)
        assert msg in r.stderr.decode(), (args, r.stderr)
    r = run_send(["--to", "a@b.example", "--attach", str(tmp_path / "missing")], stdin=b"")
    assert r.returncode == 1
    assert "cannot read %s: No such file or directory" % (tmp_path / "missing") in r.stderr.decode()
    r = run_send(["--help"])
    assert r.returncode == 0 and b"usage: tern send" in r.stdout


def run_with_pty(args, timeout=60):
    """Run tern send with stderr on a pseudo-terminal; returns (status, what the terminal got)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([str(tern_bin()), "send"] + args, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    out = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif p.poll() is not None:
            break
    p.wait(timeout)
    os.close(master)
    return p.returncode, out.decode(errors="replace")


def test_progress_bar(tern, tmp_path):
    srv = tern()
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2 * 1024 * 1024))
    args = ["--server", "127.0.0.1", "--port", str(srv.mx_port), "--tls", "none",
            "--from", "alice@example.org", "--to", "demo@example.test", "--attach", str(big),
            "--body-file", "/dev/null"]
    rc, term = run_with_pty(args)
    assert rc == 0, term
    assert "\rtern send: [" in term and "100% 2.7 of 2.7 MiB" in term, repr(term[-300:])
    assert term.count("\r") >= 3
    rc, term = run_with_pty(args + ["--quiet"])
    assert rc == 0 and term == "", repr(term)
    # not a terminal: no bar
    r = run_send(args)
    assert r.returncode == 0 and r.stderr == b""
    msgs = srv.wait_messages("demo@example.test", 3)
    for _, data in msgs:
        (a,) = list(parse(data).iter_attachments())
        assert a.get_payload(decode=True) == big.read_bytes()


def test_long_password_auth_plain_after_challenge(tern, tmp_path):
    """An AUTH PLAIN initial response that would pass 512 octets goes after
    the server's empty 334 challenge (RFC 4954 §4)."""
    srv = tern({"log_level": "debug"}, start=False)
    password = "p" * 400  # AUTH PLAIN with it would be a line of 571 octets
    p = subprocess.run([str(tern_bin()), "user", "add", "-f", str(srv.users_file),
                        "--password-stdin", "long@example.test"],
                       input=(password + "\n").encode(), capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    srv.start()
    r = run_send(["--server", "127.0.0.1", "--port", str(srv.submission_port), "--insecure",
                  "--user", "long@example.test", "--password-file",
                  str(pwfile(tmp_path, password)), "--to", "demo@example.test",
                  "--body-file", "/dev/null", "--quiet"])
    assert r.returncode == 0, r.stderr.decode()
    srv.wait_messages("demo@example.test", 1)
    log = srv.log()
    assert "event=auth_ok client=127.0.0.1 mech=PLAIN user=long@example.test" in log
    assert password not in log
