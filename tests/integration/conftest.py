"""Black-box integration tests for the tern binary.

Each test starts the real `tern serve` on ephemeral 127.0.0.1 ports in its own
temporary directory and talks to it with real clients (smtplib, raw sockets,
swaks, Dovecot, the probe). Nothing here knows Tern's internals: the contract
is the configuration file, the SMTP dialogue, the Maildir files and the
key=value log lines on stderr.

The binary is $TERN_BIN (default <repo>/build/tern). The same suite runs
against the ASan+UBSan build (TERN_BIN=build-asan/tern); every server started
by the `tern` fixture is stopped with SIGTERM at the end of the test, must exit
0, and must not have printed a sanitizer report.

Run: /usr/bin/python3 -m pytest tests/integration -x -q
"""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tern_helpers import SMTPClient, free_ports, header_token_of

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONF = REPO / "examples" / "tern.conf"
EXAMPLE_ALIASES = REPO / "examples" / "aliases"
EXAMPLE_USERS = REPO / "examples" / "users"
PROBE = REPO.parent / "shared" / "probe" / "smtp_probe.py"

SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "LeakSanitizer", "runtime error:")

_UNREACHABLE_DNS = None


def unreachable_dns():
    """A DNS server on loopback that answers SERVFAIL to everything: the default
    resolver of every server a test starts, so that mail for other domains is
    deferred at once (the relay's destination is unreachable) instead of
    waiting for lookups of the real Internet. Tests of the relay give
    dns_forwarders of their own."""
    global _UNREACHABLE_DNS
    if _UNREACHABLE_DNS is None:
        from dns_server import DNSTestServer

        class ServfailDNS(DNSTestServer):
            def _answer(self, request):
                reply = request.reply()
                reply.header.rcode = 2  # SERVFAIL
                return reply

        _UNREACHABLE_DNS = ServfailDNS().start()
    return _UNREACHABLE_DNS


def tern_bin():
    """The binary under test: $TERN_BIN (relative to the cwd, else to the repo)."""
    p = os.environ.get("TERN_BIN")
    if not p:
        return REPO / "build" / "tern"
    p = Path(p)
    if p.is_absolute() or p.exists():
        return p.resolve()
    return (REPO / p).resolve()


def server_env():
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return env


class TernServer:
    """One tern instance: its config, spool, Maildirs and logs in `workdir`.

    The config is examples/tern.conf with override lines appended (a key given
    twice takes its last value). start() may be called again after stop() or
    kill9() and reuses the same ports, spool and Maildirs. Every run logs to
    its own file (run_log(i)); log() is the current or last run's log.
    `wrapper` (argv list, empty by default) is put before the command line
    when set before start(), for a test that runs tern under another program
    that execs it (the PID stays tern's).
    """

    def __init__(self, workdir, overrides=None, aliases=()):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.spool_dir = self.dir / "spool"
        self.maildir_root = self.dir / "mail"
        self.aliases_file = self.dir / "aliases"
        self.users_file = self.dir / "users"
        self.conf = self.dir / "tern.conf"
        self.control_socket = self.dir / "control"
        (self.mx_port, self.submission_port, self.submissions_port,
         self.metrics_port) = free_ports(4)
        settings = {
            "mx_listen": "127.0.0.1:%d" % self.mx_port,
            "submission_listen": "127.0.0.1:%d" % self.submission_port,
            "submissions_listen": "127.0.0.1:%d" % self.submissions_port,
            "spool_dir": str(self.spool_dir),
            "maildir_root": str(self.maildir_root),
            "aliases_file": str(self.aliases_file),
            "users_file": str(self.users_file),
            "tls_cert_file": str(self.dir / "tls" / "cert.pem"),
            "tls_key_file": str(self.dir / "tls" / "key.pem"),
            "dns_forwarders": unreachable_dns().forwarder,
            "control_socket": str(self.dir / "control"),
            "metrics_listen": "127.0.0.1:%d" % self.metrics_port,
            # the tests run as root and keep it (test_lifecycle.py tests the switch)
            "run_user": "root",
        }
        for k, v in (overrides or {}).items():
            settings[k] = v
        self._settings = settings
        # listeners on ports this fixture chose: re-chosen when another process
        # took one between free_ports() and the bind (see start)
        self._own_ports = [k for k in ("mx_listen", "submission_listen", "submissions_listen",
                                       "metrics_listen") if k not in (overrides or {})]
        if "maildir_root" in (overrides or {}):
            self.maildir_root = Path(overrides["maildir_root"])
        if "spool_dir" in (overrides or {}):
            self.spool_dir = Path(overrides["spool_dir"])
        self._write_conf()
        atext = EXAMPLE_ALIASES.read_text()
        if not atext.endswith("\n"):
            atext += "\n"
        atext += "".join(line + "\n" for line in aliases)
        self.aliases_file.write_text(atext, encoding="utf-8")
        if EXAMPLE_USERS.exists():
            self.users_file.write_text(EXAMPLE_USERS.read_text())
            self.users_file.chmod(0o600)
        self.proc = None
        self.wrapper = []
        self.logs = []  # one Path per run
        self.problems = []  # non-zero exits etc., reported by the fixture
        self.killed_runs = set()
        self.finished = False

    def _write_conf(self):
        text = EXAMPLE_CONF.read_text()
        if not text.endswith("\n"):
            text += "\n"
        text += "\n# test overrides\n"
        text += "".join("%s = %s\n" % (k, v) for k, v in self._settings.items() if v is not None)
        self.conf.write_text(text)

    def _new_ports(self):
        """Other ports for the listeners this fixture chose, and a new config file."""
        ports = dict(zip(("mx_listen", "submission_listen", "submissions_listen",
                          "metrics_listen"), free_ports(4)))
        for key in self._own_ports:
            self._settings[key] = "127.0.0.1:%d" % ports[key]
        self.mx_port = int(self._settings["mx_listen"].rsplit(":", 1)[1])
        self.submission_port = int(self._settings["submission_listen"].rsplit(":", 1)[1])
        self.submissions_port = int(self._settings["submissions_listen"].rsplit(":", 1)[1])
        if self._settings.get("metrics_listen"):
            self.metrics_port = int(self._settings["metrics_listen"].rsplit(":", 1)[1])
        self._write_conf()

    # -- process control ---------------------------------------------------
    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait=True):
        """Start tern serve; with wait, until it is ready. When a port this
        fixture chose was taken by another process meanwhile (the bind fails
        with EADDRINUSE), start again on other ports, at most three times."""
        for attempt in range(3):
            self._start_once()
            if not wait:
                return self
            try:
                self.wait_ready()
                return self
            except AssertionError:
                if (attempt == 2 or not self._own_ports or self.proc.poll() is None
                        or "Address already in use" not in self.log()):
                    raise
                self.logs.pop()
                self._new_ports()
        return self

    def _start_once(self):
        assert not self.running, "server already running"
        binary = tern_bin()
        assert binary.is_file(), "no tern binary at %s (build it, or set TERN_BIN)" % binary
        log = self.dir / ("tern.%d.log" % len(self.logs))
        self.logs.append(log)
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(
                self.wrapper + [str(binary), "serve", "-c", str(self.conf)],
                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                env=server_env(), cwd=str(self.dir))

    def _listens_on(self, port):
        """Does this run's process hold a listening TCP socket on port?"""
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    next(f)
                    for line in f:
                        fields = line.split()
                        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                            inodes.add(fields[9])
            except OSError:
                pass
        try:
            fds = os.listdir("/proc/%d/fd" % self.proc.pid)
        except OSError:
            return False
        for fd in fds:
            try:
                link = os.readlink("/proc/%d/fd/%s" % (self.proc.pid, fd))
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
        return False

    def wait_ready(self, timeout=10.0):
        """Poll until this run's process listens on the mx port (not another
        process that took the port meanwhile) and it accepts a TCP connection
        (then QUIT it)."""
        end = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("tern exited with status %s before it was ready; log:\n%s"
                                     % (self.proc.returncode, self.log()))
            if not self._listens_on(self.mx_port):
                if time.monotonic() > end:
                    raise AssertionError("tern did not listen on %d within %.0fs; log:\n%s"
                                         % (self.mx_port, timeout, self.log()))
                time.sleep(0.05)
                continue
            try:
                s = socket.create_connection(("127.0.0.1", self.mx_port), timeout=0.5)
            except OSError:
                s = None
            if s is not None:
                # end the readiness connection with QUIT and wait for the server
                # to close it, so that it no longer counts against connection caps
                try:
                    s.settimeout(5)
                    s.sendall(b"QUIT\r\n")
                    while s.recv(4096):
                        pass
                except OSError:
                    pass
                s.close()
                return
            if time.monotonic() > end:
                raise AssertionError("tern did not accept connections on %d within %.0fs; log:\n%s"
                                     % (self.mx_port, timeout, self.log()))
            time.sleep(0.05)

    def stop(self, timeout=15.0):
        """SIGTERM and wait; returns the exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.problems.append("tern did not exit within %.0fs of SIGTERM (run %d); killed"
                                 % (timeout, len(self.logs) - 1))
            return None

    def stop_clean(self):
        """Stop and require exit status 0."""
        rc = self.stop()
        assert rc == 0, "tern exited with %r on SIGTERM; log:\n%s" % (rc, tail(self.log()))

    def kill9(self):
        assert self.running
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.killed_runs.add(len(self.logs) - 1)

    def restart(self):
        self.stop_clean()
        self.start()

    def finish(self):
        """Called once the test is over: stop, check the exit status and every
        log; returns the problems found (only the first call does the work)."""
        if self.finished:
            return []
        self.finished = True
        out = list(self.problems)
        if self.running:
            rc = self.stop()
            if rc not in (0, None):
                out.append("tern exited with status %s on SIGTERM; log tail:\n%s"
                           % (rc, tail(self.log())))
        elif self.proc is not None:
            rc = self.proc.returncode
            run = len(self.logs) - 1
            if run not in self.killed_runs and rc != 0:
                out.append("tern had exited with status %s during the test; log tail:\n%s"
                           % (rc, tail(self.log())))
        for i, log in enumerate(self.logs):
            text = read_text(log)
            for pat in SANITIZER_PATTERNS:
                pos = text.find(pat)
                if pos >= 0:
                    out.append("sanitizer report (%r) in run %d log %s:\n%s"
                               % (pat, i, log, text[max(0, pos - 2000):pos + 6000]))
                    break
        return out

    # -- logs ---------------------------------------------------------------
    def log(self):
        return read_text(self.logs[-1]) if self.logs else ""

    def run_log(self, i):
        return read_text(self.logs[i])

    def all_logs(self):
        return "".join(read_text(p) for p in self.logs)

    def wait_log(self, pattern, timeout=5.0, run=None):
        """Wait until a line of the current run's log matches regex pattern; returns the line."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            text = self.log() if run is None else self.run_log(run)
            for line in text.splitlines():
                if rx.search(line):
                    return line
            if time.monotonic() > end:
                raise AssertionError("no log line matching %r within %.0fs; log:\n%s"
                                     % (pattern, timeout, tail(text)))
            time.sleep(0.05)

    def recovered_count(self, run=None):
        """N from the run's 'event=spool_recovered ... messages=N' line."""
        line = self.wait_log(r"event=spool_recovered", timeout=5, run=run)
        m = re.search(r"\bmessages=(\d+)", line)
        assert m, "spool_recovered line without messages=N: %r" % line
        return int(m.group(1))

    # -- Maildirs -------------------------------------------------------------
    def maildir(self, addr):
        local, domain = addr.rsplit("@", 1)
        return self.maildir_root / domain / local

    def messages(self, addr):
        """Files in the mailbox's new/ directory: list of (path, bytes), sorted by name."""
        return read_dir(self.maildir(addr) / "new")

    def wait_messages(self, addr, n, timeout=5.0):
        """Wait until the mailbox's new/ holds at least n files; returns them."""
        end = time.monotonic() + timeout
        while True:
            msgs = self.messages(addr)
            if len(msgs) >= n:
                return msgs
            if time.monotonic() > end:
                raise AssertionError("%s: %d message(s) in %s after %.0fs, expected %d; log tail:\n%s"
                                     % (addr, len(msgs), self.maildir(addr) / "new", timeout, n,
                                        tail(self.log())))
            time.sleep(0.05)

    def all_delivered(self):
        """Every file in any <root>/<domain>/<local>/new/: list of (path, bytes)."""
        out = []
        if not self.maildir_root.is_dir():
            return out
        for dom in sorted(self.maildir_root.iterdir()):
            if not dom.is_dir():
                continue
            for box in sorted(dom.iterdir()):
                out += read_dir(box / "new")
        return out

    def find_token(self, token):
        """Delivered files whose header section has the line 'X-Tern-Test: <token>'."""
        return [(p, d) for p, d in self.all_delivered() if header_token_of(d) == token]

    def wait_token(self, token, n=1, timeout=5.0):
        end = time.monotonic() + timeout
        while True:
            found = self.find_token(token)
            if len(found) >= n:
                return found
            if time.monotonic() > end:
                raise AssertionError("token %s: %d delivered file(s) after %.0fs, expected %d; "
                                     "log tail:\n%s" % (token, len(found), timeout, n, tail(self.log())))
            time.sleep(0.05)

    # -- clients ----------------------------------------------------------------
    def connect(self, port=None, timeout=5.0):
        return SMTPClient(port or self.mx_port, timeout=timeout)


def read_dir(d):
    out = []
    try:
        names = sorted(os.listdir(d))
    except FileNotFoundError:
        return out
    for n in names:
        p = Path(d) / n
        try:
            out.append((p, p.read_bytes()))
        except (FileNotFoundError, IsADirectoryError):
            pass
    return out


def read_text(p):
    try:
        return Path(p).read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def tail(text, n=60):
    lines = text.splitlines()
    return "\n".join(lines[-n:])


def write_conf(path, settings):
    """examples/tern.conf with `key = value` override lines appended (the last
    value wins), for subcommands run without a server."""
    text = EXAMPLE_CONF.read_text()
    if not text.endswith("\n"):
        text += "\n"
    text += "\n# test overrides\n" + "".join("%s = %s\n" % kv for kv in settings.items())
    path.write_text(text)
    return path


@pytest.fixture
def tern(tmp_path, request):
    """Factory: tern(overrides={key: value}, aliases=[lines], start=True, workdir=None)
    -> TernServer (in workdir when given, else in the test's tmp_path).

    All servers made in a test are stopped when it ends; a non-zero exit
    status, a hang on SIGTERM or a sanitizer report in a log fails the test
    (see pytest_runtest_call; if the test failed already, they are reported
    at teardown).
    """
    servers = request.node._tern_servers = []

    def make(overrides=None, aliases=(), start=True, workdir=None):
        s = TernServer(workdir or tmp_path / ("tern%d" % len(servers)), overrides, aliases)
        servers.append(s)
        if start:
            s.start()
        return s

    yield make
    problems = []
    for s in servers:
        problems += s.finish()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Stop the test's servers as part of the test itself, so that a crash,
    a bad exit status or a sanitizer report fails the test (not only its
    teardown)."""
    outcome = yield
    servers = getattr(item, "_tern_servers", None)
    if not servers or outcome.excinfo is not None:
        return
    problems = []
    for s in servers:
        problems += s.finish()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
