"""The relay transport: mail for other domains goes to the MX hosts found in
DNS, over SMTP, with retries.

A real DNS server on loopback (dns_server.DNSTestServer, python3-dnslib)
serves the test zones; the remote MX hosts are python3-aiosmtpd servers on
distinct loopback addresses (127.0.0.2, 127.0.0.3, ...) on one port, which is
Tern's `outbound_port`. Mail enters Tern from a trusted client on its mx
listener, so that it may relay.
"""

import time

from relay_helpers import SENDER, send, world  # noqa: F401  (world is a fixture)
from tern_helpers import SMTPClient, expect, make_message, new_token


def test_delivers_to_lowest_preference_mx(tern, world):
    mx1, mx2 = world.peer("127.0.0.2"), world.peer("127.0.0.3")
    srv = tern(world.overrides)
    token, msg = send(srv, ["bob@remote.test"])
    (mail_from, rcpts, content), = mx1.wait()
    assert mail_from == SENDER and rcpts == ["bob@remote.test"]
    assert ("X-Tern-Test: %s" % token).encode() in content
    assert content.endswith(msg.split(b"\r\n\r\n", 1)[1])
    assert content.startswith(b"Received: ")
    assert mx2.transactions == []
    srv.wait_log(r"to=<bob@remote\.test> relay=mx1\.remote\.test\[127\.0\.0\.2\]:%d delay=\d+ "
                 r"dsn=2\.0\.0 status=sent" % world.port)
    srv.wait_log(r"event=removed")


def test_falls_back_to_next_mx(tern, world):
    mx2 = world.peer("127.0.0.3")  # nothing listens on 127.0.0.2
    srv = tern(world.overrides)
    send(srv, ["bob@remote.test"])
    mx2.wait()
    srv.wait_log(r"event=relay_attempt_failed host=mx1\.remote\.test\[127\.0\.0\.2\]")
    srv.wait_log(r"to=<bob@remote\.test> relay=mx2\.remote\.test\[127\.0\.0\.3\]:\d+ .*status=sent")


def test_implicit_mx(tern, world):
    p = world.peer("127.0.0.4")
    srv = tern(world.overrides)
    send(srv, ["carol@implicit.test"])
    p.wait()
    srv.wait_log(r"to=<carol@implicit\.test> relay=implicit\.test\[127\.0\.0\.4\]:\d+ .*status=sent")


def test_null_mx_and_nxdomain_bounce(tern, world):
    srv = tern(world.overrides)
    send(srv, ["x@nullmx.test"])
    send(srv, ["y@nowhere.test"])
    srv.wait_log(r"to=<x@nullmx\.test> relay=none delay=\d+ dsn=5\.1\.10 status=bounced")
    srv.wait_log(r"to=<y@nowhere\.test> relay=none delay=\d+ dsn=5\.1\.2 status=bounced")


def test_servfail_is_retried(tern, world):
    mx1 = world.peer("127.0.0.2")
    srv = tern(world.overrides)
    send(srv, ["d@broken.test"])
    srv.wait_log(r"to=<d@broken\.test> relay=none delay=\d+ dsn=4\.4\.3 status=deferred")
    world.dns.set_behaviour("broken.test", None)
    mx1.wait(timeout=15)
    srv.wait_log(r"to=<d@broken\.test> relay=mx1\.remote\.test.*status=sent", timeout=10)


def test_4xx_then_success_and_5xx_bounce(tern, world):
    mx1 = world.peer("127.0.0.2")
    state = {"n": 0}

    def rcpt_reply(addr):
        if addr.startswith("later@"):
            state["n"] += 1
            return "451 4.3.0 try again later" if state["n"] == 1 else None
        if addr.startswith("nosuch@"):
            return "550 5.1.1 no such user here"
        return None

    mx1.rcpt_reply = rcpt_reply
    srv = tern(world.overrides)
    send(srv, ["later@remote.test", "nosuch@remote.test"])
    srv.wait_log(r"to=<nosuch@remote\.test> relay=mx1\.remote\.test\S+ delay=\d+ dsn=5\.1\.1 "
                 r"status=bounced \(host mx1\.remote\.test\[127\.0\.0\.2\] said: 550 5\.1\.1 "
                 r"no such user here")
    srv.wait_log(r"to=<later@remote\.test> relay=mx1\.remote\.test\S+ delay=\d+ dsn=4\.3\.0 "
                 r"status=deferred")
    mx1.wait(timeout=15)
    srv.wait_log(r"to=<later@remote\.test> relay=mx1\.remote\.test\S+ .*status=sent", timeout=10)
    srv.wait_log(r"event=removed")


def test_twenty_recipients_one_transaction(tern, world):
    mx1 = world.peer("127.0.0.2")
    srv = tern(world.overrides)
    rcpts = ["r%02d@remote.test" % i for i in range(20)]
    send(srv, rcpts)
    (mail_from, got, content), = mx1.wait()
    assert sorted(got) == rcpts
    time.sleep(0.5)
    assert len(mx1.transactions) == 1


def test_dot_stuffing_round_trip(tern, world):
    mx1 = world.peer("127.0.0.2")
    srv = tern(world.overrides)
    body = b".leading dot\r\n..two dots\r\n.\r\nend\r\n"
    token, msg = send(srv, ["bob@remote.test"], body=body)
    (_, _, content), = mx1.wait()
    assert content.endswith(body)


def test_starttls_to_peer(tern, world, tmp_path):
    import ssl
    import subprocess
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=mx1.remote.test", "-days", "2", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    mx1 = world.peer("127.0.0.2", tls_context=ctx)
    srv = tern(world.overrides)
    send(srv, ["bob@remote.test"])
    mx1.wait()
    srv.wait_log(r"event=relay_tls host=mx1\.remote\.test\[127\.0\.0\.2\] version=TLSv1\.[23]")


def test_retry_schedule_survives_restart(tern, world):
    mx1 = world.peer("127.0.0.2")
    mx1.rcpt_reply = lambda addr: "421 4.7.0 not now"
    over = dict(world.overrides, retry_min="3s", retry_max="3s")
    srv = tern(over)
    send(srv, ["eve@remote.test"])
    srv.wait_log(r"to=<eve@remote\.test> .*status=deferred")
    srv.stop()
    mx1.rcpt_reply = lambda addr: None
    srv.start()
    assert srv.recovered_count() == 1
    mx1.wait(timeout=15)
    srv.wait_log(r"to=<eve@remote\.test> .*status=sent", timeout=10)


def local_send(srv, sender, rcpts, params=""):
    token = new_token("bounce")
    msg = make_message(token, sender=sender or "nobody@example.org", rcpt=rcpts[0])
    c = SMTPClient(srv.mx_port)
    c.ehlo()
    expect(c.cmd("MAIL FROM:<%s>" % sender), 250)
    for r in rcpts:
        expect(c.cmd("RCPT TO:<%s>%s" % (r, params)), 250)
    expect(c.cmd("DATA"), 354)
    from tern_helpers import dot_stuff
    c.send(dot_stuff(msg))
    expect(c.reply(), 250)
    c.quit()
    return token


def report_parts(data):
    """The delivered report parsed: (message, per-message fields, [per-recipient fields])."""
    import email
    import email.policy
    m = email.message_from_bytes(data, policy=email.policy.compat32)
    assert m.get_content_type() == "multipart/report", m.get_content_type()
    assert m.get_param("report-type") == "delivery-status"
    parts = m.get_payload()
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    blocks = parts[1].get_payload()
    return m, parts, blocks[0], blocks[1:]


def test_5xx_bounce_reaches_local_sender(tern, world):
    mx1 = world.peer("127.0.0.2")
    mx1.rcpt_reply = lambda addr: "550 5.1.1 <%s>: no such user here" % addr
    srv = tern(world.overrides)
    token = local_send(srv, "demo@example.test", ["nosuch@remote.test"])
    srv.wait_log(r"to=<nosuch@remote\.test> .*dsn=5\.1\.1 status=bounced")
    srv.wait_log(r"event=bounce bounce_qid=[0-9A-F]{16} to=<demo@example\.test> nrcpt=1")
    (path, data), = srv.wait_messages("demo@example.test", 1)
    m, parts, per_msg, per_rcpt = report_parts(data)
    assert b"Return-Path: <>" in data[:200]
    assert m["Auto-Submitted"] == "auto-replied"
    assert per_msg["Reporting-MTA"] == "dns; mail.example.test"
    r = per_rcpt[0]
    assert r["Final-Recipient"] == "rfc822; nosuch@remote.test"
    assert r["Action"] == "failed" and r["Status"] == "5.1.1"
    assert r["Remote-MTA"] == "dns; mx1.remote.test"
    assert "550 5.1.1" in r["Diagnostic-Code"] and r["Diagnostic-Code"].startswith("smtp;")
    # RET not given: the original's header section comes back
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert ("X-Tern-Test: %s" % token) in parts[2].get_payload()
    srv.wait_log(r"event=removed")


def test_notify_never_and_null_sender(tern, world):
    mx1 = world.peer("127.0.0.2")
    mx1.rcpt_reply = lambda addr: "550 5.1.1 no"
    srv = tern(world.overrides)
    local_send(srv, "demo@example.test", ["n1@remote.test"], params=" NOTIFY=NEVER")
    srv.wait_log(r"to=<n1@remote\.test> .*status=bounced")
    # a failed message from <> is reported to the postmaster, from double-bounce@
    local_send(srv, "", ["n2@remote.test"])
    srv.wait_log(r"to=<n2@remote\.test> .*status=bounced")
    (path, data), = srv.wait_messages("postmaster@example.test", 1)
    assert b"Return-Path: <double-bounce@mail.example.test>" in data[:300]
    assert b"n2@remote.test" in data
    time.sleep(1.0)
    assert srv.messages("demo@example.test") == []  # NOTIFY=NEVER: no report


def test_expiry_bounce(tern, world):
    mx1 = world.peer("127.0.0.2")
    mx1.rcpt_reply = lambda addr: "450 4.2.0 mailbox busy"
    srv = tern(dict(world.overrides, queue_lifetime="2s"))
    local_send(srv, "demo@example.test", ["slow@remote.test"])
    srv.wait_log(r"to=<slow@remote\.test> .*status=deferred")
    srv.wait_log(r"to=<slow@remote\.test> .*status=expired", timeout=15)
    (path, data), = srv.wait_messages("demo@example.test", 1)
    m, parts, per_msg, per_rcpt = report_parts(data)
    assert per_rcpt[0]["Action"] == "failed"
    assert per_rcpt[0]["Status"].startswith("4.")
    srv.wait_log(r"event=removed")


def test_destination_concurrency(tern, world):
    """Transactions to one domain run in parallel, at most destination_concurrency."""
    import asyncio
    mx1 = world.peer("127.0.0.2")
    state = {"now": 0, "max": 0}
    orig = mx1.handle_DATA

    async def slow_data(server, session, envelope):
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.5)
        state["now"] -= 1
        return await orig(server, session, envelope)

    mx1.handle_DATA = slow_data
    srv = tern(dict(world.overrides, destination_concurrency="2"))
    for i in range(6):
        send(srv, ["c%d@remote.test" % i])
    mx1.wait(6, timeout=20)
    assert state["max"] == 2, state
    # with the default window (5 to start with) they overlap more
    state["max"] = 0
    srv2 = tern(world.overrides)
    for i in range(6):
        send(srv2, ["d%d@remote.test" % i])
    mx1.wait(12, timeout=20)
    assert state["max"] >= 3, state


def test_delay_warning(tern, world):
    mx1 = world.peer("127.0.0.2")
    mx1.rcpt_reply = lambda addr: "451 4.3.0 later"
    srv = tern(dict(world.overrides, delay_warning_time="2s", retry_min="1s", retry_max="1s"))
    local_send(srv, "demo@example.test", ["wait@remote.test"])
    srv.wait_log(r"event=delay_warning bounce_qid=[0-9A-F]{16} to=<demo@example\.test>",
                 timeout=15)
    (path, data), = srv.wait_messages("demo@example.test", 1)
    m, parts, per_msg, per_rcpt = report_parts(data)
    assert per_rcpt[0]["Action"] == "delayed"
    assert per_rcpt[0]["Status"] == "4.3.0"
    assert per_rcpt[0]["Will-Retry-Until"]
    # only once, however many attempts follow
    time.sleep(3)
    assert len(srv.messages("demo@example.test")) == 1
    assert srv.log().count("event=delay_warning") == 1


def test_tls_policies(tern, world, tmp_path):
    """outbound_tls = verify checks the peer's chain and name; encrypt needs
    STARTTLS; a transport entry's tls= overrides the setting per domain."""
    import ssl
    import subprocess

    def pair(cn, name):
        cert, key = tmp_path / (name + ".pem"), tmp_path / (name + ".key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                        "/CN=" + cn, "-days", "2", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True, timeout=60)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        return cert, ctx

    good, good_ctx = pair("mx1.remote.test", "good")
    mx1 = world.peer("127.0.0.2", tls_context=good_ctx)
    # verify with the peer's certificate as the trusted CA: delivered
    srv = tern(dict(world.overrides, outbound_tls="verify", outbound_tls_ca_file=str(good)))
    send(srv, ["v1@remote.test"])
    mx1.wait(1)
    srv.wait_log(r"to=<v1@remote\.test> .*status=sent")
    # verify against the system's CAs: the self-signed peer is refused, mail deferred
    srv2 = tern(dict(world.overrides, outbound_tls="verify"))
    send(srv2, ["v2@remote.test"])
    srv2.wait_log(r"event=relay_attempt_failed host=mx1\.remote\.test\[127\.0\.0\.2\] "
                  r"reason=\"TLS handshake failed: .*certificate verify failed")
    srv2.wait_log(r"to=<v2@remote\.test> .*status=deferred")
    # encrypt with a peer that has no STARTTLS: deferred; tls=none for that domain: sent
    plain = world.peer("127.0.0.4")
    routes = tmp_path / "transport"
    routes.write_text("implicit.test smtp:implicit.test tls=none\n")
    srv3 = tern(dict(world.overrides, outbound_tls="encrypt"))
    send(srv3, ["e1@implicit.test"])
    srv3.wait_log(r"to=<e1@implicit\.test> .*status=deferred \(TLS is required for "
                  r"implicit\.test, but host implicit\.test\[127\.0\.0\.4\] does not offer "
                  r"STARTTLS")
    srv4 = tern(dict(world.overrides, outbound_tls="encrypt", transport_file=str(routes)))
    send(srv4, ["e2@implicit.test"])
    plain.wait(1)
    srv4.wait_log(r"to=<e2@implicit\.test> .*status=sent")
