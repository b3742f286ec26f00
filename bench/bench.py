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

and prints a table with Tern/Postfix ratios. bench.sh builds Tern and calls
this; see bench/README.md.
"""

import argparse
import json
import os
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


def scenario_label(sessions, messages, size):
    unit = f"{size // 1048576} MiB" if size % 1048576 == 0 else f"{size // 1024} KiB"
    return f"{sessions} x {messages:,} x {unit}"


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

    def __init__(self, work, port):
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
relayhost =
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
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write("# Generated by bench/bench.py\n" + "\n".join(services) + "\n")

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
        pid = self.master_pid()
        return [pid] if pid else []

    def alive(self):
        pid = self.master_pid()
        return bool(pid) and os.path.exists(f"/proc/{pid}")

    def start(self):
        if shutil.which("postfix") is None:
            raise ServerError("postfix is not installed (scripts/install-deps.sh --test)")
        if not port_free(self.port):
            raise ServerError(f"127.0.0.1:{self.port} is in use")
        self.configure()
        r = self.postfix("check")
        if r.returncode != 0:
            raise ServerError(f"postfix check failed:\n{r.stdout}{r.stderr}{tail(self.logfile)}")
        r = self.postfix("start")
        self.started = True
        if r.returncode != 0 or not wait_port(self.port, 30):
            raise ServerError(f"postfix did not start:\n{r.stdout}{r.stderr}{tail(self.logfile)}")

    def stop(self):
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
        return f"Postfix {r.stdout.split('=')[-1].strip()}: private instance in {self.dir}"


class Tern:
    """tern serve on a copy of examples/tern.conf with bench overrides appended."""

    name = "Tern"

    def __init__(self, work, binary, repo, ports):
        self.dir = os.path.join(work, "tern")
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
max_connections = 1000
max_connections_per_client = 1000
message_size_limit = 50M
"""
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
        self.logf = open(self.logfile, "w")
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
        return f"Tern {self.binary}: config {self.conf}"


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


def measure(server, label, sessions, messages, size, work, flags):
    """Send one load to one server; returns a result dict (with 'error' on failure)."""
    res = {"scenario": label, "server": server.name, "sessions": sessions,
           "messages": messages, "size": size}
    # Nothing is deleted between loads: on ext4 without a journal (as on this
    # machine) the inode allocator skips every inode freed in the last 5 s (5 min
    # while its inode table block is dirty, which it is as soon as new files are
    # created beside them) and scans past each one on every file it creates, so a
    # server measured after a mass deletion would pay for it. Messages already in
    # the Maildir are counted first; the work directory goes at the end.
    baseline = count_messages(server.maildir)
    cmd = ["smtp-source", *flags, "-s", str(sessions), "-m", str(messages), "-l", str(size),
           "-M", HELO, "-f", SENDER, "-t", RECIPIENT, f"127.0.0.1:{server.port}"]
    out_path = os.path.join(work, f"smtp-source-{server.name}-{sessions}-{messages}.log")
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
            res["error"] = f"smtp-source exited {r.returncode}: {tail(out_path, 5).strip()}"
    except subprocess.TimeoutExpired:
        t_accept = None
        res["error"] = f"smtp-source did not finish within {send_limit:.0f} s"
    t_e2e = None
    if "error" not in res:
        deadline = time.monotonic() + 120 + messages / 20
        while time.monotonic() < deadline:
            n = count_messages(server.maildir) - baseline
            if n >= messages:
                t_e2e = time.monotonic() - t0
                break
            if not server.alive():
                res["error"] = f"{server.name} died during delivery"
                break
            time.sleep(0.05)
        else:
            res["error"] = (f"only {count_messages(server.maildir) - baseline} of {messages} "
                            f"messages reached the Maildir within the time limit")
    sampler.stop()
    if t_accept:
        res["accepted_s"] = t_accept
        res["accepted_rate"] = messages / t_accept
    if t_e2e:
        res["e2e_s"] = t_e2e
        res["e2e_rate"] = messages / t_e2e
        res["delivered"] = count_messages(server.maildir) - baseline
    res["peak_rss_kb"] = sampler.peak_rss
    res["peak_pss_kb"] = sampler.peak_pss
    res["peak_procs"] = sampler.peak_procs
    if not server.alive():
        res.setdefault("error", f"{server.name} is no longer running")
    return res


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
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        cells = [c.ljust(w) if j < 2 or j == 6 else c.rjust(w)
                 for j, (c, w) in enumerate(zip(row, widths))]
        lines.append("| " + " | ".join(cells) + " |")
        if i == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--tern", help="path to a release build of tern")
    ap.add_argument("--only", choices=["tern", "postfix"], help="measure one server only")
    ap.add_argument("--quick", action="store_true", help="a tenth of the messages, for a smoke test")
    ap.add_argument("--persistent", action="store_true",
                    help="smtp-source reuses each connection (-d) instead of one per message")
    ap.add_argument("--postfix-port", type=int, default=2526)
    ap.add_argument("--tern-port", type=int, default=2625)
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("bench: run as root (Postfix needs it to start its private instance)")
    if shutil.which("smtp-source") is None:
        sys.exit("bench: smtp-source not found (install postfix: scripts/install-deps.sh --test)")

    scenarios = []
    for s, m, z in SCENARIOS:
        m = max(s, m // 10) if args.quick else m
        scenarios.append((scenario_label(s, m, z), s, m, z))
    flags = ["-d"] if args.persistent else []

    work = tempfile.mkdtemp(prefix="tern-bench.")
    os.chmod(work, 0o755)  # mailbox owners and Tern's unprivileged user must get through
    log(f"work directory {work}")
    servers, failed = [], {}
    if args.only != "tern":
        servers.append(Postfix(work, args.postfix_port))
    if args.only != "postfix":
        servers.append(Tern(work, args.tern and os.path.abspath(args.tern), args.repo,
                            (args.tern_port, args.tern_port + 3345, args.tern_port + 2125)))
    results = []
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
        for label, sessions, messages, size in scenarios:
            for srv in running:
                if srv.name in failed:
                    continue
                log(f"{label}: {srv.name} ...")
                r = measure(srv, label, sessions, messages, size, work, flags)
                results.append(r)
                if "error" in r:
                    log(f"{label}: {srv.name} FAILED: {r['error']}")
                    if not srv.alive():
                        failed[srv.name] = f"stopped working during {label}"
                        log(f"last lines of the {srv.name} log:\n{tail(srv.logfile)}")
                else:
                    log(f"{label}: {srv.name} accepted {r['accepted_rate']:,.0f} msg/s, "
                        f"end-to-end {r['e2e_rate']:,.0f} msg/s, "
                        f"peak RSS {fmt_mib(r['peak_rss_kb'])} MiB")
        for srv in running:
            if isinstance(srv, Tern) and srv.alive():
                log(f"Tern peak RSS over the whole run (VmHWM): {fmt_mib(srv.peak_hwm())} MiB")
    finally:
        for srv in servers:
            try:
                srv.stop()
            except Exception as e:  # keep cleaning up the others
                log(f"stopping {srv.name}: {e}")
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    mode = "one connection per session (-d)" if args.persistent else "one connection per message"
    print()
    print(f"smtp-source to 127.0.0.1, {mode}; {os.cpu_count()} CPUs")
    print(report(scenarios, [s.name for s in servers], results, failed))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "failed": failed}, f, indent=2)
    bad = [r for r in results if "error" in r] or failed
    if bad:
        print("\nbench: some measurements failed (see above)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
