"""End of data is CRLF.CRLF and nothing else (RFC 5321 4.1.1.4, SMTP
smuggling): for every look-alike terminator followed by a pipelined second
transaction, the second message must never be delivered as its own message.
Also bare LF/CR in content (reject and normalize) and content sent before
the 354 (synchronization)."""

import re
import time

import pytest

from tern_helpers import SMTPClient, check_delivered, expect, make_message, new_token

DEMO = "demo@example.test"

VARIANTS = [
    ("LF.LF", b"\n.\n"),
    ("LF.CRLF", b"\n.\r\n"),
    ("CRLF.LF", b"\r\n.\n"),
    ("CR.CR", b"\r.\r"),
    ("CR.LF", b"\r.\n"),
    ("LF.CR", b"\n.\r"),
    ("CR.CRLF", b"\r.\r\n"),
    ("CRLF.CR", b"\r\n.\r"),
    ("LF.CRCRLF", b"\n.\r\r\n"),
    ("CRLF.CRCRLF", b"\r\n.\r\r\n"),
    ("CRLF.NUL", b"\r\n.\x00\r\n"),
    ("CRLF.NULCRLF", b"\r\n\x00.\r\n"),
]

BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def has_bare_newline(seq):
    return BARE.search(seq) is not None


def sentinel(c, s):
    """Send one more message (on c if still usable, else a new connection) and
    wait for it: afterwards anything the server accepted earlier has had its
    chance to be delivered."""
    tok = new_token("sentinel")
    msg = make_message(tok)
    try:
        if c is None:
            raise OSError("no connection")
        expect(c.cmd("RSET"), 250)
    except (AssertionError, OSError):
        if c is not None:
            c.close()
        c = SMTPClient(s.mx_port)
        c.ehlo()
    expect(c.send_message("sentinel@example.org", [DEMO], msg), 250)
    c.close()
    s.wait_token(tok)
    time.sleep(0.3)


@pytest.mark.parametrize("mode", ["reject", "normalize"])
@pytest.mark.parametrize("name,seq", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_smuggling(tern, mode, name, seq):
    s = tern({"bare_newline": mode})
    c = SMTPClient(s.mx_port)
    c.ehlo()
    tok1, tok2 = new_token("outer"), new_token("smuggled")
    outer_head = make_message(tok1, b"")
    smuggled = make_message(tok2, b"smuggled body\r\n", sender="ceo@example.test")
    expect(c.cmd("MAIL FROM:<attacker@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    expect(c.cmd("DATA"), 354)
    payload = (outer_head + b"innocent body" + seq
               + b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n"
               + smuggled + b"\r\n.\r\n")
    c.send(payload)
    replies = c.read_rest(1.0)
    assert replies, "no reply to the end of data"
    assert len(replies) == 1, "the smuggled commands were answered: %r" % replies
    final = replies[0]
    bare = has_bare_newline(seq)
    if bare and mode == "reject":
        expect(final, 550, "5.5.2")
    elif bare and mode == "normalize":
        expect(final, 250)
    else:
        assert final.code == 250 or (final.code or 0) >= 500, final
    sentinel(c, s)
    assert s.find_token(tok2) == [], "SMUGGLED: the second message was delivered on its own"
    outer = s.find_token(tok1)
    if final.code == 250:
        assert len(outer) == 1, "%d copies of the outer message" % len(outer)
        data = outer[0][1]
        assert b"MAIL FROM:<ceo@example.test>" in data and ("X-Tern-Test: " + tok2).encode() in data \
            and b"smuggled body" in data, "the smuggled text is not content of the message: %r" % data
        if mode == "normalize":
            assert not BARE.search(data), "bare CR/LF stored: %r" % data
            assert b"innocent body\r\n" in data, data
    else:
        assert outer == [], "message delivered after %r" % final
    # nothing but the outer message (if accepted) and the sentinel
    assert len(s.all_delivered()) == len(outer) + 1, [str(p) for p, _ in s.all_delivered()]


def test_bare_lf_cr_rejected(tern):
    s = tern()
    for bad_head, bad_body in ((b"", b"line one\nline two\r\n"),
                               (b"", b"line one\rline two\r\n"),
                               (b"", b"trailing bare CR\r\r\n"),
                               (b"X-Bare: a\nX-Injected: b\r\n", b"body\r\n")):
        c = SMTPClient(s.mx_port)
        c.ehlo()
        msg = make_message(new_token(), bad_body, extra_headers=bad_head)
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
        expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
        expect(c.cmd("DATA"), 354)
        c.send(msg + b".\r\n")
        expect(c.reply(), 550, "5.5.2")
        c.close()
    sentinel(None, s)
    assert len(s.all_delivered()) == 1


def test_bare_lf_cr_normalized(tern):
    s = tern({"bare_newline": "normalize"})
    c = SMTPClient(s.mx_port)
    c.ehlo()
    tok = new_token()
    sent = make_message(tok, b"line one\nline two\rline three\r\n")
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    expect(c.cmd("DATA"), 354)
    c.send(sent + b".\r\n")
    expect(c.reply(), 250)
    c.close()
    (p, data), = s.wait_token(tok)
    check_delivered(data, "alice@example.org", DEMO,
                    make_message(tok, b"line one\r\nline two\r\nline three\r\n"))


def test_content_before_354(tern):
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    tok = new_token()
    c.send(b"DATA\r\n" + make_message(tok) + b".\r\n")
    replies = c.read_rest(1.5)
    codes = [r.code for r in replies]
    assert 554 in codes, "no 554 for content sent before the 354: %r" % replies
    r554 = replies[codes.index(554)]
    expect(r554, 554, "5.5.0")
    assert 250 not in codes, replies
    assert r554.closed or c.closed(1), "connection not closed after 554 5.5.0: %r" % replies
    time.sleep(0.5)
    assert s.all_delivered() == []
    # the whole pipelined envelope and content in one write, as a spam bot does
    c = SMTPClient(s.mx_port)
    c.ehlo()
    tok2 = new_token()
    c.send(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<demo@example.test>\r\nDATA\r\n"
           + make_message(tok2) + b".\r\n")
    replies = c.read_rest(1.5)
    codes = [r.code for r in replies]
    assert codes[:2] == [250, 250] and 554 in codes and 250 not in codes[2:], replies
    time.sleep(0.5)
    assert s.all_delivered() == []


def test_bare_lf_command_line(tern):
    """A command line must end in CRLF: refused in the default mode, accepted
    when bare_newline = normalize (as Postfix's smtpd_forbid_bare_newline)."""
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    c.send(b"NOOP\nNOOP\r\n")
    first, second = c.reply(), c.reply()
    expect(first, 500, "5.5.2")
    expect(second, 250)
    c.close()
    s2 = tern({"bare_newline": "normalize"})
    c = SMTPClient(s2.mx_port)
    c.ehlo()
    c.send(b"NOOP\nNOOP\r\n")
    expect(c.reply(), 250)
    expect(c.reply(), 250)
    c.close()
