"""`tern cert selfsigned -c FILE [--force]`: writes a certificate (0644) and
key (0600) for `hostname` where tls_cert_file and tls_key_file say, creating
directories; refuses to replace existing files without --force; the
certificate names the hostname in its subject CN and subjectAltName, and
the key matches it (checked with the openssl command, not with Tern)."""

import os
import re
import stat
import subprocess

from conftest import server_env, tern_bin

HOSTNAME = "mail.example.test"


def write_conf(tmp_path, extra=""):
    conf = tmp_path / "tern.conf"
    conf.write_text(
        "hostname = %s\n"
        "mx_listen = 127.0.0.1:2525\n"
        "local_domains = example.test\n"
        "spool_dir = %s\n"
        "maildir_root = %s\n"
        "tls_cert_file = %s\n"
        "tls_key_file = %s\n%s"
        % (HOSTNAME, tmp_path / "spool", tmp_path / "mail", tmp_path / "etc" / "cert.pem",
           tmp_path / "etc" / "private" / "key.pem", extra))
    return conf, tmp_path / "etc" / "cert.pem", tmp_path / "etc" / "private" / "key.pem"


def cert(*args):
    r = subprocess.run([str(tern_bin()), "cert", *args], capture_output=True, timeout=60,
                       env=server_env())
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    for pat in ("ERROR: AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert pat not in out, out
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, timeout=30)
    assert r.returncode == 0, r
    return r.stdout.decode()


def mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_selfsigned_writes_pair(tmp_path):
    conf, certf, keyf = write_conf(tmp_path)
    rc, out, err = cert("selfsigned", "-c", str(conf))
    assert rc == 0, (out, err)
    assert mode(certf) == 0o644
    assert mode(keyf) == 0o600
    assert str(certf) in out and str(keyf) in out, out
    assert "subject CN: %s" % HOSTNAME in out, out
    # the fingerprint printed is the certificate's
    fp = openssl("x509", "-in", str(certf), "-noout", "-fingerprint", "-sha256")
    assert fp.strip().split("=", 1)[1] in out, (fp, out)
    m = re.search(r"not after: (\d{4})-(\d\d)-(\d\d)T", out)
    assert m, out
    # no temporary files left beside them
    assert sorted(os.listdir(certf.parent)) == ["cert.pem", "private"]
    assert os.listdir(keyf.parent) == ["key.pem"]

    text = openssl("x509", "-in", str(certf), "-noout", "-subject", "-ext", "subjectAltName")
    assert re.search(r"subject=\s*CN\s*=\s*%s" % re.escape(HOSTNAME), text), text
    assert "DNS:%s" % HOSTNAME in text, text
    # the key belongs to the certificate
    assert (openssl("x509", "-in", str(certf), "-noout", "-pubkey")
            == openssl("pkey", "-in", str(keyf), "-pubout"))


def test_selfsigned_refuses_to_overwrite(tmp_path):
    conf, certf, keyf = write_conf(tmp_path)
    rc, out, err = cert("selfsigned", "-c", str(conf))
    assert rc == 0, (out, err)
    before = (certf.read_bytes(), keyf.read_bytes())

    rc, out, err = cert("selfsigned", "-c", str(conf))
    assert rc == 1, (out, err)
    assert "--force" in err and str(certf) in err, err
    assert (certf.read_bytes(), keyf.read_bytes()) == before

    # only one of the two existing is enough to refuse
    certf.unlink()
    rc, out, err = cert("selfsigned", "-c", str(conf))
    assert rc == 1, (out, err)
    assert not certf.exists()

    rc, out, err = cert("selfsigned", "-c", str(conf), "--force")
    assert rc == 0, (out, err)
    assert certf.read_bytes() != before[0]
    assert keyf.read_bytes() != before[1]
    assert mode(certf) == 0o644
    assert mode(keyf) == 0o600


def test_selfsigned_needs_tls_files_and_valid_usage(tmp_path):
    conf = tmp_path / "no-tls.conf"
    conf.write_text("hostname = %s\nmx_listen = 127.0.0.1:2525\nlocal_domains = example.test\n"
                    % HOSTNAME)
    rc, out, err = cert("selfsigned", "-c", str(conf))
    assert rc == 1
    assert "tls_cert_file" in err, err

    rc, out, err = cert("selfsigned", "-c", str(tmp_path / "missing.conf"))
    assert rc == 1

    conf, _, _ = write_conf(tmp_path)
    assert cert("selfsigned", "-c", str(conf), "--bogus")[0] == 2
    assert cert("selfsigned", "-c", str(conf), "extra")[0] == 2
    assert cert("nosuchthing")[0] == 2
    assert cert()[0] == 2
