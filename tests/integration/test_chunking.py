"""The relay's BDAT (RFC 3030 CHUNKING) and its per-stage timeouts (RFC 5321
§4.5.3.2).

A scripted RawPeer (relay_helpers) on 127.0.0.2 advertises CHUNKING, with or
without PIPELINING and 8BITMIME, records every command, every chunk size and
the content it receives, and can refuse a chunk or wait before answering a
stage. Mail enters Tern from a trusted client on its mx listener and is
relayed to remote.test, whose MX is that peer.
"""

import email
import email.policy
import os

from relay_helpers import SENDER, send, world  # noqa: F401  (world is a fixture)
from tern_helpers import make_message, new_token
from test_routes import eight_bit_message, send_raw


def big_body(kib):
    """kib KiB of lines, some starting with a dot (which BDAT does not stuff)."""
    lines = []
    n = 0
    while n < kib * 1024:
        line = (".dotted line %06d\r\n" if len(lines) % 7 == 0 else "plain line %06d ........\r\n") % len(lines)
        lines.append(line)
        n += len(line)
    return "".join(lines).encode()


def bdat_commands(raw):
    with raw.lock:
        return [c for c in raw.commands if c.upper().startswith(b"BDAT")]


def test_bdat_pipelined_large_message(tern, world):
    raw = world.raw_peer("127.0.0.2", ext=["PIPELINING", "8BITMIME", "CHUNKING"])
    srv = tern(world.overrides)
    body = big_body(300)
    token, msg = send(srv, ["big@remote.test"], body=body)
    (mail, rcpts, content), = raw.wait(timeout=20)
    assert rcpts == ["big@remote.test"]
    # the message arrives as Tern stored it: its Received line, then the
    # original octets, dot lines untouched (no stuffing, no unstuffing)
    assert content.endswith(msg), content[-200:]
    assert content.startswith(b"Received: ")
    cmds = bdat_commands(raw)
    assert len(cmds) >= 2, cmds  # more than one chunk for 300 KiB
    assert cmds[-1].endswith(b" LAST") and all(not c.endswith(b"LAST") for c in cmds[:-1])
    assert sum(raw.chunks) == len(content)
    with raw.lock:
        assert not any(c.upper() == b"DATA" for c in raw.commands)
    srv.wait_log(r"to=<big@remote\.test> relay=mx1\.remote\.test\[127\.0\.0\.2\]:\d+ .*"
                 r"dsn=2\.0\.0 status=sent \(.*in reply to BDAT LAST\)")


def test_bdat_without_pipelining_waits_for_each_chunk(tern, world):
    raw = world.raw_peer("127.0.0.2", ext=["8BITMIME", "CHUNKING"])
    srv = tern(world.overrides)
    token, msg = send(srv, ["one@remote.test", "two@remote.test"], body=big_body(200))
    (mail, rcpts, content), = raw.wait(timeout=20)
    assert sorted(rcpts) == ["one@remote.test", "two@remote.test"]
    assert content.endswith(msg)
    # without PIPELINING each chunk is sent only after the reply to the one
    # before: no read of the peer holds the start of two BDAT commands
    with raw.lock:
        reads = list(raw.reads)
    assert all(r.count(b"BDAT ") <= 1 for r in reads), [r[:40] for r in reads if r.count(b"BDAT ") > 1]
    assert len(bdat_commands(raw)) >= 2
    srv.wait_log(r"to=<two@remote\.test> .*status=sent")


def test_bdat_converts_8bit_for_peer_without_8bitmime(tern, world):
    raw = world.raw_peer("127.0.0.2", ext=["PIPELINING", "CHUNKING"])
    srv = tern(world.overrides)
    token = "bdat8-%d" % os.getpid()
    msg = eight_bit_message(token)
    send_raw(srv, ["bob@remote.test"], msg)
    (mail, rcpts, content), = raw.wait()
    assert b"BODY=8BITMIME" not in mail
    assert all(b < 0x80 for b in content), "8-bit octets reached a 7-bit peer"
    assert bdat_commands(raw)
    m = email.message_from_bytes(content, policy=email.policy.default)
    assert m["Content-Transfer-Encoding"] == "quoted-printable"
    orig = email.message_from_bytes(msg, policy=email.policy.default)
    assert m.get_payload(decode=True) == orig.get_payload(decode=True)
    assert sum(raw.chunks) == len(content)
    srv.wait_log(r"to=<bob@remote\.test> .*status=sent")


def test_outbound_chunking_off_uses_data(tern, world):
    raw = world.raw_peer("127.0.0.2", ext=["PIPELINING", "8BITMIME", "CHUNKING"])
    srv = tern(dict(world.overrides, outbound_chunking="no"))
    token, msg = send(srv, ["plain@remote.test"])
    (mail, rcpts, content), = raw.wait()
    assert content.endswith(msg)
    assert not bdat_commands(raw)
    with raw.lock:
        assert b"DATA" in raw.commands
    srv.wait_log(r"to=<plain@remote\.test> .*status=sent \(.*in reply to end of DATA\)")


def test_refused_chunk_bounces_and_refused_last_defers(tern, world):
    raw = world.raw_peer("127.0.0.2", ext=["PIPELINING", "8BITMIME", "CHUNKING"])
    raw.bdat_reply = lambda index, last: "554 5.6.0 content refused" if index == 0 else None
    srv = tern(dict(world.overrides, retry_min="60s"))
    send(srv, ["refused@remote.test"], body=big_body(200))
    srv.wait_log(r"to=<refused@remote\.test> .*dsn=5\.6\.0 status=bounced "
                 r"\(host mx1\.remote\.test\[127\.0\.0\.2\] said: 554 5\.6\.0 content refused "
                 r"\(in reply to BDAT\)\)")
    raw.bdat_reply = lambda index, last: "451 4.3.0 try later" if last else None
    send(srv, ["later@remote.test"])
    srv.wait_log(r"to=<later@remote\.test> .*dsn=4\.3\.0 status=deferred "
                 r"\(host mx1\.remote\.test\[127\.0\.0\.2\] said: 451 4\.3\.0 try later "
                 r"\(in reply to BDAT LAST\)\)")
    assert raw.transactions == []


def test_no_bdat_when_every_recipient_is_refused(tern, world):
    raw = world.raw_peer("127.0.0.2", ext=["PIPELINING", "8BITMIME", "CHUNKING"])
    raw.rcpt_reply = lambda addr: "550 5.1.1 no such user"
    srv = tern(world.overrides)
    send(srv, ["nobody@remote.test"])
    srv.wait_log(r"to=<nobody@remote\.test> .*dsn=5\.1\.1 status=bounced")
    assert not bdat_commands(raw)


def test_slow_final_reply_times_out_by_its_own_timeout(tern, world):
    raw = world.raw_peer("127.0.0.2", ext=["PIPELINING", "8BITMIME"])
    raw.delay[b"DOT"] = 3
    srv = tern(dict(world.overrides, outbound_data_done_timeout="1s", retry_min="60s"))
    send(srv, ["slowdot@remote.test"])
    srv.wait_log(r"to=<slowdot@remote\.test> .*dsn=4\.4\.2 status=deferred \(timeout with "
                 r"mx1\.remote\.test\[127\.0\.0\.2\] while sending message content\)", timeout=15)


def test_stage_timeouts_are_independent(tern, world):
    """Short timeouts for the dialogue do not cut a slow but allowed final reply."""
    raw = world.raw_peer("127.0.0.2", ext=["PIPELINING", "8BITMIME", "CHUNKING"])
    raw.delay[b"BDAT"] = 2
    srv = tern(dict(world.overrides, outbound_helo_timeout="1s", outbound_mail_timeout="1s",
                    outbound_rcpt_timeout="1s", outbound_data_init_timeout="1s",
                    outbound_data_done_timeout="10s", outbound_data_xfer_timeout="10s"))
    send(srv, ["patient@remote.test"])
    raw.wait(timeout=20)
    srv.wait_log(r"to=<patient@remote\.test> .*status=sent", timeout=15)


def test_slow_greeting_tries_the_next_mx(tern, world):
    slow = world.raw_peer("127.0.0.2", ext=["PIPELINING"])
    slow.delay[b"GREETING"] = 3
    fast = world.raw_peer("127.0.0.3", ext=["PIPELINING"])
    srv = tern(dict(world.overrides, outbound_helo_timeout="1s"))
    send(srv, ["next@remote.test"])
    fast.wait(timeout=15)
    srv.wait_log(r"event=relay_attempt_failed host=mx1\.remote\.test\[127\.0\.0\.2\] "
                 r"reason=\"timeout with mx1\.remote\.test\[127\.0\.0\.2\]\"")
    srv.wait_log(r"to=<next@remote\.test> relay=mx2\.remote\.test\[127\.0\.0\.3\]:\d+ .*status=sent")
