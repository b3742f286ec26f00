"""Shared pieces of the control socket tests (test_queue.py, test_sendmail.py).

`tern queue`, sendmail and mailq are run as real programs against the
test's server: sendmail, mailq and newaliases are symbolic links to the
binary under test in a directory of the test's own (nothing is installed
system-wide), found through $TERN_CONFIG or -C/-c, as a program would run
them. Every run must be free of sanitizer reports (the ASan build runs them
too).
"""

import json
import os
import subprocess
from pathlib import Path

from conftest import SANITIZER_PATTERNS, server_env, tern_bin


def links(directory):
    """A directory holding sendmail, mailq and newaliases links to tern."""
    d = Path(directory) / "bin"
    d.mkdir(parents=True, exist_ok=True)
    for name in ("sendmail", "mailq", "newaliases"):
        p = d / name
        if not p.exists():
            p.symlink_to(tern_bin())
    return d


def _check(proc, what):
    for pat in SANITIZER_PATTERNS:
        assert pat not in proc.stderr, "sanitizer report from %s:\n%s" % (what, proc.stderr)
    return proc


def run(args, srv=None, input=b"", env=None, timeout=30, **kw):
    """Run a program with TERN_CONFIG naming srv's configuration."""
    e = server_env()
    if srv is not None:
        e["TERN_CONFIG"] = str(srv.conf)
    e.update(env or {})
    proc = subprocess.run([str(a) for a in args], input=input, capture_output=True, env=e,
                          timeout=timeout, **kw)
    proc.stdout = proc.stdout.decode("utf-8", "replace")
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return _check(proc, args[0])


def queue(srv, *args, check=True):
    """`tern queue -c CONF ARGS...`; with check, exit status 0 is required."""
    proc = run([tern_bin(), "queue", "-c", srv.conf] + list(args))
    if check:
        assert proc.returncode == 0, "tern queue %s: %d\n%s%s" % (
            " ".join(args), proc.returncode, proc.stdout, proc.stderr)
    return proc


def queue_json(srv, *args):
    """The parsed --json output of `tern queue ARGS... --json`."""
    return json.loads(queue(srv, *(list(args) + ["--json"])).stdout)


def listed_ids(srv, *selectors):
    return sorted(m["id"] for m in queue_json(srv, "list", *selectors))


def sendmail(bindir, srv, args, message=b"", name="sendmail", env=None, **kw):
    """Run the sendmail link (or mailq, newaliases) with message on stdin."""
    return run([Path(bindir) / name] + list(args), srv=srv, input=message, env=env, **kw)


def wait_until(pred, timeout=10.0, what="condition"):
    import time
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("%s not reached within %.0fs" % (what, timeout))
        time.sleep(0.1)
