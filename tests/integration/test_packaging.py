"""packaging/: the systemd unit is valid for systemd-analyze, starts Tern as
root with only the capabilities its start needs and lets it write where the
packaged configuration puts the spool and the Maildirs; the packaged
configuration is valid; the install scripts parse."""

import re
import shutil
import subprocess

from conftest import REPO, tern_bin

UNIT = REPO / "packaging" / "tern.service"
CONF = REPO / "packaging" / "tern.conf"


def directives(text):
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "[")):
            continue
        k, _, v = line.partition("=")
        out.setdefault(k, []).append(v)
    return out


def conf_value(key):
    m = re.search(r"(?m)^%s\s*=\s*(.*)$" % key, CONF.read_text())
    return m.group(1).strip()


def test_unit_verifies(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze missing (scripts/install-deps.sh --test)"
    # the unit as installed, with ExecStart on the binary under test (the
    # installed /usr/sbin/tern need not exist here)
    unit = tmp_path / "tern.service"
    unit.write_text(UNIT.read_text().replace("/usr/sbin/tern", str(tern_bin())))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    # a mistake is seen
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=sideways"))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                       capture_output=True, text=True, timeout=120)
    assert "sideways" in r.stderr, r.stderr


def test_unit_directives():
    d = directives(UNIT.read_text())
    assert d["ExecStart"] == ["/usr/sbin/tern serve -c /etc/tern/tern.conf"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["KillSignal"] == ["SIGTERM"]
    assert d["Restart"] == ["on-failure"]
    assert "User" not in d and "AmbientCapabilities" not in d  # started as root, drops itself
    caps = set(d["CapabilityBoundingSet"][0].split())
    assert caps == {"CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN",
                    "CAP_DAC_OVERRIDE"}
    assert d["NoNewPrivileges"] == ["yes"] and d["ProtectSystem"] == ["strict"]
    assert set(d["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    # the packaged configuration writes only where the unit lets it
    writable = set(d["ReadWritePaths"][0].split())
    assert conf_value("spool_dir") in writable
    assert conf_value("maildir_root") in writable
    state = "/var/lib/" + d["StateDirectory"][0]
    assert conf_value("tls_cert_file").startswith(state + "/")
    assert conf_value("run_user") == "tern"


def test_packaged_config_is_valid(tmp_path):
    text = CONF.read_text()
    for name in ("aliases", "users"):
        (tmp_path / name).write_text("")
        text = text.replace("/etc/tern/%s" % name, str(tmp_path / name))
    conf = tmp_path / "tern.conf"
    conf.write_text(text)
    r = subprocess.run([str(tern_bin()), "check", "-c", str(conf)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "6 listeners" in r.stdout, r.stdout


def test_scripts_parse():
    for name in ("install.sh", "quickstart.sh", "install-deps.sh"):
        r = subprocess.run(["bash", "-n", str(REPO / "scripts" / name)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, (name, r.stderr)
