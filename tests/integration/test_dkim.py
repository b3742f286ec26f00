"""Black-box tests of DKIM: `tern dkim keygen|sign|verify` and `tern dns`.

Keys are made by `tern dkim keygen` (RSA and Ed25519) into a key directory of
the test's own; their TXT records are served, as lists of character-strings
of at most 255 octets, by a scripted DNS server on loopback
(dns_server.DNSTestServer, python3-dnslib) that Tern reaches through
`dns_forwarders`. The independent oracle is dkimpy (python3-dkim): messages
Tern signs must verify in dkimpy with keys fetched from the same DNS server,
and messages dkimpy signs (RSA, and Ed25519 with keys made by python3-nacl)
must verify in `tern dkim verify`. RFC 6376, RFC 8463, RFC 8601 result names.
"""

import base64
import os
import re
import stat
import subprocess
import time

import dkim
import nacl.signing
import pytest
from dnslib import DNSRecord

from conftest import EXAMPLE_CONF, SANITIZER_PATTERNS, server_env, tern_bin
from dns_server import DNSTestServer

DOMAIN = "example.test"
HOSTNAME = "mail.example.test"
DNS_TIMEOUT = 2

MESSAGE = (
    b"From: Alice Example <alice@example.test>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: DKIM test message\r\n"
    b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
    b"Message-ID: <dkim-test-1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=us-ascii\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b"\r\n"
    b"this message is signed.  Twice, perhaps.\r\n"
    b"-- \r\n"
    b"Alice\r\n"
)


def run(args, stdin=b"", timeout=60):
    proc = subprocess.run([str(tern_bin())] + args, input=stdin, capture_output=True,
                          timeout=timeout, env=server_env())
    err = proc.stderr.decode("utf-8", "replace")
    for pat in SANITIZER_PATTERNS:
        assert pat not in err, err
    return proc


def zone_strings(line):
    """The character-strings of a zone-file TXT line, unescaped."""
    return [re.sub(r'\\(.)', r'\1', s) for s in re.findall(r'"((?:[^"\\]|\\.)*)"', line)]


@pytest.fixture(scope="module")
def dns():
    srv = DNSTestServer({}).start()
    yield srv
    srv.stop()


class Lab:
    """A configuration, a key directory and a zone for one test."""

    def __init__(self, tmp_path, dns):
        self.dir = tmp_path
        self.dns = dns
        self.keydir = tmp_path / "dkim"
        self.zone = {}
        self.behaviours = []
        self.conf = tmp_path / "tern.conf"
        text = EXAMPLE_CONF.read_text()
        text += "\n# test overrides\nhostname = %s\ndkim_key_dir = %s\n" % (HOSTNAME, self.keydir)
        text += "dns_forwarders = %s\ndns_timeout = %ds\n" % (dns.forwarder, DNS_TIMEOUT)
        self.conf.write_text(text)
        self.publish()

    def publish(self):
        self.dns.set_records(self.zone)

    def set_behaviour(self, name, b):
        self.behaviours.append(name)
        self.dns.set_behaviour(name, b)

    def close(self):
        for name in self.behaviours:
            self.dns.set_behaviour(name, None)
        self.dns.set_records({})

    def keygen(self, selector, keytype="rsa", *extra, publish=True, domain=DOMAIN):
        p = run(["dkim", "keygen", "-c", str(self.conf), domain, "--selector", selector,
                 "--type", keytype] + list(extra))
        out = p.stdout.decode()
        assert p.returncode == 0, out + p.stderr.decode()
        line = [l for l in out.splitlines() if l.startswith("%s._domainkey.%s. IN TXT " % (selector, domain))]
        assert len(line) == 1, out
        strings = zone_strings(line[0])
        assert all(0 < len(s) <= 255 for s in strings)
        if publish:
            self.zone["%s._domainkey.%s" % (selector, domain)] = [("TXT", strings)]
            self.publish()
        return "".join(strings), strings

    def sign(self, msg, *extra):
        p = run(["dkim", "sign", "-c", str(self.conf)] + list(extra), stdin=msg)
        assert p.returncode == 0, p.stderr.decode()
        return p.stdout

    def verify(self, msg):
        p = run(["dkim", "verify", "-c", str(self.conf)], stdin=msg)
        lines = p.stdout.decode().splitlines()
        return p.returncode, lines, p.stderr.decode()

    def dnsfunc(self, name, timeout=5):
        """dkimpy's key lookup: ask the same DNS server."""
        if isinstance(name, bytes):
            name = name.decode()
        q = DNSRecord.question(name.rstrip("."), "TXT")
        reply = DNSRecord.parse(q.send("127.0.0.1", self.dns.port, timeout=timeout))
        for rr in reply.rr:
            if rr.rtype == 16:
                return b"".join(rr.rdata.data)
        return None


@pytest.fixture
def lab(tmp_path, dns):
    lb = Lab(tmp_path, dns)
    yield lb
    lb.close()


def fields(line):
    return dict(tok.split("=", 1) for tok in line.split() if "=" in tok and not tok.startswith("reason"))


def dkimpy_verify_all(lab, msg):
    """dkimpy's verdict on every DKIM-Signature of msg, in order."""
    n = len(re.findall(rb"(?im)^DKIM-Signature:", msg.split(b"\r\n\r\n", 1)[0]))
    d = dkim.DKIM(msg)
    out = []
    for i in range(n):
        try:
            out.append(d.verify(idx=i, dnsfunc=lab.dnsfunc))
        except dkim.ValidationError:
            out.append(False)
    return out


# ---- keygen -------------------------------------------------------------

def test_keygen_writes_0600_and_refuses_to_overwrite(lab):
    rec, strings = lab.keygen("s1", "rsa")
    key = lab.keydir / DOMAIN / "s1.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((lab.keydir / DOMAIN).stat().st_mode) == 0o700
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert rec.startswith("v=DKIM1; k=rsa; p=MII")
    assert len(strings) >= 2  # a 2048-bit key's record is longer than 255 octets
    before = key.read_bytes()
    p = run(["dkim", "keygen", "-c", str(lab.conf), DOMAIN, "--selector", "s1"])
    assert p.returncode == 1
    assert b"exists" in p.stderr and b"--force" in p.stderr
    assert key.read_bytes() == before
    rec2, _ = lab.keygen("s1", "rsa", "--force")
    assert rec2 != rec and key.read_bytes() != before
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not [f for f in os.listdir(lab.keydir / DOMAIN) if f.startswith(".")]


def test_keygen_types_sizes_and_default_selector(lab):
    rec, strings = lab.keygen("ed", "ed25519")
    assert re.fullmatch(r"v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=", rec)
    assert len(strings) == 1
    p = run(["dkim", "keygen", "-c", str(lab.conf), DOMAIN, "--bits", "512"])
    assert p.returncode == 2 and b"1024" in p.stderr
    p = run(["dkim", "keygen", "-c", str(lab.conf), DOMAIN, "--type", "dsa"])
    assert p.returncode == 2
    p = run(["dkim", "keygen", "-c", str(lab.conf), "not a domain"])
    assert p.returncode == 2
    p = run(["dkim", "keygen", "-c", str(lab.conf), DOMAIN, "--bits", "1024"])
    assert p.returncode == 0, p.stderr
    month = time.strftime("%Y%m", time.gmtime())
    assert (lab.keydir / DOMAIN / ("rsa-%s.key" % month)).exists()
    assert b"(rsa 1024 bits, mode 0600)" in p.stdout


def test_group_readable_key_is_refused(lab):
    lab.keygen("s1", "rsa")
    key = lab.keydir / DOMAIN / "s1.key"
    key.chmod(0o640)
    p = run(["dkim", "sign", "-c", str(lab.conf)], stdin=MESSAGE)
    assert p.returncode == 1
    assert b"too open" in p.stderr and str(key).encode() in p.stderr
    p = run(["dns", "-c", str(lab.conf), DOMAIN])
    assert p.returncode == 1 and b"too open" in p.stderr


# ---- tern signs, dkimpy verifies ---------------------------------------

@pytest.mark.parametrize("keytype", ["rsa", "ed25519"])
def test_tern_signs_dkimpy_verifies(lab, keytype):
    lab.keygen("sel", keytype)
    signed = lab.sign(MESSAGE)
    assert signed.endswith(MESSAGE)
    head = signed[: len(signed) - len(MESSAGE)]
    assert head.startswith(b"DKIM-Signature: v=1; a=%s-sha256; c=relaxed/relaxed; d=example.test;"
                           % keytype.encode())
    assert b"\n" not in head.replace(b"\r\n", b"")  # folded with CRLF only
    unfolded = re.sub(rb"\r\n[ \t]+", b" ", head)
    assert re.search(rb"h=From:To:Subject:Date:Message-ID:MIME-Version:Content-Type:from;", unfolded)
    assert re.search(rb"\bt=\d+;", unfolded)
    assert dkimpy_verify_all(lab, signed) == [True]
    rc, lines, _ = lab.verify(signed)
    assert rc == 0 and lines[0].startswith("dkim=pass d=example.test s=sel a=%s-sha256" % keytype)


def test_rsa_and_ed25519_at_once(lab):
    lab.keygen("e1", "ed25519")
    lab.keygen("r1", "rsa")
    signed = lab.sign(MESSAGE)
    assert len(re.findall(rb"(?m)^DKIM-Signature:", signed)) == 2
    assert dkimpy_verify_all(lab, signed) == [True, True]
    rc, lines, err = lab.verify(signed)
    assert rc == 0, err
    assert [fields(l)["dkim"] for l in lines] == ["pass", "pass"]
    assert sorted(fields(l)["a"] for l in lines) == ["ed25519-sha256", "rsa-sha256"]
    for l in lines:
        b = fields(l)["header.b"]
        assert len(b) >= 8 and b[:8] in signed.decode()


def test_sign_lf_message_and_domain_option(lab):
    lab.keygen("sel", "rsa", domain="other.test")
    lf = MESSAGE.replace(b"\r\n", b"\n")
    p = run(["dkim", "sign", "-c", str(lab.conf)], stdin=lf)
    assert p.returncode == 1 and b"no DKIM key for example.test" in p.stderr
    signed = lab.sign(lf, "-d", "other.test")
    assert b"\r" not in signed and signed.endswith(lf)
    crlf = signed.replace(b"\n", b"\r\n")
    assert dkimpy_verify_all(lab, crlf) == [True]
    rc, lines, _ = lab.verify(signed)  # bare LF read as CRLF
    assert rc == 0 and "d=other.test" in lines[0]


# ---- dkimpy signs, tern verifies ---------------------------------------

def test_dkimpy_rsa_signature_verifies_in_tern(lab):
    lab.keygen("py", "rsa")
    key = (lab.keydir / DOMAIN / "py.key").read_bytes()
    for canon in [(b"relaxed", b"relaxed"), (b"simple", b"simple"), (b"relaxed", b"simple")]:
        sig = dkim.sign(MESSAGE, b"py", DOMAIN.encode(), key, canonicalize=canon,
                        include_headers=[b"from", b"to", b"subject", b"date"])
        rc, lines, err = lab.verify(sig + MESSAGE)
        assert rc == 0, (canon, lines, err)
        assert lines == [l for l in lines if l.startswith("dkim=pass d=example.test s=py a=rsa-sha256")]


def test_dkimpy_ed25519_signature_verifies_in_tern(lab):
    sk = nacl.signing.SigningKey.generate()
    pub = base64.b64encode(bytes(sk.verify_key)).decode()
    lab.zone["nacl._domainkey." + DOMAIN] = [("TXT", ["v=DKIM1; k=ed25519; p=" + pub])]
    lab.publish()
    seed = base64.b64encode(bytes(sk))
    sig = dkim.sign(MESSAGE, b"nacl", DOMAIN.encode(), seed, signature_algorithm=b"ed25519-sha256",
                    include_headers=[b"from", b"to", b"subject"])
    rc, lines, err = lab.verify(sig + MESSAGE)
    assert rc == 0, lines + [err]
    assert lines[0].startswith("dkim=pass d=example.test s=nacl a=ed25519-sha256")
    # and both kinds at once, the Ed25519 one broken by a wrong key
    lab.keygen("py", "rsa")
    rsa = dkim.sign(MESSAGE, b"py", DOMAIN.encode(), (lab.keydir / DOMAIN / "py.key").read_bytes())
    other = nacl.signing.SigningKey.generate()
    bad = dkim.sign(MESSAGE, b"nacl", DOMAIN.encode(), base64.b64encode(bytes(other)),
                    signature_algorithm=b"ed25519-sha256")
    rc, lines, _ = lab.verify(bad + rsa + MESSAGE)
    assert rc == 0
    assert [fields(l)["dkim"] for l in lines] == ["fail", "pass"]
    assert 'reason="signature did not verify"' in lines[0]


# ---- tampering and canonicalization ------------------------------------

def test_tampered_body_fails_with_body_hash(lab):
    lab.keygen("sel", "rsa")
    signed = lab.sign(MESSAGE)
    tampered = signed.replace(b"this message is signed.", b"this message is forged.")
    rc, lines, _ = lab.verify(tampered)
    assert rc == 1
    assert fields(lines[0])["dkim"] == "fail"
    assert 'reason="body hash did not verify"' in lines[0]
    assert dkimpy_verify_all(lab, tampered) == [False]


def test_tampered_signed_header_fails(lab):
    lab.keygen("sel", "ed25519")
    signed = lab.sign(MESSAGE)
    tampered = signed.replace(b"Subject: DKIM test message", b"Subject: DKIM test massage")
    rc, lines, _ = lab.verify(tampered)
    assert rc == 1
    assert fields(lines[0])["dkim"] == "fail"
    assert 'reason="signature did not verify"' in lines[0]
    # a second From: cannot be added (From is oversigned)
    added = signed.replace(b"To: Bob", b"From: mallory@example.org\r\nTo: Bob")
    rc, lines, _ = lab.verify(added)
    assert rc == 1 and fields(lines[0])["dkim"] == "fail"
    assert dkimpy_verify_all(lab, added) == [False]
    # an unsigned header field may be added
    extra = signed.replace(b"To: Bob", b"X-Mailing-List: x\r\nTo: Bob")
    rc, lines, _ = lab.verify(extra)
    assert rc == 0


def test_whitespace_changes_pass_under_relaxed(lab):
    lab.keygen("r", "rsa")
    lab.keygen("e", "ed25519")
    signed = lab.sign(MESSAGE)
    changed = (signed
               .replace(b"Subject: DKIM test message", b"Subject:   DKIM  test\r\n\tmessage  ")
               .replace(b"To: Bob <bob@example.org>", b"to:Bob    <bob@example.org>")
               .replace(b"signed.  Twice", b"signed. \t Twice")
               .replace(b"Alice\r\n", b"Alice   \r\n\r\n\r\n"))
    assert changed != signed
    rc, lines, err = lab.verify(changed)
    assert rc == 0, lines + [err]
    assert [fields(l)["dkim"] for l in lines] == ["pass", "pass"]
    assert dkimpy_verify_all(lab, changed) == [True, True]
    # but a change of a word is not white space
    rc, lines, _ = lab.verify(changed.replace(b"Twice", b"Thrice"))
    assert [fields(l)["dkim"] for l in lines] == ["fail", "fail"]


# ---- key problems -------------------------------------------------------

def test_missing_key_is_permerror(lab):
    lab.keygen("gone", "rsa", publish=False)
    signed = lab.sign(MESSAGE)
    rc, lines, _ = lab.verify(signed)
    assert rc == 1
    f = fields(lines[0])
    assert f["dkim"] == "permerror" and f["s"] == "gone" and f["d"] == DOMAIN
    assert "no key" in lines[0]
    # the name exists without a TXT record: NODATA, also no key
    lab.zone["gone._domainkey." + DOMAIN] = [("A", "192.0.2.1")]
    lab.publish()
    rc, lines, _ = lab.verify(signed)
    assert fields(lines[0])["dkim"] == "permerror"


def test_servfail_is_temperror(lab):
    lab.keygen("sf", "rsa")
    signed = lab.sign(MESSAGE)
    lab.set_behaviour("sf._domainkey." + DOMAIN, "servfail")
    rc, lines, _ = lab.verify(signed)
    assert rc == 1
    assert fields(lines[0])["dkim"] == "temperror"


def test_revoked_bad_and_mismatched_keys(lab):
    lab.keygen("k", "rsa")
    signed = lab.sign(MESSAGE)
    name = "k._domainkey." + DOMAIN
    cases = [
        (["v=DKIM1; k=rsa; p="], "permerror", "revoked"),
        (["v=DKIM1; k=rsa; p=!!notbase64"], "permerror", "bad key record"),
        (["v=DKIM1; k=ed25519; p=" + base64.b64encode(b"x" * 32).decode()], "permerror",
         "k=ed25519"),
        (["v=spf1 -all"], "permerror", "bad key record"),
    ]
    for strings, result, why in cases:
        lab.zone[name] = [("TXT", strings)]
        lab.publish()
        rc, lines, _ = lab.verify(signed)
        assert rc == 1
        assert fields(lines[0])["dkim"] == result, (strings, lines)
        assert why in lines[0], (strings, lines)


def test_unsigned_and_malformed_signatures(lab):
    rc, lines, _ = lab.verify(MESSAGE)
    assert rc == 1 and lines == ["dkim=none"]
    bad = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; b=abcd\r\n" + MESSAGE
    rc, lines, _ = lab.verify(bad)
    assert rc == 1
    assert fields(lines[0])["dkim"] == "neutral" and "no bh= tag" in lines[0]
    lab.keygen("py", "rsa")
    sha1 = dkim.sign(MESSAGE, b"py", DOMAIN.encode(), (lab.keydir / DOMAIN / "py.key").read_bytes(),
                     signature_algorithm=b"rsa-sha1")
    rc, lines, _ = lab.verify(sha1 + MESSAGE)
    assert rc == 1 and fields(lines[0])["dkim"] == "policy"


# ---- tern dns -----------------------------------------------------------

def dns_output(lab):
    p = run(["dns", "-c", str(lab.conf), DOMAIN])
    assert p.returncode == 0, p.stderr
    return p.stdout.decode()


def test_dns_prints_every_record(lab):
    rec, strings = lab.keygen("r1", "rsa")
    out = dns_output(lab)
    lines = out.splitlines()
    assert "%s. IN MX 10 %s." % (DOMAIN, HOSTNAME) in lines
    assert '%s. IN TXT "v=spf1 mx -all"' % DOMAIN in lines
    dk = [l for l in lines if l.startswith("r1._domainkey.%s. IN TXT " % DOMAIN)]
    assert len(dk) == 1 and zone_strings(dk[0]) == strings and "".join(zone_strings(dk[0])) == rec
    assert ('_dmarc.%s. IN TXT "v=DMARC1; p=none; rua=mailto:postmaster@%s"' % (DOMAIN, DOMAIN)
            in lines)
    sts = [l for l in lines if l.startswith("_mta-sts.%s. IN TXT " % DOMAIN)]
    assert len(sts) == 1 and re.fullmatch(r"v=STSv1; id=[0-9a-f]{20}", zone_strings(sts[0])[0])
    assert ('_smtp._tls.%s. IN TXT "v=TLSRPTv1; rua=mailto:postmaster@%s"' % (DOMAIN, DOMAIN)
            in lines)
    assert ";   mode: testing" in lines and ";   mx: %s" % HOSTNAME in lines
    assert "https://mta-sts.%s/.well-known/mta-sts.txt" % DOMAIN in out
    # the id follows the policy: another hostname, another id
    other = lab.conf.read_text() + "hostname = mx2.example.test\n"
    (lab.dir / "other.conf").write_text(other)
    p = run(["dns", "-c", str(lab.dir / "other.conf"), DOMAIN])
    sts2 = [l for l in p.stdout.decode().splitlines() if l.startswith("_mta-sts.")]
    assert sts2 != sts


def zone_from_output(out):
    """The records `tern dns` prints, as a DNSTestServer zone."""
    zone = {}
    for line in out.splitlines():
        if line.startswith(";") or not line.strip():
            continue
        name, _, rtype, rest = line.split(" ", 3)
        name = name.rstrip(".")
        if rtype == "MX":
            pref, host = rest.split()
            zone.setdefault(name, []).append(("MX", (int(pref), host.rstrip("."))))
        else:
            zone.setdefault(name, []).append(("TXT", zone_strings(rest)))
    return zone


def check(lab):
    p = run(["dns", "-c", str(lab.conf), DOMAIN, "--check"])
    return p.returncode, p.stdout.decode().splitlines()


def status_of(lines, name, rtype):
    for l in lines:
        f = l.split()
        if f[1:3] == [name, rtype]:
            return f[0], l
    raise AssertionError("no line for %s %s in %s" % (name, rtype, lines))


def test_dns_check(lab):
    lab.keygen("r1", "rsa", publish=False)
    lab.keygen("e1", "ed25519", publish=False)
    full = zone_from_output(dns_output(lab))
    assert len(full) == 6 and len(full[DOMAIN]) == 2

    # everything published as printed: all ok
    lab.zone = {k: list(v) for k, v in full.items()}
    lab.zone[DOMAIN].append(("TXT", "google-site-verification=xyz"))  # other TXT at the apex
    lab.publish()
    rc, lines = check(lab)
    assert rc == 0, lines
    assert len(lines) == 7 and all(l.startswith("ok ") for l in lines)

    # a missing DMARC record, a different SPF, a DKIM key with the wrong p=,
    # an MX to another host; the rest stay ok
    lab.zone = {k: list(v) for k, v in full.items()}
    del lab.zone["_dmarc." + DOMAIN]
    lab.zone[DOMAIN] = [("MX", (10, "mx.elsewhere.test")), ("TXT", "v=spf1 a ~all")]
    other = base64.b64encode(bytes(nacl.signing.SigningKey.generate().verify_key)).decode()
    lab.zone["e1._domainkey." + DOMAIN] = [("TXT", "v=DKIM1; k=ed25519; p=" + other)]
    lab.publish()
    rc, lines = check(lab)
    assert rc == 1, lines
    assert status_of(lines, "_dmarc." + DOMAIN, "TXT")[0] == "missing"
    st, line = status_of(lines, DOMAIN, "MX")
    assert st == "different" and 'dns="10 mx.elsewhere.test"' in line
    spf = [l for l in lines if l.split()[1:3] == [DOMAIN, "TXT"]][0]
    assert spf.startswith("different") and 'dns="v=spf1 a ~all"' in spf
    assert status_of(lines, "e1._domainkey." + DOMAIN, "TXT")[0] == "different"
    assert status_of(lines, "r1._domainkey." + DOMAIN, "TXT")[0] == "ok"
    assert status_of(lines, "_mta-sts." + DOMAIN, "TXT")[0] == "ok"
    assert status_of(lines, "_smtp._tls." + DOMAIN, "TXT")[0] == "ok"

    # white space and tag order do not matter; SERVFAIL is a temporary failure
    lab.zone = {k: list(v) for k, v in full.items()}
    lab.zone["_dmarc." + DOMAIN] = [("TXT", "v=DMARC1;rua=mailto:postmaster@example.test ;  p=none;")]
    lab.publish()
    lab.set_behaviour("_smtp._tls." + DOMAIN, "servfail")
    rc, lines = check(lab)
    assert rc == 75, lines
    assert status_of(lines, "_dmarc." + DOMAIN, "TXT")[0] == "ok"
    assert status_of(lines, "_smtp._tls." + DOMAIN, "TXT")[0] == "tempfail"
