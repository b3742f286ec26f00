"""`tern check -c FILE`: exit 0 for a valid configuration; exit 1 and
"FILE:LINE: message" for each error."""

import subprocess

from conftest import EXAMPLE_CONF, tern_bin


def check(path):
    return subprocess.run([str(tern_bin()), "check", "-c", str(path)], capture_output=True,
                          timeout=20)


def test_check_example_config(tern):
    s = tern(start=False)
    r = check(s.conf)
    assert r.returncode == 0, r
    r = check(EXAMPLE_CONF)
    assert r.returncode == 0, r


def test_check_reports_file_and_line(tern, tmp_path):
    base = EXAMPLE_CONF.read_text()
    nlines = base.count("\n") + (0 if base.endswith("\n") else 1)
    conf = tmp_path / "bad.conf"
    conf.write_text(base + ("" if base.endswith("\n") else "\n")
                    + "no_such_key = 1\n"      # line nlines+1
                    + "max_recipients = 5\n")  # line nlines+2: below the minimum of 100
    r = check(conf)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert r.returncode == 1, (r.returncode, out)
    assert "%s:%d:" % (conf, nlines + 1) in out, out
    assert "%s:%d:" % (conf, nlines + 2) in out, out
    # tern serve refuses it too
    r = subprocess.run([str(tern_bin()), "serve", "-c", str(conf)], capture_output=True, timeout=20)
    assert r.returncode != 0
