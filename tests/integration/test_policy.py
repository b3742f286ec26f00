"""Recipient policy: local users, aliases, relaying, command order,
parameters, the submission listener."""

import time

from tern_helpers import SMTPClient, check_delivered, expect, make_message, new_token

DEMO = "demo@example.test"
POSTMASTER = "postmaster@example.test"


def test_unknown_user(tern):
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<nosuchuser@example.test>"), 550, "5.1.1")
    expect(c.cmd("RCPT TO:<NoSuchUser@EXAMPLE.TEST>"), 550, "5.1.1")
    # DATA without a valid recipient
    r = c.cmd("DATA")
    assert r.code in (503, 554) and r.enhanced and r.enhanced.startswith("5.5."), r
    c.close()


def test_relay_refused(tern):
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    for rcpt in ("someone@example.net", "someone@[192.0.2.1]", "@example.test:someone@example.net",
                 "someone@example.net@example.test"):
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        if rcpt.startswith("@"):
            # source route: accepted syntax, route ignored -> relay to example.net refused
            expect(r, 554, "5.7.1")
        elif rcpt.endswith("@example.test"):
            assert 500 <= (r.code or 0) < 600, "%s: %r" % (rcpt, r)
        else:
            expect(r, 554, "5.7.1")
    expect(c.cmd("RCPT TO:<Someone@Example.NET>"), 554, "5.7.1")
    c.close()
    # from the submission port without AUTH, MAIL itself is refused
    c = SMTPClient(s.submission_port)
    expect(c.greeting, 220)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 530, "5.7.0")
    c.close()


def test_relay_trusted_network_stays_queued(tern):
    s = tern({"trusted_networks": "127.0.0.0/8"})
    c = SMTPClient(s.mx_port)
    c.ehlo()
    tok = new_token()
    msg = make_message(tok, rcpt="someone@example.net")
    expect(c.send_message("alice@example.org", ["someone@example.net"], msg), 250)
    c.close()
    s.wait_log(r"status=deferred", timeout=5)
    time.sleep(0.5)
    assert s.all_delivered() == [], "relayed mail landed in a local Maildir"
    assert s.recovered_count(run=0) == 0
    s.restart()
    assert s.recovered_count() == 1, "the deferred message did not survive a restart"
    time.sleep(0.5)
    assert s.all_delivered() == []


def test_rcpt_before_mail_and_parameters(tern):
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 503, "5.5.1")
    expect(c.cmd("MAIL FROM:<alice@example.org> XFOO=BAR"), 555, "5.5.4")
    expect(c.cmd("MAIL FROM:<alice@example.org> BODY=8BITMIME RET=HDRS ENVID=abc+2Bdef"), 250)
    expect(c.cmd("RCPT TO:<%s> XFOO=BAR" % DEMO), 555, "5.5.4")
    expect(c.cmd("RCPT TO:<%s> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;demo+40example.test" % DEMO), 250)
    expect(c.cmd("RSET"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 503, "5.5.1")
    expect(c.cmd("MAIL FROM:<>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    c.close()


def test_address_case(tern):
    """Domains, mailboxes and aliases match in any case; the mailbox is the
    configured (lowercase) one."""
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    tok = new_token()
    msg = make_message(tok, rcpt="Demo@EXAMPLE.Test")
    expect(c.send_message("alice@example.org", ["Demo@EXAMPLE.Test"], msg), 250)
    tok2 = new_token()
    msg2 = make_message(tok2, rcpt="ABUSE@example.test")
    expect(c.send_message("alice@example.org", ["ABUSE@example.test"], msg2), 250)
    c.close()
    (p, data), = s.wait_token(tok)
    check_delivered(data, "alice@example.org", DEMO, msg)
    (p, data), = s.wait_token(tok2)
    check_delivered(data, "alice@example.org", POSTMASTER, msg2)


def test_alias_multiple_targets(tern):
    s = tern(aliases=["team@example.test: demo@example.test, postmaster@example.test"])
    c = SMTPClient(s.mx_port)
    c.ehlo()
    tok = new_token()
    msg = make_message(tok, rcpt="team@example.test")
    expect(c.send_message("alice@example.org", ["team@example.test"], msg), 250)
    # an alias from examples/aliases, and the alias plus one of its targets
    tok2 = new_token()
    msg2 = make_message(tok2, rcpt="abuse@example.test")
    expect(c.send_message("alice@example.org", ["abuse@example.test"], msg2), 250)
    tok3 = new_token()
    msg3 = make_message(tok3, rcpt="team@example.test")
    expect(c.send_message("alice@example.org", ["team@example.test", DEMO], msg3), 250)
    c.close()
    found = s.wait_token(tok, 2)
    boxes = sorted(p.parent.parent.name for p, _ in found)
    assert boxes == ["demo", "postmaster"], boxes
    for p, data in found:
        check_delivered(data, "alice@example.org", p.parent.parent.name + "@example.test", msg)
    (p, data), = s.wait_token(tok2)
    check_delivered(data, "alice@example.org", POSTMASTER, msg2)
    s.wait_token(tok3, 2)
    time.sleep(0.5)
    found = s.find_token(tok3)
    boxes = sorted(p.parent.parent.name for p, _ in found)
    assert boxes == ["demo", "postmaster"], "one copy per mailbox expected: %s" % boxes
    assert len(s.find_token(tok)) == 2 and len(s.find_token(tok2)) == 1


def test_catch_all(tern):
    s = tern(aliases=["@example.test: demo@example.test"])
    c = SMTPClient(s.mx_port)
    c.ehlo()
    tok = new_token()
    msg = make_message(tok, rcpt="anything@example.test")
    expect(c.send_message("alice@example.org", ["anything@example.test"], msg), 250)
    # other domains are still not relayed
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<anything@example.net>"), 554, "5.7.1")
    c.close()
    (p, data), = s.wait_token(tok)
    assert p.parent.parent == s.maildir(DEMO)
    check_delivered(data, "alice@example.org", DEMO, msg)


def test_postmaster_without_domain(tern):
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    toks = []
    for rcpt in ("postmaster", "PostMaster"):
        tok = new_token()
        msg = make_message(tok, rcpt=rcpt)
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
        expect(c.cmd("RCPT TO:<%s>" % rcpt), 250)
        expect(c.cmd("DATA"), 354)
        c.send(msg + b".\r\n")
        expect(c.reply(), 250)
        toks.append((tok, msg))
    c.close()
    for tok, msg in toks:
        (p, data), = s.wait_token(tok)
        check_delivered(data, "alice@example.org", POSTMASTER, msg)
