"""The queue through the control socket: `tern queue` list, show, flush,
hold, release, delete, bounce, pause and resume against a queue of deferred
mail (remote MX hosts answering 4xx: relay_helpers' world), mailq after a
deferred delivery, a hold that survives kill -9 and a restart, and who may
change the queue.
"""

import json
import math
import os
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import tern_bin
from queue_helpers import links, listed_ids, queue, queue_json, run, sendmail, wait_until
from relay_helpers import world  # noqa: F401  (a fixture)
from tern_helpers import SMTPClient, expect, make_message, new_token

LATER = "451 4.3.0 try again later"


def submit(srv, sender, rcpts, token=None):
    """Queue a message from a trusted client; returns its queue id."""
    token = token or new_token("q")
    msg = make_message(token, rcpt=rcpts[0])
    c = SMTPClient(srv.mx_port)
    c.ehlo()
    r = c.send_message(sender, rcpts, msg)
    expect(r, 250)
    c.quit()
    return r.text.rsplit(" ", 1)[-1]


def overrides(world, **more):
    o = dict(world.overrides)
    o.update({"retry_min": "1h", "retry_max": "2h"})  # deferred mail stays deferred
    o.update(more)
    return o


def test_mailq_after_deferred_delivery(tern, world, tmp_path):
    mx1 = world.peer("127.0.0.2")
    mx1.rcpt_reply = lambda addr: LATER
    srv = tern(overrides(world))
    qid = submit(srv, "alice@example.org", ["bob@remote.test", "carol@remote.test"])
    srv.wait_log(r"to=<carol@remote\.test> relay=mx1\.remote\.test\S+ .*status=deferred")
    bindir = links(tmp_path)
    out = sendmail(bindir, srv, [], name="mailq")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("-Queue ID-")
    first = lines[1].split()
    # queue id (deferred: no * or !), size, arrival time, sender
    assert first[0] == qid
    assert first[-1] == "alice@example.org"
    size = int(first[1])
    assert size > 100
    # the reason of the deferral once, in parentheses, then both recipients
    assert "(host mx1.remote.test[127.0.0.2] said: 451 4.3.0 try again later" in out.stdout
    rcpt_lines = [l.strip() for l in lines[2:] if l.startswith(" ")]
    assert rcpt_lines == ["bob@remote.test", "carol@remote.test"]
    assert lines[-1] == "-- %d Kbytes in 1 Request." % ((size + 1023) // 1024)
    # sendmail -bp and tern queue list print the same
    bp = sendmail(bindir, srv, ["-bp"])
    assert bp.returncode == 0 and bp.stdout == out.stdout
    assert queue(srv, "list").stdout == out.stdout
    # show: envelope, recipients with their last status, the headers
    show = queue(srv, "show", qid).stdout
    assert "Status:     deferred" in show and "<bob@remote.test> deferred, 1 attempt" in show
    assert "last: dsn=4.3.0" in show and "X-Tern-Test: " in show
    m = queue_json(srv, "show", qid)
    assert m["id"] == qid and m["listener"] == "mx" and m["client"] == "127.0.0.1"
    assert [r["state"] for r in m["rcpts"]] == ["deferred", "deferred"]
    assert m["rcpts"][0]["next_attempt"] > time.time() + 1800
    assert m["headers"].startswith("Received: from ")
    # an empty queue
    queue(srv, "delete", "ALL")
    assert sendmail(bindir, srv, [], name="mailq").stdout == "Mail queue is empty\n"


def test_every_command_with_each_selector(tern, world):
    mx1 = world.peer("127.0.0.2")  # remote.test
    mx4 = world.peer("127.0.0.4")  # implicit.test
    accept = {"on": False}

    def rcpt_reply(addr):
        if addr.startswith("perm"):
            return "550 5.1.1 no such user"
        return None if accept["on"] else LATER

    mx1.rcpt_reply = mx4.rcpt_reply = rcpt_reply
    srv = tern(overrides(world))
    queue(srv, "pause", "paused.test")
    t_old = time.time()
    m4 = submit(srv, "carol@example.org", ["d1@remote.test"])
    srv.wait_log(r"to=<d1@remote\.test> .*status=deferred")
    time.sleep(6)
    m1 = submit(srv, "alice@example.org", ["a1@remote.test"])
    m2 = submit(srv, "bob@example.net", ["b1@implicit.test"])
    m3 = submit(srv, "demo@example.test", ["perm1@remote.test", "c1@implicit.test"])
    m5 = submit(srv, "eve@example.com", ["e1@remote.test"])
    m6 = submit(srv, "frank@example.com", ["x@paused.test"])  # never tried: active
    t_new = time.time()
    for addr in ("a1@remote", "b1@implicit", "c1@implicit", "e1@remote"):
        srv.wait_log(r"to=<%s\.test> .*status=deferred" % addr)
    srv.wait_log(r"to=<perm1@remote\.test> .*status=bounced")
    srv.wait_messages("demo@example.test", 1)
    everything = sorted([m1, m2, m3, m4, m5, m6])
    assert listed_ids(srv) == everything

    def older_than():
        """A threshold between the old message's age and the new ones'."""
        now = time.time()
        t = math.ceil(now - t_new) + 1
        assert now - t_old > t + 1, "the test ran too slowly for --older-than"
        return ["--older-than", "%ds" % t]

    selectors = [
        (lambda: ["--sender", "*@example.org"], [m1, m4]),
        (lambda: ["--sender", "BOB@example.net"], [m2]),
        (lambda: ["--rcpt", "c1@implicit.test"], [m3]),
        (lambda: ["--rcpt", "perm1@remote.test"], []),  # bounced: no longer open
        (lambda: ["--domain", "implicit.test"], [m2, m3]),
        (lambda: ["--domain", "*.test", "--sender", "*@example.com"], [m5, m6]),
        (older_than, [m4]),
        (lambda: ["--status", "deferred"], [m1, m2, m3, m4, m5]),
        (lambda: ["--status", "active"], [m6]),
        (lambda: ["--error-class", "5xx"], [m3]),
        (lambda: ["--error-class", "4xx"], [m1, m2, m3, m4, m5]),
    ]
    for sel, want in selectors:
        want = sorted(want)
        args = sel()
        assert listed_ids(srv, *args) == want, args
        if not want:
            continue
        held = queue_json(srv, "hold", *sel())
        assert sorted(held["ids"]) == want and held["done"] == len(want), (args, held)
        assert listed_ids(srv, "--status", "hold") == want, args
        assert all(m["held"] for m in queue_json(srv, "list", "--status", "hold"))
        # once held, a status selector no longer names them: hold is
        # released with --status hold, the other selectors with themselves
        by_status = "--status" in args
        again = queue_json(srv, "hold", *(["--status", "hold"] if by_status else sel()))
        assert again["done"] == 0 and again["unchanged"] == len(want)
        released = queue_json(srv, "release", *(["--status", "hold"] if by_status else sel()))
        assert sorted(released["ids"]) == want and released["done"] == len(want), args
        assert listed_ids(srv, "--status", "hold") == []
    assert listed_ids(srv) == everything

    # by queue id, and ALL
    r = queue_json(srv, "hold", m1, m2)
    assert sorted(r["ids"]) == sorted([m1, m2]) and r["done"] == 2
    r = queue_json(srv, "hold", "ALL")
    assert r["done"] == 4 and r["unchanged"] == 2
    r = queue_json(srv, "release", "ALL")
    assert r["done"] == 6
    # a message that is not there
    p = queue(srv, "hold", "0000000000000ABC", check=False)
    assert p.returncode == 1 and "1 not in the queue" in p.stdout
    # changing commands need a selection
    p = queue(srv, "delete", check=False)
    assert p.returncode == 2 and "name the messages" in p.stderr

    # flush with a selector: only remote.test is retried, and now it takes the mail
    accept["on"] = True
    n_remote = len(mx1.transactions)
    r = queue_json(srv, "flush", "--domain", "remote.test")
    assert sorted(r["ids"]) == sorted([m1, m4, m5])
    got = mx1.wait(n_remote + 3, timeout=15)
    assert sorted(rc for _, rcs, _ in got[n_remote:] for rc in rcs) == \
        ["a1@remote.test", "d1@remote.test", "e1@remote.test"]
    wait_until(lambda: listed_ids(srv) == sorted([m2, m3, m6]), what="flushed mail gone")
    time.sleep(0.5)
    assert len(mx4.transactions) == 0  # implicit.test was not flushed

    # delete with a selector: no report
    accept["on"] = False
    r = queue_json(srv, "delete", "--rcpt", "b1@implicit.test")
    assert r["ids"] == [m2] and r["done"] == 1
    srv.wait_log(r"qid=%s event=deleted by=operator" % m2)
    # bounce with a selector: a report for c1, as at expiry
    r = queue_json(srv, "bounce", "--error-class", "5xx")
    assert r["ids"] == [m3]
    srv.wait_log(r"qid=%s to=<c1@implicit\.test> relay=none .*status=bounced "
                 r"\(returned to the sender by the operator\)" % m3)
    msgs = srv.wait_messages("demo@example.test", 2)
    report = msgs[-1][1].decode("utf-8", "replace")
    assert "c1@implicit.test" in report and "Action: failed" in report
    assert "returned to the sender by the mail system administrator" in report
    assert "last attempt:" in report and "try again later" in report
    assert listed_ids(srv) == [m6]
    # the active message goes by id
    r = queue_json(srv, "delete", m6)
    assert r["done"] == 1
    wait_until(lambda: listed_ids(srv) == [], what="empty queue")
    assert len(mx4.transactions) == 0


def test_hold_survives_kill_and_restart(tern, world):
    mx1 = world.peer("127.0.0.2")
    accept = {"on": False}
    mx1.rcpt_reply = lambda addr: None if accept["on"] else LATER
    srv = tern(overrides(world))
    held = submit(srv, "alice@example.org", ["a@remote.test"])
    other = submit(srv, "alice@example.org", ["b@remote.test"])
    srv.wait_log(r"to=<a@remote\.test> .*status=deferred")
    srv.wait_log(r"to=<b@remote\.test> .*status=deferred")
    r = queue_json(srv, "hold", held)
    assert r["done"] == 1
    # answered after the HOLD record was durable: a kill -9 now loses nothing
    srv.kill9()
    srv.start()
    assert listed_ids(srv, "--status", "hold") == [held]
    assert srv.recovered_count() == 2
    # held mail is not delivered, even when flushed
    accept["on"] = True
    r = queue_json(srv, "flush", "ALL")
    assert r["done"] == 1 and r["unchanged"] == 1
    got = mx1.wait(1, timeout=15)
    assert got[0][1] == ["b@remote.test"]
    # and after a clean restart too
    srv.restart()
    assert listed_ids(srv, "--status", "hold") == [held]
    time.sleep(1)
    assert len(mx1.transactions) == 1
    r = queue_json(srv, "release", held)
    assert r["done"] == 1
    queue(srv, "flush", held)
    got = mx1.wait(2, timeout=15)
    assert got[1][1] == ["a@remote.test"]
    wait_until(lambda: listed_ids(srv) == [], what="empty queue")
    srv.restart()
    assert listed_ids(srv) == []


def test_pause_and_resume(tern, world):
    mx1 = world.peer("127.0.0.2")
    srv = tern(overrides(world))
    out = queue(srv, "pause", "Remote.TEST").stdout
    assert out == "Remote.TEST: paused\n"
    assert queue(srv, "paused").stdout == "remote.test\n"
    qid = submit(srv, "alice@example.org", ["a@remote.test"])
    time.sleep(1.5)
    assert mx1.transactions == []
    m = queue_json(srv, "list")
    assert [x["id"] for x in m] == [qid] and m[0]["status"] == "active"
    assert m[0]["rcpts"][0]["state"] == "pending"
    # a flush does not override a pause
    queue(srv, "flush")
    time.sleep(1)
    assert mx1.transactions == []
    assert "already" in queue(srv, "pause", "remote.test").stdout
    queue(srv, "resume", "remote.test")
    mx1.wait(1, timeout=10)
    assert queue(srv, "paused").stdout == "no domain is paused\n"
    # a local domain: Maildir deliveries wait too
    queue(srv, "pause", "example.test")
    token = new_token("paused")
    c = SMTPClient(srv.mx_port)
    c.ehlo()
    expect(c.send_message("someone@example.org", ["demo@example.test"], make_message(token)), 250)
    c.quit()
    time.sleep(1.5)
    assert srv.find_token(token) == []
    queue(srv, "resume", "example.test")
    srv.wait_token(token)
    # pauses are not kept across a restart
    queue(srv, "pause", "remote.test")
    srv.restart()
    assert queue(srv, "paused").stdout == "no domain is paused\n"
    p = queue(srv, "pause", "not a domain", check=False)
    assert p.returncode == 1 and "domain name" in p.stderr


def test_peer_credentials_and_permissions(tern, world):
    """With control_socket_mode = 0666, any local user may list, flush and
    send, but only root, Tern's user and the control group change the queue;
    local mail names the user who sent it."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run commands as another user")
    shared = tempfile.mkdtemp(prefix="tern-ctl-")
    try:
        os.chmod(shared, 0o755)
        sock = os.path.join(shared, "control")
        mx1 = world.peer("127.0.0.2")
        mx1.rcpt_reply = lambda addr: LATER
        srv = tern(overrides(world, control_socket=sock, control_socket_mode="0666"))
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o666
        conf = os.path.join(shared, "tern.conf")
        shutil.copy(srv.conf, conf)
        os.chmod(conf, 0o644)
        qid = submit(srv, "alice@example.org", ["a@remote.test"])
        srv.wait_log(r"to=<a@remote\.test> .*status=deferred")
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

        def as_nobody(*args, input=b""):
            return run(nobody + [str(tern_bin())] + list(args), input=input,
                       env={"TERN_CONFIG": conf})

        p = as_nobody("queue", "-c", conf, "list", "--json")
        assert p.returncode == 0, p.stderr
        assert [m["id"] for m in json.loads(p.stdout)] == [qid]
        for cmd in (["hold", "ALL"], ["delete", qid], ["bounce", qid], ["release", "ALL"],
                    ["show", qid], ["pause", "remote.test"]):
            p = as_nobody("queue", "-c", conf, *cmd)
            assert p.returncode == 1 and "permission denied" in p.stderr, (cmd, p.stderr)
        srv.wait_log(r"event=control_denied cmd=queue\.hold uid=65534 login=nobody")
        assert as_nobody("queue", "-c", conf, "flush").returncode == 0
        # mail from nobody: Received names the user, the sender is nobody@hostname
        token = new_token("nobody")
        p = as_nobody("sendmail", "demo@example.test", input=make_message(token))
        assert p.returncode == 0, p.stderr
        (_, data), = srv.wait_token(token)
        assert b"(Tern, from local user uid=65534 login=nobody)" in data
        assert data.startswith(b"Return-Path: <nobody@mail.example.test>")
        srv.wait_log(r"event=queued from=<nobody@mail\.example\.test> .* listener=local "
                     r"uid=65534 login=nobody")
        # root may
        assert queue(srv, "hold", "ALL").returncode == 0
    finally:
        shutil.rmtree(shared, ignore_errors=True)
