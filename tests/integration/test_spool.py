"""The journal spool seen from outside: segments are freed once their messages
are delivered, and a message still queued is copied forward out of old
segments, so disk use follows what is queued, not what went through
(DESIGN "The spool"). Small segments make this happen within seconds."""

import os
import time

from tern_helpers import SMTPClient, expect, make_message, new_token

DEMO = "demo@example.test"


def spool_files(s):
    return sorted(p for p in os.listdir(s.spool_dir) if p.startswith("seg-"))


def spool_bytes(s):
    return sum(os.path.getsize(os.path.join(s.spool_dir, p)) for p in spool_files(s))


def test_segments_freed_and_live_mail_copied_forward(tern):
    s = tern({"trusted_networks": "127.0.0.0/8", "spool_segment_size": "64K"})
    c = SMTPClient(s.mx_port)
    c.ehlo()
    # one message that stays queued (other domain: no transport yet)
    kept = new_token("kept")
    expect(c.send_message("alice@example.org", ["someone@example.net"],
                          make_message(kept, rcpt="someone@example.net")), 250)
    first = spool_files(s)[0]
    # then ~3 MiB of local mail through 64 KiB segments
    body = b"x" * 998 + b"\r\n"
    tokens = []
    for i in range(100):
        tok = new_token("n%d" % i)
        tokens.append(tok)
        expect(c.send_message("alice@example.org", [DEMO], make_message(tok, body * 30)), 250)
    c.close()
    for tok in tokens:
        s.wait_token(tok, timeout=10)
    # the old segments go, the kept message is copied out of the first one
    end = time.monotonic() + 20
    while time.monotonic() < end:
        if first not in spool_files(s) and len(spool_files(s)) <= 6:
            break
        time.sleep(0.2)
    files = spool_files(s)
    assert first not in files, "the first segment still holds the queued message: %r" % files
    assert len(files) <= 6, "segments not freed: %d left (%d bytes)" % (len(files), spool_bytes(s))
    # the queued message survives a restart from its new place
    s.restart()
    assert s.recovered_count() == 1
    time.sleep(0.3)
    assert not s.find_token(kept)
