#!/usr/bin/python3
"""bench.py - measure Tern against Postfix on this machine, in one run.

Starts a release build of Tern and a private Postfix instance (its own
config, queue, data and mail directories under one temporary folder; the
system Postfix is never touched), both listening on loopback and both
delivering to Maildir with their default fsync behaviour. Each scenario sends
the same load with Postfix's smtp-source to each server in turn and records:

  accepted msg/s     messages / wall time of smtp-source (every 250 received)
  end-to-end msg/s   messages / time until every message is a file in the Maildir
  peak RSS           the highest sum of VmRSS over the server's processes,
                     sampled every 100 ms during the scenario
  peak PSS           the same for PSS (shared pages split between processes),
                     which is fairer to Postfix's many small processes

and prints a table with Tern/Postfix ratios.

The submission path is measured the same way on restarted servers, with
bench/tls-source (STARTTLS, AUTH PLAIN as demo@example.test) against Tern's
submission listener and a second Postfix smtpd that requires TLS and checks
passwords through a private Dovecot's auth socket (the same yescrypt hash):
handshakes/s, msg/s, peak memory, and memory per idle authenticated TLS
session (500 held open).

The relay path sends the mx loads to an address in another domain from a
trusted network: each server relays every message over SMTP to its own
smtp-sink on 127.0.0.2 (Tern through an MX lookup answered by the bench's DNS
server, Postfix as its relayhost), and end to end is until the sink has counted
every message.

The mail authentication phase measures Tern alone, the 50-client 4 KiB load on
a fresh Tern per configuration: from a trusted network unsigned, DKIM-signed
with an RSA-2048 key, with an Ed25519 key; from an untrusted client with the
checks off, and with SPF, DKIM and DMARC verified (a message signed beforehand
by dkimpy, the sender's records served by the bench's DNS server). Every
delivered message is checked to show that the intended path ran, and each rate
is compared with its baseline's. bench.sh builds Tern and tls-source and calls
this; see bench/README.md.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

MAIL_UID = 5000  # owner of the Postfix virtual mailboxes
DOMAIN = "example.test"
RECIPIENT = "demo@example.test"
SENDER = "bench@example.net"
HELO = "bench.example.net"

SCENARIOS = [
    # (sessions in parallel, messages in all, payload bytes)
    (1, 2000, 4096),
    (50, 10000, 4096),
    (50, 500, 1048576),
]

# The submission path: tls-source over STARTTLS with AUTH PLAIN, as the demo user.
SUB_USER = "demo@example.test"
SUB_PASSWORD = "tern-demo"
SUB_SCENARIOS = [
    # (sessions in parallel, messages in all, payload bytes, one connection per session)
    (50, 2000, 4096, False),
    (50, 2000, 4096, True),
]
IDLE_SESSIONS = 500  # idle authenticated TLS sessions for the memory per session

# The relay path: smtp-source from 127.0.0.1 (a trusted network of both servers) to
# an address in another domain, which each server sends on over SMTP to its own
# smtp-sink on SINK_ADDR. Tern finds the sink by MX through the bench's DNS server;
# Postfix goes to it as its relayhost (its resolver is the system's; see README).
RELAY_DOMAIN = "sink.test"
RELAY_RECIPIENT = f"bench@{RELAY_DOMAIN}"
SINK_ADDR = "127.0.0.2"
SINK_MX = f"mx.{RELAY_DOMAIN}"
RELAY_ZONE = {
    RELAY_DOMAIN: [("MX", (10, SINK_MX))],
    SINK_MX: [("A", SINK_ADDR)],
}
RELAY_SCENARIOS = SCENARIOS

# The mail authentication phase: Tern alone, the mx 50-client load, once per
# configuration, each on a fresh Tern. The sender's domain (SENDER's, and the From:
# domain smtp-source writes) is the one signed for and verified; the bench's DNS
# server publishes its SPF, DMARC and DKIM key records.
AUTH_DOMAIN = SENDER.split("@")[1]
AUTH_SCENARIO = (50, 10000, 4096)  # as the mx 50-client scenario
AUTH_VERIFY_SELECTOR = "bench-verify"  # the key the pre-signed message is signed with
AUTH_CONFIGS = [
    # (id, label, from a trusted network, signing key type, verify, baseline id)
    ("baseline-trusted", "baseline, trusted", True, None, False, None),
    ("sign-rsa", "DKIM sign RSA-2048", True, "rsa", False, "baseline-trusted"),
    ("sign-ed25519", "DKIM sign Ed25519", True, "ed25519", False, "baseline-trusted"),
    ("baseline-untrusted", "baseline, untrusted", False, None, False, None),
    ("verify", "verify SPF+DKIM+DMARC", False, None, True, "baseline-untrusted"),
]
AUTH_ALGORITHM = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
# The mx path compares Tern with a Postfix that checks no SPF, DKIM or DMARC (no
# milter): Tern's checks are off there too (their cost is the mailauth phase's).
# They would otherwise resolve from the root, which loopback-only runs cannot reach.
MX_NO_MAILAUTH = "spf_verify = no\ndkim_verify = no\ndmarc_verify = no\n"


def scenario_label(sessions, messages, size):
    unit = f"{size // 1048576} MiB" if size % 1048576 == 0 else f"{size // 1024} KiB"
    return f"{sessions} x {messages:,} x {unit}"


def sub_label(sessions, messages, size, persistent):
    conn = "1 conn/session" if persistent else "1 conn/msg"
    return f"{scenario_label(sessions, messages, size)}, {conn}"


class ServerError(Exception):
    """A server could not be started or stopped working."""


def log(msg):
    print(f"bench: {msg}", flush=True)


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_port(port, timeout, alive=lambda: True):
    """Wait until an SMTP greeting arrives on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(5)
                if s.recv(512).startswith(b"220"):
                    s.sendall(b"QUIT\r\n")
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def tail(path, lines=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"({path}: {e})\n"


# --- memory ---------------------------------------------------------------


def proc_children():
    """Map of pid -> list of child pids, from one pass over /proc."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command may contain spaces and parentheses: split after the last ')'.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(name))
    return children


def tree(roots):
    children = proc_children()
    out, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def read_kb(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler(threading.Thread):
    """Samples the summed RSS and PSS of a process tree until stopped."""

    def __init__(self, roots, interval=0.1):
        super().__init__(daemon=True)
        self.roots, self.interval = roots, interval
        self.peak_rss = self.peak_pss = 0  # kB
        self.peak_procs = 0
        self.stopping = threading.Event()

    def sample(self):
        pids = tree(self.roots())
        rss = sum(read_kb(f"/proc/{p}/status", "VmRSS:") for p in pids)
        pss = sum(read_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_procs = max(self.peak_procs, len(pids))

    def run(self):
        while not self.stopping.is_set():
            self.sample()
            self.stopping.wait(self.interval)
        self.sample()

    def stop(self):
        self.stopping.set()
        self.join()


# --- servers --------------------------------------------------------------


class Postfix:
    """A private Postfix instance: `postfix -c DIR` with everything under DIR's parent."""

    name = "Postfix"

    def __init__(self, work, port, submission=None, relay_sink=None):
        self.submission = submission  # a Submission for the submission smtpd, or None
        self.relay_sink = relay_sink  # a Sink to relay everything to, or None
        self.sub_port = submission.port if submission else None
        self.dir = os.path.join(work, "postfix")
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        self.mail = os.path.join(self.dir, "mail")
        self.logfile = os.path.join(self.dir, "log", "postfix.log")
        self.port = port
        self.maildir = os.path.join(self.mail, DOMAIN, "demo")
        self.started = False

    def configure(self):
        for d in ("etc", "queue", "data", "mail", "log"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        os.chown(self.mail, MAIL_UID, MAIL_UID)
        main = f"""\
# Generated by bench/bench.py: a private instance, not the system Postfix.
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.dir}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-bench
maillog_file = {self.logfile}
maillog_file_prefixes = {self.dir}/log
myhostname = postfix.bench.test
mydestination = localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = {f"[{SINK_ADDR}]:{self.relay_sink.port}" if self.relay_sink else ""}
alias_maps =
alias_database =
local_recipient_maps =
biff = no
# Deliver {DOMAIN} to Maildirs under one base owned by uid {MAIL_UID}.
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{self.etc}/vmailbox
virtual_uid_maps = static:{MAIL_UID}
virtual_gid_maps = static:{MAIL_UID}
virtual_mailbox_limit = 0
message_size_limit = 52428800
# One client address sends everything: lift the per-client limits.
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
default_process_limit = 200
"""
        if self.relay_sink:
            main += f"""\
# The relay path: mail for other domains from mynetworks goes to the relayhost
# (the sink) without DNS; no TLS (smtp-sink has none). Concurrency and connection
# caching are Postfix's defaults.
smtp_tls_security_level = none
"""
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(main)
        with open(os.path.join(self.etc, "vmailbox"), "w") as f:
            f.write(f"demo@{DOMAIN} {DOMAIN}/demo/\npostmaster@{DOMAIN} {DOMAIN}/postmaster/\n")
        # Debian's master.cf less the optional transports, nothing chrooted.
        services = [
            f"127.0.0.1:{self.port} inet n - n - - smtpd",
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "proxywrite unix - - n - 1 proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "local unix - n n - - local",
            "virtual unix - n n - - virtual",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        if self.submission:
            services += self.submission_services()
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write("# Generated by bench/bench.py\n" + "\n".join(services) + "\n")

    def submission_services(self):
        """The submission smtpd: TLS required, AUTH only inside TLS through Dovecot's
        auth socket, only authenticated clients, the sender must be the login's own
        address (Tern's rules for the demo user, less its From: check)."""
        sub = self.submission
        logins = os.path.join(self.etc, "sender_logins")
        with open(logins, "w") as f:
            f.write(f"{SUB_USER} {SUB_USER}\n")
        opts = [
            "syslog_name=postfix-bench/submission",
            "smtpd_tls_security_level=encrypt",
            f"smtpd_tls_cert_file={sub.cert}",
            f"smtpd_tls_key_file={sub.key}",
            "smtpd_tls_auth_only=yes",
            "smtpd_sasl_auth_enable=yes",
            "smtpd_sasl_type=dovecot",
            f"smtpd_sasl_path={sub.dovecot.socket}",
            "smtpd_sasl_security_options=noanonymous",
            f"smtpd_sender_login_maps=texthash:{logins}",
            "smtpd_client_restrictions=permit_sasl_authenticated,reject",
            "smtpd_sender_restrictions=reject_sender_login_mismatch",
            "smtpd_relay_restrictions=permit_sasl_authenticated,reject",
            "smtpd_recipient_restrictions=permit_sasl_authenticated,reject",
        ]
        # maxproc above the idle sessions: each session is one smtpd process.
        return ([f"127.0.0.1:{sub.port} inet n - n - {IDLE_SESSIONS + 100} smtpd"]
                + [f"  -o {o}" for o in opts]
                + ["tlsmgr unix - - n 1000? 1 tlsmgr"])
    def postfix(self, *args):
        return subprocess.run(["postfix", "-c", self.etc, *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def pids(self):
        """Postfix's processes, and Dovecot's when it serves Postfix's SASL."""
        pid = self.master_pid()
        pids = [pid] if pid else []
        if self.submission:
            pids += self.submission.dovecot.pids()
        return pids

    def alive(self):
        pid = self.master_pid()
        if self.submission and not self.submission.dovecot.alive():
            return False
        return bool(pid) and os.path.exists(f"/proc/{pid}")

    def start(self):
        if shutil.which("postfix") is None:
            raise ServerError("postfix is not installed (scripts/install-deps.sh --test)")
        # Restarted: the children of the previous master may still hold the listeners.
        deadline = time.monotonic() + 20
        while not (port_free(self.port) and (not self.sub_port or port_free(self.sub_port))):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if not port_free(self.port):
            raise ServerError(f"127.0.0.1:{self.port} is in use")
        self.configure()
        if self.submission:
            if not port_free(self.sub_port):
                raise ServerError(f"127.0.0.1:{self.sub_port} is in use")
            self.submission.dovecot.start()
        r = self.postfix("check")
        if r.returncode != 0:
            raise ServerError(f"postfix check failed:\n{r.stdout}{r.stderr}{tail(self.logfile)}")
        r = self.postfix("start")
        self.started = True
        if r.returncode != 0 or not wait_port(self.port, 30):
            raise ServerError(f"postfix did not start:\n{r.stdout}{r.stderr}{tail(self.logfile)}")
        if self.submission and not wait_port(self.sub_port, 30):
            raise ServerError(f"postfix submission is not answering:\n{tail(self.logfile)}")

    def stop(self):
        if self.submission:
            self.submission.dovecot.stop()
        if not self.started:
            return
        self.started = False
        pid = self.master_pid()
        self.postfix("stop")
        deadline = time.monotonic() + 20
        while pid and os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid and os.path.exists(f"/proc/{pid}"):
            self.postfix("abort")
            time.sleep(1)

    def describe(self):
        r = subprocess.run(["postconf", "-d", "mail_version"], capture_output=True, text=True)
        what = f"Postfix {r.stdout.split('=')[-1].strip()}: private instance in {self.dir}"
        if self.submission:
            what += f"; submission on 127.0.0.1:{self.sub_port} with {self.submission.dovecot.describe()}"
        if self.relay_sink:
            what += f"; relayhost [{SINK_ADDR}]:{self.relay_sink.port}"
        return what


class Dovecot:
    """Dovecot serving only its auth service, for Postfix's SASL: its own config, base_dir
    and state_dir under DIR, a passwd-file with the demo user's hash from examples/users
    (the same yescrypt hash Tern checks), and one auth socket for Postfix."""

    name = "Dovecot"

    def __init__(self, work, repo):
        self.dir = os.path.join(work, "dovecot")
        self.repo = repo
        self.socket = os.path.join(self.dir, "run", "auth-postfix")
        self.logfile = os.path.join(self.dir, "dovecot.log")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.proc = None

    def user_hash(self):
        with open(os.path.join(self.repo, "examples", "users")) as f:
            for line in f:
                if line.startswith(SUB_USER + ":"):
                    return line.split(":")[1]
        raise ServerError(f"no {SUB_USER} in examples/users")

    def configure(self):
        for d in ("run", "state"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        passwd = os.path.join(self.dir, "passwd")
        with open(passwd, "w") as f:
            f.write(f"{SUB_USER}:{{CRYPT}}{self.user_hash()}\n")
        with open(self.conf, "w") as f:
            f.write(f"""\
# Generated by bench/bench.py: Dovecot as Postfix's SASL server, nothing else.
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.logfile}
instance_name = tern-bench
protocols = none
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=CRYPT username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_UID} home=/nonexistent
}}
service auth {{
  unix_listener {os.path.basename(self.socket)} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
  client_limit = {IDLE_SESSIONS * 2 + 100}
}}
""")

    def pids(self):
        return [self.proc.pid] if self.alive() else []

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        if shutil.which("dovecot") is None:
            raise ServerError("dovecot is not installed (scripts/install-deps.sh --test)")
        self.configure()
        self.stderr = open(os.path.join(self.dir, "dovecot.stderr"), "a")
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not os.path.exists(self.socket):
            if not self.alive() or time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"dovecot did not start:\n{tail(self.stderr.name)}"
                                  f"{tail(self.logfile)}")
            time.sleep(0.1)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.stderr.close()

    def describe(self):
        r = subprocess.run(["dovecot", "--version"], capture_output=True, text=True)
        return f"Dovecot {r.stdout.split()[0] if r.stdout else '?'} SASL (passwd-file, {{CRYPT}} yescrypt)"


class Submission:
    """What Postfix's submission service needs: its port, the TLS pair, Dovecot."""

    def __init__(self, port, cert, key, dovecot):
        self.port, self.cert, self.key, self.dovecot = port, cert, key, dovecot


def make_certificate(work):
    """One self-signed RSA 2048 certificate for both servers (as Tern's tls_selfsigned)."""
    d = os.path.join(work, "tls")
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                        "-subj", "/CN=mail.example.test", "-keyout", key, "-out", cert],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise ServerError(f"openssl req failed: {r.stderr}")
    os.chmod(key, 0o600)
    return cert, key


class Tern:
    """tern serve on a copy of examples/tern.conf with bench overrides appended."""

    name = "Tern"

    def __init__(self, work, binary, repo, ports, tls=None, relay=None, extra=""):
        self.tls = tls  # (certificate, key) shared with Postfix, or None for Tern's own
        self.relay = relay  # (DNS forwarder "127.0.0.1@PORT", Sink) for the relay path, or None
        self.extra = extra  # more configuration lines, appended last (the mailauth phase)
        self.dir = os.path.join(work, "tern")
        self.keydir = os.path.join(self.dir, "var", "dkim")  # dkim_key_dir
        self.binary, self.repo = binary, repo
        self.port, self.sub_port, self.subs_port = ports
        self.logfile = os.path.join(self.dir, "tern.log")
        self.conf = os.path.join(self.dir, "tern.conf")
        self.maildir = os.path.join(self.dir, "var", "mail", DOMAIN, "demo")
        self.proc = None
        self.logf = None

    def configure(self):
        os.makedirs(os.path.join(self.dir, "var"), exist_ok=True)
        with open(os.path.join(self.repo, "examples", "tern.conf")) as f:
            base = f.read()
        overrides = f"""
# bench/bench.py overrides (last value wins)
mx_listen = 127.0.0.1:{self.port}
submission_listen = 127.0.0.1:{self.sub_port}
submissions_listen = 127.0.0.1:{self.subs_port}
spool_dir = {self.dir}/var/spool
maildir_root = {self.dir}/var/mail
aliases_file = {self.repo}/examples/aliases
users_file = {self.repo}/examples/users
max_connections = 1000
max_connections_per_client = 1000
message_size_limit = 50M
user_message_rate = 0
user_recipient_rate = 0
run_user = root
dkim_key_dir = {self.keydir}
"""
        if self.tls:
            overrides += f"""tls_cert_file = {self.tls[0]}
tls_key_file = {self.tls[1]}
tls_selfsigned = no
"""
        if self.relay:
            forwarder, sink = self.relay
            overrides += f"""trusted_networks = 127.0.0.0/8
dns_forwarders = {forwarder}
outbound_port = {sink.port}
"""
        overrides += self.extra
        with open(self.conf, "w") as f:
            f.write(base + overrides)

    def pids(self):
        return [self.proc.pid] if self.proc else []

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        if not self.binary:
            raise ServerError("no Tern binary: the release build failed (see its output above)")
        if not os.access(self.binary, os.X_OK):
            raise ServerError(f"{self.binary} is not an executable")
        for p in (self.port, self.sub_port, self.subs_port):
            if not port_free(p):
                raise ServerError(f"127.0.0.1:{p} is in use")
        self.configure()
        self.logf = open(self.logfile, "a")
        self.proc = subprocess.Popen([self.binary, "serve", "-c", self.conf], cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        if not wait_port(self.port, 30, self.alive):
            code = self.proc.poll()
            self.stop()
            why = f"exited with status {code}" if code is not None else "is not answering"
            raise ServerError(f"tern serve {why} on 127.0.0.1:{self.port}; "
                              f"last lines of {self.logfile}:\n{tail(self.logfile)}")

    def peak_hwm(self):
        return read_kb(f"/proc/{self.proc.pid}/status", "VmHWM:") if self.alive() else 0

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                log("tern did not stop on SIGTERM within 20 s; killing it")
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.logf:
            self.logf.close()
            self.logf = None

    def describe(self):
        what = f"Tern {self.binary}: config {self.conf}"
        if self.relay:
            what += f"; DNS {self.relay[0]}, outbound_port {self.relay[1].port}"
        return what


class Sink:
    """smtp-sink on SINK_ADDR:port, counting: `-c` prints "sess=N quit=N mesg=N" followed
    by a carriage return (and flushes) each time a session ends, QUIT arrives or a
    message's final dot is received; a thread reads them and keeps the last mesg=.
    Nothing is written to disk (no -d / -D), and there are no delays (-w, -W, -H)."""

    def __init__(self, work, name, port):
        self.name, self.port = name, port
        self.logfile = os.path.join(work, f"smtp-sink-{name}.log")
        self.proc = None
        self.reader = None
        self.messages = 0  # mesg= as last printed
        self.lock = threading.Lock()

    def start(self):
        if shutil.which("smtp-sink") is None:
            raise ServerError("smtp-sink not found (install postfix: scripts/install-deps.sh --test)")
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((SINK_ADDR, self.port))
            except OSError as e:
                raise ServerError(f"{SINK_ADDR}:{self.port} for the {self.name} sink: {e}")
        # -u: drops to postfix after binding (required as root); -m: connections handled
        # at once (default 256); backlog 1000.
        self.proc = subprocess.Popen(["smtp-sink", "-c", "-u", "postfix", "-m", "900",
                                      f"{SINK_ADDR}:{self.port}", "1000"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=open(self.logfile, "w"), bufsize=0)
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"smtp-sink exited {self.proc.returncode}: {tail(self.logfile, 5)}")
            try:
                with socket.create_connection((SINK_ADDR, self.port), timeout=2) as c:
                    c.settimeout(5)
                    if c.recv(512).startswith(b"220"):
                        c.sendall(b"QUIT\r\n")
                        c.recv(512)
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise ServerError(f"smtp-sink on {SINK_ADDR}:{self.port} is not answering")

    def read(self):
        pending = b""
        while True:
            chunk = self.proc.stdout.read(65536)
            if not chunk:
                return
            pending += chunk
            *records, pending = pending.split(b"\r")
            for rec in reversed(records):
                for field in rec.split():
                    if field.startswith(b"mesg="):
                        with self.lock:
                            self.messages = max(self.messages, int(field[5:]))
                        break
                else:
                    continue
                break

    def count(self):
        with self.lock:
            return self.messages

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.reader:
            self.reader.join(5)
        self.proc.stdout.close()
        self.proc = None


def start_dns(repo, zone=None):
    """The tests' DNS server (tests/integration/dns_server.py, python3-dnslib) serving
    zone (RELAY_ZONE by default) on an ephemeral 127.0.0.1 port, for Tern's
    dns_forwarders."""
    import importlib.util
    path = os.path.join(repo, "tests", "integration", "dns_server.py")
    spec = importlib.util.spec_from_file_location("tern_bench_dns_server", path)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except ImportError as e:
        raise ServerError(f"{path}: {e} (install python3-dnslib: scripts/install-deps.sh --test)")
    return mod.DNSTestServer(RELAY_ZONE if zone is None else zone).start()


# --- one measurement ------------------------------------------------------


def count_messages(maildir):
    n = 0
    for sub in ("new", "cur"):
        try:
            with os.scandir(os.path.join(maildir, sub)) as it:
                n += sum(1 for _ in it)
        except FileNotFoundError:
            pass
    return n


def measure(server, label, sessions, messages, size, work, flags, cmd=None, sink=None):
    """Send one load to one server; returns a result dict (with 'error' on failure).
    The load is smtp-source with flags, or cmd (tls-source) when given. Delivered
    messages are counted in the server's Maildir, or by sink (a Sink) when given,
    and then smtp-source sends to RELAY_RECIPIENT."""
    res = {"scenario": label, "server": server.name, "sessions": sessions,
           "messages": messages, "size": size}
    # Nothing is deleted between loads: on ext4 without a journal (as on this
    # machine) the inode allocator skips every inode freed in the last 5 s (5 min
    # while its inode table block is dirty, which it is as soon as new files are
    # created beside them) and scans past each one on every file it creates, so a
    # server measured after a mass deletion would pay for it. Messages already in
    # the Maildir are counted first; the work directory goes at the end.
    if sink:
        delivered, where = sink.count, f"the {sink.name} sink"
    else:
        delivered, where = (lambda: count_messages(server.maildir)), "the Maildir"
    baseline = delivered()
    tool = os.path.basename(cmd[0]) if cmd else "smtp-source"
    if cmd is None:
        cmd = ["smtp-source", *flags, "-s", str(sessions), "-m", str(messages), "-l", str(size),
               "-M", HELO, "-f", SENDER, "-t", RELAY_RECIPIENT if sink else RECIPIENT,
               f"127.0.0.1:{server.port}"]
    out_path = os.path.join(work, f"{tool}-{server.name}-{sessions}-{messages}"
                                  f"{'-d' if '-d' in cmd else ''}{'-relay' if sink else ''}.log")
    sampler = MemorySampler(server.pids)
    sampler.start()
    # Generous limits: slow is a result, a hang is not.
    send_limit = 120 + messages * size / 1e6 + messages / 10
    t0 = time.monotonic()
    try:
        with open(out_path, "w") as out:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                               timeout=send_limit)
        t_accept = time.monotonic() - t0
        if r.returncode != 0:
            res["error"] = f"{tool} exited {r.returncode}: {tail(out_path, 5).strip()}"
    except subprocess.TimeoutExpired:
        t_accept = None
        res["error"] = f"{tool} did not finish within {send_limit:.0f} s"
    if tool != "smtp-source":
        res.update(tls_source_result(out_path))
    t_e2e = None
    if "error" not in res:
        deadline = time.monotonic() + 120 + messages / 20
        while time.monotonic() < deadline:
            n = delivered() - baseline
            if n >= messages:
                t_e2e = time.monotonic() - t0
                break
            if not server.alive():
                res["error"] = f"{server.name} died during delivery"
                break
            if sink and not sink.alive():
                res["error"] = f"the {sink.name} smtp-sink died"
                break
            time.sleep(0.05)
        else:
            res["error"] = (f"only {delivered() - baseline} of {messages} "
                            f"messages reached {where} within the time limit")
    sampler.stop()
    if t_accept:
        res["accepted_s"] = t_accept
        res["accepted_rate"] = messages / t_accept
        if "handshakes" in res:
            res["handshake_rate"] = res["handshakes"] / t_accept
    if t_e2e:
        res["e2e_s"] = t_e2e
        res["e2e_rate"] = messages / t_e2e
        res["delivered"] = delivered() - baseline
    res["peak_rss_kb"] = sampler.peak_rss
    res["peak_pss_kb"] = sampler.peak_pss
    res["peak_procs"] = sampler.peak_procs
    if not server.alive():
        res.setdefault("error", f"{server.name} is no longer running")
    return res


def tls_source_result(path):
    """The numbers of tls-source's "result key=value ..." line, and its TLS version."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("result "):
                    for kv in line.split()[1:]:
                        k, _, v = kv.partition("=")
                        out[k] = v if k == "mode" else float(v) if "." in v else int(v)
                elif "TLSv" in line and "; " in line:
                    out["tls"] = line.rsplit("; ", 1)[1].strip()
    except OSError:
        pass
    return out


def snapshot(server):
    """pid -> (VmRSS kB, Pss kB) for every process of the server now."""
    snap = {}
    for p in tree(server.pids()):
        rss = read_kb(f"/proc/{p}/status", "VmRSS:")
        if rss:
            snap[p] = (rss, read_kb(f"/proc/{p}/smaps_rollup", "Pss:"))
    return snap


def measure_idle(server, sessions, tls_source, work):
    """Memory per idle TLS session: RSS and PSS of the server's processes before and
    while tls-source -i holds `sessions` authenticated sessions open, divided by
    `sessions`. Processes are matched by pid, so one that exits meanwhile (an idle
    smtpd of an earlier load) does not count as memory given back."""
    label = f"{sessions} idle TLS sessions"
    res = {"scenario": label, "server": server.name, "sessions": sessions}
    before = snapshot(server)
    out_path = os.path.join(work, f"tls-source-{server.name}-idle.log")
    cmd = [tls_source, "-i", "-s", str(sessions), "-P", "8", "-w", "6",
           "-u", SUB_USER, "-p", SUB_PASSWORD, f"127.0.0.1:{server.sub_port}"]
    with open(out_path, "w") as errf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=errf, text=True)
        try:
            ready = threading.Event()
            lines = []

            def read():
                for line in proc.stdout:
                    lines.append(line)
                    if line.startswith("idle "):
                        ready.set()
                ready.set()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            if not ready.wait(120 + sessions / 5):
                res["error"] = "tls-source -i did not open its sessions in time"
            else:
                time.sleep(1.5)  # let the last sessions settle (Postfix forks)
                after = snapshot(server)
            proc.wait(60)
            reader.join(5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with open(out_path, "a") as f:
        f.writelines(lines)
    if "error" in res:
        return res
    first = lines[0].split() if lines else []
    opened = int(first[1]) if len(first) > 1 and first[0] == "idle" else 0
    if proc.returncode != 0 or opened != sessions:
        res["error"] = f"tls-source -i: {opened} of {sessions} sessions open: {tail(out_path, 3).strip()}"
    drss = sum(a[0] - before.get(p, (0, 0))[0] for p, a in after.items())
    dpss = sum(a[1] - before.get(p, (0, 0))[1] for p, a in after.items())
    res.update({"open": opened, "rss_before_kb": sum(v[0] for v in before.values()),
                "rss_after_kb": sum(v[0] for v in after.values()), "procs_after": len(after),
                "rss_per_session_kb": drss / max(opened, 1),
                "pss_per_session_kb": dpss / max(opened, 1)})
    try:
        res["open_s"] = float(lines[0].split(" in ")[1].split()[0])
        res["tls"] = lines[0].split("(", 1)[1].rstrip(")\n")
    except (IndexError, ValueError):
        pass
    if not server.alive():
        res.setdefault("error", f"{server.name} is no longer running")
    return res


# --- mail authentication ------------------------------------------------------


def zone_strings(line):
    """The character-strings of a TXT record printed in zone-file form."""
    return [re.sub(r"\\(.)", r"\1", s) for s in re.findall(r'"((?:[^"\\]|\\.)*)"', line)]


def tern_keygen(server, domain, selector, keytype):
    """`tern dkim keygen` into server's dkim_key_dir; returns the key's path and the
    character-strings of the TXT record it prints."""
    cmd = [server.binary, "dkim", "keygen", "-c", server.conf, domain, "--selector", selector,
           "--type", keytype]
    r = subprocess.run(cmd, cwd=server.dir, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=120)
    name = f"{selector}._domainkey.{domain}. IN TXT "
    line = [x for x in r.stdout.splitlines() if x.startswith(name)]
    if r.returncode != 0 or len(line) != 1:
        raise ServerError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return os.path.join(server.keydir, domain, f"{selector}.key"), zone_strings(line[0])


def auth_body(size):
    """size octets of body (CRLF line ends), lines of 78 characters."""
    lines, left = [], size
    while left > 0:
        n = min(78, left - 2) if left > 2 else 0
        lines.append(b"X" * max(n, 0) + b"\r\n")
        left -= max(n, 0) + 2
    return b"".join(lines)


def presigned_message(key_path, selector, domain, size, path):
    """A message From: the sender signed by dkimpy (relaxed/relaxed, rsa-sha256) with
    the key at key_path, written to path with LF line ends for smtp-source -F (which
    sends each line with CRLF). Returns the signed message in its CRLF form."""
    import dkim  # python3-dkim (dkimpy)
    head = (f"From: <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: mail authentication bench\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
            f"Message-ID: <mailauth.{os.getpid()}@{HELO}>\r\n\r\n").encode()
    msg = head + auth_body(size)
    with open(key_path, "rb") as f:
        pem = f.read()
    sig = dkim.sign(msg, selector.encode(), domain.encode(), pem,
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=[b"From", b"To", b"Subject", b"Date", b"Message-ID"])
    signed = sig + msg
    with open(path, "wb") as f:
        f.write(signed.replace(b"\r\n", b"\n"))
    return signed


def header_fields(data):
    """(lowercase name, unfolded value) of each header field of a stored message."""
    data = data.replace(b"\r\n", b"\n")
    head = data.split(b"\n\n", 1)[0].decode("utf-8", "replace")
    fields = []
    for line in re.sub(r"\n[ \t]+", " ", head).split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            fields.append((name.strip().lower(), value.strip()))
    return fields


def dkim_tags(value):
    return {k.strip(): v.strip() for k, _, v in
            (t.partition("=") for t in value.split(";")) if k.strip()}


def authres_results(value):
    """(method, result, the whole resinfo) of each result in an Authentication-Results
    value (RFC 8601), e.g. ("spf", "pass", "spf=pass smtp.mailfrom=a@b")."""
    out = []
    for part in value.split(";")[1:]:
        m = re.match(r"\s*([a-z0-9-]+)=([a-z]+)", part)
        if m:
            out.append((m.group(1), m.group(2), part.strip()))
    return out


def check_auth_message(cfg, data):
    """None when a delivered message shows that configuration cfg's path ran, else
    what is wrong."""
    _, _, trusted, keytype, verify, _ = cfg
    fields = header_fields(data)
    sigs = [dkim_tags(v) for n, v in fields if n == "dkim-signature"]
    ars = [v for n, v in fields if n == "authentication-results"]
    results = [r for a in ars for r in authres_results(a)]
    if trusted:
        if ars:
            return f"an Authentication-Results on mail from a trusted network: {ars[0]}"
        if keytype is None:
            return f"signed without a key: DKIM-Signature a={sigs[0].get('a')}" if sigs else None
        want = AUTH_ALGORITHM[keytype]
        if len(sigs) != 1 or sigs[0].get("a") != want or sigs[0].get("d") != AUTH_DOMAIN:
            got = ", ".join(f"a={s.get('a')} d={s.get('d')}" for s in sigs) or "none"
            return f"expected one DKIM-Signature a={want} d={AUTH_DOMAIN}, found {got}"
        return None
    if len(sigs) != 1:
        return f"{len(sigs)} DKIM-Signature fields, expected the client's one"
    if verify:
        # SPF of MAIL FROM and of the HELO name, the client's signature, DMARC: all pass.
        want = [("spf", "smtp.mailfrom="), ("spf", "smtp.helo="), ("dkim", "header.d="),
                ("dmarc", "header.from=")]
        found = [any(m == w and p in info for m, _, info in results) for w, p in want]
        if (len(ars) != 1 or not all(found) or len(results) != len(want)
                or any(r != "pass" for _, r, _ in results)):
            return ("Authentication-Results not spf=pass (MAIL FROM and HELO) dkim=pass "
                    f"dmarc=pass: {ars or 'none'}")
        return None
    if any(r != "none" for _, r, _ in results):
        return f"checks ran with spf/dkim/dmarc_verify = no: {ars}"
    return None


def check_auth_delivered(cfg, maildir, zone):
    """Every delivered message must show that cfg's path ran (check_auth_message); the
    first signed one is also verified by dkimpy against the bench's zone. Returns
    (error or None, a summary, the header section of the first message)."""
    files = []
    for sub in ("new", "cur"):
        d = os.path.join(maildir, sub)
        if os.path.isdir(d):
            files += [os.path.join(d, n) for n in os.listdir(d)]
    if not files:
        return "no delivered message to check", "", ""
    files.sort()
    bad, first_err, sample = 0, None, None
    for path in files:
        with open(path, "rb") as f:
            data = f.read(65536)
        if sample is None:
            sample = data
        err = check_auth_message(cfg, data)
        if err:
            bad += 1
            first_err = first_err or f"{os.path.basename(path)}: {err}"
    head = sample.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
    if bad:
        return f"{bad} of {len(files)} messages: {first_err}", "", head
    _, _, trusted, keytype, verify, _ = cfg
    if trusted and keytype:
        import dkim  # dkimpy checks Tern's signature with the published key

        def dnsfunc(name, timeout=5):
            name = (name.decode() if isinstance(name, bytes) else name).rstrip(".").lower()
            txt = [v for t, v in zone.get(name, []) if t == "TXT"]
            return "".join(txt[0]).encode() if txt else None

        with open(files[0], "rb") as f:
            data = f.read()
        if b"\r\n" not in data:
            data = data.replace(b"\n", b"\r\n")
        if not dkim.verify(data, dnsfunc=dnsfunc):
            return f"dkimpy does not verify Tern's signature in {files[0]}", "", head
        what = f"{len(files):,} signed a={AUTH_ALGORITHM[keytype]} d={AUTH_DOMAIN}, dkimpy verifies"
    elif trusted:
        what = f"{len(files):,} unsigned"
    elif verify:
        what = f"{len(files):,} spf=pass (MAIL FROM, HELO) dkim=pass dmarc=pass"
    else:
        what = f"{len(files):,} with no check run"
    return None, what, head


def cpu_seconds(pid):
    """User + system CPU time of a process, all its threads, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_mailauth(args, work, tern_path, tern_ports, flags, scenario, results, failed):
    """The mail authentication phase: each configuration of AUTH_CONFIGS on a fresh
    Tern with its own work directory, the same load, and the check of what was
    delivered. Appends to results; failed gets what could not run at all."""
    label, sessions, messages, size = scenario
    zone = {
        AUTH_DOMAIN: [("TXT", "v=spf1 ip4:127.0.0.1 -all")],
        f"_dmarc.{AUTH_DOMAIN}": [("TXT", "v=DMARC1; p=reject")],
        HELO: [("TXT", "v=spf1 ip4:127.0.0.1 -all")],  # SPF of the HELO name
    }
    scratch = Tern(os.path.join(work, "mailauth-keys"), tern_path, args.repo, tern_ports)
    dns = None
    try:
        if not tern_path:
            raise ServerError("no Tern binary: the release build failed (see its output above)")
        # The key of the pre-signed message: made by Tern in a scratch key store, its
        # record published, the message signed with it by dkimpy.
        os.makedirs(scratch.dir, exist_ok=True)
        scratch.configure()
        key, record = tern_keygen(scratch, AUTH_DOMAIN, AUTH_VERIFY_SELECTOR, "rsa")
        zone[f"{AUTH_VERIFY_SELECTOR}._domainkey.{AUTH_DOMAIN}"] = [("TXT", record)]
        presigned = os.path.join(work, "mailauth-presigned.eml")
        msg = presigned_message(key, AUTH_VERIFY_SELECTOR, AUTH_DOMAIN, size, presigned)
        dns = start_dns(args.repo, zone)
        log(f"mailauth: DNS server on {dns.forwarder}: {AUTH_DOMAIN} SPF, DMARC p=reject, "
            f"{HELO} SPF, "
            f"DKIM key {AUTH_VERIFY_SELECTOR}; pre-signed message {len(msg):,} octets "
            f"({presigned})")
    except (ServerError, RuntimeError, OSError, ImportError, subprocess.SubprocessError) as e:
        failed["Tern"] = f"not measured: {e}"
        log(f"mailauth NOT MEASURED: {e}")
        if dns:
            dns.stop()
        return
    try:
        for cfg in AUTH_CONFIGS:
            cid, clabel, trusted, keytype, verify, _ = cfg
            cwork = os.path.join(work, f"mailauth-{cid}")
            os.makedirs(cwork, exist_ok=True)
            os.chmod(cwork, 0o755)
            extra = f"dns_forwarders = {dns.forwarder}\n"
            extra += f"trusted_networks = {'127.0.0.0/8' if trusted else ''}\n"
            # loopback is left unchecked by default (mailauth_skip_networks): check it
            extra += "mailauth_skip_networks =\n"
            if trusted:
                extra += "dkim_sign = yes\n"
            else:
                yn = "yes" if verify else "no"
                extra += f"spf_verify = {yn}\ndkim_verify = {yn}\ndmarc_verify = {yn}\n"
            srv = Tern(cwork, tern_path, args.repo, tern_ports, extra=extra)
            res = None
            try:
                os.makedirs(srv.dir, exist_ok=True)
                srv.configure()
                if keytype:
                    selector = f"bench-{keytype}"
                    _, rec = tern_keygen(srv, AUTH_DOMAIN, selector, keytype)
                    zone[f"{selector}._domainkey.{AUTH_DOMAIN}"] = [("TXT", rec)]
                    dns.set_records(zone)
                srv.start()
                log(f"mailauth {clabel}: started {srv.describe()}")
                if trusted:
                    cmd = None  # smtp-source's own message: From: <SENDER>
                else:
                    cmd = ["smtp-source", *flags, "-s", str(sessions), "-m", str(messages),
                           "-F", presigned, "-M", HELO, "-f", SENDER, "-t", RECIPIENT,
                           f"127.0.0.1:{srv.port}"]
                queries, cpu0 = len(dns.queries), cpu_seconds(srv.proc.pid)
                log(f"mailauth {clabel}: {label} ...")
                res = measure(srv, label, sessions, messages, size, cwork, flags, cmd)
                cpu1 = cpu_seconds(srv.proc.pid)
                if cpu0 is not None and cpu1 is not None and "error" not in res:
                    res["cpu_ms_per_msg"] = (cpu1 - cpu0) * 1000 / messages
                res["dns_queries"] = len(dns.queries) - queries
                res["tern_hwm_kb"] = srv.peak_hwm()
            except ServerError as e:
                res = {"scenario": label, "server": "Tern", "error": f"did not start: {e}"}
            finally:
                srv.stop()
            res.update({"config": cid, "label": clabel, "trusted": trusted,
                        "sign_key": keytype, "verify": verify,
                        "message": "smtp-source -l" if trusted else "pre-signed, -F"})
            if "error" not in res:
                err, what, head = check_auth_delivered(cfg, srv.maildir, zone)
                res["checked"] = what
                res["sample_header"] = head
                if err:
                    res["error"] = f"wrong path measured: {err}"
                    log(f"mailauth {clabel}: WRONG PATH: {err}\nfirst message's header:\n{head}")
            results.append(res)
            logged(f"mailauth {clabel}", srv, res, {})
            if "error" not in res:
                log(f"mailauth {clabel}: Tern CPU {res.get('cpu_ms_per_msg', 0):.3f} ms/msg; "
                    f"checked {res['checked']}; {res['dns_queries']} DNS "
                    f"queries reached the DNS server; first message's header:\n{head}")
    finally:
        dns.stop()
    by = {r["config"]: r for r in results}
    for r in results:
        base = by.get(next(c[5] for c in AUTH_CONFIGS if c[0] == r["config"]))
        if base is None or "error" in r or "error" in base:
            continue
        r["baseline"] = base["config"]
        for k in ("accepted_rate", "e2e_rate"):
            if r.get(k) and base.get(k):
                r[k.replace("rate", "cost")] = 1 - r[k] / base[k]
        if r.get("cpu_ms_per_msg") is not None and base.get("cpu_ms_per_msg") is not None:
            r["cpu_ms_added"] = r["cpu_ms_per_msg"] - base["cpu_ms_per_msg"]


def fmt_cpu(ms, added):
    if ms is None:
        return "-"
    return f"{ms:.2f}" + (f" ({added:+.2f})" if added is not None else "")


def fmt_cost(v):
    return f"{v * 100:+.1f} %" if v is not None else "-"


def report_mailauth(results, failed):
    rows = [("configuration", "message", "accepted msg/s", "cost", "end-to-end msg/s", "cost",
             "peak RSS MiB", "CPU ms/msg", "checked")]
    by = {r["config"]: r for r in results}
    for cid, clabel, trusted, *_ in AUTH_CONFIGS:
        r = by.get(cid)
        if r is None:
            rows.append((clabel, "-", "-", "-", "-", "-", "-", "-",
                         failed.get("Tern", "not run").splitlines()[0][:70]))
            continue
        rows.append((clabel, r["message"], fmt_rate(r.get("accepted_rate")),
                     fmt_cost(r.get("accepted_cost")), fmt_rate(r.get("e2e_rate")),
                     fmt_cost(r.get("e2e_cost")), fmt_mib(r.get("peak_rss_kb")),
                     fmt_cpu(r.get("cpu_ms_per_msg"), r.get("cpu_ms_added")),
                     ("FAILED: " + r["error"])[:70] if "error" in r else r.get("checked", "")))
    return table(rows)


# --- report ---------------------------------------------------------------


def fmt_rate(v):
    return f"{v:,.0f}" if v else "-"


def fmt_mib(kb):
    return f"{kb / 1024:,.1f}" if kb else "-"


def ratio(a, b):
    if not (a and b):
        return "-"
    r = a / b
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.3f}x"


def report(scenarios, names, results, servers_failed):
    rows = [("scenario", "server", "accepted msg/s", "end-to-end msg/s",
             "peak RSS MiB", "peak PSS MiB", "notes")]
    by = {(r["scenario"], r["server"]): r for r in results}
    for label, *_ in scenarios:
        pf, tn = by.get((label, "Postfix")), by.get((label, "Tern"))
        for r, name in ((pf, "Postfix"), (tn, "Tern")):
            if name not in names:
                continue
            if r is None:
                note = servers_failed.get(name, "not run")
                rows.append((label, name, "-", "-", "-", "-", note.splitlines()[0][:60]))
                continue
            rows.append((label, name, fmt_rate(r.get("accepted_rate")), fmt_rate(r.get("e2e_rate")),
                         fmt_mib(r.get("peak_rss_kb")), fmt_mib(r.get("peak_pss_kb")),
                         ("FAILED: " + r["error"])[:60] if "error" in r else ""))
        if pf and tn:
            rows.append((label, "Tern/Postfix",
                         ratio(tn.get("accepted_rate"), pf.get("accepted_rate")),
                         ratio(tn.get("e2e_rate"), pf.get("e2e_rate")),
                         ratio(tn.get("peak_rss_kb"), pf.get("peak_rss_kb")),
                         ratio(tn.get("peak_pss_kb"), pf.get("peak_pss_kb")), ""))
    return table(rows)


def table(rows):
    """A Markdown table: the first two columns and the last (notes) left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    last = len(widths) - 1
    lines = []
    for i, row in enumerate(rows):
        cells = [c.ljust(w) if j < 2 or j == last else c.rjust(w)
                 for j, (c, w) in enumerate(zip(row, widths))]
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def fmt_kib(kb):
    return f"{kb:,.0f}" if kb else "-"


def report_submission(labels, idle_label, names, results, servers_failed):
    """The submission table: loads, then memory per idle TLS session."""
    rows = [("scenario", "server", "handshakes/s", "accepted msg/s", "end-to-end msg/s",
             "peak RSS MiB", "peak PSS MiB", "notes")]
    by = {(r["scenario"], r["server"]): r for r in results}

    def note(r, name):
        if r is None:
            return servers_failed.get(name, "not run").splitlines()[0][:60]
        return ("FAILED: " + r["error"])[:60] if "error" in r else ""

    for label in labels:
        pf, tn = by.get((label, "Postfix")), by.get((label, "Tern"))
        for r, name, shown in ((pf, "Postfix", "Postfix+Dovecot"), (tn, "Tern", "Tern")):
            if name not in names:
                continue
            r0 = r or {}
            rows.append((label, shown, fmt_rate(r0.get("handshake_rate")),
                         fmt_rate(r0.get("accepted_rate")), fmt_rate(r0.get("e2e_rate")),
                         fmt_mib(r0.get("peak_rss_kb")), fmt_mib(r0.get("peak_pss_kb")),
                         note(r, name)))
        if pf and tn:
            rows.append((label, "Tern/Postfix",
                         ratio(tn.get("handshake_rate"), pf.get("handshake_rate")),
                         ratio(tn.get("accepted_rate"), pf.get("accepted_rate")),
                         ratio(tn.get("e2e_rate"), pf.get("e2e_rate")),
                         ratio(tn.get("peak_rss_kb"), pf.get("peak_rss_kb")),
                         ratio(tn.get("peak_pss_kb"), pf.get("peak_pss_kb")), ""))
    mem = [("memory", "server", "sessions open", "open sessions/s", "RSS KiB/session",
            "PSS KiB/session", "RSS before -> after MiB", "notes")]
    pf, tn = by.get((idle_label, "Postfix")), by.get((idle_label, "Tern"))
    for r, name, shown in ((pf, "Postfix", "Postfix+Dovecot"), (tn, "Tern", "Tern")):
        if name not in names:
            continue
        r0 = r or {}
        span = (f"{fmt_mib(r0.get('rss_before_kb'))} -> {fmt_mib(r0.get('rss_after_kb'))}"
                if r0.get("rss_after_kb") else "-")
        rate = r0["open"] / r0["open_s"] if r0.get("open_s") else None
        rows_note = note(r, name) or (f"{r0.get('procs_after')} processes"
                                      if name == "Postfix" and r0.get("procs_after") else "")
        mem.append((idle_label, shown, str(r0.get("open", "-")), fmt_rate(rate),
                    fmt_kib(r0.get("rss_per_session_kb")), fmt_kib(r0.get("pss_per_session_kb")),
                    span, rows_note))
    if pf and tn:
        mem.append((idle_label, "Tern/Postfix", "",
                    ratio(tn["open"] / tn["open_s"] if tn.get("open_s") else None,
                          pf["open"] / pf["open_s"] if pf.get("open_s") else None),
                    ratio(tn.get("rss_per_session_kb"), pf.get("rss_per_session_kb")),
                    ratio(tn.get("pss_per_session_kb"), pf.get("pss_per_session_kb")), "", ""))
    return table(rows) + "\n\n" + table(mem)


def run_phase(servers, failed, body):
    """Starts the servers, runs body(running) and stops them all whatever happens."""
    try:
        running = []
        for srv in servers:
            try:
                srv.start()
                log(f"started {srv.describe()}")
                running.append(srv)
            except ServerError as e:
                failed[srv.name] = f"did not start: {e}"
                log(f"{srv.name} NOT MEASURED: {e}")
        body(running)
        for srv in running:
            if isinstance(srv, Tern) and srv.alive():
                log(f"Tern peak RSS over the whole run (VmHWM): {fmt_mib(srv.peak_hwm())} MiB")
    finally:
        for srv in servers:
            try:
                srv.stop()
            except Exception as e:  # keep cleaning up the others
                log(f"stopping {srv.name}: {e}")


def logged(label, srv, r, failed):
    if "error" in r:
        log(f"{label}: {srv.name} FAILED: {r['error']}")
        if not srv.alive():
            failed[srv.name] = f"stopped working during {label}"
            log(f"last lines of the {srv.name} log:\n{tail(srv.logfile)}")
    elif "rss_per_session_kb" in r:
        log(f"{label}: {srv.name} {r['rss_per_session_kb']:,.0f} KiB RSS, "
            f"{r['pss_per_session_kb']:,.0f} KiB PSS per session")
    else:
        extra = (f"{r['handshake_rate']:,.0f} handshakes/s, "
                 if r.get("handshake_rate") is not None else "")
        log(f"{label}: {srv.name} {extra}accepted {r['accepted_rate']:,.0f} msg/s, "
            f"end-to-end {r['e2e_rate']:,.0f} msg/s, "
            f"peak RSS {fmt_mib(r['peak_rss_kb'])} MiB")


def build_tls_source(repo, work):
    out = os.path.join(work, "tls-source")
    cc = os.environ.get("CC", "cc")
    r = subprocess.run([cc, "-std=c17", "-O2", "-Wall", "-Wextra", "-pthread", "-o", out,
                        os.path.join(repo, "bench", "tls-source.c"), "-lssl", "-lcrypto"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"bench: cannot build tls-source:\n{r.stderr}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--tern", help="path to a release build of tern")
    ap.add_argument("--tls-source", help="path to a build of bench/tls-source.c "
                    "(default: built into the work directory)")
    ap.add_argument("--only", choices=["tern", "postfix"], help="measure one server only")
    part = ap.add_mutually_exclusive_group()
    part.add_argument("--only-submission", action="store_true",
                      help="only the submission path (STARTTLS + AUTH, Postfix with Dovecot SASL)")
    part.add_argument("--no-submission", action="store_true",
                      help="skip the submission path (the mx and relay paths, with smtp-source)")
    part.add_argument("--only-relay", action="store_true",
                      help="only the relay path (to smtp-sink: Tern by MX through the bench's "
                      "DNS server, Postfix through relayhost)")
    part.add_argument("--only-mailauth", action="store_true",
                      help="only the mail authentication phase (Tern alone: DKIM signing, "
                      "SPF+DKIM+DMARC verification, against their baselines)")
    ap.add_argument("--no-relay", action="store_true", help="skip the relay path")
    ap.add_argument("--no-mailauth", action="store_true",
                    help="skip the mail authentication phase")
    ap.add_argument("--quick", action="store_true", help="a tenth of the messages, for a smoke test")
    ap.add_argument("--persistent", action="store_true",
                    help="smtp-source reuses each connection (-d) instead of one per message")
    ap.add_argument("--postfix-port", type=int, default=2526)
    ap.add_argument("--postfix-submission-port", type=int, default=5871)
    ap.add_argument("--tern-port", type=int, default=2625)
    ap.add_argument("--sink-port", type=int, default=2725,
                    help=f"the relay path's smtp-sink for Postfix on {SINK_ADDR}:PORT, "
                    "Tern's on PORT+1")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("bench: run as root (Postfix needs it to start its private instance)")
    if shutil.which("smtp-source") is None:
        sys.exit("bench: smtp-source not found (install postfix: scripts/install-deps.sh --test)")
    if args.only_relay and args.no_relay:
        sys.exit("bench: --only-relay and --no-relay contradict each other")
    if args.only_mailauth and (args.no_mailauth or args.only == "postfix"):
        sys.exit("bench: --only-mailauth measures Tern alone; it contradicts "
                 "--no-mailauth and --only postfix")
    mx_part = not (args.only_submission or args.only_relay or args.only_mailauth)
    sub_part = not (args.no_submission or args.only_relay or args.only_mailauth)
    relay_part = not (args.no_relay or args.only_submission or args.only_mailauth)
    auth_part = not (args.no_mailauth or args.only_submission or args.only_relay
                     or args.only == "postfix")
    if relay_part and shutil.which("smtp-sink") is None:
        sys.exit("bench: smtp-sink not found (install postfix: scripts/install-deps.sh --test)")

    scenarios = []
    for s, m, z in SCENARIOS:
        m = max(s, m // 10) if args.quick else m
        scenarios.append((scenario_label(s, m, z), s, m, z))
    flags = ["-d"] if args.persistent else []
    sub_scenarios = []
    for s, m, z, d in SUB_SCENARIOS:
        m = max(s, m // 10) if args.quick else m
        sub_scenarios.append((sub_label(s, m, z, d), s, m, z, d))
    relay_scenarios = []
    for s, m, z in RELAY_SCENARIOS:
        m = max(s, m // 10) if args.quick else m
        relay_scenarios.append((scenario_label(s, m, z), s, m, z))
    s, m, z = AUTH_SCENARIO
    m = max(s, m // 10) if args.quick else m
    auth_scenario = (scenario_label(s, m, z), s, m, z)
    idle = IDLE_SESSIONS // 10 if args.quick else IDLE_SESSIONS
    idle_label = f"{idle} idle TLS sessions"

    work = tempfile.mkdtemp(prefix="tern-bench.")
    os.chmod(work, 0o755)  # mailbox owners and Tern's unprivileged user must get through
    log(f"work directory {work}")
    tern_path = args.tern and os.path.abspath(args.tern)
    tern_ports = (args.tern_port, args.tern_port + 3345, args.tern_port + 2125)
    results, failed, sub_results, sub_failed = [], {}, [], {}
    relay_results, relay_failed = [], {}
    auth_results, auth_failed = [], {}
    names, relay_names = [], []
    try:
        if mx_part:
            servers = []
            if args.only != "tern":
                servers.append(Postfix(work, args.postfix_port))
            if args.only != "postfix":
                servers.append(Tern(work, tern_path, args.repo, tern_ports,
                                    extra=MX_NO_MAILAUTH))
            names = [s.name for s in servers]

            def mx_loads(running):
                for label, sessions, messages, size in scenarios:
                    for srv in running:
                        if srv.name in failed:
                            continue
                        log(f"{label}: {srv.name} ...")
                        r = measure(srv, label, sessions, messages, size, work, flags)
                        results.append(r)
                        logged(label, srv, r, failed)

            run_phase(servers, failed, mx_loads)

        if relay_part:
            relay_names = [n for n in ("Postfix", "Tern")
                           if not args.only or args.only == n.lower()]
            sinks = {n: Sink(work, n, args.sink_port + i) for i, n in enumerate(relay_names)}
            dns = None
            try:
                for sink in sinks.values():
                    sink.start()
                servers = []
                if "Postfix" in sinks:
                    servers.append(Postfix(work, args.postfix_port, relay_sink=sinks["Postfix"]))
                if "Tern" in sinks:
                    try:
                        dns = start_dns(args.repo)
                        log(f"DNS server on {dns.forwarder}: {RELAY_DOMAIN} MX 10 {SINK_MX}, "
                            f"{SINK_MX} A {SINK_ADDR}")
                        servers.append(Tern(work, tern_path, args.repo, tern_ports,
                                            relay=(dns.forwarder, sinks["Tern"])))
                    except (ServerError, RuntimeError, OSError) as e:
                        relay_failed["Tern"] = f"no DNS server: {e}"
                        log(f"relay: Tern NOT MEASURED: {e}")

                def relay_loads(running):
                    for label, sessions, messages, size in relay_scenarios:
                        for srv in running:
                            if srv.name in relay_failed:
                                continue
                            log(f"relay {label}: {srv.name} ...")
                            r = measure(srv, label, sessions, messages, size, work, flags,
                                        sink=sinks[srv.name])
                            relay_results.append(r)
                            logged(f"relay {label}", srv, r, relay_failed)

                run_phase(servers, relay_failed, relay_loads)
            except ServerError as e:
                log(f"the relay path NOT MEASURED: {e}")
                for n in relay_names:
                    relay_failed.setdefault(n, f"not measured: {e}")
            finally:
                for sink in sinks.values():
                    sink.stop()
                if dns:
                    dns.stop()

        if auth_part:
            run_mailauth(args, work, tern_path, tern_ports, flags, auth_scenario, auth_results,
                         auth_failed)

        if sub_part:
            tls_source = (os.path.abspath(args.tls_source) if args.tls_source
                          else build_tls_source(args.repo, work))
            cert, key = make_certificate(work)
            servers = []
            if args.only != "tern":
                sub = Submission(args.postfix_submission_port, cert, key,
                                 Dovecot(work, args.repo))
                servers.append(Postfix(work, args.postfix_port, sub))
            if args.only != "postfix":
                servers.append(Tern(work, tern_path, args.repo, tern_ports, (cert, key)))
            names = [s.name for s in servers]

            def idle_memory(running):
                for srv in running:
                    log(f"{idle_label}: {srv.name} ...")
                    r = measure_idle(srv, idle, tls_source, work)
                    sub_results.append(r)
                    logged(idle_label, srv, r, sub_failed)

            def submission_loads(running):
                for label, sessions, messages, size, persistent in sub_scenarios:
                    for srv in running:
                        if srv.name in sub_failed:
                            continue
                        log(f"{label}: {srv.name} ...")
                        cmd = [tls_source, *(["-d"] if persistent else []), "-s", str(sessions),
                               "-m", str(messages), "-l", str(size), "-M", HELO,
                               "-u", SUB_USER, "-p", SUB_PASSWORD, "-f", SUB_USER,
                               "-t", RECIPIENT, f"127.0.0.1:{srv.sub_port}"]
                        r = measure(srv, label, sessions, messages, size, work, [], cmd)
                        sub_results.append(r)
                        logged(label, srv, r, sub_failed)

            # Each on fresh servers: the memory per session on processes that have not
            # grown from other loads, and the loads without the hundreds of idle smtpd
            # processes the memory measurement leaves behind for max_idle (100 s).
            run_phase(servers, sub_failed, idle_memory)
            run_phase(servers, sub_failed, submission_loads)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    if mx_part:
        mode = "one connection per session (-d)" if args.persistent else "one connection per message"
        print()
        print(f"smtp-source to 127.0.0.1, {mode}; {os.cpu_count()} CPUs")
        print(report(scenarios, names, results, failed))
    if relay_part:
        mode = "one connection per session (-d)" if args.persistent else "one connection per message"
        print()
        print(f"Relay: smtp-source to 127.0.0.1 for {RELAY_RECIPIENT}, {mode}; each server relays "
              f"to its own smtp-sink on {SINK_ADDR} (Tern: MX lookup through the bench's DNS "
              f"server; Postfix: relayhost, no DNS); end to end = counted by the sink; "
              f"{os.cpu_count()} CPUs")
        print(report(relay_scenarios, relay_names, relay_results, relay_failed))
    if auth_part:
        mode = "one connection per session (-d)" if args.persistent else "one connection per message"
        print()
        print(f"Mail authentication: Tern alone, smtp-source {auth_scenario[0]} to 127.0.0.1, "
              f"{mode}, each configuration on a fresh Tern; cost = 1 - rate / its baseline's "
              f"(signing: baseline, trusted; verifying: baseline, untrusted); CPU ms/msg = "
              f"Tern's user+system time from the start of the load until every message is "
              f"delivered, per message (in parentheses: above its baseline's); "
              f"{os.cpu_count()} CPUs")
        print(report_mailauth(auth_results, auth_failed))
    if sub_part:
        tls = next((r["tls"] for r in sub_results if r.get("tls")), "TLS")
        print()
        print(f"Submission: tls-source to 127.0.0.1, STARTTLS ({tls}) and AUTH PLAIN, "
              f"Postfix with Dovecot SASL; {os.cpu_count()} CPUs")
        print(report_submission([x[0] for x in sub_scenarios], idle_label, names,
                                sub_results, sub_failed))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "failed": failed, "submission": sub_results,
                       "submission_failed": sub_failed, "relay": relay_results,
                       "relay_failed": relay_failed, "mailauth": auth_results,
                       "mailauth_failed": auth_failed}, f, indent=2)
    bad = ([r for r in results + sub_results + relay_results + auth_results if "error" in r]
           or failed or sub_failed or relay_failed or auth_failed)
    if bad:
        print("\nbench: some measurements failed (see above)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
