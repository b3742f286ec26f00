"""Helpers shared by the integration tests: a raw SMTP client that sees every
reply exactly as sent, test messages tagged with a unique token, and the parser
of a delivered Maildir file (the headers Tern adds, then the message as sent).
"""

import re
import socket
import ssl
import time
import uuid

LOCAL_DOMAIN = "example.test"
HOSTNAME = "mail.example.test"
CRLF = b"\r\n"


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (held open together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def client_tls_context(minimum=None, maximum=None):
    """A TLS client context that does not verify the (self-signed) certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def new_token(label="m"):
    return "%s-%s" % (label, uuid.uuid4().hex[:16])


def make_message(token, body=b"Hello from the Tern test suite.\r\n", subject=None,
                 sender="alice@example.org", rcpt="demo@example.test", extra_headers=b""):
    """A small RFC 5322 message (bytes, CRLF) carrying 'X-Tern-Test: <token>'."""
    if isinstance(body, str):
        body = body.encode()
    head = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
            "Message-ID: <%s@example.org>\r\nX-Tern-Test: %s\r\n"
            % (sender, rcpt, subject or ("test " + token), token, token)).encode()
    return head + extra_headers + CRLF + body


def dot_stuff(msg):
    """DATA transparency (RFC 5321 4.5.2) and the terminating CRLF.CRLF."""
    assert msg.endswith(CRLF)
    lines = msg.split(CRLF)[:-1]
    return b"".join((b"." + l if l.startswith(b".") else l) + CRLF for l in lines) + b".\r\n"


def header_token_of(data):
    """The value of the X-Tern-Test field in the header section of a message, or None."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    m = re.search(rb"(?m)^X-Tern-Test: ([^\r\n]*)\r?$", head)
    return m.group(1).decode() if m else None


class Reply:
    """One SMTP reply: code (int or None), lines (str, without CRLF), closed
    (the server closed the connection after it / instead of it), timeout."""

    def __init__(self, code=None, lines=None, closed=False, timeout=False):
        self.code = code
        self.lines = lines or []
        self.closed = closed
        self.timeout = timeout

    @property
    def text(self):
        return " / ".join(self.lines)

    @property
    def enhanced(self):
        """The enhanced status code of the first line ('5.1.1'), or None."""
        if not self.lines:
            return None
        m = re.match(r"^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})(?:\s|$)", self.lines[0])
        return m.group(1) if m else None

    def __repr__(self):
        if self.timeout and not self.lines:
            return "<no reply: timeout>"
        if self.closed and not self.lines:
            return "<connection closed>"
        return repr(self.text) + (" <closed>" if self.closed else "")


def expect(reply, code, enhanced=None):
    """Assert a reply's code (an int, or a tuple of acceptable ints) and enhanced code."""
    codes = code if isinstance(code, tuple) else (code,)
    assert reply.code in codes, "expected %s%s, got %r" % (
        "/".join(map(str, codes)), " " + enhanced if enhanced else "", reply)
    if enhanced is not None:
        assert reply.enhanced == enhanced, "expected enhanced code %s, got %r" % (enhanced, reply)
    return reply


class SMTPClient:
    """A line-exact SMTP client on a raw socket: send bytes, read replies."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, read_greeting=True, tls=False,
                 context=None):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            self.sock = (context or client_tls_context()).wrap_socket(
                self.sock, server_hostname=HOSTNAME)
        self.buf = b""
        self.eof = False
        self.greeting = self.reply() if read_greeting else None

    def starttls(self, context=None):
        """STARTTLS, expect 220, and run the TLS handshake (what the server sent
        after its 220 in plaintext, if anything, is returned, not kept)."""
        expect(self.cmd("STARTTLS"), 220)
        stray, self.buf = self.buf, b""
        self.sock = (context or client_tls_context()).wrap_socket(
            self.sock, server_hostname=HOSTNAME)
        return stray

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _line(self, deadline):
        while b"\n" not in self.buf:
            if self.eof or not self._fill(deadline):
                return None
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def reply(self, timeout=None):
        """Read one (possibly multi-line) reply."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        lines = []
        try:
            while True:
                raw = self._line(deadline)
                if raw is None:
                    return Reply(None, lines, closed=True)
                assert raw.endswith(b"\r"), "reply line not ended by CRLF: %r" % raw
                line = raw[:-1].decode("utf-8", "replace")
                lines.append(line)
                assert re.match(r"^\d{3}([ -]|$)", line), "malformed reply line %r" % line
                if len(line) == 3 or line[3] == " ":
                    code = int(line[:3])
                    return Reply(code, lines, closed=self.eof and not self.buf)
        except (socket.timeout, TimeoutError):
            return Reply(None, lines, timeout=True)

    def replies(self, n, timeout=None):
        return [self.reply(timeout) for _ in range(n)]

    def cmd(self, line, timeout=None):
        """Send one command line and read its reply. RFC 2034 section 3: every
        2xx, 4xx and 5xx reply except the greeting and the replies to
        EHLO/HELO carries an enhanced status code; asserted here for every
        command (3xx replies such as 354 are exempt)."""
        self.send(line + "\r\n" if isinstance(line, str) else line + CRLF)
        r = self.reply(timeout)
        verb = (line if isinstance(line, str) else line.decode("utf-8", "replace")).split(" ", 1)[0]
        if r.code is not None and r.code // 100 != 3 and verb.upper() not in ("EHLO", "HELO"):
            assert r.enhanced, "reply to %r has no enhanced status code: %r" % (line[:60], r)
        return r

    def ehlo(self, name="client.example.org"):
        return expect(self.cmd("EHLO " + name), 250)

    def read_rest(self, wait=0.5):
        """Replies that arrive within `wait` seconds of each other (stops at close)."""
        out = []
        while True:
            r = self.reply(wait)
            if r.timeout and not r.lines:
                return out
            out.append(r)
            if r.closed or r.code is None:
                return out

    def closed(self, timeout=2.0):
        """True when the server closes the connection within timeout (no more data)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.buf:
                    return False
                if not self._fill(deadline):
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True

    def send_message(self, sender, rcpts, msg, mail_params=""):
        """MAIL, RCPT..., DATA, message; returns the reply to end of data
        (asserting that MAIL, each RCPT and DATA succeed)."""
        expect(self.cmd("MAIL FROM:<%s>%s" % (sender, mail_params)), 250)
        for r in rcpts:
            expect(self.cmd("RCPT TO:<%s>" % r), 250)
        expect(self.cmd("DATA"), 354)
        self.send(dot_stuff(msg))
        return self.reply()

    def quit(self):
        """QUIT, expect 221, and wait until the server has closed the connection."""
        expect(self.cmd("QUIT"), 221)
        assert self.closed(5), "connection still open after 221"
        self.sock.close()

    def close(self):
        try:
            if not self.eof:
                self.sock.settimeout(0.5)
                self.sock.sendall(b"QUIT\r\n")
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


class Delivered:
    """A delivered Maildir file split into the headers Tern adds and the rest."""

    def __init__(self, data):
        self.data = data
        self.return_path = None
        self.delivered_to = None
        self.received = None  # unfolded, without the trailing CRLF
        self.added = []  # (name, unfolded value) of fields Tern added at the end of data
        self.rest = None
        self.queue_id = None
        self.with_proto = None
        self.error = None
        try:
            self._parse()
        except ValueError as e:
            self.error = str(e)

    def _field(self, pos, name):
        """Header field `name` (with continuation lines) at pos: (value, next pos)."""
        prefix = name.encode() + b": "
        if not self.data.startswith(prefix, pos):
            raise ValueError("expected %r at offset %d, found %r"
                             % (prefix, pos, self.data[pos:pos + 80]))
        end = pos
        while True:
            nl = self.data.find(CRLF, end)
            if nl < 0:
                raise ValueError("unterminated %s field" % name)
            end = nl + 2
            if self.data[end:end + 1] not in (b" ", b"\t"):
                break
        raw = self.data[pos + len(prefix):end - 2]
        return re.sub(rb"\r\n[ \t]", b" ", raw), end

    def _parse(self):
        rp, pos = self._field(0, "Return-Path")
        dt, pos = self._field(pos, "Delivered-To")
        # fields known at the end of data come before Received (spool prefix)
        for name in ("DKIM-Signature", "Authentication-Results", "X-Tern-Quarantine"):
            while self.data.startswith(name.encode() + b": ", pos):
                value, pos = self._field(pos, name)
                self.added.append((name, value.decode("utf-8", "replace")))
        rc, pos = self._field(pos, "Received")
        self.return_path = rp.decode("utf-8", "replace")
        self.delivered_to = dt.decode("utf-8", "replace")
        self.received = rc.decode("utf-8", "replace")
        self.rest = self.data[pos:]
        m = re.search(r"\bby\s+%s\s+\(Tern\)\s+with\s+([A-Za-z0-9]+)\s+id\s+([A-Za-z0-9._-]+)"
                      % re.escape(HOSTNAME), self.received)
        if m:
            self.with_proto, self.queue_id = m.group(1), m.group(2)


def check_delivered(data, sender, mailbox, sent):
    """Assert the contract for a delivered file; returns the Delivered object.

    Return-Path: <sender>, then Delivered-To: the mailbox (with or without
    angle brackets), then the fields Tern adds at the end of data
    (DKIM-Signature, Authentication-Results), then a Received: field "from ... by mail.example.test
    (Tern) with ESMTP id QUEUEID ...", then the message exactly as sent. CRLF
    line endings throughout.
    """
    d = Delivered(data)
    assert d.error is None, "%s; file starts with %r" % (d.error, data[:300])
    assert d.return_path == "<%s>" % sender, "Return-Path is %r, expected <%s>" % (d.return_path, sender)
    assert d.delivered_to in (mailbox, "<%s>" % mailbox), \
        "Delivered-To is %r, expected %s" % (d.delivered_to, mailbox)
    assert d.received.startswith("from "), "Received field does not start with 'from ': %r" % d.received
    assert d.queue_id, "Received field lacks 'by %s (Tern) with ESMTP id QUEUEID': %r" % (HOSTNAME, d.received)
    assert d.rest == sent, "stored message differs from the one sent:\nsent   %r\nstored %r" % (sent, d.rest)
    assert not re.search(rb"\r(?!\n)|(?<!\r)\n", data), "bare CR or LF in stored file: %r" % data[:500]
    return d
