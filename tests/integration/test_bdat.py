"""CHUNKING (RFC 3030) over a raw socket: BDAT takes exactly its byte count,
does no dot-unstuffing, and consumes its bytes even when it refuses them."""

import time

from tern_helpers import SMTPClient, check_delivered, expect, make_message, new_token

DEMO = "demo@example.test"

# "\r\n.\r\n" inside a BDAT chunk is content, as are dots at line starts
TRICKY_BODY = (b"line one\r\n.\r\n"
               b"MAIL FROM:<evil@example.org>\r\n"
               b"..two dots stay two dots\r\n"
               b".\r\n.\r\n"
               b"last line\r\n")


def bdat(c, chunk, last=False):
    c.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)


def test_bdat_chunks(tern):
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    tok = new_token()
    msg = make_message(tok, TRICKY_BODY)
    # cut inside a header, between CR and LF, and inside "\r\n.\r\n"
    cr = msg.index(b"\r\n", 40) + 1
    dot = msg.index(b"\r\n.\r\n") + 3
    chunks = [msg[:17], msg[17:cr], msg[cr:dot], msg[dot:]]
    assert b"".join(chunks) == msg
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    for ch in chunks[:-1]:
        bdat(c, ch)
        expect(c.reply(), 250)
    bdat(c, chunks[-1], last=True)
    expect(c.reply(), 250)
    # a second message in the same session, fully pipelined, ended by BDAT 0 LAST
    tok2 = new_token()
    msg2 = make_message(tok2, TRICKY_BODY)
    half = len(msg2) // 2
    c.send(b"MAIL FROM:<bob@example.org>\r\nRCPT TO:<demo@example.test>\r\n"
           + b"BDAT %d\r\n" % half + msg2[:half]
           + b"BDAT %d\r\n" % (len(msg2) - half) + msg2[half:]
           + b"BDAT 0 LAST\r\n")
    for i, r in enumerate(c.replies(5)):
        expect(r, 250)
    expect(c.cmd("NOOP"), 250)
    assert c.read_rest(0.3) == [], "extra replies"
    c.close()
    (p, data), = s.wait_token(tok)
    check_delivered(data, "alice@example.org", DEMO, msg)
    (p, data), = s.wait_token(tok2)
    check_delivered(data, "bob@example.org", DEMO, msg2)
    time.sleep(0.3)
    assert len(s.all_delivered()) == 2, [str(p) for p, _ in s.all_delivered()]


def test_bdat_without_mail_consumes_its_bytes(tern):
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    payload = b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<demo@example.test>\r\nNOOP\r\n"
    c.send(b"BDAT %d\r\n" % len(payload) + payload)
    r = expect(c.reply(), 503)
    assert r.enhanced and r.enhanced.startswith("5.5."), r
    # had the payload run as commands, these would be its replies (250, 250, 250)
    expect(c.cmd("RCPT TO:<demo@example.test>"), 503, "5.5.1")
    expect(c.cmd("NOOP"), 250)
    assert c.read_rest(0.3) == [], "extra replies"
    c.close()
    time.sleep(0.5)
    assert s.all_delivered() == []


def test_bdat_last_without_mail(tern):
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    payload = b"RSET\r\nQUIT\r\n"
    c.send(b"BDAT %d LAST\r\n" % len(payload) + payload + b"NOOP\r\n")
    expect(c.reply(), 503)
    expect(c.reply(), 250)  # the NOOP after the chunk, not the QUIT inside it
    assert c.read_rest(0.3) == []
    c.close()


def test_data_after_bdat(tern):
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    tok = new_token()
    msg = make_message(tok)
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    bdat(c, msg[:20])
    expect(c.reply(), 250)
    expect(c.cmd("DATA"), 503, "5.5.1")
    expect(c.cmd("RSET"), 250)
    # the session is usable after the refusal
    tok2 = new_token()
    msg2 = make_message(tok2)
    expect(c.send_message("alice@example.org", [DEMO], msg2), 250)
    c.close()
    s.wait_token(tok2)
    time.sleep(0.3)
    assert s.find_token(tok) == [] and len(s.all_delivered()) == 1


def test_bdat_bare_newline(tern):
    """The bare CR/LF policy applies to BDAT content as it does to DATA."""
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    for bad in (b"line one\nline two\r\n", b"line one\rline two\r\n"):
        msg = make_message(new_token(), bad)
        expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
        expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
        bdat(c, msg, last=True)
        expect(c.reply(), 550, "5.5.2")
        expect(c.cmd("RSET"), 250)
    c.close()
    s2 = tern({"bare_newline": "normalize"})
    c = SMTPClient(s2.mx_port)
    c.ehlo()
    tok = new_token()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    bdat(c, make_message(tok, b"line one\nline two\rline three\r\n"), last=True)
    expect(c.reply(), 250)
    c.close()
    (p, data), = s2.wait_token(tok)
    check_delivered(data, "alice@example.org", DEMO,
                    make_message(tok, b"line one\r\nline two\r\nline three\r\n"))
    time.sleep(0.3)
    assert s.all_delivered() == []


def test_bdat_idle_timeout_inside_chunk(tern):
    s = tern({"idle_timeout": "2s"})
    c = SMTPClient(s.mx_port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    c.send(b"BDAT 1000 LAST\r\nSubject: only part of the chunk\r\n")
    t0 = time.monotonic()
    r = c.reply(timeout=5)
    assert time.monotonic() - t0 <= 3.5
    expect(r, 421, "4.4.2")
    assert r.closed or c.closed(1)
    time.sleep(0.3)
    assert s.all_delivered() == []
