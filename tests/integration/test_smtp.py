"""The SMTP dialogue with ordinary clients: smtplib, pipelining over a raw
socket, 8-bit and SMTPUTF8 mail, swaks. Each delivered file is checked byte
for byte: Return-Path, Delivered-To and Received added, then the message as
sent."""

import smtplib
import socket
import subprocess
import time

from tern_helpers import (
    CRLF,
    Delivered,
    SMTPClient,
    check_delivered,
    dot_stuff,
    expect,
    make_message,
    new_token,
)

DEMO = "demo@example.test"
POSTMASTER = "postmaster@example.test"


def smtp(server, timeout=10):
    return smtplib.SMTP("127.0.0.1", server.mx_port, local_hostname="client.example.org",
                        timeout=timeout)


def test_greeting_ehlo_and_enhanced_codes(tern):
    s = tern({"message_size_limit": "1M"})
    c = SMTPClient(s.mx_port)
    expect(c.greeting, 220)
    assert c.greeting.lines[-1].startswith("220 mail.example.test ESMTP"), c.greeting
    e = c.ehlo()
    assert e.lines[0].startswith("250-mail.example.test"), e
    keywords = {}
    for line in e.lines[1:]:
        words = line[4:].split()
        keywords[words[0].upper()] = words[1:]
    for k in ("PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN"):
        assert k in keywords, "EHLO does not advertise %s: %r" % (k, e)
    assert keywords["SIZE"] == ["1048576"], "SIZE should advertise 1M = 1048576: %r" % e
    # RFC 2034: every reply except the greeting and EHLO/HELO has an enhanced code
    for line, code in (("NOOP", 250), ("RSET", 250), ("VRFY demo", 252), ("HELP", 214),
                       ("BOGUS", (500, 502)), ("MAIL FROM:<a@example.org>", 250),
                       ("MAIL FROM:<a@example.org>", 503)):
        r = expect(c.cmd(line), code)
        assert r.enhanced, "%s: reply without an enhanced status code: %r" % (line, r)
    r = expect(c.cmd("QUIT"), 221)
    assert r.enhanced, r
    assert c.closed(), "connection not closed after QUIT"


def test_listeners(tern):
    s = tern()
    for port in (s.mx_port, s.submission_port):
        c = SMTPClient(port)
        expect(c.greeting, 220)
        c.close()
    # submissions (implicit TLS) listens; its TLS arrives with [submission]
    socket.create_connection(("127.0.0.1", s.submissions_port), timeout=5).close()


def test_helo(tern):
    s = tern()
    c = SMTPClient(s.mx_port)
    expect(c.cmd("HELO client.example.org"), 250)
    tok = new_token()
    msg = make_message(tok)
    expect(c.send_message("alice@example.org", [DEMO], msg), 250)
    c.close()
    d = check_delivered(s.wait_messages(DEMO, 1)[0][1], "alice@example.org", DEMO, msg)
    # RFC 3848: "SMTP" after HELO, "ESMTP" after EHLO
    assert d.with_proto == "SMTP", d.received


def test_smtplib_plain_send(tern):
    s = tern()
    # lines starting with "." exercise dot-stuffing (smtplib stuffs, Tern unstuffs)
    body = b"First line.\r\n.hidden line\r\n..\r\n.\r\nlast line\r\n"
    tok1, tok2 = new_token(), new_token()
    msg1 = make_message(tok1, body)
    msg2 = make_message(tok2, b"second message\r\n")
    with smtp(s) as c:
        refused = c.sendmail("alice@example.org", [DEMO, POSTMASTER], msg1)
        assert refused == {}
        refused = c.sendmail("bob@example.org", [DEMO], msg2)
        assert refused == {}
    found1 = s.wait_token(tok1, 2)
    by_box = {}
    for p, data in found1:
        by_box[p.parent.parent.name] = data
    assert sorted(by_box) == ["demo", "postmaster"], [str(p) for p, _ in found1]
    d_demo = check_delivered(by_box["demo"], "alice@example.org", DEMO, msg1)
    d_pm = check_delivered(by_box["postmaster"], "alice@example.org", POSTMASTER, msg1)
    assert d_demo.queue_id == d_pm.queue_id, "one message, two queue ids: %s %s" % (
        d_demo.queue_id, d_pm.queue_id)
    assert d_demo.with_proto == "ESMTP", "EHLO session: 'with ESMTP' expected: %r" % d_demo.received
    (p2, data2), = s.wait_token(tok2, 1)
    d2 = check_delivered(data2, "bob@example.org", DEMO, msg2)
    assert d2.queue_id != d_demo.queue_id, "two messages share queue id %s" % d2.queue_id
    # the queue id in Received: is the one the server logs about
    time.sleep(0.2)
    log = s.log()
    assert d_demo.queue_id in log, "queue id %s not in the log:\n%s" % (d_demo.queue_id, log[-3000:])
    assert d2.queue_id in log, "queue id %s not in the log" % d2.queue_id
    # Maildir layout
    for box in (DEMO, POSTMASTER):
        for sub in ("new", "cur", "tmp"):
            assert (s.maildir(box) / sub).is_dir(), "%s/%s missing" % (s.maildir(box), sub)


def test_pipelined_multi_recipient(tern):
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    tok = new_token()
    msg = make_message(tok)
    # RFC 2920: the whole envelope in one write; replies come back in order
    c.send(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<demo@example.test>\r\n"
           b"RCPT TO:<nosuchuser@example.test>\r\nRCPT TO:<postmaster@example.test>\r\nDATA\r\n")
    r = c.replies(5)
    expect(r[0], 250)
    expect(r[1], 250)
    expect(r[2], 550, "5.1.1")
    expect(r[3], 250)
    expect(r[4], 354)
    c.send(dot_stuff(msg))
    expect(c.reply(), 250)
    # the same again with the commands cut at odd places in separate TCP segments
    tok2 = new_token()
    msg2 = make_message(tok2)
    stream = (b"RSET\r\nMAIL FROM:<bob@example.org>\r\nRCPT TO:<demo@example.test>\r\n"
              b"RCPT TO:<postmaster@example.test>\r\nDATA\r\n")
    pos = 0
    for cut in (3, 7, 20, 21, 50, 52, len(stream)):
        c.send(stream[pos:cut])
        pos = cut
        time.sleep(0.02)
    r = c.replies(5)
    for i, code in enumerate((250, 250, 250, 250, 354)):
        expect(r[i], code)
    c.send(dot_stuff(msg2))
    expect(c.reply(), 250)
    c.close()
    for t, m, sender in ((tok, msg, "alice@example.org"), (tok2, msg2, "bob@example.org")):
        found = s.wait_token(t, 2)
        boxes = sorted(p.parent.parent.name for p, _ in found)
        assert boxes == ["demo", "postmaster"], boxes
        for p, data in found:
            check_delivered(data, sender, p.parent.parent.name + "@example.test", m)
    time.sleep(0.3)
    assert len(s.find_token(tok)) == 2 and len(s.find_token(tok2)) == 2, "duplicate deliveries"


def test_8bit_body(tern):
    s = tern()
    tok = new_token()
    body = ("Grüße aus Köln, ½ € — ещё ✓\r\n".encode("utf-8")
            + bytes(range(0x80, 0x100)) + CRLF
            + b"latin-1 \xe9t\xe9\r\n")
    msg = make_message(tok, body, extra_headers=b"MIME-Version: 1.0\r\n"
                       b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n")
    with smtp(s) as c:
        assert c.sendmail("alice@example.org", [DEMO], msg, mail_options=["BODY=8BITMIME"]) == {}
    (p, data), = s.wait_token(tok)
    check_delivered(data, "alice@example.org", DEMO, msg)


def test_smtputf8_addresses(tern):
    s = tern(aliases=["jörg@example.test: demo@example.test"])
    tok = new_token()
    sender = "rené@example.org"
    rcpt = "jörg@example.test"
    msg = ("From: René <rené@example.org>\r\nTo: Jörg <jörg@example.test>\r\n"
           "Subject: Grüße\r\nX-Tern-Test: %s\r\n\r\nHallo Jörg!\r\n" % tok).encode("utf-8")
    with smtp(s) as c:
        assert c.sendmail(sender, [rcpt], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"]) == {}
    (p, data), = s.wait_token(tok)
    assert p.parent.parent == s.maildir(DEMO), p
    assert data.startswith("Return-Path: <rené@example.org>\r\n".encode("utf-8")), data[:200]
    d = check_delivered(data, sender, DEMO, msg)
    # RFC 6531 section 3.7.3: "UTF8SMTP" for an SMTPUTF8 transaction (ESMTP tolerated)
    assert d.with_proto in ("ESMTP", "UTF8SMTP"), d.received


def test_swaks(tern):
    s = tern()
    tok = new_token()
    out = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(s.mx_port), "--helo", "client.example.org",
         "--from", "swaks@example.org", "--to", DEMO, "--header", "X-Tern-Test: " + tok,
         "--header", "Subject: swaks " + tok, "--body", "Sent by swaks.", "--timeout", "10"],
        capture_output=True, timeout=30)
    assert out.returncode == 0, "swaks failed:\n%s\n%s" % (out.stdout.decode(), out.stderr.decode())
    (p, data), = s.wait_token(tok)
    d = Delivered(data)
    assert d.error is None, d.error
    assert d.return_path == "<swaks@example.org>"
    assert d.delivered_to in (DEMO, "<%s>" % DEMO)
    assert d.queue_id, d.received
    assert b"\r\n\r\nSent by swaks.\r\n" in d.rest, d.rest
