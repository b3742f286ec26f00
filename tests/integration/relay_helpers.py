"""Shared pieces of the relay tests (test_relay.py, test_routes.py).

Peer is an aiosmtpd remote MX that records its transactions; RawPeer is a
small scripted SMTP/LMTP server on a plain socket for what aiosmtpd cannot
be told to do (leave 8BITMIME out of its EHLO reply, answer per recipient
after the final dot as LMTP does) and that records every read, to see
pipelined commands arrive together. The `world` fixture starts a DNS server
with the test zones and gives one port for every peer (Tern's
outbound_port); `send` submits a message to Tern from a trusted client.
"""

import socket
import socketserver
import threading
import time

import pytest

from aiosmtpd.controller import Controller

from dns_server import DNSTestServer
from tern_helpers import SMTPClient, expect, free_ports, make_message, new_token

SENDER = "alice@example.org"


class Peer:
    """An scripted remote MX: records every transaction; rcpt_reply(addr)
    and data_reply() may return an SMTP reply to refuse."""

    def __init__(self, host, port, **kw):
        self.host, self.port = host, port
        self.transactions = []  # (mail_from, [rcpts], content bytes)
        self.rcpt_reply = lambda addr: None
        self.data_reply = lambda: None
        self.sessions = 0
        self.lock = threading.Lock()
        self.ctrl = Controller(self, hostname=host, port=port, **kw)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        with self.lock:
            self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        r = self.rcpt_reply(address)
        if r:
            return r
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        r = self.data_reply()
        if r:
            return r
        with self.lock:
            self.transactions.append((envelope.mail_from, list(envelope.rcpt_tos),
                                      envelope.original_content or envelope.content))
        return "250 2.0.0 Ok: queued by peer"

    def start(self):
        self.ctrl.start()
        return self

    def stop(self):
        self.ctrl.stop()

    def wait(self, n=1, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.transactions) >= n:
                    return list(self.transactions)
            time.sleep(0.05)
        raise AssertionError("%s: %d transaction(s) after %ss, expected %d"
                             % (self.host, len(self.transactions), timeout, n))


@pytest.fixture
def world():
    """DNS zones, a port for the remote MX hosts, and a way to start peers."""
    port = free_ports(1)[0]
    records = {
        "remote.test": [("MX", (10, "mx1.remote.test")), ("MX", (20, "mx2.remote.test"))],
        "mx1.remote.test": [("A", "127.0.0.2")],
        "mx2.remote.test": [("A", "127.0.0.3")],
        "implicit.test": [("A", "127.0.0.4")],
        "nullmx.test": [("MX", (0, "."))],
        "broken.test": [("MX", (10, "mx1.remote.test"))],
    }
    dns = DNSTestServer(records, {"broken.test": "servfail"}).start()
    peers = []

    class World:
        pass

    w = World()
    w.dns, w.port = dns, port

    def peer(host, **kw):
        p = Peer(host, port, **kw).start()
        peers.append(p)
        return p

    w.peer = peer

    def raw_peer(host, **kw):
        p = RawPeer(host, port, **kw).start()
        peers.append(p)
        return p

    w.raw_peer = raw_peer
    w.overrides = {"dns_forwarders": dns.forwarder, "outbound_port": str(port),
                   "trusted_networks": "127.0.0.1/32", "retry_min": "1s", "retry_max": "2s"}
    yield w
    for p in peers:
        p.stop()
    dns.stop()


def send(srv, rcpts, token=None, body=None):
    token = token or new_token("relay")
    msg = make_message(token, rcpt=rcpts[0], body=body or b"Relayed by the test suite.\r\n")
    c = SMTPClient(srv.mx_port)
    c.ehlo()
    expect(c.send_message(SENDER, rcpts, msg), 250)
    c.quit()
    return token, msg



class RawPeer:
    """A scripted SMTP (or, with lmtp=True, LMTP) server on host:port.

    ext: the EHLO/LHLO keywords to advertise (e.g. ["PIPELINING", "8BITMIME"]);
    rcpt_reply(addr) and dot_reply(addr) may return a reply line to refuse
    (dot_reply is asked once per accepted recipient in LMTP, once with None in
    SMTP); rset_reply() may return a reply line to RSET, after which the
    connection is closed. transactions: (mail_from line, [rcpt addresses],
    content as received after dot-unstuffing, or the BDAT chunks joined);
    reads: every chunk recv() returned, in order; commands: every command
    line; chunks: the size of every BDAT chunk; sessions and ended:
    connections opened and finished (QUIT, close or error). delay maps a
    stage (b"GREETING", b"EHLO", b"MAIL", b"RCPT", b"DATA", b"DOT", b"BDAT")
    to seconds to wait before answering it; bdat_reply(index, last) may
    return a reply line to refuse a chunk."""

    def __init__(self, host, port, ext=(), lmtp=False):
        self.host, self.port, self.ext, self.lmtp = host, port, list(ext), lmtp
        self.rcpt_reply = lambda addr: None
        self.dot_reply = lambda addr: None
        self.rset_reply = lambda: None
        self.bdat_reply = lambda index, last: None
        self.delay = {}
        self.transactions, self.reads, self.commands, self.chunks = [], [], [], []
        self.sessions = self.ended = 0
        self.lock = threading.Lock()
        peer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    peer._session(self.request)
                finally:
                    with peer.lock:
                        peer.ended += 1

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server((host, port), Handler)

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def _session(self, sock):
        sock.settimeout(30)
        with self.lock:
            self.sessions += 1
        buf = b""

        def recv():
            nonlocal buf
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError
            with self.lock:
                self.reads.append(chunk)
            buf += chunk

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                recv()
            ln, buf = buf.split(b"\r\n", 1)
            return ln

        def wait(stage):
            if self.delay.get(stage):
                time.sleep(self.delay[stage])

        def take(n):
            nonlocal buf
            while len(buf) < n:
                recv()
            data, buf = buf[:n], buf[n:]
            return data

        wait(b"GREETING")
        sock.sendall(b"220 %s %s ready\r\n" % (self.host.encode(), b"LMTP" if self.lmtp else b"ESMTP"))
        mail, rcpts, bdat, nchunk = None, [], b"", 0
        try:
            while True:
                cmd = line()
                with self.lock:
                    self.commands.append(cmd)
                verb = cmd.split(b" ", 1)[0].upper()
                wait(b"EHLO" if verb == b"LHLO" else verb)
                if verb in (b"EHLO", b"LHLO"):
                    if (verb == b"LHLO") != self.lmtp:
                        sock.sendall(b"500 5.5.1 wrong greeting verb\r\n")
                        continue
                    lines = [self.host.encode()] + [e.encode() for e in self.ext]
                    out = b"".join(b"250-%s\r\n" % x for x in lines[:-1]) + b"250 %s\r\n" % lines[-1]
                    sock.sendall(out)
                elif verb == b"HELO":
                    sock.sendall(b"250 %s\r\n" % self.host.encode())
                elif verb == b"MAIL":
                    mail, rcpts = cmd, []
                    sock.sendall(b"250 2.1.0 Ok\r\n")
                elif verb == b"RCPT":
                    addr = cmd.split(b"<", 1)[1].split(b">", 1)[0].decode()
                    r = self.rcpt_reply(addr)
                    if r:
                        sock.sendall(r.encode() + b"\r\n")
                    else:
                        rcpts.append(addr)
                        sock.sendall(b"250 2.1.5 Ok\r\n")
                elif verb == b"DATA":
                    if not rcpts:
                        sock.sendall(b"554 5.5.1 no valid recipients\r\n")
                        continue
                    sock.sendall(b"354 go ahead\r\n")
                    body = []
                    while True:
                        ln = line()
                        if ln == b".":
                            break
                        body.append(ln[1:] if ln.startswith(b".") else ln)
                    content = b"".join(x + b"\r\n" for x in body)
                    wait(b"DOT")
                    with self.lock:
                        self.transactions.append((mail, list(rcpts), content))
                    if self.lmtp:
                        out = b""
                        for a in rcpts:
                            r = self.dot_reply(a)
                            out += (r.encode() if r else b"250 2.0.0 <%s> delivered" % a.encode()) + b"\r\n"
                        sock.sendall(out)
                    else:
                        r = self.dot_reply(None)
                        sock.sendall((r.encode() if r else b"250 2.0.0 Ok: queued") + b"\r\n")
                    mail, rcpts = None, []
                elif verb == b"BDAT":
                    args = cmd.split()
                    size, last = int(args[1]), len(args) > 2 and args[2].upper() == b"LAST"
                    data = take(size)
                    with self.lock:
                        self.chunks.append(size)
                    r = self.bdat_reply(nchunk, last)
                    nchunk += 1
                    if not rcpts:
                        sock.sendall(b"503 5.5.1 no valid recipients\r\n")
                        continue
                    if r:
                        sock.sendall(r.encode() + b"\r\n")
                        mail, rcpts, bdat = None, [], b""
                        continue
                    bdat += data
                    if not last:
                        sock.sendall(b"250 2.0.0 %d octets received\r\n" % size)
                        continue
                    with self.lock:
                        self.transactions.append((mail, list(rcpts), bdat))
                    sock.sendall(b"250 2.0.0 Ok: queued\r\n")
                    mail, rcpts, bdat = None, [], b""
                elif verb == b"RSET":
                    mail, rcpts, bdat = None, [], b""
                    r = self.rset_reply()
                    if r:
                        sock.sendall(r.encode() + b"\r\n")
                        return
                    sock.sendall(b"250 2.0.0 Ok\r\n")
                elif verb == b"NOOP":
                    sock.sendall(b"250 2.0.0 Ok\r\n")
                elif verb == b"QUIT":
                    sock.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    sock.sendall(b"502 5.5.2 not implemented\r\n")
        except (EOFError, OSError):
            return

    def wait(self, n=1, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.transactions) >= n:
                    return list(self.transactions)
            time.sleep(0.05)
        raise AssertionError("%s: %d transaction(s) after %ss, expected %d"
                             % (self.host, len(self.transactions), timeout, n))
