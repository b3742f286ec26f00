"""PIPELINING whatever the TCP segmentation (RFC 2920), and the content limits
of the DATA decoder: header count and text line length (DESIGN contract 4)."""

import random
import socket
import time

from tern_helpers import SMTPClient, expect, make_message, new_token

DEMO = "demo@example.test"


def send_in_pieces(sock, data, rng, max_piece):
    """Send data in random pieces of 1..max_piece octets, each its own segment."""
    i = 0
    while i < len(data):
        n = rng.randint(1, max_piece)
        sock.sendall(data[i:i + n])
        i += n
        time.sleep(0.001)


def read_replies(sock, count, timeout=10.0):
    """Read `count` complete replies (multi-line ones count once)."""
    sock.settimeout(timeout)
    buf = b""
    replies = []
    end = time.monotonic() + timeout
    while len(replies) < count and time.monotonic() < end:
        while b"\r\n" in buf and len(replies) < count:
            line, buf = buf.split(b"\r\n", 1)
            if len(line) >= 4 and line[3:4] == b"-":
                continue
            replies.append(line.decode("utf-8", "replace"))
        if len(replies) >= count:
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return replies


def test_pipelined_replies_in_order_under_any_segmentation(tern):
    s = tern()
    rng = random.Random(5321)
    for max_piece in (1, 3, 17, 200):
        tok = new_token("pipe%d" % max_piece)
        msg = make_message(tok, b"pipelined body\r\n")
        sock = socket.create_connection(("127.0.0.1", s.mx_port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert read_replies(sock, 1)[0].startswith("220 ")
        group = (b"EHLO client.example.org\r\n"
                 b"MAIL FROM:<sender@example.org>\r\n"
                 b"RCPT TO:<demo@example.test>\r\n"
                 b"RCPT TO:<nobody@example.test>\r\n"
                 b"RCPT TO:<victim@elsewhere.example>\r\n"
                 b"RCPT TO:<postmaster@example.test>\r\n"
                 b"DATA\r\n")
        send_in_pieces(sock, group, rng, max_piece)
        got = read_replies(sock, 7)
        codes = [r[:3] for r in got]
        assert codes == ["250", "250", "250", "550", "554", "250", "354"], (max_piece, got)
        send_in_pieces(sock, msg + b".\r\nNOOP\r\nQUIT\r\n", rng, max_piece)
        got = read_replies(sock, 3)
        assert [r[:3] for r in got] == ["250", "250", "221"], (max_piece, got)
        assert "queued as" in got[0]
        sock.close()
        # one copy in each of the two accepted mailboxes
        assert len(s.wait_token(tok, n=2)) == 2


def test_header_count_limit(tern):
    s = tern({"max_header_count": "50"})
    c = SMTPClient(s.mx_port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<a@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    expect(c.cmd("DATA"), 354)
    headers = b"".join(b"X-Filler-%d: value\r\n" % i for i in range(60))
    c.send(headers + b"Subject: many headers\r\n\r\nbody\r\n.\r\n")
    expect(c.reply(), 552, "5.3.4")
    # the session goes on: a normal message is accepted afterwards
    expect(c.cmd("MAIL FROM:<a@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    expect(c.cmd("DATA"), 354)
    c.send(make_message(new_token("after")) + b".\r\n")
    expect(c.reply(), 250)
    c.close()


def test_text_line_limit(tern):
    s = tern()
    c = SMTPClient(s.mx_port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<a@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    expect(c.cmd("DATA"), 354)
    # 998 octets + CRLF is the longest line RFC 5321 allows; 1,001 is past it
    c.send(b"Subject: long\r\n\r\n" + b"a" * 998 + b"\r\n" + b"b" * 999 + b"\r\n.\r\n")
    expect(c.reply(), 500, "5.5.2")
    expect(c.cmd("MAIL FROM:<a@example.org>"), 250)
    expect(c.cmd("RCPT TO:<%s>" % DEMO), 250)
    expect(c.cmd("DATA"), 354)
    c.send(b"Subject: fits\r\n\r\n" + b"a" * 998 + b"\r\n.\r\n")
    expect(c.reply(), 250)
    c.close()
