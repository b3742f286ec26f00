"""Load and durability: 200 concurrent clients; kill -9 during a 50-client
load, and every message that got 250 is delivered (DESIGN contract 1)."""

import random
import smtplib
import threading
import time

from tern_helpers import Delivered, SMTPClient, dot_stuff, header_token_of, make_message, new_token

DEMO = "demo@example.test"
POSTMASTER = "postmaster@example.test"


def test_200_concurrent_clients(tern):
    s = tern({"max_connections_per_client": "250", "max_connections": "1000"})
    n = 200
    barrier = threading.Barrier(n)
    results = [None] * n
    msgs = {}

    def client(i):
        tok = new_token("c%d" % i)
        msg = make_message(tok, b"client %d\r\n" % i)
        msgs[tok] = msg
        try:
            barrier.wait(timeout=30)
            with smtplib.SMTP("127.0.0.1", s.mx_port, local_hostname="c%d.example.org" % i,
                              timeout=30) as c:
                c.sendmail("client%d@example.org" % i, [DEMO], msg)
                results[i] = ("ok", tok)
        except Exception as e:  # noqa - reported below
            results[i] = ("error", "%s: %s" % (type(e).__name__, e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    errors = [r for r in results if r is None or r[0] != "ok"]
    assert not errors, "%d of %d clients failed: %r" % (len(errors), n, errors[:10])
    files = s.wait_messages(DEMO, n, timeout=30)
    time.sleep(0.5)
    files = s.messages(DEMO)
    assert len(files) == n, "%d files for %d messages" % (len(files), n)
    seen = set()
    for p, data in files:
        d = Delivered(data)
        assert d.error is None, d.error
        tok = header_token_of(d.rest)
        assert tok in msgs and d.rest == msgs[tok], "unexpected content in %s" % p
        seen.add(tok)
    assert seen == set(msgs)


# -- durability ---------------------------------------------------------------

def durable_message(tok, size):
    """A message whose last line names its token, so truncation is visible."""
    line = (b"%s " % tok.encode()) * 6 + b"\r\n"
    body = line * max(1, size // len(line)) + b"END %s\r\n" % tok.encode()
    return make_message(tok, body)


class Load:
    """n client threads sending continuously; each records the tokens that got
    250 (acked) and the tokens it tried (sent), with their recipients."""

    def __init__(self, port, n, seed):
        self.port = port
        self.n = n
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}  # token -> recipients
        self.sent = {}  # token -> message bytes
        self.errors = 0
        self.threads = [threading.Thread(target=self.client, args=(i, self.rng.random()))
                        for i in range(n)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)
        assert not any(t.is_alive() for t in self.threads), "client threads hang"

    def client(self, i, seed):
        rng = random.Random(seed)
        rcpts = [DEMO] if i % 2 == 0 else [DEMO, POSTMASTER]
        seq = 0
        while not self.stop.is_set():
            c = None
            try:
                c = SMTPClient(self.port, timeout=5)
                if c.greeting.code != 220:
                    raise OSError("greeting %r" % c.greeting)
                if c.cmd("EHLO load%d.example.org" % i).code != 250:
                    raise OSError("EHLO")
                for _ in range(rng.randint(1, 5)):
                    if self.stop.is_set():
                        break
                    seq += 1
                    tok = "d%02d-%05d-%s" % (i, seq, new_token("x")[2:10])
                    size = rng.choice((300, 2000, 8000, 60000))
                    msg = durable_message(tok, size)
                    with self.lock:
                        self.sent[tok] = msg
                    c.send(b"MAIL FROM:<load%d@example.org>\r\n" % i
                           + b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts) + b"DATA\r\n")
                    rs = c.replies(2 + len(rcpts))
                    if [r.code for r in rs] != [250] * (1 + len(rcpts)) + [354]:
                        raise OSError("envelope %r" % rs)
                    c.send(dot_stuff(msg))
                    r = c.reply()
                    if r.code != 250:
                        raise OSError("end of data %r" % r)
                    with self.lock:
                        self.acked[tok] = rcpts
            except (OSError, AssertionError):
                with self.lock:
                    self.errors += 1
                time.sleep(0.02)
            finally:
                if c is not None:
                    try:
                        c.sock.close()
                    except OSError:
                        pass


def test_durability_kill9(tern):
    seed = random.randrange(1 << 30)
    print("durability seed", seed)
    rng = random.Random(seed)
    s = tern({"max_connections_per_client": "200"})
    load = Load(s.mx_port, 50, seed)
    load.start()
    kills = 0
    try:
        for _ in range(4):
            time.sleep(rng.uniform(0.8, 2.0))
            before = len(load.acked)
            s.kill9()
            kills += 1
            print("kill %d at %d acked" % (kills, before))
            time.sleep(rng.uniform(0.0, 0.3))
            s.start()
        time.sleep(1.0)
    finally:
        load.finish()
    acked = dict(load.acked)
    sent = dict(load.sent)
    print("acked %d, tried %d, client errors %d" % (len(acked), len(sent), load.errors))
    assert kills >= 3
    assert len(acked) >= 100, "too little traffic got through (%d acked)" % len(acked)
    for run in range(len(s.logs)):
        s.recovered_count(run=run)  # every start logs its recovery

    def check():
        missing, problems = [], []
        for box in (DEMO, POSTMASTER):
            have = {}
            for p, data in s.messages(box):
                d = Delivered(data)
                tok = header_token_of(d.rest) if d.error is None else None
                if tok is None or tok not in sent:
                    problems.append("%s: not a message we sent (%s)" % (p, d.error or data[:200]))
                    continue
                if d.rest != sent[tok]:
                    problems.append("%s: content differs from what was sent (%d vs %d bytes)"
                                    % (p, len(d.rest), len(sent[tok])))
                have[tok] = have.get(tok, 0) + 1
            for tok, rcpts in acked.items():
                if box in rcpts and tok not in have:
                    missing.append((tok, box))
        return missing, problems

    end = time.monotonic() + 30
    while True:
        missing, problems = check()
        if not missing or time.monotonic() > end:
            break
        time.sleep(0.5)
    assert not problems, "bad delivered files:\n" + "\n".join(problems[:20])
    assert not missing, "%d acknowledged deliveries missing, e.g. %r" % (len(missing), missing[:10])
    # the spool now holds nothing: a clean restart recovers no live message
    time.sleep(0.5)
    s.stop_clean()
    s.start()
    n = s.recovered_count()
    assert n == 0, "spool still holds %d message(s) after everything was delivered" % n
