"""The shared black-box probe (../shared/probe/smtp_probe.py) against a fresh
server: no FAIL and no ERROR line, with every STARTTLS and AUTH check run
(not skipped). The probe expects one port that takes unauthenticated mail for
a local domain and also offers AUTH after STARTTLS: that is an mx listener
with mx_auth = yes; --tls-port is the implicit-TLS submissions listener. WARN
and INFO lines are printed for the record."""

import subprocess
import sys

from conftest import PROBE


def test_probe(tern):
    s = tern({"message_size_limit": "10M", "mx_auth": "yes"})
    capture = s.maildir_root / "example.test" / "postmaster" / "new"
    cmd = ["/usr/bin/python3", str(PROBE), "--host", "127.0.0.1", "--port", str(s.mx_port),
           "--tls-port", str(s.submissions_port), "--user", "demo@example.test",
           "--password", "tern-demo",
           "--local-domain", "example.test", "--capture-dir", str(capture)]
    out = subprocess.run(cmd, capture_output=True, timeout=240)
    text = out.stdout.decode("utf-8", "replace") + out.stderr.decode("utf-8", "replace")
    sys.stdout.write(text)
    bad = [l for l in text.splitlines() if l.startswith("FAIL") or l.startswith("ERROR")]
    assert out.returncode == 0 and "# summary:" in text and not bad, \
        "probe reported %d FAIL/ERROR line(s):\n%s\n\nfull output:\n%s" % (
            len(bad), "\n".join(bad), text)
    checks = {l.split()[1]: l.split()[0] for l in text.splitlines()
              if l[:4] in ("PASS", "FAIL", "WARN", "INFO", "SKIP")}
    for name in ("starttls_injection", "starttls_state_reset", "starttls_not_readvertised",
                 "starttls_twice", "starttls_with_arg", "auth_over_plaintext",
                 "auth_plaintext_refused", "auth_wrong_password", "auth_bad_base64",
                 "auth_unknown_mech", "auth_cancel", "auth_in_transaction", "auth_good_password",
                 "auth_twice", "tls_port_greeting", "tls_port_no_starttls", "tls_port_auth_wrong"):
        assert checks.get(name) == "PASS", "%s: %s\n%s" % (name, checks.get(name), text)
