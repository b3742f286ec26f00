"""Limits (DESIGN contract 4): size, recipients, line length, idle time,
errors, connections. Each limit is configured small and must answer with its
reply code."""

import socket
import time

from tern_helpers import SMTPClient, check_delivered, dot_stuff, expect, make_message, new_token

DEMO = "demo@example.test"
LIMIT = 100 * 1024  # message_size_limit = 100K


def test_size_declared(tern):
    s = tern({"message_size_limit": "100K"})
    c = SMTPClient(s.mx_port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<a@example.org> SIZE=%d" % (LIMIT + 1)), 552, "5.3.4")
    expect(c.cmd("MAIL FROM:<a@example.org> SIZE=200000"), 552, "5.3.4")
    # 2^64 + 1 must not wrap around to 1
    expect(c.cmd("MAIL FROM:<a@example.org> SIZE=18446744073709551617"), 552, "5.3.4")
    # more than the 20 digits of RFC 1870's size-value: too big, or a syntax error
    r = expect(c.cmd("MAIL FROM:<a@example.org> SIZE=99999999999999999999999999999999999"), (552, 501))
    assert r.enhanced in ("5.3.4", "5.5.4"), r
    expect(c.cmd("MAIL FROM:<a@example.org> SIZE=abc"), 501, "5.5.4")
    expect(c.cmd("MAIL FROM:<a@example.org> SIZE=-1"), 501, "5.5.4")
    expect(c.cmd("MAIL FROM:<a@example.org> SIZE="), 501, "5.5.4")
    expect(c.cmd("MAIL FROM:<a@example.org> SIZE=50000"), 250)
    c.close()


def exact_message(tok, total):
    """A message of exactly `total` octets in lines of at most 80 (RFC 1870
    counts CRLFs, not the terminating dot nor stuffing dots)."""
    head = make_message(tok, b"")
    n = total - len(head)
    assert n >= 2
    body = []
    while n > 0:
        k = min(80, n)
        if n - k == 1:  # never leave one octet: a line needs at least CRLF
            k -= 1
        body.append(b"x" * (k - 2) + b"\r\n")
        n -= k
    msg = head + b"".join(body)
    assert len(msg) == total
    return msg


def test_size_boundary(tern):
    """SIZE=limit is accepted at MAIL, so a message of exactly limit octets is
    accepted at end of data; one octet more is refused."""
    s = tern({"message_size_limit": "100K"})
    c = SMTPClient(s.mx_port, timeout=10)
    c.ehlo()
    tok = new_token()
    msg = exact_message(tok, LIMIT)
    expect(c.send_message("a@example.org", [DEMO], msg, " SIZE=%d" % LIMIT), 250)
    tok2 = new_token()
    msg2 = exact_message(tok2, LIMIT + 1)
    expect(c.cmd("MAIL FROM:<a@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    expect(c.cmd("DATA"), 354)
    c.send(dot_stuff(msg2))
    expect(c.reply(), 552, "5.3.4")
    c.close()
    (p, data), = s.wait_token(tok)
    check_delivered(data, "a@example.org", DEMO, msg)
    time.sleep(0.3)
    assert s.find_token(tok2) == []


def test_size_actual_data(tern):
    s = tern({"message_size_limit": "100K"})
    c = SMTPClient(s.mx_port, timeout=10)
    c.ehlo()
    big_tok = new_token()
    big = make_message(big_tok, (b"x" * 998 + b"\r\n") * 150)  # ~150 KB, no SIZE= given
    expect(c.cmd("MAIL FROM:<a@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    expect(c.cmd("DATA"), 354)
    c.send(dot_stuff(big))
    expect(c.reply(), 552, "5.3.4")
    # the session stays in step and accepts a message under the limit
    expect(c.cmd("NOOP"), 250)
    tok = new_token()
    ok = make_message(tok, (b"y" * 998 + b"\r\n") * 50)  # ~50 KB
    expect(c.send_message("a@example.org", [DEMO], ok, " SIZE=%d" % len(ok)), 250)
    c.close()
    (p, data), = s.wait_token(tok)
    check_delivered(data, "a@example.org", DEMO, ok)
    time.sleep(0.3)
    assert s.find_token(big_tok) == []


def test_size_bdat(tern):
    s = tern({"message_size_limit": "100K"})
    c = SMTPClient(s.mx_port, timeout=10)
    c.ehlo()
    tok = new_token()
    msg = make_message(tok, (b"z" * 998 + b"\r\n") * 150)
    expect(c.cmd("MAIL FROM:<a@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    half = len(msg) // 2
    c.send(b"BDAT %d\r\n" % half + msg[:half])
    r1 = c.reply()
    c.send(b"BDAT %d LAST\r\n" % (len(msg) - half) + msg[half:])
    r2 = c.reply()
    # the limit is crossed in the second chunk: 552 for it (the first may pass)
    expect(r1, (250, 552))
    expect(r2, 552, "5.3.4")
    expect(c.cmd("NOOP"), 250)
    c.close()
    time.sleep(0.5)
    assert s.find_token(tok) == []


def test_recipient_limit(tern):
    s = tern({"max_recipients": "100"}, aliases=["@example.test: demo@example.test"])
    c = SMTPClient(s.mx_port)
    c.ehlo()
    tok = new_token()
    msg = make_message(tok)
    cmds = b"MAIL FROM:<alice@example.org>\r\n" + b"".join(
        b"RCPT TO:<user%d@example.test>\r\n" % i for i in range(1, 102))
    c.send(cmds)
    r = c.replies(102)
    expect(r[0], 250)
    for i in range(1, 101):
        expect(r[i], 250)
    expect(r[101], 452, "4.5.3")
    expect(c.cmd("DATA"), 354)
    c.send(dot_stuff(msg))
    expect(c.reply(), 250)
    c.close()
    # every one of the 100 recipients is the catch-all's demo: one file per mailbox
    found = s.wait_token(tok)
    time.sleep(0.5)
    found = s.find_token(tok)
    assert len(found) == 1, "%d files for one message to one mailbox" % len(found)
    check_delivered(found[0][1], "alice@example.org", DEMO, msg)


def test_recipients_past_what_the_spool_envelope_holds(tern):
    """The recipients of one message are stored in one spool envelope record
    (16 MiB at most). With max_recipients raised and long addresses and ORCPTs,
    RCPT answers 452 4.5.3 once they would take half of that, and the message
    with the recipients accepted so far is stored: it never gets 250 for
    recipients the spool cannot hold, nor a 4xx at the end of data after
    every recipient was accepted."""
    s = tern({"max_recipients": "100000", "max_command_line": "2048", "max_errors": "10000",
              "trusted_networks": "127.0.0.1/32"})
    c = SMTPClient(s.mx_port, timeout=60)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<alice@example.org>"), 250)
    domain = ("d" * 60 + ".") * 3 + "example"
    orcpt = "rfc822;" + "o" * 480

    def rcpt(i):
        return ("RCPT TO:<%060d@%s> ORCPT=%s\r\n" % (i, domain, orcpt)).encode()

    # 24,000 of these would take some 18 MiB; stop sending at the first 452
    total, batch, codes = 24000, 500, []
    for start in range(0, total, batch):
        c.send(b"".join(rcpt(i) for i in range(start, start + batch)))
        codes += [r.code for r in c.replies(batch)]
        if 452 in codes:
            break
    accepted = codes.count(250)
    assert 452 in codes, "all %d recipients accepted" % accepted
    first_refused = codes.index(452)
    assert first_refused == accepted, "a 250 after the first 452"
    assert 6000 < accepted < 12000, accepted
    assert codes[first_refused:] == [452] * (len(codes) - accepted)
    expect(c.cmd("DATA"), 354)
    c.send(dot_stuff(make_message(new_token("env"), rcpt="x@" + domain)))
    expect(c.reply(), 250)
    c.close()
    line = s.wait_log(r"event=queued .*nrcpt=%d " % accepted)
    assert "envelope_full" in s.log()
    assert line


def test_line_length(tern):
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    line512 = "NOOP " + "x" * (512 - 2 - 5)
    assert len(line512) + 2 == 512
    expect(c.cmd(line512), 250)
    c.close()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    expect(c.cmd(line512 + "x"), 500, "5.5.2")
    c.close()
    # a 512-octet MAIL command is a command too
    c = SMTPClient(s.mx_port)
    c.ehlo()
    local = "a" * (512 - 2 - len("MAIL FROM:<@example.org>"))
    mail = "MAIL FROM:<%s@example.org>" % local
    assert len(mail) + 2 == 512
    r = c.cmd(mail)
    assert r.code != 500, "a 512-octet command line was refused as too long: %r" % r
    c.close()
    # a 200 KB line: refused (or disconnected), and the server lives on
    c = SMTPClient(s.mx_port, timeout=10)
    c.ehlo()
    try:
        c.send(b"NOOP " + b"A" * 200000 + b"\r\n")
        r = c.reply()
        assert r.closed or (r.code == 500 and r.enhanced == "5.5.2"), r
    except (ConnectionResetError, BrokenPipeError):
        pass
    c.close()
    c = SMTPClient(s.mx_port)
    expect(c.greeting, 220)
    c.close()


def test_idle_timeout(tern):
    s = tern({"idle_timeout": "2s"})
    c = SMTPClient(s.mx_port)
    t0 = time.monotonic()
    c.ehlo()
    r = c.reply(timeout=5)
    dt = time.monotonic() - t0
    expect(r, 421, "4.4.2")
    assert 1.5 <= dt <= 3.5, "421 after %.2fs with idle_timeout = 2s" % dt
    assert r.closed or c.closed(1), "connection not closed after 421"


def test_idle_timeout_in_data(tern):
    s = tern({"idle_timeout": "2s"})
    c = SMTPClient(s.mx_port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<a@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    expect(c.cmd("DATA"), 354)
    c.send(b"Subject: half a message\r\n")
    t0 = time.monotonic()
    r = c.reply(timeout=5)
    dt = time.monotonic() - t0
    expect(r, 421, "4.4.2")
    assert dt <= 3.5, "421 after %.2fs with idle_timeout = 2s" % dt
    time.sleep(0.3)
    assert s.all_delivered() == []


def test_error_limit(tern):
    s = tern({"max_errors": "5"})
    c = SMTPClient(s.mx_port)
    c.ehlo()
    got = []
    for i in range(8):
        try:
            c.send(b"XYZZY %d\r\n" % i)
        except OSError:
            break
        rs = [c.reply()]
        if rs[0].code is not None and not rs[0].closed:
            rs += c.read_rest(0.2)
        got += [r for r in rs if r.lines or r.closed]
        if any(r.code == 421 for r in rs) or c.eof:
            break
    codes = [r.code for r in got]
    assert 421 in codes, "no 421 after 8 errors with max_errors = 5: %r" % got
    idx = codes.index(421)
    expect(got[idx], 421, "4.7.0")
    assert 4 <= idx <= 6, "421 came after %d errors with max_errors = 5: %r" % (idx, got)
    assert all(cd is not None and 500 <= cd < 600 for cd in codes[:idx]), got
    assert got[idx].closed or c.closed(1), "connection not closed after 421"


def test_connection_cap_per_client(tern):
    s = tern({"max_connections_per_client": "3"})
    conns = [SMTPClient(s.mx_port) for _ in range(3)]
    for c in conns:
        expect(c.greeting, 220)
    extra = SMTPClient(s.mx_port)
    expect(extra.greeting, 421, "4.7.0")
    assert extra.greeting.closed or extra.closed(1), "not closed after 421"
    extra.close()
    # a slot frees when a connection ends
    conns[0].quit()
    again = SMTPClient(s.mx_port)
    expect(again.greeting, 220)
    for c in conns[1:] + [again]:
        c.close()


def test_connection_cap_total(tern):
    s = tern({"max_connections": "4", "max_connections_per_client": "50"})
    conns = [SMTPClient(s.mx_port) for _ in range(4)]
    for c in conns:
        expect(c.greeting, 220)
    extra = SMTPClient(s.mx_port)
    expect(extra.greeting, 421, "4.3.2")
    assert extra.greeting.closed or extra.closed(1), "not closed after 421"
    extra.close()
    conns[0].quit()
    again = SMTPClient(s.mx_port)
    expect(again.greeting, 220)
    for c in conns[1:] + [again]:
        c.close()


def test_session_time_limit(tern):
    """A session that keeps talking is still closed at session_timeout."""
    s = tern({"session_timeout": "2s", "idle_timeout": "30s"})
    c = SMTPClient(s.mx_port)
    c.ehlo()
    start = time.monotonic()
    last = None
    while time.monotonic() - start < 6:
        last = c.cmd("NOOP")
        if last.code != 250:
            break
        time.sleep(0.3)
    expect(last, 421, "4.4.2")
    assert 1.5 <= time.monotonic() - start <= 4, "closed after %.1fs" % (time.monotonic() - start)
    assert c.closed()


def test_replies_to_a_client_that_does_not_read(tern):
    """A client that pipelines without reading the replies: past MAX_OUTPUT
    (64 KiB, server/session.c) of queued replies the server stops reading
    commands until they drain, then goes on where it stopped. (EHLO: the
    longest reply; the kernel's socket buffers take a few MiB first.)"""
    s = tern({"max_junk_commands": "100000"})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(0.5)
    sock.connect(("127.0.0.1", s.mx_port))
    batch = b"EHLO client.example.org\r\n" * 500
    sent = 0
    deadline = time.monotonic() + 90
    while "event=output_full" not in s.log():
        assert time.monotonic() < deadline, "no event=output_full after %d EHLO unread" % sent
        if sent < 200000:  # about 8 MiB of replies: more than the socket buffers take
            try:
                sock.sendall(batch)
                sent += 500
            except socket.timeout:
                pass  # the server no longer reads: expected once output is full
        time.sleep(0.02)
    # reading now lets the session go on: every command gets its reply, in order
    sock.settimeout(10)
    sock.sendall(b"QUIT\r\n")
    data = b""
    while b"\r\n221 " not in data or not data.endswith(b"\r\n"):
        chunk = sock.recv(1 << 20)
        assert chunk, "closed before the 221; %d octets read" % len(data)
        data += chunk
    sock.close()
    codes = [ln[:3] for ln in data.split(b"\r\n") if ln[3:4] == b" "]
    assert codes[0] == b"220" and codes[-1] == b"221", codes[:3] + codes[-3:]
    # every EHLO answered (sendall may have sent part of a batch that timed out)
    assert set(codes[1:-1]) == {b"250"}, set(codes)
    assert len(codes) - 2 >= sent, "%d EHLO replies for %d sent" % (len(codes) - 2, sent)
    assert "event=junk_limit" not in s.log()
