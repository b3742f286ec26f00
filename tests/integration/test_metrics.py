"""The metrics endpoint: GET /metrics on metrics_listen (docs/metrics.md).

Scrapes the real server before and after real SMTP traffic and reads the
answer with prometheus_client's own text parser (python3-prometheus-client),
so a malformed exposition fails the test; checks that the counters moved by
what the traffic did, that the histograms are well formed, that hostile or
wrong requests get 400/404/405/431, and that an empty metrics_listen binds
nothing.
"""

import socket
import time

from prometheus_client.parser import text_string_to_metric_families

from tern_helpers import SMTPClient, expect, free_ports, make_message, new_token
from test_submission import PASSWORD, USER, plain, tls_session


def http(port, request, timeout=5.0):
    """Send raw request bytes; return (status, headers dict, body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def scrape(srv):
    status, headers, body = http(srv.metrics_port,
                                 b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert status == 200, (status, body)
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    families = {f.name: f for f in text_string_to_metric_families(body.decode("utf-8"))}
    return families


def value(families, family, sample=None, **labels):
    """The value of one sample (by default the family's own name, or
    name_total for a counter), with exactly these labels."""
    f = families[family]
    name = sample or (family + "_total" if f.type == "counter" else family)
    for s in f.samples:
        if s.name == name and s.labels == labels:
            return s.value
    raise AssertionError("no sample %s%r in %s" % (name, labels, [x for x in f.samples]))


def test_counters_move_with_traffic(tern):
    # mail authentication for loopback clients too, so that SPF runs
    srv = tern({"mailauth_skip_networks": ""})
    before = scrape(srv)
    # every declared series is there from the start, at zero
    assert value(before, "tern_messages_accepted", listener="mx") == 0
    assert value(before, "tern_deliveries", status="sent", **{"class": "local"}) == 0
    assert value(before, "tern_queue_messages") == 0

    # a message accepted on mx and delivered to a local Maildir
    token = new_token()
    c = SMTPClient(srv.mx_port)
    c.ehlo()
    expect(c.send_message("sender@example.org", ["demo@example.test"], make_message(token)), 250)
    # a rejected RCPT: an unknown local mailbox, and relaying refused
    expect(c.cmd("MAIL FROM:<sender@example.org>"), 250)
    expect(c.cmd("RCPT TO:<nobody@example.test>"), 550, "5.1.1")
    expect(c.cmd("RCPT TO:<someone@elsewhere.example>"), 554, "5.7.1")
    c.quit()
    srv.wait_messages("demo@example.test", 1)

    # an authentication failure on submission, then a good login
    c = tls_session(srv)
    expect(c.cmd("AUTH PLAIN " + plain(USER, "wrong"), timeout=10), 535, "5.7.8")
    expect(c.cmd("AUTH PLAIN " + plain(USER, PASSWORD), timeout=10), 235)
    c.quit()

    deadline = time.time() + 5
    while True:
        after = scrape(srv)
        if value(after, "tern_deliveries", status="sent", **{"class": "local"}) >= 1 \
                or time.time() > deadline:
            break
        time.sleep(0.1)

    def delta(family, sample=None, **labels):
        return value(after, family, sample, **labels) - value(before, family, sample, **labels)

    assert delta("tern_messages_accepted", listener="mx") == 1
    assert delta("tern_messages_accepted", listener="submission") == 0
    assert delta("tern_deliveries", status="sent", **{"class": "local"}) == 1
    assert delta("tern_deliveries", status="sent", **{"class": "relay"}) == 0
    assert delta("tern_smtp_rejections", listener="mx", reason="recipient") == 1
    assert delta("tern_smtp_rejections", listener="mx", reason="relay") == 1
    assert delta("tern_smtp_rejections", listener="submission", reason="auth") == 1
    assert delta("tern_auth_failures", listener="submission") == 1
    assert delta("tern_auth_failures", listener="mx") == 0
    # the scrapes themselves are not SMTP connections; the two sessions are
    assert delta("tern_connections", listener="mx", result="accepted") == 1
    assert delta("tern_connections", listener="submission", result="accepted") == 1
    assert delta("tern_tls_handshakes", direction="inbound", outcome="ok") == 1
    # SPF ran for the message from example.org (no answer from the test DNS)
    spf = sum(s.value for s in after["tern_spf_results"].samples)
    assert spf >= 1, after["tern_spf_results"].samples

    # the group commit histograms saw at least the message's commit
    for name in ("tern_spool_commit_batch_size", "tern_spool_commit_seconds"):
        f = after[name]
        assert f.type == "histogram"
        buckets = [s for s in f.samples if s.name == name + "_bucket"]
        les = [s.labels["le"] for s in buckets]
        assert les[-1] == "+Inf"
        bounds = [float(x) for x in les]
        assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds)
        counts = [s.value for s in buckets]
        assert counts == sorted(counts), counts  # cumulative
        count = value(after, name, name + "_count")
        assert count == counts[-1] and count >= 1
        assert value(after, name, name + "_sum") >= 0
    assert value(after, "tern_spool_commit_batch_size", "tern_spool_commit_batch_size_sum") >= 1
    # gauges read at scrape time
    assert value(after, "tern_spool_bytes") > 0
    assert value(after, "tern_spool_segments") >= 1
    assert value(after, "tern_queue_messages") == 0
    assert value(after, "tern_queue_oldest_message_age_seconds") == 0


def test_queue_gauges(tern):
    """A message that cannot be delivered stays queued: the gauges show it."""
    srv = tern({"trusted_networks": "127.0.0.0/8"})
    c = SMTPClient(srv.mx_port)
    c.ehlo()
    # the test DNS does not answer: the relay defers
    expect(c.send_message("demo@example.test", ["someone@unreachable.example"],
                          make_message(new_token())), 250)
    c.quit()
    deadline = time.time() + 40
    while True:
        m = scrape(srv)
        if value(m, "tern_deliveries", status="deferred", **{"class": "relay"}) >= 1 \
                or time.time() > deadline:
            break
        time.sleep(0.5)
    assert value(m, "tern_deliveries", status="deferred", **{"class": "relay"}) == 1
    assert value(m, "tern_queue_messages") == 1
    time.sleep(1.1)
    m = scrape(srv)
    assert value(m, "tern_queue_oldest_message_age_seconds") >= 1
    # the relay asked for the domain's next hop and got no answer
    assert value(m, "tern_dns_lookups", kind="nexthop", outcome="tempfail") >= 1


def test_http_answers(tern):
    srv = tern()
    port = srv.metrics_port
    st, h, body = http(port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
    assert st == 200 and body == b"" and int(h["content-length"]) > 0
    assert http(port, b"GET /metrics?x=1 HTTP/1.0\n\n")[0] == 200  # bare LF lines
    assert http(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 404
    assert http(port, b"GET /metricsx HTTP/1.1\r\n\r\n")[0] == 404
    st, h, _ = http(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert st == 405 and h["allow"] == "GET, HEAD"
    for bad in (b"GET /metrics\r\n\r\n",
                b"GET  /metrics HTTP/1.1\r\n\r\n",
                b"GET metrics HTTP/1.1\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\nA: b\rc\r\n\r\n",
                b"GET /met\x00rics HTTP/1.1\r\n\r\n",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
                b"\r\n\r\n"):
        assert http(port, bad)[0] == 400, bad
    assert http(port, b"GET /metrics HTTP/2.0\r\n\r\n")[0] == 505
    # a head that reaches 8 KiB without its end (exactly 8 KiB: the server
    # reads all of it, so its close is not a reset)
    start = b"GET /metrics HTTP/1.1\r\nX: "
    st, _, _ = http(port, start + b"a" * (8192 - len(start)))
    assert st == 431
    # a client that says nothing and goes away, and one that never finishes
    s = socket.create_connection(("127.0.0.1", port))
    s.close()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /metr")
    # the server is still serving meanwhile
    assert scrape(srv)["tern_connections"].type == "counter"
    s.close()
    # more connections than the limit at once: the extra ones are closed, the
    # server survives and answers again once they are gone
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(24)]
    time.sleep(0.3)
    for s in socks:
        s.close()
    time.sleep(0.3)
    scrape(srv)
    srv.wait_log(r"event=metrics_connection_refused reason=limit")


def test_off_when_empty(tern):
    srv = tern({"metrics_listen": ""})
    port = srv.metrics_port
    s = socket.socket()
    try:
        try:
            s.connect(("127.0.0.1", port))
            connected = True
        except ConnectionRefusedError:
            connected = False
    finally:
        s.close()
    assert not connected
    assert "listener=metrics" not in srv.log()


def test_listening_logged(tern):
    srv = tern()
    srv.wait_log(r"event=listening listener=metrics address=127\.0\.0\.1 port=%d"
                 % srv.metrics_port)
