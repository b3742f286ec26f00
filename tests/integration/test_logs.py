"""Event logs: log_format = json, log_target = FILE (reopened on SIGUSR1) and
log_target = syslog.

Every test starts the real server and reads what it wrote: its stderr, the
log file, or the datagrams syslog(3) sent to /dev/log. For syslog the server
runs in a private mount namespace (unshare -m, root only) whose /dev is a
small tmpfs holding the usual device nodes and a /dev/log that points at a
datagram socket the test binds: nothing outside the test sees it.
"""

import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tern_helpers import client_tls_context, make_message, new_token

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"error", "warn", "info", "debug"}


def send(srv, rcpts, token, port=None):
    """Send one message over the mx port; returns smtplib's refused dict."""
    msg = make_message(token, rcpt=rcpts[0])
    with smtplib.SMTP("127.0.0.1", port or srv.mx_port, timeout=10) as s:
        return s.sendmail("alice@example.org", rcpts, msg)


def json_lines(text):
    """Every line parsed with json.loads (a line that does not parse fails)."""
    out = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise AssertionError("not JSON: %r (%s)" % (line, e))
        assert isinstance(obj, dict), line
        out.append(obj)
    return out


def wait_file(path, pattern, timeout=10.0):
    rx = re.compile(pattern)
    end = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        for line in text.splitlines():
            if rx.search(line):
                return line
        if time.monotonic() > end:
            raise AssertionError("no line matching %r in %s within %.0fs:\n%s"
                                 % (pattern, path, timeout, text[-3000:]))
        time.sleep(0.05)


def test_json_lines(tern):
    srv = tern({"log_format": "json"})
    token = new_token("json")
    refused = send(srv, ["demo@example.test", "nobody@example.test"], token)
    assert list(refused) == ["nobody@example.test"]
    srv.wait_messages("demo@example.test", 1)
    srv.wait_log(r'"event":"removed"')
    # SIGUSR1 with the log on stderr: nothing to reopen, nothing logged, still running
    srv.proc.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    assert srv.running
    srv.stop_clean()

    lines = json_lines(srv.log())
    assert len(lines) > 10
    assert not any("reopen" in o.get("event", "") for o in lines)
    for obj in lines:
        assert list(obj)[:2] == ["ts", "level"], obj
        assert TS_RE.match(obj["ts"]), obj
        assert obj["level"] in LEVELS, obj
        assert all(isinstance(v, str) for v in obj.values()), obj
        if "qid" in obj:
            assert obj["trace"] == obj["qid"], obj
        else:
            assert "trace" not in obj, obj

    # the session of the test: connect, reject, queued, disconnect share its sid
    queued = [o for o in lines if o.get("event") == "queued"]
    assert len(queued) == 1
    q = queued[0]
    sid, qid = q["sid"], q["qid"]
    assert re.match(r"^[0-9A-F]{16}$", qid)
    assert q["trace"] == qid
    assert q["from"] == "alice@example.org"
    assert q["nrcpt"] == "1"
    assert q["client"] == "127.0.0.1"
    assert int(q["size"]) > 0

    session = [o for o in lines if o.get("sid") == sid]
    events = [o.get("event") for o in session]
    assert events[0] == "connect" and events[-1] == "disconnect", events
    assert session[0]["listener"] == "mx"
    assert session[0]["client"] == "127.0.0.1"
    assert session[0]["trusted"] == "no"
    rej = [o for o in session if o.get("event") == "reject"]
    assert len(rej) == 1
    assert rej[0]["cmd"] == "RCPT"
    assert rej[0]["to"] == "nobody@example.test"
    assert rej[0]["from"] == "alice@example.org"
    assert rej[0]["reply"].startswith("550 5.1.1 "), rej[0]
    assert session[-1]["messages"] == "1"

    # the delivery line: Postfix style with the reply as "text"
    about = [o for o in lines if o.get("trace") == qid]
    dl = [o for o in about if "status" in o]
    assert len(dl) == 1
    d = dl[0]
    assert d["to"] == "demo@example.test"
    assert d["relay"] == "maildir"
    assert d["dsn"] == "2.0.0"
    assert d["status"] == "sent"
    assert d["text"] == "delivered to maildir"
    assert d["delay"].isdigit()
    assert about[-1].get("event") == "removed"
    # every line about the message carries its trace: queued, delivery, removed
    # (and whatever else is logged about it, such as its DMARC result)
    events = [o.get("event") for o in about]
    assert events.index("queued") < events.index(None) < events.index("removed"), events
    assert events[-1] == "removed", events


def test_json_debug_lines_parse(tern):
    """At debug level too (state changes, commands, replies with quotes and
    '<...>' in them), every line is one JSON object."""
    srv = tern({"log_format": "json", "log_level": "debug"})
    send(srv, ["demo@example.test"], new_token("dbg"))
    srv.wait_messages("demo@example.test", 1)
    srv.wait_log(r'"event":"removed"')
    srv.stop_clean()
    lines = json_lines(srv.log())
    replies = [o for o in lines if o.get("event") == "reply"]
    assert any(r["reply"].startswith("250 2.0.0 Ok: queued as ") for r in replies), replies
    states = [o for o in lines if o.get("event") == "state"]
    assert states and all("from" in o and "to" in o for o in states)


def test_text_lines_one_per_event(tern):
    """In the text format a value with line breaks in it (a multi-line reply
    at debug level) stays on its line, written as \\n: every line of the log
    starts with a timestamp, so no value can forge a log line."""
    srv = tern({"log_level": "debug"})
    with socket.create_connection(("127.0.0.1", srv.mx_port), timeout=10) as s:
        f = s.makefile("rb")
        assert f.readline().startswith(b"220 ")
        s.sendall(b"EHLO client.example\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        s.sendall(b"QUIT\r\n")
        assert f.readline().startswith(b"221 ")
    srv.wait_log(r"event=disconnect")
    srv.stop_clean()
    text = srv.log()
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z tern\[(debug|info|warn|error)\]: ")
    bad = [line for line in text.splitlines() if line and not stamp.match(line)]
    assert not bad, bad
    assert re.search(r"event=reply reply=\"250  \S+\\nPIPELINING\\n", text), text


def fd_info(pid, path):
    """(fd, flags) of every descriptor of pid open on path."""
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target == str(path):
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                flags = int(re.search(r"flags:\s*([0-7]+)", f.read()).group(1), 8)
            out.append((int(fd), flags))
    return out


def test_file_target_reopen(tern, tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    path = logdir / "tern.log"
    rotated = logdir / "tern.log.1"
    srv = tern({"log_target": str(path)})
    pid = srv.proc.pid

    assert (path.stat().st_mode & 0o777) == 0o640
    fds = fd_info(pid, path)
    assert len(fds) == 1, fds
    flags = fds[0][1]
    assert flags & os.O_APPEND, oct(flags)
    assert flags & 0o2000000, "not O_CLOEXEC: %o" % flags  # O_CLOEXEC on Linux

    send(srv, ["demo@example.test"], new_token("f1"))
    srv.wait_messages("demo@example.test", 1)
    wait_file(path, r"event=removed")

    # logrotate: rename, then SIGUSR1 (postrotate). Mail that arrives between
    # the two is logged to the renamed file, which tern still holds.
    os.rename(path, rotated)
    send(srv, ["demo@example.test"], new_token("f2"))
    srv.wait_messages("demo@example.test", 2)
    time.sleep(0.3)
    assert not path.exists()
    srv.proc.send_signal(signal.SIGUSR1)
    wait_file(path, r"event=log_reopened")
    assert fd_info(pid, rotated) == [], "the old file is still open"
    assert len(fd_info(pid, path)) == 1
    send(srv, ["demo@example.test"], new_token("f3"))
    srv.wait_messages("demo@example.test", 3)
    wait_file(path, r"qid=\S+ event=removed")
    srv.stop_clean()

    old = rotated.read_text()
    new = path.read_text()
    line_re = re.compile(r"^\d{4}-\d\d-\d\dT\S+Z tern\[(error|warn|info|debug)\]: ")
    for line in (old + new).splitlines():
        assert line_re.match(line), line
    queued = lambda t: re.findall(r"qid=(\S+) event=queued", t)
    sent = lambda t: re.findall(r"qid=(\S+) to=<demo@example.test> relay=maildir .* status=sent", t)
    assert len(queued(old)) == 2 and len(queued(new)) == 1
    assert sorted(sent(old)) == sorted(queued(old))
    assert sent(new) == queued(new)
    assert "event=started" in old and "event=stopped" in new
    assert new.splitlines()[0].split(": ", 1)[1].startswith("event=log_reopened")
    # nothing went to stderr
    assert "event=" not in srv.log(), srv.log()


def test_file_target_cannot_open(tern, tmp_path):
    """A log file that cannot be opened is fatal at start, said on stderr."""
    srv = tern({"log_target": str(tmp_path / "missing-dir" / "tern.log")}, start=False)
    srv.start(wait=False)
    assert srv.proc.wait(10) == 1
    log = srv.log()
    assert "cannot open the log" in log and "missing-dir" in log, log
    srv.killed_runs.add(0)  # the exit status 1 is what the test expects


def test_check_validates_log_keys(tern):
    srv = tern({"log_format": "yaml", "log_target": "tern.log"}, start=False)
    from conftest import tern_bin
    r = subprocess.run([str(tern_bin()), "check", "-c", str(srv.conf)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert 'log_format: "yaml" is not one of text, json' in r.stderr, r.stderr
    assert "write ./tern.log for a file in the working directory" in r.stderr, r.stderr


# ---------------------------------------------------------------------------
# syslog

NAMESPACE_SCRIPT = r"""
set -e
dir="$1"; shift
mkdir -p "$dir/realdev"
mount --bind /dev "$dir/realdev"
mount -t tmpfs -o mode=0755,size=64k tmpfs /dev
for n in null zero full random urandom; do
    if [ -e "$dir/realdev/$n" ]; then
        : > "/dev/$n"
        mount --bind "$dir/realdev/$n" "/dev/$n"
    fi
done
ln -s "$dir/syslog.sock" /dev/log
exec "$@"
"""


def namespace_usable():
    if os.geteuid() != 0:
        return "needs root (a private mount namespace for /dev/log)"
    try:
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "unshare: %s" % e
    if r.returncode != 0:
        return "unshare -m failed: %s" % r.stderr.decode(errors="replace").strip()
    return None


class SyslogSink:
    """A datagram socket standing in for /dev/log inside the namespace, read
    by a thread at once (as a syslog daemon does: a queue of unread datagrams
    soon blocks the sender)."""

    def __init__(self, d):
        self.dir = Path(d)
        self.path = self.dir / "syslog.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.lock = threading.Lock()
        self.records = []  # (priority, tag, message)
        self.bad = []  # datagrams that are not syslog(3)'s
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            m = re.match(rb"^<(\d+)>(\w{3} [ \d]\d \d\d:\d\d:\d\d) ([^:]+): (.*)$", data, re.S)
            with self.lock:
                if not m:
                    self.bad.append(data)
                    continue
                self.records.append((int(m.group(1)), m.group(3).decode(),
                                     m.group(4).decode("utf-8", "replace")))

    def snapshot(self):
        with self.lock:
            assert not self.bad, "not syslog(3) datagrams: %r" % self.bad[:3]
            return list(self.records)

    def wait(self, pattern, timeout=10.0):
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            records = self.snapshot()
            for r in records:
                if rx.search(r[2]):
                    return r
            if time.monotonic() > end:
                raise AssertionError("no syslog record matching %r; got:\n%s"
                                     % (pattern, "\n".join(map(repr, records[-30:]))))
            time.sleep(0.05)

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


LOG_MAIL = 2 << 3
PRI = {"error": LOG_MAIL | 3, "warn": LOG_MAIL | 4, "info": LOG_MAIL | 6, "debug": LOG_MAIL | 7}


def start_in_namespace(srv, tmp_path):
    srv.wrapper = ["unshare", "-m", "--propagation", "private", "sh", "-c", NAMESPACE_SCRIPT,
                   "sh", str(tmp_path)]
    srv.start()


def auth_fail(srv):
    with smtplib.SMTP("127.0.0.1", srv.submission_port, timeout=15) as s:
        s.starttls(context=client_tls_context())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("demo@example.test", "wrong password")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_syslog_target(tern, tmp_path, fmt):
    why = namespace_usable()
    if why:
        pytest.skip(why)
    sink = SyslogSink(tmp_path)
    try:
        srv = tern({"log_target": "syslog", "log_format": fmt}, start=False)
        start_in_namespace(srv, tmp_path)
        pid = srv.proc.pid
        send(srv, ["demo@example.test"], new_token("sys"))
        srv.wait_messages("demo@example.test", 1)
        auth_fail(srv)
        if fmt == "text":
            started = sink.wait(r"^event=started ")
            queued = sink.wait(r"event=queued ")
            qid = re.search(r"qid=(\S+)", queued[2]).group(1)
            sent = sink.wait(r"^qid=%s to=<demo@example.test> relay=maildir .*status=sent "
                             r"\(delivered to maildir\)$" % qid)
            warn = sink.wait(r"^warn: sid=\S+ event=auth_failed client=127.0.0.1 ")
            for r in (started, queued, sent):
                assert r[0] == PRI["info"], r
            assert warn[0] == PRI["warn"], warn
        else:
            started = sink.wait(r'"event":"started"')
            queued = sink.wait(r'"event":"queued"')
            q = json.loads(queued[2])
            sent = sink.wait(r'"trace":"%s".*"status":"sent"' % q["qid"])
            warn = sink.wait(r'"event":"auth_failed"')
            d = json.loads(sent[2])
            assert d["text"] == "delivered to maildir" and d["to"] == "demo@example.test"
            assert json.loads(warn[2])["level"] == "warn"
            assert q["trace"] == q["qid"]
            assert started[0] == PRI["info"] and sent[0] == PRI["info"]
            assert warn[0] == PRI["warn"], warn
        assert all(r[1] == "tern[%d]" % pid for r in sink.snapshot()), sink.snapshot()[:5]
        srv.stop_clean()
        sink.wait(r"event.{0,3}stopped")
        if fmt == "json":
            for r in sink.snapshot():
                json.loads(r[2])
        # nothing went to stderr
        assert "event=" not in srv.log() and '"event"' not in srv.log(), srv.log()
    finally:
        sink.close()
