"""A real Postfix as the remote MX: Tern relays a message to it, found by MX
in DNS, and Postfix delivers it to a Maildir of its own.

Postfix runs as a private instance (`postfix -c DIR`) with its queue, data,
logs and Maildirs in a temporary directory, listening on 127.0.0.1 only (Postfix binds only addresses of its interfaces); the
system Postfix is neither used nor touched. Needs root (as CI runs).
"""

import os
import shutil
import subprocess
import tempfile
import time

import pytest

from dns_server import DNSTestServer
from tern_helpers import SMTPClient, expect, free_ports, make_message, new_token

MAIL_UID = 5000
PEER = "127.0.0.1"


def wait_port(host, port, timeout):
    import socket
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


@pytest.fixture
def postfix():
    if os.geteuid() != 0 or shutil.which("postfix") is None:
        pytest.skip("needs root and Debian's postfix")
    port = free_ports(1)[0]
    work = tempfile.mkdtemp(prefix="tern-postfix-")
    os.chmod(work, 0o755)
    etc, queue, data, mail, log = (os.path.join(work, d)
                                   for d in ("etc", "queue", "data", "mail", "log"))
    for d in (etc, queue, data, mail, log):
        os.makedirs(d)
    shutil.chown(data, "postfix")
    os.chown(mail, MAIL_UID, MAIL_UID)
    with open(os.path.join(etc, "main.cf"), "w") as f:
        f.write(f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-tern-test
maillog_file = {log}/postfix.log
maillog_file_prefixes = {log}
myhostname = mx.pfx.test
mydestination =
inet_interfaces = {PEER}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = pfx.test
virtual_mailbox_base = {mail}
virtual_mailbox_maps = texthash:{etc}/vmailbox
virtual_uid_maps = static:{MAIL_UID}
virtual_gid_maps = static:{MAIL_UID}
smtpd_tls_security_level = none
""")
    with open(os.path.join(etc, "vmailbox"), "w") as f:
        f.write("bob@pfx.test pfx.test/bob/\n")
    services = [
        f"{PEER}:{port} inet n - n - - smtpd",
        "pickup unix n - n 60 1 pickup", "cleanup unix n - n - 0 cleanup",
        "qmgr unix n - n 300 1 qmgr", "rewrite unix - - n - - trivial-rewrite",
        "bounce unix - - n - 0 bounce", "defer unix - - n - 0 bounce",
        "trace unix - - n - 0 bounce", "verify unix - - n - 1 verify",
        "flush unix n - n 1000? 0 flush", "proxymap unix - - n - - proxymap",
        "smtp unix - - n - - smtp", "relay unix - - n - - smtp",
        "showq unix n - n - - showq", "error unix - - n - - error",
        "retry unix - - n - - error", "discard unix - - n - - discard",
        "local unix - n n - - local", "virtual unix - n n - - virtual",
        "anvil unix - - n - 1 anvil", "scache unix - - n - 1 scache",
        "postlog unix-dgram n - n - 1 postlogd",
    ]
    with open(os.path.join(etc, "master.cf"), "w") as f:
        f.write("\n".join(services) + "\n")

    def pf(*args):
        return subprocess.run(["postfix", "-c", etc, *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=60)

    r = pf("check")
    assert r.returncode == 0, r.stdout + r.stderr
    r = pf("start")
    assert r.returncode == 0 and wait_port(PEER, port, 30), r.stdout + r.stderr

    class P:
        pass

    p = P()
    p.port, p.maildir, p.log = port, os.path.join(mail, "pfx.test", "bob", "new"), log
    yield p
    pf("stop")
    time.sleep(0.5)
    pf("abort")
    shutil.rmtree(work, ignore_errors=True)


def test_relay_to_a_real_postfix(tern, postfix):
    dns = DNSTestServer({"pfx.test": [("MX", (10, "mx.pfx.test"))],
                         "mx.pfx.test": [("A", PEER)]}).start()
    try:
        srv = tern({"dns_forwarders": dns.forwarder, "outbound_port": str(postfix.port),
                    "trusted_networks": "127.0.0.1/32"})
        token = new_token("postfix")
        msg = make_message(token, rcpt="bob@pfx.test", body=b"To a real Postfix.\r\n")
        c = SMTPClient(srv.mx_port)
        c.ehlo()
        expect(c.send_message("alice@example.org", ["bob@pfx.test"], msg), 250)
        c.quit()
        srv.wait_log(r"to=<bob@pfx\.test> relay=mx\.pfx\.test\[127\.0\.0\.1\]:\d+ delay=\d+ "
                     r"dsn=2\.0\.0 status=sent \(host mx\.pfx\.test\[127\.0\.0\.1\] said: 250 "
                     r"2\.0\.0 Ok: \d+ bytes queued as \w+ \(in reply to BDAT LAST\)\)",
                     timeout=20)  # Postfix offers CHUNKING, so the content went as BDAT
        end = time.monotonic() + 30
        files = []
        while time.monotonic() < end:
            files = os.listdir(postfix.maildir) if os.path.isdir(postfix.maildir) else []
            if files:
                break
            time.sleep(0.2)
        assert files, "Postfix did not deliver the relayed message"
        data = open(os.path.join(postfix.maildir, files[0]), "rb").read()
        assert ("X-Tern-Test: %s" % token).encode() in data
        assert b"by mail.example.test (Tern)" in data  # our Received: header travelled
        assert data.endswith(b"To a real Postfix.\n")
    finally:
        dns.stop()
