"""The control socket's protocol, spoken raw: line framing (split and
pipelined requests), validation (bad JSON, unknown commands and arguments),
the limits (line length, requests per connection, connections at once, idle
time), and a local submission by hand.
"""

import base64
import json
import os
import socket
import stat
import time

from tern_helpers import make_message, new_token


class Ctl:
    def __init__(self, srv, timeout=5.0):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(str(srv.control_socket))
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def answer(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, cmd, **args):
        req = {"cmd": cmd}
        if args:
            req["args"] = args
        self.send(json.dumps(req).encode() + b"\n")
        return self.answer()

    def closed(self):
        try:
            return self.s.recv(1) == b""
        except OSError:
            return True


def test_socket_and_framing(tern):
    srv = tern()
    st = os.stat(srv.control_socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    c = Ctl(srv)
    r = c.call("ping")
    assert r["ok"] is True and r["uid"] == os.getuid() and r["admin"] is True
    assert r["pid"] > 0 and r["hostname"] == "mail.example.test"
    # a request in pieces, then two in one write, CRLF accepted
    c.send(b'{"cmd":')
    time.sleep(0.2)
    c.send(b'"queue.paused"}\n{"cmd":"ping"}\r\n{"cmd":"queue.list"}\n')
    assert c.answer() == {"ok": True, "paused": []}
    assert c.answer()["uid"] == os.getuid()
    assert c.answer() == {"ok": True, "messages": [], "total": 0, "next": None}
    # validation: the connection goes on after each refusal
    bad = [
        (b"not json\n", "invalid JSON"),
        (b'{"cmd":"ping","cmd":"ping"}\n', "invalid JSON"),
        (b'{"cmd":"p\xffng"}\n', "invalid JSON"),
        (b'["ping"]\n', "a request is a JSON object"),
        (b'{"cmd":"ping","extra":1}\n', "unknown request member"),
        (b'{"cmd":"launch.missiles"}\n', 'unknown command "launch.missiles"'),
        (b'{"cmd":"queue.list","args":{"colour":"red"}}\n', 'unknown argument "colour"'),
        (b'{"cmd":"queue.list","args":{"status":"frozen"}}\n', '"status" must be'),
        (b'{"cmd":"queue.delete","args":{}}\n', "name the messages"),
        (b'{"cmd":"queue.show","args":{"id":"zz"}}\n', "a queue id is needed"),
        (b'{"cmd":"queue.show","args":{"id":"ABC"}}\n', "no such message"),
        (b'{"cmd":"x","args":{"a":[[[[[[[[1]]]]]]]]}}\n', "nested deeper"),
    ]
    for line, msg in bad:
        c.send(line)
        r = c.answer()
        assert r["ok"] is False and msg in r["error"], (line, r)
    assert c.call("ping")["ok"] is True
    # a line past 64 KiB: refused and closed
    c.send(b'{"cmd":"ping","args":{"x":"' + b"a" * 70000)
    r = c.answer()
    assert r == {"ok": False, "error": "request line too long"}
    assert c.closed()


def test_limits(tern):
    srv = tern({"control_max_requests": "10", "control_max_connections": "2",
                "control_idle_timeout": "1s"})
    c = Ctl(srv)
    for _ in range(10):
        assert c.call("ping")["ok"] is True
    r = c.call("ping")
    assert r == {"ok": False, "error": "too many requests on one connection"}
    assert c.closed()
    a, b = Ctl(srv), Ctl(srv)
    assert a.call("ping")["ok"] and b.call("ping")["ok"]
    third = Ctl(srv)
    r = third.answer()
    assert r["ok"] is False and "too many control connections" in r["error"]
    assert third.closed()
    srv.wait_log(r"event=control_limit limit=control_max_connections")
    # idle: both are closed after a second of silence
    t0 = time.monotonic()
    assert a.answer() == {"ok": False, "error": "idle timeout"}
    assert a.closed() and time.monotonic() - t0 < 3
    assert b.answer()["error"] == "idle timeout"


def test_submission_by_hand(tern):
    srv = tern()
    c = Ctl(srv)
    assert c.call("submit.rcpt", addr="demo@example.test")["code"] == 503
    r = c.call("submit.begin", sender="hand@example.org")
    assert r["ok"] is True and len(r["id"]) == 16
    qid = r["id"]
    r = c.call("submit.data", data=base64.b64encode(b"x").decode())
    assert r == {"ok": False, "error": "No valid recipients", "code": 554, "enh": "5.5.1"}
    r = c.call("submit.rcpt", addr="nobody@example.test")
    assert r["ok"] is False and r["code"] == 550 and r["enh"] == "5.1.1"
    r = c.call("submit.rcpt", addr="demo@example.test", notify=["sometimes"])
    assert r["ok"] is False and "notify" in r["error"]
    assert c.call("submit.rcpt", addr="demo@example.test", notify=["failure"])["ok"] is True
    token = new_token("hand")
    msg = make_message(token)
    assert c.call("submit.data", data="not base64!")["ok"] is False
    for i in range(0, len(msg), 50):
        assert c.call("submit.data", data=base64.b64encode(msg[i:i + 50]).decode())["ok"]
    assert c.call("submit.rcpt", addr="postmaster@example.test")["code"] == 503  # too late
    r = c.call("submit.end")
    assert r == {"ok": True, "id": qid}
    (_, data), = srv.wait_token(token)
    assert data.startswith(b"Return-Path: <hand@example.org>\r\n")
    # a second submission on the same connection, then one given up
    assert c.call("submit.begin")["ok"] is True
    assert c.call("submit.begin")["code"] == 503
    assert c.call("submit.abort") == {"ok": True}
    assert c.call("submit.end")["code"] == 503


def test_answers_to_a_peer_that_does_not_read(tern):
    """Requests pipelined without reading the answers: past OUTPUT_MAX (1 MiB,
    control/control.c) of queued answers the server reads no more requests
    until they drain, then answers the rest in order."""
    srv = tern()
    c = Ctl(srv, timeout=0.5)
    batch = b'{"cmd":"ping"}\n' * 1000
    sent = 0
    deadline = time.monotonic() + 60
    while "event=control_output_full" not in srv.log():
        assert time.monotonic() < deadline, "no event=control_output_full after %d pings" % sent
        if sent < 60000:  # about 6 MiB of answers: more than the socket buffers take
            try:
                c.send(batch)
                sent += 1000
            except socket.timeout:
                pass  # the server no longer reads: expected once output is full
        time.sleep(0.02)
    c.s.settimeout(10)
    c.send(b'{"cmd":"nosuchcommand"}\n')
    n = 0
    while True:
        r = c.answer()
        assert r is not None, "closed after %d answers" % n
        if r["ok"] is False:
            assert "nosuchcommand" in r["error"] or "unknown" in r["error"], r
            break
        n += 1
    assert n >= sent, "%d answers for %d pings" % (n, sent)
