"""What a stop leaves in a Maildir's tmp/: a delivery killed between creating
its file in tmp/ and the rename into new/ leaves the file behind. At start
Tern removes its own leftovers (files it named on this host, older than the
start) and any file untouched for 36 hours (the Maildir rule for readers);
other programs' recent files stay."""
import os
import smtplib
import time

from tern_helpers import make_message, new_token

HOST = "mx.sweep.test"
DEMO = "demo@example.test"


def test_start_sweeps_tmp_leftovers(tern):
    srv = tern({"hostname": HOST}, start=False)
    tmp = srv.maildir(DEMO) / "tmp"
    tmp.mkdir(parents=True)
    for sub in ("new", "cur"):
        (srv.maildir(DEMO) / sub).mkdir()
    now = time.time()
    ours = tmp / ("%d.M123456P4242Q7.%s" % (now - 5, HOST))
    ours.write_bytes(b"Return-Path: <a@b>\r\npartial")
    os.utime(ours, (now - 5, now - 5))
    other_host = tmp / ("%d.M1P99Q1.another.host" % now)
    other_host.write_bytes(b"being written by another program")
    dovecot = tmp / ("%d.M2P77.%s" % (now, HOST))  # not Tern's pattern (no Q)
    dovecot.write_bytes(b"recent, not ours")
    dead = tmp / "1000000000.M9P9.elsewhere"
    dead.write_bytes(b"abandoned")
    os.utime(dead, (now - 37 * 3600, now - 37 * 3600))
    # root of the tree holds other things too: they are not touched
    (srv.maildir_root / "stray-file").write_bytes(b"x")

    srv.start()
    srv.wait_log(r"event=maildir_tmp_swept removed=2 ")
    assert not ours.exists() and not dead.exists()
    assert other_host.exists() and dovecot.exists()
    assert (srv.maildir_root / "stray-file").exists()

    # a delivery after the sweep is untouched and arrives whole
    tok = new_token("sweep")
    with smtplib.SMTP("127.0.0.1", srv.mx_port, timeout=10) as c:
        c.sendmail("a@example.org", [DEMO], make_message(tok, rcpt=DEMO))
    srv.wait_messages(DEMO, 1)
    assert sorted(p.name for p in tmp.iterdir()) == sorted([other_host.name, dovecot.name])


def test_start_with_nothing_to_sweep_is_quiet(tern):
    srv = tern({"hostname": HOST})
    srv.wait_log(r"event=started")
    srv.stop_clean()
    assert "maildir_tmp_swept" not in srv.log()
