"""Black-box tests of SPF (RFC 7208) through `tern spf`, checked against pyspf.

A scripted DNS server (dns_server.DNSTestServer, python3-dnslib) on an
ephemeral 127.0.0.1 port serves the zone below. Tern reaches it through
`dns_forwarders = 127.0.0.1@PORT`; pyspf (python3-spf, the `spf` module,
which resolves with dnspython) reaches the SAME server because every pyspf
check runs with dnspython's default resolver pointed at 127.0.0.1:PORT
(pyspf's DNSLookup calls dns.resolver.query(), which uses
dns.resolver.default_resolver). Nothing of the zone is given to pyspf
directly: both implementations ask the server.

Every case runs `tern spf -c CONF [--helo NAME] [--identity helo] IP SENDER`
and pyspf's query(i, s, h).check(), and asserts
  - Tern's result is the expected literal (so a bug shared by both cannot hide),
  - pyspf's result is the same (or, where pyspf departs from RFC 7208, the
    documented pyspf result, with the RFC's in the expected literal),
  - the deciding mechanism and the explanation (exp=), where the case names
    them, from both.

Client addresses are documentation and loopback addresses used as data only:
no connection is made to them.
"""

import shlex
import subprocess
import time

import dns.resolver
import pytest
import spf

from conftest import SANITIZER_PATTERNS, server_env, tern_bin, write_conf
from dns_server import DNSTestServer

HOSTNAME = "mail.example.test"  # examples/tern.conf's hostname: %{r}

# pyspf 2.0.14 calls dnspython's deprecated dns.resolver.query()
pytestmark = pytest.mark.filterwarnings("ignore:please use dns.resolver.resolve:DeprecationWarning")


def _includes(prefix, n, last):
    return "v=spf1 " + " ".join("include:%s%d.spf.test" % (prefix, i) for i in range(1, n + 1)) \
        + " " + last


ZONE = {
    # ip4 / ip6 with CIDR lengths
    "ip4.spf.test": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "cidr.spf.test": [("TXT", "v=spf1 ip4:192.0.2.64/26 ~all")],
    "ip6.spf.test": [("TXT", "v=spf1 ip6:2001:db8:1::/48 ip4:192.0.2.1 -all")],
    "ip6host.spf.test": [("TXT", "v=spf1 ip6:2001:db8::cb01 -all")],
    # a, with the domain itself and with a target and dual CIDR lengths
    "a.spf.test": [("TXT", "v=spf1 a -all"), ("A", "192.0.2.20"), ("AAAA", "2001:db8::20")],
    "acidr.spf.test": [("TXT", "v=spf1 a:host.acidr.spf.test/28//64 -all")],
    "host.acidr.spf.test": [("A", "192.0.2.33"), ("AAAA", "2001:db8:5::1")],
    # mx, plain, with CIDR, with a host whose lookup fails, with 11 names
    "mx.spf.test": [("TXT", "v=spf1 mx -all"), ("MX", (10, "mx1.mx.spf.test")),
                    ("MX", (20, "mx2.mx.spf.test"))],
    "mx1.mx.spf.test": [("A", "192.0.2.41")],
    "mx2.mx.spf.test": [("A", "192.0.2.42"), ("AAAA", "2001:db8::42")],
    "mxcidr.spf.test": [("TXT", "v=spf1 mx:mx.spf.test/30 -all")],
    "mxtemp.spf.test": [("TXT", "v=spf1 mx -all"), ("MX", (10, "broken.mxtemp.spf.test"))],
    "broken.mxtemp.spf.test": [("A", "192.0.2.44")],
    "mx11.spf.test": [("TXT", "v=spf1 mx -all")]
    + [("MX", (i, "m%d.mx11.spf.test" % i)) for i in range(1, 12)],
    # ptr: PTR records under in-addr.arpa and ip6.arpa
    "ptr.spf.test": [("TXT", "v=spf1 ptr -all")],
    "5.2.0.192.in-addr.arpa": [("PTR", "h.ptr.spf.test")],
    "h.ptr.spf.test": [("A", "192.0.2.5")],
    "6.2.0.192.in-addr.arpa": [("PTR", "fake.ptr.spf.test")],
    "fake.ptr.spf.test": [("A", "192.0.2.99")],
    "9.0.0.127.in-addr.arpa": [("PTR", "lo.ptr.spf.test")],
    "lo.ptr.spf.test": [("A", "127.0.0.9")],
    "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa":
        [("PTR", "v6.ptr.spf.test")],
    "v6.ptr.spf.test": [("AAAA", "2001:db8::cb01")],
    "7.2.0.192.in-addr.arpa": [],  # SERVFAIL (behaviour)
    # exists and macros
    "exists.spf.test": [("TXT", "v=spf1 exists:%{i}.allow.spf.test -all")],
    "192.0.2.8.allow.spf.test": [("A", "127.0.0.2")],
    "ir.spf.test": [("TXT", "v=spf1 exists:%{ir}.%{v}.rev.spf.test -all")],
    "11.2.0.192.in-addr.rev.spf.test": [("A", "127.0.0.2")],
    "d.spf.test": [("TXT", "v=spf1 -exists:%{d}.blocked.spf.test +all")],
    "d.spf.test.blocked.spf.test": [("A", "127.0.0.2")],
    "l.spf.test": [("TXT", "v=spf1 exists:%{l1r-}.users.spf.test -all")],
    "john.users.spf.test": [("A", "127.0.0.2")],
    "s.spf.test": [("TXT", "v=spf1 exists:%{s}.senders.spf.test -all")],
    "alice@s.spf.test.senders.spf.test": [("A", "127.0.0.2")],
    "h.spf.test": [("TXT", "v=spf1 exists:%{h}.helos.spf.test -all")],
    "good.example.test.helos.spf.test": [("A", "127.0.0.2")],
    "i6.spf.test": [("TXT", "v=spf1 exists:%{i}.v6.spf.test -all")],
    "2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.b.0.1.v6.spf.test":
        [("A", "127.0.0.2")],
    # include: pass, no match, chains, a target without SPF, errors, limits
    "inc.spf.test": [("TXT", "v=spf1 include:ip4.spf.test -all")],
    "incsoft.spf.test": [("TXT", "v=spf1 include:ip4.spf.test ~all")],
    "incchain.spf.test": [("TXT", "v=spf1 include:inc.spf.test -all")],
    "incnone.spf.test": [("TXT", "v=spf1 include:nospf.spf.test -all")],
    "incnx.spf.test": [("TXT", "v=spf1 include:nowhere.spf.test -all")],
    "inctemp.spf.test": [("TXT", "v=spf1 include:servfail.spf.test -all")],
    "loop.spf.test": [("TXT", "v=spf1 include:loop.spf.test -all")],
    "inc10.spf.test": [("TXT", _includes("n", 10, "-all"))],
    "inc11.spf.test": [("TXT", _includes("n", 11, "-all"))],
    **{"n%d.spf.test" % i: [("TXT", "v=spf1 ?all")] for i in range(1, 12)},
    # redirect
    "redir.spf.test": [("TXT", "v=spf1 redirect=ip4.spf.test")],
    "redirnone.spf.test": [("TXT", "v=spf1 redirect=nospf.spf.test")],
    "redirmatch.spf.test": [("TXT", "v=spf1 ip4:192.0.2.10 redirect=nowhere.spf.test")],
    # ten a: terms that match nothing, then redirect=: the 11th lookup
    "redir11.spf.test": [("TXT", "v=spf1 " + "a:x.spf.test " * 10 + "redirect=ip4.spf.test")],
    "x.spf.test": [("A", "198.51.100.99")],
    # nine a: terms, a matching tenth, and an unused redirect= (pyspf deviates)
    "redirunused.spf.test": [("TXT", "v=spf1 " + "a:x.spf.test " * 9
                              + "a:a.spf.test redirect=ip4.spf.test")],
    # void lookups
    "void2.spf.test": [("TXT", "v=spf1 a:nx1.spf.test a:nx2.spf.test -all")],
    "void3.spf.test": [("TXT", "v=spf1 a:nx1.spf.test a:nx2.spf.test a:nx3.spf.test -all")],
    # qualifiers and the default
    "pass.spf.test": [("TXT", "v=spf1 +all")],
    "fail.spf.test": [("TXT", "v=spf1 -all")],
    "softfail.spf.test": [("TXT", "v=spf1 ~all")],
    "neutral.spf.test": [("TXT", "v=spf1 ?all")],
    "default.spf.test": [("TXT", "v=spf1 ip4:198.51.100.1")],
    "qual.spf.test": [("TXT", "v=spf1 ?ip4:192.0.2.1 ~ip4:192.0.2.2 -ip4:192.0.2.3 +ip4:192.0.2.4")],
    # record selection
    "two.spf.test": [("TXT", "v=spf1 -all"), ("TXT", "v=spf1 +all")],
    "nospf.spf.test": [("TXT", "this is not SPF"), ("TXT", "v=spf10 -all")],
    "mixed.spf.test": [("TXT", "site-verification=abc"), ("TXT", "v=spf1 ip4:192.0.2.10 -all")],
    "split.spf.test": [("TXT", ["v=spf1 ip4:192.0", ".2.10 -all"])],
    "upper.spf.test": [("TXT", "V=SPF1 IP4:192.0.2.10 -ALL")],
    "servfail.spf.test": [],  # SERVFAIL (behaviour)
    # syntax errors
    "unknown.spf.test": [("TXT", "v=spf1 ip4:192.0.2.10 foo:bar.spf.test -all")],
    "badcidr.spf.test": [("TXT", "v=spf1 ip4:192.0.2.10 ip4:192.0.2.0/33 -all")],
    "dupredir.spf.test": [("TXT", "v=spf1 redirect=ip4.spf.test redirect=a.spf.test")],
    "badmacro.spf.test": [("TXT", "v=spf1 ip4:192.0.2.10 exists:%{z}.spf.test -all")],
    "modifier.spf.test": [("TXT", "v=spf1 future=%{d}.x ip4:192.0.2.10 -all")],
    # identities
    "helo.spf.test": [("TXT", "v=spf1 a -all"), ("A", "192.0.2.50")],
    # exp=
    "exp.spf.test": [("TXT", "v=spf1 -all exp=why.spf.test")],
    "why.spf.test": [("TXT", "%{i} is not allowed to send mail for %{d} (%{l})")],
    "expinc.spf.test": [("TXT", "v=spf1 include:exp.spf.test -all exp=own.spf.test")],
    "own.spf.test": [("TXT", "See the policy of %{o}")],
    "expredir.spf.test": [("TXT", "v=spf1 redirect=exp.spf.test exp=own.spf.test")],
}

BEHAVIOURS = {
    "servfail.spf.test": "servfail",
    "broken.mxtemp.spf.test": "servfail",
    "7.2.0.192.in-addr.arpa": "servfail",
    "slow.spf.test": ("delay", 4),
}


# (id, ip, sender, helo, identity, result, mechanism, explanation, pyspf)
# mechanism / explanation None: not checked. pyspf None: pyspf agrees with
# the expected result; otherwise pyspf's (documented) result.
CASES = [
    # ip4 / ip6 and CIDR
    ("ip4-pass", "192.0.2.10", "a@ip4.spf.test", None, None, "pass", "ip4:192.0.2.0/24", None, None),
    ("ip4-fail", "198.51.100.10", "a@ip4.spf.test", None, None, "fail", "-all", None, None),
    ("ip4-cidr-inside", "192.0.2.127", "a@cidr.spf.test", None, None, "pass", "ip4:192.0.2.64/26",
     None, None),
    ("ip4-cidr-outside", "192.0.2.128", "a@cidr.spf.test", None, None, "softfail", "~all", None,
     None),
    ("ip4-rule-ipv6-client", "2001:db8::1", "a@ip4.spf.test", None, None, "fail", "-all", None,
     None),
    ("ip6-cidr-inside", "2001:db8:1:ffff::25", "a@ip6.spf.test", None, None, "pass",
     "ip6:2001:db8:1::/48", None, None),
    ("ip6-cidr-outside", "2001:db8:2::25", "a@ip6.spf.test", None, None, "fail", "-all", None,
     None),
    ("ip6-host", "2001:db8::cb01", "a@ip6host.spf.test", None, None, "pass", "ip6:2001:db8::cb01",
     None, None),
    ("ipv4-mapped-client", "::ffff:192.0.2.1", "a@ip6.spf.test", None, None, "pass",
     "ip4:192.0.2.1", None, None),
    # a
    ("a-v4", "192.0.2.20", "a@a.spf.test", None, None, "pass", "a", None, None),
    ("a-v6", "2001:db8::20", "a@a.spf.test", None, None, "pass", "a", None, None),
    ("a-miss", "192.0.2.21", "a@a.spf.test", None, None, "fail", "-all", None, None),
    ("a-cidr4", "192.0.2.47", "a@acidr.spf.test", None, None, "pass",
     "a:host.acidr.spf.test/28//64", None, None),
    ("a-cidr4-outside", "192.0.2.48", "a@acidr.spf.test", None, None, "fail", "-all", None, None),
    ("a-cidr6", "2001:db8:5::ffff", "a@acidr.spf.test", None, None, "pass",
     "a:host.acidr.spf.test/28//64", None, None),
    # mx
    ("mx-second-host", "192.0.2.42", "a@mx.spf.test", None, None, "pass", "mx", None, None),
    ("mx-v6", "2001:db8::42", "a@mx.spf.test", None, None, "pass", "mx", None, None),
    ("mx-miss", "192.0.2.43", "a@mx.spf.test", None, None, "fail", "-all", None, None),
    ("mx-cidr", "192.0.2.43", "a@mxcidr.spf.test", None, None, "pass", "mx:mx.spf.test/30", None,
     None),
    ("mx-host-servfail", "192.0.2.44", "a@mxtemp.spf.test", None, None, "temperror", None, None,
     None),
    ("mx-more-than-10", "192.0.2.1", "a@mx11.spf.test", None, None, "permerror", None, None, None),
    # ptr
    ("ptr-validated", "192.0.2.5", "a@ptr.spf.test", None, None, "pass", "ptr", None, None),
    ("ptr-not-validated", "192.0.2.6", "a@ptr.spf.test", None, None, "fail", "-all", None, None),
    ("ptr-loopback", "127.0.0.9", "a@ptr.spf.test", None, None, "pass", "ptr", None, None),
    ("ptr-ipv6", "2001:db8::cb01", "a@ptr.spf.test", None, None, "pass", "ptr", None, None),
    # RFC 7208 §5.5: "If a DNS error occurs while doing the PTR RR lookup,
    # then this mechanism fails to match" -> -all. pyspf 2.0.14 lets the
    # SERVFAIL of the PTR lookup end the check with temperror instead.
    ("ptr-servfail-no-match", "192.0.2.7", "a@ptr.spf.test", None, None, "fail", "-all", None,
     "temperror"),
    # exists and macros
    ("exists-i", "192.0.2.8", "a@exists.spf.test", None, None, "pass",
     "exists:%{i}.allow.spf.test", None, None),
    ("exists-i-miss", "192.0.2.9", "a@exists.spf.test", None, None, "fail", "-all", None, None),
    ("macro-ir-v", "192.0.2.11", "a@ir.spf.test", None, None, "pass", None, None, None),
    ("macro-d", "192.0.2.12", "a@d.spf.test", None, None, "fail",
     "-exists:%{d}.blocked.spf.test", None, None),
    ("macro-l1r-", "192.0.2.13", "john-doe@l.spf.test", None, None, "pass", None, None, None),
    ("macro-l1r-miss", "192.0.2.13", "jane-doe@l.spf.test", None, None, "fail", "-all", None,
     None),
    ("macro-s", "192.0.2.14", "alice@s.spf.test", None, None, "pass", None, None, None),
    ("macro-h", "192.0.2.15", "a@h.spf.test", "good.example.test", None, "pass", None, None, None),
    ("macro-h-miss", "192.0.2.15", "a@h.spf.test", "bad.example.test", None, "fail", "-all", None,
     None),
    ("macro-i-ipv6", "2001:db8::cb01", "a@i6.spf.test", None, None, "pass", None, None, None),
    ("macro-syntax", "192.0.2.10", "a@badmacro.spf.test", None, None, "permerror", None, None,
     None),
    # include
    ("include-pass", "192.0.2.10", "a@inc.spf.test", None, None, "pass", "include:ip4.spf.test",
     None, None),
    ("include-fail-no-match", "198.51.100.10", "a@incsoft.spf.test", None, None, "softfail",
     "~all", None, None),
    ("include-chain", "192.0.2.10", "a@incchain.spf.test", None, None, "pass",
     "include:inc.spf.test", None, None),
    ("include-target-none", "192.0.2.10", "a@incnone.spf.test", None, None, "permerror", None,
     None, None),
    ("include-target-nxdomain", "192.0.2.10", "a@incnx.spf.test", None, None, "permerror", None,
     None, None),
    ("include-target-servfail", "192.0.2.10", "a@inctemp.spf.test", None, None, "temperror", None,
     None, None),
    ("include-loop", "192.0.2.10", "a@loop.spf.test", None, None, "permerror", None, None, None),
    ("include-10-lookups", "192.0.2.10", "a@inc10.spf.test", None, None, "fail", "-all", None,
     None),
    ("include-11-lookups", "192.0.2.10", "a@inc11.spf.test", None, None, "permerror", None, None,
     None),
    # redirect
    ("redirect-pass", "192.0.2.10", "a@redir.spf.test", None, None, "pass", "ip4:192.0.2.0/24",
     None, None),
    ("redirect-fail", "198.51.100.10", "a@redir.spf.test", None, None, "fail", "-all", None, None),
    ("redirect-target-none", "192.0.2.10", "a@redirnone.spf.test", None, None, "permerror", None,
     None, None),
    ("redirect-after-match", "192.0.2.10", "a@redirmatch.spf.test", None, None, "pass",
     "ip4:192.0.2.10", None, None),
    ("redirect-11th-lookup", "192.0.2.10", "a@redir11.spf.test", None, None, "permerror", None,
     None, None),
    # RFC 7208 §6.1: redirect= applies only when no mechanism matched, and
    # §4.6.4 counts the terms evaluated: nine a: and a matching tenth pass.
    # pyspf 2.0.14 counts redirect= when it reads the record, so the tenth
    # a: is its eleventh lookup and it answers permerror.
    ("redirect-unused-not-counted", "192.0.2.20", "a@redirunused.spf.test", None, None, "pass",
     "a:a.spf.test", None, "permerror"),
    # void lookups
    ("void-2", "192.0.2.10", "a@void2.spf.test", None, None, "fail", "-all", None, None),
    ("void-3", "192.0.2.10", "a@void3.spf.test", None, None, "permerror", None, None, None),
    # qualifiers
    ("all-pass", "192.0.2.10", "a@pass.spf.test", None, None, "pass", "+all", None, None),
    ("all-fail", "192.0.2.10", "a@fail.spf.test", None, None, "fail", "-all", None, None),
    ("all-softfail", "192.0.2.10", "a@softfail.spf.test", None, None, "softfail", "~all", None,
     None),
    ("all-neutral", "192.0.2.10", "a@neutral.spf.test", None, None, "neutral", "?all", None, None),
    ("no-match-default-neutral", "192.0.2.10", "a@default.spf.test", None, None, "neutral", None,
     None, None),
    ("qualifier-neutral", "192.0.2.1", "a@qual.spf.test", None, None, "neutral", "?ip4:192.0.2.1",
     None, None),
    ("qualifier-softfail", "192.0.2.2", "a@qual.spf.test", None, None, "softfail",
     "~ip4:192.0.2.2", None, None),
    ("qualifier-fail", "192.0.2.3", "a@qual.spf.test", None, None, "fail", "-ip4:192.0.2.3", None,
     None),
    ("qualifier-pass", "192.0.2.4", "a@qual.spf.test", None, None, "pass", "+ip4:192.0.2.4", None,
     None),
    # record selection
    ("two-records", "192.0.2.10", "a@two.spf.test", None, None, "permerror", None, None, None),
    ("no-spf-record", "192.0.2.10", "a@nospf.spf.test", None, None, "none", None, None, None),
    ("no-such-domain", "192.0.2.10", "a@nowhere.spf.test", None, None, "none", None, None, None),
    ("spf-among-other-txt", "192.0.2.10", "a@mixed.spf.test", None, None, "pass",
     "ip4:192.0.2.10", None, None),
    ("txt-strings-joined", "192.0.2.10", "a@split.spf.test", None, None, "pass", "ip4:192.0.2.10",
     None, None),
    ("upper-case-record", "192.0.2.10", "a@upper.spf.test", None, None, "pass", "IP4:192.0.2.10",
     None, None),
    ("txt-servfail", "192.0.2.10", "a@servfail.spf.test", None, None, "temperror", None, None,
     None),
    # syntax
    ("unknown-mechanism", "192.0.2.10", "a@unknown.spf.test", None, None, "permerror", None, None,
     None),
    ("cidr-out-of-range", "192.0.2.10", "a@badcidr.spf.test", None, None, "permerror", None, None,
     None),
    ("duplicate-redirect", "192.0.2.10", "a@dupredir.spf.test", None, None, "permerror", None,
     None, None),
    ("unknown-modifier-ignored", "192.0.2.10", "a@modifier.spf.test", None, None, "pass",
     "ip4:192.0.2.10", None, None),
    # identities: the null sender is postmaster@HELO (§2.4); HELO (§2.3)
    ("null-sender-helo", "192.0.2.50", "", "helo.spf.test", None, "pass", "a", None, None),
    ("null-sender-helo-fail", "192.0.2.51", "", "helo.spf.test", None, "fail", "-all", None, None),
    ("helo-identity", "192.0.2.50", "", "helo.spf.test", "helo", "pass", "a", None, None),
    # exp=
    ("exp-explanation", "192.0.2.10", "bob@exp.spf.test", None, None, "fail", "-all",
     "192.0.2.10 is not allowed to send mail for exp.spf.test (bob)", None),
    ("exp-of-include-not-used", "192.0.2.10", "bob@expinc.spf.test", None, None, "fail", "-all",
     "See the policy of expinc.spf.test", None),
    ("exp-after-redirect", "192.0.2.10", "bob@expredir.spf.test", None, None, "fail", "-all",
     "192.0.2.10 is not allowed to send mail for exp.spf.test (bob)", None),
]


@pytest.fixture(scope="module")
def dns_srv():
    srv = DNSTestServer(ZONE, BEHAVIOURS).start()
    yield srv
    srv.stop()



@pytest.fixture(scope="module")
def conf(dns_srv, tmp_path_factory):
    return write_conf(tmp_path_factory.mktemp("spf") / "tern.conf",
                      {"dns_forwarders": dns_srv.forwarder, "dns_timeout": "5s"})


class TernSPF:
    def __init__(self, proc, elapsed):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.elapsed = elapsed
        self.fields = {}
        lines = self.out.splitlines()
        if lines:
            for tok in shlex.split(lines[0]):
                k, _, v = tok.partition("=")
                self.fields[k] = v

    def __getitem__(self, key):
        return self.fields.get(key)


def tern_spf(conf_path, ip, sender, helo=None, identity=None):
    args = [str(tern_bin()), "spf", "-c", str(conf_path)]
    if helo:
        args += ["--helo", helo]
    if identity:
        args += ["--identity", identity]
    args += [ip, sender]
    t = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, env=server_env())
    res = TernSPF(proc, time.monotonic() - t)
    for pat in SANITIZER_PATTERNS:
        assert pat not in res.err, res.err
    return res


def pyspf_check(srv, ip, sender, helo):
    """pyspf against the test server: (result, mechanism, explanation)."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = srv.port
    resolver.timeout = 5
    resolver.lifetime = 5
    saved = dns.resolver.default_resolver
    dns.resolver.default_resolver = resolver
    try:
        q = spf.query(i=ip, s=sender, h=helo, receiver=HOSTNAME)
        result, _code, explanation = q.check()
        return result, q.mechanism, explanation
    finally:
        dns.resolver.default_resolver = saved


def test_enough_cases():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_spf_against_pyspf(conf, dns_srv, case):
    _id, ip, sender, helo, identity, want, mechanism, explanation, pyspf_result = case
    helo = helo or "client.example.test"
    r = tern_spf(conf, ip, sender, helo=helo, identity=identity)
    assert r.rc == 0, r.out + r.err
    assert r["result"] == want, r.out
    if mechanism is not None:
        assert r["mechanism"] == mechanism, r.out
    if want == "fail":
        assert "explanation" in r.fields, r.out
        if explanation is not None:
            assert r["explanation"] == explanation, r.out
    else:
        assert "explanation" not in r.fields, r.out

    # pyspf asks the same server; the HELO identity is pyspf's null sender
    p_sender = "" if identity == "helo" else sender
    p_result, p_mechanism, p_explanation = pyspf_check(dns_srv, ip, p_sender, helo)
    if pyspf_result is None:
        assert p_result == r["result"], (p_result, r.out)
        if p_mechanism is not None and mechanism is not None:
            assert p_mechanism == r["mechanism"], (p_mechanism, r.out)
        if explanation is not None:
            assert p_explanation == r["explanation"], (p_explanation, r.out)
    else:
        # a documented pyspf deviation from RFC 7208 (see the case's comment)
        assert p_result == pyspf_result, (p_result, r.out)
        assert p_result != want


def test_output_fields(conf):
    r = tern_spf(conf, "198.51.100.10", "a@ip4.spf.test")
    assert r.rc == 0
    assert r.out.startswith("result=fail domain=ip4.spf.test mechanism=-all reason=")
    assert r["reason"] == "198.51.100.10 is not a permitted sender of ip4.spf.test"
    assert r["explanation"] == ""
    r = tern_spf(conf, "192.0.2.10", "a@ip4.spf.test")
    assert r["reason"] == "ip4.spf.test designates 192.0.2.10 as permitted sender"
    r = tern_spf(conf, "192.0.2.10", "a@nowhere.spf.test")
    assert r["domain"] == "nowhere.spf.test" and r["mechanism"] == "-"
    r = tern_spf(conf, "192.0.2.10", "a@void3.spf.test")
    assert r["result"] == "permerror"
    assert "void lookups" in r["reason"], r.out
    assert r["mechanism"] == "a:nx3.spf.test"
    r = tern_spf(conf, "192.0.2.10", "a@servfail.spf.test")
    assert "SERVFAIL" in r["reason"], r.out
    # the path may be written with angle brackets; <> is the null sender
    r = tern_spf(conf, "192.0.2.10", "<a@ip4.spf.test>")
    assert r["result"] == "pass" and r["domain"] == "ip4.spf.test"
    r = tern_spf(conf, "192.0.2.50", "<>", helo="helo.spf.test")
    assert r["result"] == "pass" and r["domain"] == "helo.spf.test"
    # an address literal as HELO name: nothing to check
    r = tern_spf(conf, "192.0.2.50", "", helo="[192.0.2.50]")
    assert r["result"] == "none" and r["domain"] == "-"


def test_queries_asked(conf, dns_srv):
    """Tern asks for what the record needs and no more: the mx mechanism
    stops at the host that matches."""
    before = len(dns_srv.queries)
    r = tern_spf(conf, "192.0.2.41", "a@mx.spf.test")
    assert r["result"] == "pass"
    asked = dns_srv.queries[before:]
    assert ("mx.spf.test", "TXT") in asked
    assert ("mx.spf.test", "MX") in asked
    assert ("mx1.mx.spf.test", "A") in asked
    assert ("mx2.mx.spf.test", "A") not in asked


def test_spf_timeout(tmp_path, dns_srv):
    """spf_timeout bounds the whole check: a DNS answer slower than it is a
    temperror, reported at the limit."""
    ZONE_SLOW = "slow.spf.test"
    assert ZONE_SLOW in BEHAVIOURS
    c = write_conf(tmp_path / "tern.conf", {"dns_forwarders": dns_srv.forwarder,
                                             "dns_timeout": "30s", "spf_timeout": "1s"})
    r = tern_spf(c, "192.0.2.10", "a@slow.spf.test")
    assert r.rc == 0, r.out + r.err
    assert r["result"] == "temperror", r.out
    assert "took longer than 1 s" in r["reason"], r.out
    assert r.elapsed < 3.5, r.elapsed


def test_usage_and_config_errors(conf, tmp_path):
    def run(*args):
        return subprocess.run([str(tern_bin()), "spf", *args], capture_output=True, text=True,
                              timeout=30, env=server_env())
    assert run().returncode == 2
    assert run("-c", str(conf), "192.0.2.1").returncode == 2
    assert run("-c", str(conf), "not-an-ip", "a@ip4.spf.test").returncode == 2
    p = run("-c", str(conf), "192.0.2.1", "")
    assert p.returncode == 2 and "--helo" in p.stderr
    assert run("-c", str(conf), "--identity", "rcpt", "192.0.2.1", "a@b.test").returncode == 2
    assert run("-c", str(conf), "--identity", "helo", "192.0.2.1", "a@b.test").returncode == 2
    assert run("-c", str(conf), "--bogus", "192.0.2.1", "a@b.test").returncode == 2
    p = run("--help")
    assert p.returncode == 0 and "usage: tern spf" in p.stdout
    bad = write_conf(tmp_path / "bad.conf", {"spf_timeout": "0"})
    p = run("-c", str(bad), "192.0.2.1", "a@ip4.spf.test")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "spf_timeout" in p.stderr
