"""Black-box tests of DMARC (RFC 7489, RFC 9091 np) through `tern dmarc`.

A scripted DNS server (dns_server.DNSTestServer, python3-dnslib) on an
ephemeral 127.0.0.1 port serves the zone below; Tern forwards every query to
it through `dns_forwarders = 127.0.0.1@PORT`. Each case runs `tern dmarc -c
CONF --from DOMAIN [--spf R:D] [--dkim R:D]... [--pct-roll N]`, which runs
policy discovery and evaluation exactly as the SMTP session does, and checks
the printed result line, the Authentication-Results field, the DNS queries
the server saw, and the exit status (0 evaluated, 75 temperror). The
organisational domain comes from the real public suffix list (the
publicsuffix package), so co.uk is a public suffix.
"""

import json
import subprocess
import time

import pytest

from conftest import SANITIZER_PATTERNS, server_env, tern_bin, write_conf
from dns_server import DNSTestServer

EX_TEMPFAIL = 75
DNS_TIMEOUT = 2

ZONE = {
    # a record only at the organisational domain, with sp=
    "_dmarc.example.test": [("TXT", "v=DMARC1; p=reject; sp=quarantine; rua=mailto:r@example.test")],
    "example.test": [("A", "192.0.2.10")],
    "mail.example.test": [("A", "192.0.2.11")],
    # under a two-label public suffix
    "_dmarc.example.co.uk": [("TXT", "v=DMARC1; p=reject")],
    "shop.example.co.uk": [("A", "192.0.2.12")],
    # strict and relaxed alignment
    "_dmarc.strict.test": [("TXT", "v=DMARC1; p=reject; adkim=s; aspf=s")],
    "_dmarc.relaxed.test": [("TXT", "v=DMARC1; p=reject")],
    # SERVFAIL at the From domain, and at the organisational domain
    "_dmarc.broken.test": [],
    "_dmarc.orgbroken.test": [],
    # two DMARC records at the From domain (and a record at its
    # organisational domain that must not be used)
    "_dmarc.a.twice.test": [("TXT", "v=DMARC1; p=none"), ("TXT", "v=DMARC1; p=reject")],
    "_dmarc.twice.test": [("TXT", "v=DMARC1; p=reject")],
    # a DMARC record next to other TXT records
    "_dmarc.mixed.test": [("TXT", "v=spf1 -all"), ("TXT", "v=DMARC1; p=quarantine"),
                          ("TXT", "some verification token")],
    # dispositions
    "_dmarc.reject.test": [("TXT", "v=DMARC1; p=reject")],
    "_dmarc.quarantine.test": [("TXT", "v=DMARC1; p=quarantine")],
    "_dmarc.none.test": [("TXT", "v=DMARC1; p=none")],
    # pct=0: the policy never applies (reject steps down to quarantine)
    "_dmarc.pct0.test": [("TXT", "v=DMARC1; p=quarantine; pct=0")],
    "_dmarc.pct0r.test": [("TXT", "v=DMARC1; p=reject; pct=0")],
    # np for subdomains that do not exist (RFC 9091)
    "_dmarc.npzone.test": [("TXT", "v=DMARC1; p=none; sp=none; np=reject")],
    "www.npzone.test": [("A", "192.0.2.20")],
    # an unusable record (no valid p, no rua): permerror
    "_dmarc.badp.test": [("TXT", "v=DMARC1; p=maybe")],
    # a record split in several character-strings
    "_dmarc.split.test": [("TXT", ["v=DMARC1; ", "p=quarantine; ", "pct=100"])],
    # an internationalised domain, published as A-labels
    "_dmarc.xn--bcher-kva.test": [("TXT", "v=DMARC1; p=reject")],
}

BEHAVIOURS = {
    "_dmarc.broken.test": "servfail",
    "_dmarc.orgbroken.test": "servfail",
}


@pytest.fixture(scope="module")
def dns():
    srv = DNSTestServer(ZONE, BEHAVIOURS).start()
    yield srv
    srv.stop()



@pytest.fixture
def conf(tmp_path, dns):
    def make(**extra):
        settings = {"dns_forwarders": dns.forwarder, "dns_timeout": "%ds" % DNS_TIMEOUT,
                    "hostname": "mx.example.net"}
        settings.update(extra)
        return write_conf(tmp_path / "tern.conf", settings)
    return make


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        lines = self.out.splitlines()
        self.line = lines[0] if lines else ""
        self.authres = "\n".join(lines[1:])
        self.fields = {}
        for tok in self.line.split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                self.fields.setdefault(k, v)

    def __getitem__(self, key):
        return self.fields.get(key)


def dmarc(conf_path, frm, *opts):
    proc = subprocess.run([str(tern_bin()), "dmarc", "-c", str(conf_path), "--from", frm, *opts],
                          capture_output=True, text=True, timeout=60, env=server_env())
    res = Result(proc)
    for pat in SANITIZER_PATTERNS:
        assert pat not in res.err, res.err
    return res


def dmarc_queries(dns):
    return [q for q in dns.queries if q[0].startswith("_dmarc.")]


def test_org_record_applies_sp_to_subdomain(conf, dns):
    c = conf()
    del dns.queries[:]
    r = dmarc(c, "mail.example.test", "--spf", "fail:other.test", "--pct-roll", "0")
    assert r.rc == 0, r.out + r.err
    assert r["dmarc"] == "fail"
    assert r["from"] == "mail.example.test"
    assert r["policy.domain"] == "example.test"
    assert (r["p"], r["sp"]) == ("reject", "quarantine")
    assert (r["policy"], r["policy.tag"]) == ("quarantine", "sp")
    assert r["disposition"] == "quarantine" and r["action"] == "quarantine"
    assert dmarc_queries(dns) == [("_dmarc.mail.example.test", "TXT"), ("_dmarc.example.test", "TXT")]
    # the organisational domain itself gets p
    r = dmarc(c, "example.test", "--spf", "fail:other.test", "--pct-roll", "0")
    assert (r["policy"], r["policy.tag"], r["disposition"]) == ("reject", "p", "reject"), r.out
    # a DKIM signature of the organisational domain aligns (relaxed)
    r = dmarc(c, "mail.example.test", "--dkim", "pass:example.test")
    assert (r["dmarc"], r["dkim_aligned"], r["spf_aligned"], r["disposition"]) == \
        ("pass", "yes", "no", "none"), r.out


def test_public_suffix_never_aligns(conf):
    c = conf()
    r = dmarc(c, "shop.example.co.uk", "--spf", "pass:co.uk", "--dkim", "pass:co.uk",
              "--pct-roll", "0")
    assert r.rc == 0, r.out + r.err
    assert r["policy.domain"] == "example.co.uk", r.out
    assert (r["dmarc"], r["spf_aligned"], r["dkim_aligned"]) == ("fail", "no", "no"), r.out
    assert r["disposition"] == "reject"
    # another organisation under the same suffix does not align either
    r = dmarc(c, "shop.example.co.uk", "--dkim", "pass:other.co.uk", "--pct-roll", "0")
    assert (r["dmarc"], r["dkim_aligned"]) == ("fail", "no"), r.out
    # the organisational domain under the suffix does
    r = dmarc(c, "shop.example.co.uk", "--dkim", "pass:example.co.uk")
    assert (r["dmarc"], r["dkim_aligned"]) == ("pass", "yes"), r.out


def test_strict_and_relaxed(conf):
    c = conf()
    cases = [
        # domain, --dkim, --spf, result
        ("strict.test", "pass:mail.strict.test", "pass:bounce.strict.test", "fail"),
        ("strict.test", "pass:strict.test", "fail:strict.test", "pass"),
        ("strict.test", "fail:strict.test", "pass:STRICT.test.", "pass"),
        ("relaxed.test", "pass:mail.relaxed.test", "fail:x.test", "pass"),
        ("relaxed.test", "fail:relaxed.test", "pass:bounce.relaxed.test", "pass"),
        ("relaxed.test", "pass:relaxed.example", "pass:relaxed.example", "fail"),
    ]
    for domain, dkim, spf, want in cases:
        r = dmarc(c, domain, "--dkim", dkim, "--spf", spf, "--pct-roll", "0")
        assert r.rc == 0, r.out + r.err
        assert r["dmarc"] == want, (domain, dkim, spf, r.out)
        assert r["adkim"] == ("s" if domain == "strict.test" else "r")


def test_servfail_is_temperror(conf, dns):
    c = conf()
    r = dmarc(c, "broken.test", "--spf", "pass:broken.test")
    assert r.rc == EX_TEMPFAIL, r.out + r.err
    assert r["dmarc"] == "temperror" and r["disposition"] == "none"
    assert "temporary failure" in r.out and "_dmarc.broken.test" in r.out
    assert "dmarc=temperror header.from=broken.test" in r.authres
    # at the organisational domain, after nothing at the From domain
    r = dmarc(c, "a.orgbroken.test", "--spf", "fail:x.test")
    assert r.rc == EX_TEMPFAIL and r["dmarc"] == "temperror", r.out


def test_two_records_is_none(conf, dns):
    c = conf()
    del dns.queries[:]
    r = dmarc(c, "a.twice.test", "--spf", "fail:x.test", "--pct-roll", "0")
    assert r.rc == 0, r.out + r.err
    assert (r["dmarc"], r["policy.domain"], r["disposition"]) == ("none", "-", "none"), r.out
    assert "more than one DMARC record" in r.out
    # no fallback to the organisational domain's p=reject
    assert dmarc_queries(dns) == [("_dmarc.a.twice.test", "TXT")]
    assert "dmarc=none header.from=a.twice.test\r" not in r.authres  # printed with LF by print
    assert "dmarc=none header.from=a.twice.test" in r.authres
    # one DMARC record among other TXT records is used
    r = dmarc(c, "mixed.test", "--spf", "fail:x.test", "--pct-roll", "0")
    assert (r["dmarc"], r["p"], r["disposition"]) == ("fail", "quarantine", "quarantine"), r.out
    r = dmarc(c, "split.test", "--spf", "fail:x.test", "--pct-roll", "0")
    assert (r["dmarc"], r["p"], r["pct"]) == ("fail", "quarantine", "100"), r.out


def test_dispositions(conf):
    c = conf()
    for domain, disp in (("reject.test", "reject"), ("quarantine.test", "quarantine"),
                         ("none.test", "none")):
        r = dmarc(c, domain, "--spf", "softfail:other.test", "--dkim", "fail:" + domain,
                  "--pct-roll", "99")
        assert r.rc == 0, r.out + r.err
        assert (r["dmarc"], r["p"], r["disposition"], r["sampled_out"]) == \
            ("fail", disp, disp, "no"), r.out
        assert r["action"] == {"none": "accept"}.get(disp, disp)
        assert "dmarc=fail header.from=%s (p=%s dis=%s)" % (domain, disp, disp) in \
            " ".join(r.authres.split()), r.authres
        assert r.authres.startswith("Authentication-Results: mx.example.net;")
    # nothing published: none
    r = dmarc(c, "nothing.test", "--spf", "fail:x.test")
    assert (r.rc, r["dmarc"], r["disposition"]) == (0, "none", "none"), r.out
    assert "no DMARC record at _dmarc.nothing.test" in r.out
    # an unusable record: permerror, no disposition
    r = dmarc(c, "badp.test", "--spf", "fail:x.test")
    assert (r.rc, r["dmarc"], r["disposition"]) == (0, "permerror", "none"), r.out


def test_reject_action(conf):
    for action, want in (("reject", "reject"), ("quarantine", "quarantine"), ("record", "accept")):
        r = dmarc(conf(dmarc_reject_action=action), "reject.test", "--spf", "fail:x.test",
                  "--pct-roll", "0")
        assert (r["disposition"], r["action"]) == ("reject", want), r.out
        dis = {"accept": "none"}.get(want, want)
        assert "(p=reject dis=%s)" % dis in r.authres, r.authres


def test_pct_zero_never_applies(conf):
    c = conf()
    for roll in ("0", "50", "99"):
        r = dmarc(c, "pct0.test", "--spf", "fail:x.test", "--pct-roll", roll)
        assert (r["dmarc"], r["pct"], r["disposition"], r["sampled_out"]) == \
            ("fail", "0", "none", "yes"), r.out
        r = dmarc(c, "pct0r.test", "--spf", "fail:x.test", "--pct-roll", roll)
        assert (r["disposition"], r["sampled_out"]) == ("quarantine", "yes"), r.out
    for _ in range(5):  # random draws
        r = dmarc(c, "pct0.test", "--spf", "fail:x.test")
        assert r["disposition"] == "none", r.out


def test_np_for_nonexistent_subdomain(conf, dns):
    c = conf()
    del dns.queries[:]
    r = dmarc(c, "ghost.npzone.test", "--spf", "fail:x.test", "--pct-roll", "0")
    assert (r["dmarc"], r["policy"], r["policy.tag"], r["disposition"]) == \
        ("fail", "reject", "np", "reject"), r.out
    asked = [q for q in dns.queries if q[0] == "ghost.npzone.test"]
    assert sorted(t for _, t in asked) == ["A", "AAAA", "MX"], dns.queries
    r = dmarc(c, "www.npzone.test", "--spf", "fail:x.test", "--pct-roll", "0")
    assert (r["policy"], r["policy.tag"], r["disposition"]) == ("none", "sp", "none"), r.out
    # a message that passes needs no existence check
    del dns.queries[:]
    r = dmarc(c, "other.npzone.test", "--dkim", "pass:npzone.test")
    assert r["dmarc"] == "pass", r.out
    assert not [q for q in dns.queries if q[0] == "other.npzone.test"], dns.queries


def test_from_field_values(conf):
    c = conf()
    r = dmarc(c, "Alice <alice@Reject.TEST>", "--spf", "fail:x.test", "--pct-roll", "0")
    assert (r["from"], r["dmarc"], r["disposition"]) == ("reject.test", "fail", "reject"), r.out
    r = dmarc(c, "a@reject.test, b@none.test", "--spf", "fail:x.test")
    assert (r["dmarc"], r["disposition"]) == ("permerror", "none"), r.out
    assert "multiple-domains" in r.out
    r = dmarc(c, "undisclosed-recipients:;", "--spf", "fail:x.test")
    assert r["dmarc"] == "permerror" and "no-address" in r.out, r.out
    # a U-label From domain is looked up as A-labels
    r = dmarc(c, "b\u00fccher.test", "--spf", "fail:x.test", "--pct-roll", "0")
    assert (r["from"], r["policy.domain"], r["disposition"]) == \
        ("xn--bcher-kva.test", "xn--bcher-kva.test", "reject"), r.out


def test_report_line(conf, tmp_path):
    reports = tmp_path / "reports"
    c = conf(dmarc_report_dir=str(reports), dmarc_reject_action="quarantine")
    r = dmarc(c, "mail.example.test", "--spf", "fail:bounce.other.test",
              "--dkim", "pass:example.net:sel1", "--dkim", "fail:example.test:s2",
              "--pct-roll", "0", "--report", "--ip", "192.0.2.7")
    assert r.rc == 0, r.out + r.err
    day = time.strftime("%Y-%m-%d", time.gmtime())
    files = sorted(reports.iterdir())
    assert [f.name for f in files] in (["dmarc-%s.jsonl" % day],
                                       ["dmarc-%s.jsonl" % time.strftime(
                                           "%Y-%m-%d", time.gmtime(time.time() - 60))])
    lines = files[0].read_text().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert abs(rec["time"] - time.time()) < 60
    assert rec["source_ip"] == "192.0.2.7"
    assert rec["header_from"] == "mail.example.test"
    assert rec["envelope_from"] == "bounce.other.test"
    assert rec["policy_domain"] == "example.test"
    assert (rec["p"], rec["sp"], rec["np"], rec["pct"]) == ("reject", "quarantine", "", 100)
    assert (rec["dmarc"], rec["disposition"], rec["sampled_out"]) == ("fail", "quarantine", False)
    assert rec["spf"] == {"domain": "bounce.other.test", "result": "fail"}
    assert rec["dkim"] == [{"domain": "example.net", "selector": "sel1", "result": "pass"},
                           {"domain": "example.test", "selector": "s2", "result": "fail"}]
    # a second message appends a line
    r = dmarc(c, "none.test", "--dkim", "pass:none.test", "--report")
    assert r.rc == 0, r.out + r.err
    lines = files[0].read_text().splitlines()
    assert len(lines) == 2
    rec = json.loads(lines[1])
    assert (rec["header_from"], rec["dmarc"], rec["dkim_aligned"]) == ("none.test", "pass", True)
    # --report without dmarc_report_dir is an error
    r = dmarc(conf(), "none.test", "--report")
    assert r.rc == 1 and "dmarc_report_dir" in r.err


def test_usage(conf):
    c = conf()
    for args in ([], ["--spf", "pass:x.test"], ["--from", "x.test", "--spf", "pass"],
                 ["--from", "x.test", "--spf", "passed:x.test"],
                 ["--from", "x.test", "--pct-roll", "100"], ["--from", "x.test", "--bogus"]):
        proc = subprocess.run([str(tern_bin()), "dmarc", "-c", str(c), *args],
                              capture_output=True, text=True, timeout=30, env=server_env())
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "usage" in proc.stderr or "expected" in proc.stderr, (args, proc.stderr)
