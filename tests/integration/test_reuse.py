"""Connection reuse in the relay: idle SMTP connections kept per destination,
RSET before the next transaction, closed after the idle limit, and a new
connection when a pooled one turns out dead.

Peers come from relay_helpers: aiosmtpd (Peer, counting EHLOs) and RawPeer
(every command and every connection's end recorded), on loopback addresses
on one port, which is Tern's outbound_port; mail enters Tern from a trusted
client on its mx listener.
"""

import time

from relay_helpers import send, world  # noqa: F401  (world is a fixture)

SMTP_IDLE = 5  # seconds an idle SMTP connection is kept (relay.c)


def wait_until(cond, timeout=10.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("%s not met after %ss" % (what, timeout))


def test_ten_messages_share_connections(tern, world):
    mx1 = world.peer("127.0.0.2")
    srv = tern(dict(world.overrides, log_level="debug"))
    for i in range(10):
        send(srv, ["r%d@remote.test" % i])
    txs = mx1.wait(10, timeout=20)
    assert sorted(r for t in txs for r in t[1]) == sorted("r%d@remote.test" % i
                                                         for i in range(10))
    for i in range(10):
        srv.wait_log(r"to=<r%d@remote\.test> relay=mx1\.remote\.test\[127\.0\.0\.2\]:\d+ "
                     r"delay=\d+ dsn=2\.0\.0 status=sent" % i)
    assert mx1.sessions < 10, mx1.sessions
    srv.wait_log(r"event=relay_reuse route=mx:remote\.test host=mx1\.remote\.test\[127\.0\.0\.2\] "
                 r"uses=\d+")
    # the delivery log line keeps its format: nothing about the connection
    assert "uses=" not in "".join(l for l in srv.log().splitlines() if " to=<" in l)


def test_idle_connection_closed_after_limit(tern, world):
    raw = world.raw_peer("127.0.0.2", ext=["PIPELINING", "8BITMIME"])
    srv = tern(dict(world.overrides, log_level="debug"))
    send(srv, ["idle@remote.test"])
    raw.wait()
    srv.wait_log(r"to=<idle@remote\.test> .*status=sent")
    time.sleep(1)
    with raw.lock:
        assert b"QUIT" not in raw.commands and raw.ended == 0  # kept idle
    wait_until(lambda: raw.ended == 1, timeout=SMTP_IDLE + 5, what="idle close")
    assert raw.commands[-1] == b"QUIT"
    srv.wait_log(r"event=relay_pool_close route=mx:remote\.test uses=1 reason=idle")
    # the next message opens a new connection
    send(srv, ["again@remote.test"])
    raw.wait(2)
    srv.wait_log(r"to=<again@remote\.test> .*status=sent")
    assert raw.sessions == 2


def test_pooled_connection_refusing_rset(tern, world):
    """A pooled connection that turns out dead (RSET answered 421, then
    closed) costs nothing: the message goes on a new connection."""
    raw = world.raw_peer("127.0.0.2", ext=["PIPELINING", "8BITMIME"])
    raw.rset_reply = lambda: "421 4.4.2 idle too long, closing"
    srv = tern(dict(world.overrides, log_level="debug"))
    send(srv, ["one@remote.test"])
    raw.wait()
    srv.wait_log(r"to=<one@remote\.test> .*status=sent")
    send(srv, ["two@remote.test"])
    raw.wait(2)
    srv.wait_log(r"to=<two@remote\.test> .*dsn=2\.0\.0 status=sent")
    srv.wait_log(r"event=relay_reuse_failed route=mx:remote\.test reason=\"host "
                 r"mx1\.remote\.test\[127\.0\.0\.2\] said: 421 4\.4\.2 idle too long")
    assert raw.sessions == 2
    assert raw.commands.count(b"RSET") == 1
    log = srv.log()
    assert "status=deferred" not in log and "event=relay_attempt_failed" not in log


def test_peer_closes_idle_connection(tern, world):
    """A peer that closes the connection after each transaction: Tern notices
    (or finds out at RSET) and opens a new one, without a deferral."""
    raw = world.raw_peer("127.0.0.2")

    def one_transaction(sock):
        sock.sendall(b"220 raw ESMTP\r\n")
        f = sock.makefile("rb")
        while True:
            ln = f.readline().rstrip(b"\r\n")
            if not ln:
                return
            with raw.lock:
                raw.commands.append(ln)
            v = ln.split(b" ", 1)[0].upper()
            if v == b"EHLO":
                sock.sendall(b"250-raw\r\n250 8BITMIME\r\n")
            elif v == b"DATA":
                sock.sendall(b"354 go\r\n")
                while f.readline() != b".\r\n":
                    pass
                with raw.lock:
                    raw.transactions.append((b"", [], b""))
                sock.sendall(b"250 2.0.0 queued\r\n")
                return  # and close
            else:
                sock.sendall(b"250 2.0.0 ok\r\n")

    def session(sock):
        with raw.lock:
            raw.sessions += 1
        one_transaction(sock)

    raw._session = session
    srv = tern(dict(world.overrides, log_level="debug"))
    for i in range(3):
        send(srv, ["c%d@remote.test" % i])
        raw.wait(i + 1)
        srv.wait_log(r"to=<c%d@remote\.test> .*dsn=2\.0\.0 status=sent" % i)
    assert raw.sessions == 3
    log = srv.log()
    assert "status=deferred" not in log and "event=relay_attempt_failed" not in log
