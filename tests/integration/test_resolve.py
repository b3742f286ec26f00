"""Black-box tests of `tern resolve`: where mail for a domain goes.

A scripted DNS server (dns_server.DNSTestServer, python3-dnslib) on an
ephemeral 127.0.0.1 port serves the zone below; Tern forwards every query to
it through `dns_forwarders = 127.0.0.1@PORT`. Each case runs `tern resolve -c
CONF NAME` and checks the printed status and hosts and the exit status (0 ok,
1 permanent failure, 75 temporary failure). RFC 5321 §5.1 (MX order,
implicit MX), RFC 7505 (null MX).
"""

import subprocess
import time

import pytest

from conftest import SANITIZER_PATTERNS, server_env, tern_bin, write_conf
from dns_server import DNSTestServer

EX_TEMPFAIL = 75
DNS_TIMEOUT = 2  # seconds, the smallest the tests can wait for comfortably

ZONE = {
    # two MX of different preference, one host with both families
    "two.test": [("MX", (20, "mx2.two.test")), ("MX", (10, "mx1.two.test"))],
    "mx1.two.test": [("A", "192.0.2.11"), ("AAAA", "2001:db8::11")],
    "mx2.two.test": [("A", "192.0.2.12")],
    # equal preferences: both orders must appear over repeated runs
    "equal.test": [("MX", (10, "a.equal.test")), ("MX", (10, "b.equal.test")),
                   ("MX", (5, "first.equal.test"))],
    "a.equal.test": [("A", "192.0.2.21")],
    "b.equal.test": [("A", "192.0.2.22")],
    "first.equal.test": [("A", "192.0.2.20")],
    # no MX, an A: implicit MX
    "implicit.test": [("A", "192.0.2.30"), ("TXT", "v=spf1 -all")],
    # null MX, alone and among real MX records
    "nullmx.test": [("MX", (0, ".")), ("A", "192.0.2.40")],
    "nullmixed.test": [("MX", (0, ".")), ("MX", (10, "mx.nullmixed.test"))],
    "mx.nullmixed.test": [("A", "192.0.2.41")],
    # SERVFAIL (behaviour below)
    "servfail.test": [],
    # an MX whose target is a CNAME
    "cname.test": [("MX", (10, "alias.cname.test"))],
    "alias.cname.test": [("CNAME", "real.cname.test")],
    "real.cname.test": [("A", "192.0.2.50")],
    # the domain itself is a CNAME to a domain with MX
    "cnamedomain.test": [("CNAME", "two.test")],
    # an MX host with only AAAA
    "v6only.test": [("MX", (10, "mx.v6only.test"))],
    "mx.v6only.test": [("AAAA", "2001:db8::60")],
    # answers slower than dns_timeout
    "slow.test": [("MX", (10, "mx.two.test"))],
    "slowhost.test": [("MX", (10, "slow.slowhost.test")), ("MX", (20, "fast.slowhost.test"))],
    "slow.slowhost.test": [("A", "192.0.2.70")],
    "fast.slowhost.test": [("A", "192.0.2.71")],
    # MX hosts without addresses
    "noaddr.test": [("MX", (10, "gone.noaddr.test")), ("MX", (20, "empty.noaddr.test"))],
    "empty.noaddr.test": [("TXT", "no address here")],
    "nothing.test": [("TXT", "neither MX nor an address")],
    # one MX host fails temporarily, the other works
    "halfbroken.test": [("MX", (10, "broken.halfbroken.test")),
                        ("MX", (20, "ok.halfbroken.test"))],
    "broken.halfbroken.test": [("A", "192.0.2.80")],
    "ok.halfbroken.test": [("A", "192.0.2.81")],
    # every MX host fails temporarily
    "allbroken.test": [("MX", (10, "broken.allbroken.test"))],
    "broken.allbroken.test": [("A", "192.0.2.90")],
    # raw queries (tern resolve -t): TXT with several character-strings,
    # names with underscores, PTR
    "_dmarc.raw.test": [("TXT", "v=DMARC1; p=none"), ("TXT", ["v=spf1 ", "ip4:192.0.2.1 ", "-all"])],
    "sel._domainkey.raw.test": [("TXT", ["v=DKIM1; k=ed25519; ", "p=" + "A" * 200, "A" * 100])],
    "raw.test": [("A", "192.0.2.110")],
    "1.2.0.192.in-addr.arpa": [("PTR", "host.raw.test")],
    "servfail.raw.test": [],
    # a smarthost
    "relay.test": [("A", "192.0.2.100"), ("AAAA", "2001:db8::100"), ("MX", (10, "x.test"))],
}

BEHAVIOURS = {
    "servfail.test": "servfail",
    "slow.test": ("delay", DNS_TIMEOUT + 4),
    "slow.slowhost.test": ("delay", DNS_TIMEOUT + 4),
    "broken.halfbroken.test": "servfail",
    "broken.allbroken.test": "servfail",
    "servfail.raw.test": "servfail",
}


@pytest.fixture(scope="module")
def dns():
    srv = DNSTestServer(ZONE, BEHAVIOURS).start()
    yield srv
    srv.stop()



@pytest.fixture
def conf(tmp_path, dns):
    def make(**extra):
        settings = {"dns_forwarders": dns.forwarder, "dns_timeout": "%ds" % DNS_TIMEOUT}
        settings.update(extra)
        return write_conf(tmp_path / "tern.conf", settings)
    return make


class Result:
    def __init__(self, proc, elapsed):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.elapsed = elapsed
        lines = self.out.splitlines()
        self.status_line = lines[0] if lines else ""
        # [(preference, name, [addresses])]
        self.hosts = []
        for line in lines[1:] if "type=" not in self.status_line else []:
            f = line.split()
            self.hosts.append((int(f[0]), f[1], f[2:]))

    def field(self, key):
        for tok in self.status_line.split():
            if tok.startswith(key + "="):
                return tok[len(key) + 1:]
        return None


def resolve(conf_path, name, *opts):
    t = time.monotonic()
    proc = subprocess.run([str(tern_bin()), "resolve", "-c", str(conf_path), *opts, name],
                          capture_output=True, text=True, timeout=60, env=server_env())
    res = Result(proc, time.monotonic() - t)
    for pat in SANITIZER_PATTERNS:
        assert pat not in res.err, res.err
    return res


def test_two_mx_in_preference_order(conf):
    r = resolve(conf(), "two.test")
    assert r.rc == 0, r.out + r.err
    assert r.field("status") == "ok" and r.field("implicit") == "no"
    assert r.hosts == [(10, "mx1.two.test", ["2001:db8::11", "192.0.2.11"]),
                       (20, "mx2.two.test", ["192.0.2.12"])]


def test_dns_prefer_ipv4(conf):
    r = resolve(conf(dns_prefer="ipv4"), "TWO.test.")
    assert r.rc == 0, r.out + r.err
    assert r.hosts[0] == (10, "mx1.two.test", ["192.0.2.11", "2001:db8::11"])


def test_equal_preferences_are_shuffled(conf):
    path = conf()
    orders = set()
    for _ in range(16):
        r = resolve(path, "equal.test")
        assert r.rc == 0, r.out + r.err
        assert r.hosts[0] == (5, "first.equal.test", ["192.0.2.20"])
        assert {h[1] for h in r.hosts[1:]} == {"a.equal.test", "b.equal.test"}
        assert all(h[0] == 10 for h in r.hosts[1:])
        orders.add(tuple(h[1] for h in r.hosts[1:]))
        if len(orders) == 2:
            break
    assert len(orders) == 2, orders


def test_implicit_mx(conf):
    r = resolve(conf(), "implicit.test")
    assert r.rc == 0, r.out + r.err
    assert r.field("implicit") == "yes"
    assert r.hosts == [(0, "implicit.test", ["192.0.2.30"])]


def test_null_mx_is_permanent(conf):
    r = resolve(conf(), "nullmx.test")
    assert r.rc == 1, r.out + r.err
    assert r.field("status") == "null-mx"
    assert r.field("dsn") == "5.1.10"
    assert r.hosts == []


def test_null_mx_among_real_mx_is_ignored(conf):
    r = resolve(conf(), "nullmixed.test")
    assert r.rc == 0, r.out + r.err
    assert r.hosts == [(10, "mx.nullmixed.test", ["192.0.2.41"])]


def test_nxdomain_is_permanent(conf):
    r = resolve(conf(), "nosuchdomain.test")
    assert r.rc == 1, r.out + r.err
    assert r.field("status") == "nxdomain"
    assert r.field("dsn") == "5.1.2"


def test_servfail_is_temporary(conf):
    r = resolve(conf(), "servfail.test")
    assert r.rc == EX_TEMPFAIL, r.out + r.err
    assert r.field("status") == "tempfail"
    assert r.field("dsn") == "4.4.3"
    assert "SERVFAIL" in r.out


def test_mx_target_behind_cname(conf):
    r = resolve(conf(), "cname.test")
    assert r.rc == 0, r.out + r.err
    assert r.hosts == [(10, "alias.cname.test", ["192.0.2.50"])]


def test_domain_behind_cname(conf):
    r = resolve(conf(), "cnamedomain.test")
    assert r.rc == 0, r.out + r.err
    assert [h[1] for h in r.hosts] == ["mx1.two.test", "mx2.two.test"]


def test_mx_host_with_only_aaaa(conf):
    for prefer in ("ipv6", "ipv4"):
        r = resolve(conf(dns_prefer=prefer), "v6only.test")
        assert r.rc == 0, r.out + r.err
        assert r.hosts == [(10, "mx.v6only.test", ["2001:db8::60"])]


def test_slow_answer_is_a_temporary_failure(conf):
    r = resolve(conf(), "slow.test")
    assert r.rc == EX_TEMPFAIL, r.out + r.err
    assert "timeout" in r.out
    assert DNS_TIMEOUT - 0.5 <= r.elapsed < DNS_TIMEOUT + 3, r.elapsed


def test_slow_mx_host_is_left_out(conf):
    r = resolve(conf(), "slowhost.test")
    assert r.rc == 0, r.out + r.err
    assert r.hosts == [(20, "fast.slowhost.test", ["192.0.2.71"])]
    assert r.elapsed < DNS_TIMEOUT + 3, r.elapsed


def test_mx_hosts_without_address_are_permanent(conf):
    r = resolve(conf(), "noaddr.test")
    assert r.rc == 1, r.out + r.err
    assert r.field("status") == "no-address"
    assert r.field("dsn") == "5.4.4"


def test_domain_without_mx_or_address(conf):
    r = resolve(conf(), "nothing.test")
    assert r.rc == 1, r.out + r.err
    assert r.field("status") == "no-address"


def test_broken_mx_host_is_skipped(conf):
    r = resolve(conf(), "halfbroken.test")
    assert r.rc == 0, r.out + r.err
    assert r.hosts == [(20, "ok.halfbroken.test", ["192.0.2.81"])]


def test_all_mx_hosts_broken_is_temporary(conf):
    r = resolve(conf(), "allbroken.test")
    assert r.rc == EX_TEMPFAIL, r.out + r.err
    assert "SERVFAIL" in r.out and "broken.allbroken.test" in r.out


def test_smarthost_addresses(conf):
    r = resolve(conf(), "relay.test", "-H")
    assert r.rc == 0, r.out + r.err
    assert r.hosts == [(0, "relay.test", ["2001:db8::100", "192.0.2.100"])]
    r = resolve(conf(), "[192.0.2.7]", "-H")
    assert r.rc == 0, r.out + r.err
    assert r.hosts == [(0, "192.0.2.7", ["192.0.2.7"])]
    r = resolve(conf(), "gone.relay.test", "-H")
    assert r.rc == 1 and r.field("status") == "nxdomain", r.out + r.err


def test_invalid_names(conf):
    for name in ("a..test", "under_score.test", "192.0.2.1", "x" * 300 + ".test"):
        r = resolve(conf(), name)
        assert r.rc == 1 and r.field("status") == "nxdomain", (name, r.out, r.err)


def test_usage_and_bad_config(tmp_path, conf):
    proc = subprocess.run([str(tern_bin()), "resolve"], capture_output=True, text=True,
                          env=server_env())
    assert proc.returncode == 2 and "usage" in proc.stderr
    bad = write_conf(tmp_path / "bad.conf", {"dns_forwarders": "not-an-address"})
    r = resolve(bad, "two.test")
    assert r.rc == 1 and "dns_forwarders" in r.err
    missing = conf(dns_trust_anchor=str(tmp_path / "no-such-anchor"))
    r = resolve(missing, "two.test")
    assert r.rc == 1 and "dns_trust_anchor" in r.err


def raw(conf_path, rtype, name):
    res = resolve(conf_path, name, "-t", rtype)
    return res, res.out.splitlines()[1:]


def test_raw_txt_joins_character_strings(conf):
    res, records = raw(conf(), "txt", "_DMARC.raw.test.")
    assert res.rc == 0, res.out + res.err
    assert res.status_line.startswith("_dmarc.raw.test type=TXT status=data")
    assert res.field("records") == "2"
    assert sorted(records) == ["v=DMARC1; p=none", "v=spf1 ip4:192.0.2.1 -all"]
    res, records = raw(conf(), "txt", "sel._domainkey.raw.test")
    assert res.rc == 0, res.out + res.err
    assert records == ["v=DKIM1; k=ed25519; p=" + "A" * 300]


def test_raw_nodata_nxdomain_servfail_invalid(conf):
    c = conf()
    res, records = raw(c, "txt", "raw.test")
    assert (res.rc, res.field("status"), records) == (1, "nodata", [])
    res, _ = raw(c, "txt", "missing.raw.test")
    assert (res.rc, res.field("status")) == (1, "nxdomain")
    res, _ = raw(c, "txt", "servfail.raw.test")
    assert (res.rc, res.field("status")) == (EX_TEMPFAIL, "tempfail"), res.out
    assert "SERVFAIL looking up TXT for servfail.raw.test" in res.out
    res, _ = raw(c, "txt", "a..b.test")
    assert (res.rc, res.field("status")) == (1, "invalid"), res.out
    res, _ = raw(c, "txt", "x" * 64 + ".test")
    assert (res.rc, res.field("status")) == (1, "invalid"), res.out


def test_raw_address_mx_and_ptr(conf):
    c = conf()
    res, records = raw(c, "a", "raw.test")
    assert (res.rc, records) == (0, ["192.0.2.110"])
    res, records = raw(c, "mx", "two.test")
    assert res.rc == 0 and sorted(records) == ["10 mx1.two.test", "20 mx2.two.test"]
    res, records = raw(c, "ptr", "1.2.0.192.in-addr.arpa")
    assert (res.rc, records) == (0, ["host.raw.test"]), res.out
    res = resolve(c, "raw.test", "-t", "cname")
    assert res.rc == 2 and "unknown record type" in res.err
