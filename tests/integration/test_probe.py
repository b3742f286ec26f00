"""The shared black-box probe (../shared/probe/smtp_probe.py) against a fresh
server: no FAIL and no ERROR line. TLS and AUTH checks may SKIP until those
capabilities exist; WARN and INFO lines are printed for the record."""

import subprocess
import sys

from conftest import PROBE


def test_probe(tern):
    s = tern({"message_size_limit": "10M"})
    capture = s.maildir_root / "example.test" / "postmaster" / "new"
    cmd = ["/usr/bin/python3", str(PROBE), "--host", "127.0.0.1", "--port", str(s.mx_port),
           "--local-domain", "example.test", "--capture-dir", str(capture)]
    out = subprocess.run(cmd, capture_output=True, timeout=240)
    text = out.stdout.decode("utf-8", "replace") + out.stderr.decode("utf-8", "replace")
    sys.stdout.write(text)
    bad = [l for l in text.splitlines() if l.startswith("FAIL") or l.startswith("ERROR")]
    assert out.returncode == 0 and "# summary:" in text and not bad, \
        "probe reported %d FAIL/ERROR line(s):\n%s\n\nfull output:\n%s" % (
            len(bad), "\n".join(bad), text)
