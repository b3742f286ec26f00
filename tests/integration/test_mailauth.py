"""Mail authentication in the SMTP session: SPF, DKIM and DMARC on mail
received on the mx listener, the Authentication-Results field Tern adds (and
the forged ones it removes), and DKIM signatures on mail from authenticated
users and trusted networks.

A scripted DNS server on loopback (dns_server.DNSTestServer, python3-dnslib)
serves SPF, DMARC and DKIM key records; Tern reaches it through
dns_forwarders. Mail comes from 127.0.0.1, which is not a trusted network
here unless a test says so. The independent checker is dkimpy
(python3-dkim): it signs the mail Tern must verify, and verifies the mail
Tern signs, asking the same DNS server for keys. RFC 7208, 6376, 8463, 7489,
8601.
"""

import base64
import re
import smtplib
import subprocess

import dkim
import pytest
from dnslib import DNSRecord

from conftest import server_env, tern_bin
from dns_server import DNSTestServer
from relay_helpers import Peer
from tern_helpers import (SMTPClient, client_tls_context, dot_stuff, expect, free_ports,
                          make_message, new_token)

RCPT = "demo@example.test"
AUTHSERV = "mail.example.test"


def zone_strings(line):
    return [re.sub(r'\\(.)', r'\1', s) for s in re.findall(r'"((?:[^"\\]|\\.)*)"', line)]


BASE_ZONE = {
    # SPF pass for loopback, DMARC reject: mail that passes
    "sender.test": [("TXT", "v=spf1 ip4:127.0.0.0/8 -all")],
    "_dmarc.sender.test": [("TXT", "v=DMARC1; p=reject")],
    # SPF fail and DMARC reject: refused at the end of data
    "fail.test": [("TXT", "v=spf1 -all")],
    "_dmarc.fail.test": [("TXT", "v=DMARC1; p=reject")],
    # SPF fail and DMARC quarantine
    "quar.test": [("TXT", "v=spf1 -all")],
    "_dmarc.quar.test": [("TXT", "v=DMARC1; p=quarantine")],
    # no records at all
    "plain.test": [("A", "192.0.2.1")],
    # SPF's DNS fails
    "broken.test": [],
}


@pytest.fixture(scope="module")
def dns():
    srv = DNSTestServer(dict(BASE_ZONE), {"broken.test": "servfail",
                                          "_dmarc.broken.test": "servfail"}).start()
    yield srv
    srv.stop()


class Lab:
    def __init__(self, tmp_path, dns, tern):
        self.dns, self.tern, self.dir = dns, tern, tmp_path
        self.zone = dict(BASE_ZONE)
        self.keydir = tmp_path / "dkim"
        self.keys = {}  # (domain, selector) -> PEM bytes
        dns.set_records(self.zone)

    def overrides(self, **extra):
        o = {"dns_forwarders": self.dns.forwarder, "dns_timeout": "2s",
             "dkim_key_dir": str(self.keydir),
             "mailauth_skip_networks": ""}  # the test clients are on loopback
        o.update(extra)
        return o

    def keygen(self, conf, domain, selector, keytype="rsa"):
        p = subprocess.run([str(tern_bin()), "dkim", "keygen", "-c", str(conf), domain,
                            "--selector", selector, "--type", keytype],
                           capture_output=True, timeout=60, env=server_env())
        out = p.stdout.decode()
        assert p.returncode == 0, out + p.stderr.decode()
        line = [l for l in out.splitlines() if l.startswith("%s._domainkey.%s. IN TXT " % (selector, domain))]
        assert len(line) == 1, out
        self.zone["%s._domainkey.%s" % (selector, domain)] = [("TXT", zone_strings(line[0]))]
        self.dns.set_records(self.zone)
        self.keys[(domain, selector)] = (self.keydir / domain / (selector + ".key")).read_bytes()

    def dnsfunc(self, name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode()
        q = DNSRecord.question(name.rstrip("."), "TXT")
        reply = DNSRecord.parse(q.send("127.0.0.1", self.dns.port, timeout=timeout))
        for rr in reply.rr:
            if rr.rtype == 16:
                return b"".join(rr.rdata.data)
        return None


@pytest.fixture
def lab(tmp_path, dns, tern):
    lb = Lab(tmp_path, dns, tern)
    yield lb
    dns.set_records(dict(BASE_ZONE))


def message(sender, token, body=b"Checked on arrival.\r\n", extra=b""):
    return make_message(token, sender=sender, rcpt=RCPT, body=body, extra_headers=extra)


def dkimpy_sign(lab, msg, domain, selector):
    pem = lab.keys[(domain, selector)]
    der = base64.b64decode(b"".join(l for l in pem.splitlines() if not l.startswith(b"-----")))
    kw = {}
    if len(der) == 48:  # PKCS#8 Ed25519: dkimpy takes the raw 32-octet seed, in base64
        pem = base64.b64encode(der[-32:])
        kw["signature_algorithm"] = b"ed25519-sha256"
    sig = dkim.sign(msg, selector.encode(), domain.encode(), pem,
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=[b"From", b"To", b"Subject", b"Date", b"Message-ID"], **kw)
    return sig + msg


def deliver(srv, sender, msg):
    c = SMTPClient(srv.mx_port)
    c.ehlo("client.sender.test")
    r = c.send_message(sender, [RCPT], msg)
    c.quit()
    return r


def authres(data):
    """The unfolded Authentication-Results fields at the top of a delivered file."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    unfolded = re.sub(r"\r\n[ \t]+", " ", head)
    return [l.split(":", 1)[1].strip() for l in unfolded.split("\r\n")
            if l.lower().startswith("authentication-results:")]


def test_dkim_signed_spf_pass_dmarc_pass(lab, tern):
    srv = tern(lab.overrides())
    lab.keygen(srv.conf, "sender.test", "sel")
    token = new_token("pass")
    msg = dkimpy_sign(lab, message("alice@sender.test", token), "sender.test", "sel")
    expect(deliver(srv, "alice@sender.test", msg), 250)
    srv.wait_token(token)
    data = srv.find_token(token)[0][1]
    ars = authres(data)
    assert len(ars) == 1, ars
    ar = ars[0]
    assert ar.startswith(AUTHSERV + ";"), ar
    assert re.search(r"\bspf=pass smtp\.mailfrom=alice@sender\.test\b", ar), ar
    # the HELO name is checked too (RFC 7208 §2.3): it publishes nothing
    assert re.search(r"\bspf=none smtp\.helo=client\.sender\.test\b", ar), ar
    assert re.search(r"\bdkim=pass header\.d=sender\.test header\.s=sel header\.a=rsa-sha256 "
                     r"header\.b=\S+", ar), ar
    assert re.search(r"\bdmarc=pass header\.from=sender\.test \(p=reject dis=none\)", ar), ar
    srv.wait_log(r"event=dmarc from=sender\.test result=pass policy=reject action=accept")
    # the message itself arrived unchanged after the fields Tern added
    assert data.endswith(msg)


def test_tampered_body_fails_dkim_and_dmarc_rejects(lab, tern):
    srv = tern(lab.overrides())
    lab.keygen(srv.conf, "sender.test", "sel", "ed25519")
    token = new_token("tampered")
    msg = dkimpy_sign(lab, message("alice@sender.test", token), "sender.test", "sel")
    # a forwarder changes the body and sends from an address SPF does not allow
    lab.zone["sender.test"] = [("TXT", "v=spf1 -all")]
    lab.dns.set_records(lab.zone)
    msg = msg.replace(b"Checked on arrival.", b"Changed on the way.")
    c = SMTPClient(srv.mx_port)
    c.ehlo("client.sender.test")
    expect(c.cmd("MAIL FROM:<alice@sender.test>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % RCPT), 250)
    expect(c.cmd("DATA"), 354)
    c.send(dot_stuff(msg))
    r = c.reply()
    code, text = r.code, r.text
    assert code == 550, (code, text)
    assert "5.7.1" in text and "DMARC" in text and "sender.test" in text, text
    c.quit()
    srv.wait_log(r"event=dkim_verify d=sender\.test s=sel a=ed25519-sha256 result=fail")
    srv.wait_log(r"event=reject client=127\.0\.0\.1 cmd=DATA reply=\"550 5\.7\.1 ")
    assert srv.find_token(token) == []


def test_dmarc_reject_refuses_at_end_of_data(lab, tern):
    srv = tern(lab.overrides())
    token = new_token("reject")
    c = SMTPClient(srv.mx_port)
    c.ehlo("client.fail.test")
    expect(c.cmd("MAIL FROM:<bob@fail.test>"), 250)  # spf_fail_action = record
    expect(c.cmd("RCPT TO:<%s>" % RCPT), 250)
    expect(c.cmd("DATA"), 354)
    c.send(dot_stuff(message("bob@fail.test", token)))
    r = c.reply()
    assert (r.code, r.enhanced) == (550, "5.7.1"), r.text
    # the session goes on
    expect(c.cmd("NOOP"), 250)
    c.quit()
    assert srv.find_token(token) == []


def test_dmarc_quarantine_and_record(lab, tern):
    srv = tern(lab.overrides())
    token = new_token("quar")
    expect(deliver(srv, "carol@quar.test", message("carol@quar.test", token)), 250)
    srv.wait_token(token)
    data = srv.find_token(token)[0][1]
    assert re.search(rb"(?m)^X-Tern-Quarantine: yes\r$", data.split(b"\r\n\r\n")[0]), data[:600]
    ar = authres(data)[0]
    assert re.search(r"\bspf=fail\b", ar) and re.search(r"\bdkim=none\b", ar), ar
    assert re.search(r"\bdmarc=fail header\.from=quar\.test \(p=quarantine dis=quarantine\)", ar), ar
    # dmarc_reject_action = record: a reject policy only recorded
    srv2 = tern(lab.overrides(dmarc_reject_action="record"))
    token = new_token("record")
    expect(deliver(srv2, "bob@fail.test", message("bob@fail.test", token)), 250)
    srv2.wait_token(token)
    data = srv2.find_token(token)[0][1]
    ar = authres(data)[0]
    assert re.search(r"\bdmarc=fail header\.from=fail\.test \(p=reject dis=none\)", ar), ar
    assert b"X-Tern-Quarantine" not in data.split(b"\r\n\r\n")[0]


def test_forged_authentication_results_removed(lab, tern):
    srv = tern(lab.overrides())
    token = new_token("forged")
    extra = (b"Authentication-Results: MAIL.example.test;\r\n\tdkim=pass header.d=bank.example\r\n"
             b"Authentication-Results: other.example; spf=pass smtp.mailfrom=x@plain.test\r\n"
             b"Authentication-Results: mail.example.test (comment) 1; none\r\n"
             b"X-Tern-Quarantine: no\r\n")
    msg = message("dave@plain.test", token, extra=extra)
    expect(deliver(srv, "dave@plain.test", msg), 250)
    srv.wait_token(token)
    data = srv.find_token(token)[0][1]
    ars = authres(data)
    assert len(ars) == 2, ars
    assert ars[0].startswith(AUTHSERV + ";") and "spf=none" in ars[0] and "dmarc=none" in ars[0], ars
    assert ars[1].startswith("other.example;"), ars
    assert b"bank.example" not in data and b"X-Tern-Quarantine" not in data
    srv.wait_log(r"event=authres_removed fields=3")


def test_spf_fail_rejects_mail_when_configured(lab, tern):
    srv = tern(lab.overrides(spf_fail_action="reject"))
    c = SMTPClient(srv.mx_port)
    c.ehlo("client.fail.test")
    r = c.cmd("MAIL FROM:<bob@fail.test>")
    assert (r.code, r.enhanced) == (550, "5.7.23"), r.text
    assert "fail.test" in r.text
    # other results pass through; the transaction can start again
    expect(c.cmd("MAIL FROM:<alice@sender.test>"), 250)
    expect(c.cmd("RSET"), 250)
    # pipelined: MAIL waits for SPF, the RCPT after it is answered in order
    c.send(b"MAIL FROM:<bob@fail.test>\r\nRCPT TO:<demo@example.test>\r\n")
    assert c.reply().code == 550
    assert c.reply().code == 503  # no MAIL in force
    c.quit()


def test_spf_dns_failure_is_temperror_and_accepted(lab, tern):
    srv = tern(lab.overrides())
    token = new_token("temp")
    lab.zone["mx.sender.test"] = [("TXT", "v=spf1 a:mx.sender.test -all"), ("A", "127.0.0.1")]
    lab.dns.set_records(lab.zone)
    c = SMTPClient(srv.mx_port)
    c.ehlo("mx.sender.test")
    expect(c.send_message("eve@broken.test", [RCPT], message("eve@broken.test", token)), 250)
    c.quit()
    srv.wait_token(token)
    ar = authres(srv.find_token(token)[0][1])[0]
    assert "spf=temperror smtp.mailfrom=eve@broken.test" in ar, ar
    assert "spf=pass smtp.helo=mx.sender.test" in ar, ar
    assert "dmarc=temperror" in ar, ar


def test_trusted_client_mail_is_signed_and_verifies_at_the_peer(lab, tern):
    """Relayed mail from a trusted network carries RSA and Ed25519 signatures
    that dkimpy accepts at the remote MX (an aiosmtpd peer)."""
    port = free_ports(1)[0]
    lab.zone.update({"remote.test": [("MX", (10, "mx.remote.test"))],
                     "mx.remote.test": [("A", "127.0.0.2")]})
    srv = tern(lab.overrides(trusted_networks="127.0.0.1/32", outbound_port=str(port)),
               start=False)
    lab.keygen(srv.conf, "example.test", "rsa1", "rsa")
    lab.keygen(srv.conf, "example.test", "ed1", "ed25519")
    srv.start()
    peer = Peer("127.0.0.2", port).start()
    try:
        token = new_token("signed")
        msg = make_message(token, sender="alice@example.test", rcpt="bob@remote.test",
                           body=b"Signed by Tern.\r\n")
        c = SMTPClient(srv.mx_port)
        c.ehlo("trusted.example.test")
        expect(c.send_message("alice@example.test", ["bob@remote.test"], msg), 250)
        c.quit()
        (mail_from, rcpts, content), = peer.wait(timeout=20)
    finally:
        peer.stop()
    head = content.split(b"\r\n\r\n", 1)[0]
    assert len(re.findall(rb"(?im)^DKIM-Signature:", head)) == 2, head[:800]
    assert b"Authentication-Results" not in head  # trusted mail is signed, not checked
    d = dkim.DKIM(content)
    assert d.verify(idx=0, dnsfunc=lab.dnsfunc)
    assert d.verify(idx=1, dnsfunc=lab.dnsfunc)
    srv.wait_log(r"event=dkim_signed signatures=2")
    # the keys were parsed once, at start, not for this message (keycache.c)
    srv.stop_clean()
    line = srv.wait_log(r"event=dkim_keycache ")
    assert re.search(r"hits=2 parsed=2\b", line), line  # parsed: the loading itself


def test_submitted_mail_is_signed(lab, tern):
    srv = tern(lab.overrides(), start=False)
    lab.keygen(srv.conf, "example.test", "sub", "ed25519")
    srv.start()
    token = new_token("submitted")
    msg = make_message(token, sender=RCPT, rcpt="postmaster@example.test")
    msg = msg.replace(b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n", b"")  # the MSA adds it
    with smtplib.SMTP("127.0.0.1", srv.submission_port, timeout=10) as s:
        s.starttls(context=client_tls_context())
        s.login(RCPT, "tern-demo")
        assert s.sendmail(RCPT, ["postmaster@example.test"], msg) == {}
    srv.wait_token(token)
    data = srv.find_token(token)[0][1]
    # drop what the Maildir delivery adds in front (Return-Path, Delivered-To)
    body = data.split(b"\r\n", 2)[2]
    assert body.startswith(b"DKIM-Signature:"), body[:200]
    assert dkim.verify(body, dnsfunc=lab.dnsfunc)
    # the Date the MSA added is signed
    sig = re.search(rb"(?s)^DKIM-Signature:(.*?)\r\n(?![ \t])", body).group(1)
    signed = re.search(rb"(?:^|;)h=([^;]*)", re.sub(rb"\s", b"", sig)).group(1).lower().split(b":")
    assert b"date" in signed and signed.count(b"from") == 2, signed


def test_loopback_is_not_checked_by_default(lab, tern):
    """mailauth_skip_networks defaults to loopback (as policyd-spf and OpenDMARC
    leave it out): no checks, no Authentication-Results, no DMARC refusal."""
    o = lab.overrides()
    del o["mailauth_skip_networks"]
    srv = tern(o)
    token = new_token("loopback")
    expect(deliver(srv, "bob@fail.test", message("bob@fail.test", token)), 250)
    srv.wait_token(token)
    assert authres(srv.find_token(token)[0][1]) == []
    assert "event=spf" not in srv.log()
