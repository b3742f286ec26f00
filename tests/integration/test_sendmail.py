"""sendmail compatibility: the programs that pipe mail into sendmail, run
through a `sendmail` link to the binary under test (tests/integration's own
bin/ directory; nothing is installed system-wide): cron, PHP's mail(),
`sendmail -f`, an SMTP session with -bs, git send-email, and the exit
statuses a caller relies on (0 only once the mail is durable, 75 when the
server cannot be reached).
"""

import json
import os
import re
import subprocess
import time

import pytest

from queue_helpers import links, queue, queue_json, sendmail
from tern_helpers import make_message, new_token

DEMO = "demo@example.test"


def delivered_with(srv, pattern, n=1, timeout=10):
    """The delivered messages whose bytes match pattern (waits for n)."""
    rx = re.compile(pattern)
    end = time.monotonic() + timeout
    while True:
        found = [(p, d) for p, d in srv.all_delivered() if rx.search(d)]
        if len(found) >= n:
            return found
        if time.monotonic() > end:
            raise AssertionError("%d message(s) matching %r after %ds" % (len(found), pattern,
                                                                           timeout))
        time.sleep(0.05)


def head_of(data):
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[:end + 2]


def test_cron_headers_only_with_t(tern, tmp_path):
    """cron pipes its own header fields and the job's output; here a message
    that is all header (no body, no empty line), with -t: the recipients come
    from To:, and the missing Date:, Message-ID: come from Tern."""
    srv = tern()
    bindir = links(tmp_path)
    token = new_token("cron")
    msg = ("To: %s\nSubject: Cron <root@host> /usr/local/bin/job\nX-Tern-Test: %s\n"
           "Content-Type: text/plain; charset=UTF-8\n" % (DEMO, token)).encode()
    p = sendmail(bindir, srv, ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-t"], msg)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    (_, data), = srv.wait_token(token)
    head = head_of(data).decode()
    assert re.search(r"(?m)^Received: by mail\.example\.test \(Tern, from local user uid=%d "
                     r"login=\S+\)\r$" % os.getuid(), head)
    assert re.search(r"(?m)^Date: \w{3}, \d+ \w{3} \d{4} ", head)
    assert re.search(r"(?m)^Message-ID: <\d+\.[0-9A-F]{16}@mail\.example\.test>\r$", head)
    assert re.search(r'(?m)^From: "CronDaemon" <\S+@mail\.example\.test>\r$', head)
    assert "Subject: Cron <root@host> /usr/local/bin/job\r\n" in head
    # bare LF became CRLF; the fields added come after the message's own
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert head.index("Content-Type:") < head.index("From:")
    srv.wait_log(r"event=queued from=<\S+@mail\.example\.test> nrcpt=1 .* listener=local uid=%d"
                 % os.getuid())


def test_sender_with_f(tern, tmp_path):
    srv = tern()
    bindir = links(tmp_path)
    token = new_token("f")
    msg = make_message(token, sender="alerts@example.org")
    p = sendmail(bindir, srv, ["-f", "alerts@example.org", "-F", "Ignored Name", DEMO], msg)
    assert p.returncode == 0, p.stderr
    (_, data), = srv.wait_token(token)
    assert data.startswith(b"Return-Path: <alerts@example.org>\r\n")
    # the message had From:, Date:, Message-ID: of its own: nothing added
    assert data.count(b"\nFrom:") == 1 and data.count(b"\nMessage-ID:") == 1
    assert b"From: <alerts@example.org>" in data
    # -f with the null sender, -r as the old spelling; and a bare login
    # gets sendmail_origin's domain (the hostname by default)
    token = new_token("null")
    p = sendmail(bindir, srv, ["-f", "<>", DEMO], make_message(token))
    assert p.returncode == 0, p.stderr
    (_, data), = srv.wait_token(token)
    assert data.startswith(b"Return-Path: <>\r\n")
    token = new_token("r")
    p = sendmail(bindir, srv, ["-r", "bounces", DEMO], make_message(token))
    assert p.returncode == 0, p.stderr
    (_, data), = srv.wait_token(token)
    assert data.startswith(b"Return-Path: <bounces@mail.example.test>\r\n")


def test_php_mail_t_i(tern, tmp_path):
    """PHP's mail() runs `sendmail -t -i` with the message on stdin: To, Cc
    and Bcc are the recipients, Bcc goes, a line "." is text (-i)."""
    srv = tern(aliases=["ops@example.test: postmaster@example.test"])
    bindir = links(tmp_path)
    token = new_token("php")
    msg = ("To: Demo User <%s>\nCc: ops@example.test\nBcc: postmaster@example.test,\n"
           " secret@example.test\nSubject: Order confirmation\nX-Tern-Test: %s\n"
           "MIME-Version: 1.0\nContent-type: text/html; charset=iso-8859-1\n\n"
           "<p>Thank you.</p>\n.\n..two dots\nlast line\n" % (DEMO, token)).encode()
    p = sendmail(bindir, srv, ["-t", "-i"], msg)
    assert p.returncode == 67, (p.returncode, p.stderr)  # secret@ is not a mailbox
    assert "secret@example.test: 550 5.1.1" in p.stderr
    time.sleep(0.5)
    assert srv.find_token(token) == []  # nothing was queued
    msg = msg.replace(b",\n secret@example.test", b"")
    p = sendmail(bindir, srv, ["-t", "-i"], msg)
    assert p.returncode == 0, p.stderr
    got = srv.wait_token(token, n=2)
    boxes = sorted(str(path).split("/")[-3] for path, _ in got)
    assert boxes == ["demo", "postmaster"]
    for _, data in got:
        assert b"\nBcc:" not in data and b"Bcc:" not in head_of(data)
        assert b"Cc: ops@example.test\r\n" in data
        assert data.endswith(b"<p>Thank you.</p>\r\n.\r\n..two dots\r\nlast line\r\n")


def test_dot_ends_input_without_i(tern, tmp_path):
    srv = tern()
    bindir = links(tmp_path)
    token = new_token("dot")
    msg = make_message(token, body=b"before\r\n.\r\nafter the dot\r\n")
    p = sendmail(bindir, srv, [DEMO], msg)
    assert p.returncode == 0, p.stderr
    (_, data), = srv.wait_token(token)
    assert data.endswith(b"\r\n\r\nbefore\r\n") and b"after the dot" not in data


class BS:
    """A `sendmail -bs` process spoken to line by line."""

    def __init__(self, bindir, srv):
        env = dict(os.environ, TERN_CONFIG=str(srv.conf),
                   ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
        self.p = subprocess.Popen([str(bindir / "sendmail"), "-bs"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def reply(self):
        lines = []
        while True:
            line = self.p.stdout.readline().decode()
            assert line.endswith("\r\n"), "reply line %r" % line
            lines.append(line[:-2])
            if line[3] == " ":
                return int(line[:3]), lines

    def cmd(self, text):
        self.p.stdin.write(text.encode() + b"\r\n")
        self.p.stdin.flush()
        return self.reply()

    def close(self):
        self.p.stdin.close()
        rc = self.p.wait(10)
        err = self.p.stderr.read().decode()
        assert "Sanitizer" not in err and "runtime error" not in err, err
        return rc


def test_bs_smtp_session(tern, tmp_path):
    srv = tern()
    bindir = links(tmp_path)
    s = BS(bindir, srv)
    code, lines = s.reply()
    assert code == 220 and "mail.example.test ESMTP" in lines[0]
    code, lines = s.cmd("EHLO client.example")
    assert code == 250
    assert {"PIPELINING", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES"} <= \
        {l[4:].split()[0] for l in lines[1:]}
    assert s.cmd("RCPT TO:<%s>" % DEMO)[0] == 503
    assert s.cmd("MAIL FROM:<app@example.org> BODY=8BITMIME RET=HDRS ENVID=abc+2Bdef")[0] == 250
    assert s.cmd("MAIL FROM:<again@example.org>")[0] == 503
    code, lines = s.cmd("RCPT TO:<nobody@example.test>")
    assert code == 550 and lines[0].startswith("550 5.1.1 ")
    assert s.cmd("RCPT TO:<%s> NOTIFY=SUCCESS,FAILURE" % DEMO) == (250, ["250 2.1.5 Ok"])
    assert s.cmd("DATA")[0] == 354
    token = new_token("bs")
    body = make_message(token, body=b"..leading dot\r\nplain\r\n")
    for line in body.split(b"\r\n")[:-1]:
        s.p.stdin.write(line + b"\r\n")
    code, lines = s.cmd(".")
    assert code == 250 and re.match(r"250 2\.0\.0 Ok: queued as [0-9A-F]{16}$", lines[0])
    qid = lines[0].split()[-1]
    (_, data), = srv.wait_token(token)
    assert data.startswith(b"Return-Path: <app@example.org>\r\n")
    assert data.endswith(b"\r\n\r\n.leading dot\r\nplain\r\n")
    assert b"(Tern, from local user uid=%d" % os.getuid() in data
    # pipelined: a transaction and RSET in one write
    s.p.stdin.write(b"MAIL FROM:<x@example.org>\r\nRCPT TO:<%s>\r\nRSET\r\nNOOP\r\n"
                    % DEMO.encode())
    s.p.stdin.flush()
    assert [s.reply()[0] for _ in range(4)] == [250, 250, 250, 250]
    assert s.cmd("DATA")[0] == 503
    assert s.cmd("VRFY demo")[0] == 252
    assert s.cmd("STARTTLS")[0] == 502
    assert s.cmd("QUIT")[0] == 221
    assert s.close() == 0
    srv.wait_log(r"qid=%s event=queued from=<app@example\.org> nrcpt=1 .*listener=local" % qid)


def test_git_send_email(tern, tmp_path):
    """git send-email with sendemail.sendmailcmd pointing at our sendmail
    link delivers a patch to a local Maildir."""
    srv = tern()
    bindir = links(tmp_path)
    repo = tmp_path / "repo"
    repo.mkdir()
    env = dict(os.environ, GIT_AUTHOR_NAME="Dev Eloper", GIT_AUTHOR_EMAIL="dev@example.org",
               GIT_COMMITTER_NAME="Dev Eloper", GIT_COMMITTER_EMAIL="dev@example.org",
               HOME=str(tmp_path), TERN_CONFIG=str(srv.conf))

    def git(*args):
        p = subprocess.run(["git", "-C", str(repo)] + list(args), env=env, capture_output=True,
                           timeout=60)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p.stdout.decode()

    git("init", "-q")
    (repo / "hello.c").write_text("int main(void) { return 0; }\n")
    git("add", "hello.c")
    git("commit", "-q", "-m", "hello: a first program")
    (repo / "hello.c").write_text("int main(void) { return 42; }\n")
    git("commit", "-q", "-a", "-m", "hello: return the answer")
    git("config", "sendemail.sendmailcmd", str(bindir / "sendmail"))
    out = git("send-email", "--to=" + DEMO, "--from=Dev Eloper <dev@example.org>",
              "--confirm=never", "--quiet", "--no-chain-reply-to", "-1")
    assert out == "Sent [PATCH] hello: return the answer\n"
    (_, data), = delivered_with(srv, rb"Subject: \[PATCH\] hello: return the answer")
    # the envelope sender is the local user's (git passes no -f by default)
    assert re.match(rb"Return-Path: <[^@>]+@mail\.example\.test>\r\n", data)
    assert b"-int main(void) { return 0; }\r\n+int main(void) { return 42; }\r\n" in data
    assert b"Received: by mail.example.test (Tern, from local user" in data
    # the --sendmail-cmd option works as well, and --envelope-sender is -f
    (repo / "README").write_text("hello\n")
    git("add", "README")
    git("commit", "-q", "-m", "readme: say hello")
    git("send-email", "--sendmail-cmd=" + str(bindir / "sendmail"), "--to=" + DEMO,
        "--from=dev@example.org", "--envelope-sender=dev@example.org", "--confirm=never",
        "--quiet", "-1")
    (_, data), = delivered_with(srv, rb"Subject: \[PATCH\] readme: say hello")
    assert data.startswith(b"Return-Path: <dev@example.org>\r\n")


def test_exit_statuses(tern, tmp_path):
    srv = tern({"message_size_limit": "4K"})
    bindir = links(tmp_path)
    token = new_token("x")
    # an unknown local user: 67; no recipient: 64; with -t and none: 65
    p = sendmail(bindir, srv, ["nobody@example.test"], make_message(token))
    assert p.returncode == 67 and "550 5.1.1" in p.stderr
    p = sendmail(bindir, srv, [], make_message(token))
    assert p.returncode == 64 and "no recipients" in p.stderr
    p = sendmail(bindir, srv, ["-t"], b"Subject: none\n\nbody\n")
    assert p.returncode == 65
    # too big, a line too long: 65
    p = sendmail(bindir, srv, [DEMO], make_message(token, body=b"x" * 80 + b"\r\n") * 60)
    assert p.returncode == 65 and "552 5.3.4" in p.stderr
    p = sendmail(bindir, srv, [DEMO], make_message(token, body=b"y" * 1200 + b"\r\n"))
    assert p.returncode == 65 and "500 5.5.2" in p.stderr
    # unknown options are ignored with a warning; -bv is refused (64)
    token = new_token("warn")
    p = sendmail(bindir, srv, ["-Z", "-oQ/var/spool", DEMO], make_message(token))
    assert p.returncode == 0
    assert "sendmail: warning: option -Z ignored" in p.stderr
    srv.wait_token(token)
    p = sendmail(bindir, srv, ["-bv", DEMO])
    assert p.returncode == 64
    # newaliases has nothing to do
    p = sendmail(bindir, srv, [], name="newaliases")
    assert p.returncode == 0 and "nothing to do" in p.stderr
    # -q flushes (as anyone may), -v says so
    p = sendmail(bindir, srv, ["-q", "-v"])
    assert p.returncode == 0 and "retried now" in p.stderr
    # the server not running: 75, and nothing was acknowledged
    srv.stop_clean()
    p = sendmail(bindir, srv, [DEMO], make_message(new_token("down")))
    assert p.returncode == 75 and "cannot connect" in p.stderr
    p = sendmail(bindir, srv, [], name="mailq")
    assert p.returncode == 75


def test_local_submission_is_queued_as_local(tern, tmp_path):
    """While the local domain is paused, the queued message shows its
    envelope: listener "local", client "local", 8BITMIME found by itself,
    DSN parameters from -N, -R and -V."""
    srv = tern()
    bindir = links(tmp_path)
    queue(srv, "pause", "example.test")
    token = new_token("env")
    msg = make_message(token, body="caf\u00e9 \u00e0 8 bits\r\n".encode())
    p = sendmail(bindir, srv, ["-v", "-N", "success,delay", "-R", "hdrs", "-V", "run 7", DEMO],
                 msg)
    assert p.returncode == 0, p.stderr
    qid = re.search(r"queued as ([0-9A-F]{16})", p.stderr).group(1)
    m = queue_json(srv, "show", qid)
    assert m["listener"] == "local" and m["client"] == "local"
    assert m["body"] == "8bitmime" and m["ret"] == "hdrs" and m["envid"] == "run+207"
    assert m["rcpts"][0]["notify"] == ["success", "delay"]
    assert m["rcpts"][0]["state"] == "pending"
    queue(srv, "resume", "example.test")
    srv.wait_token(token)
