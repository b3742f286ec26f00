"""`tern user add|passwd|del|list`: the user store edited from outside.

Checks what lands in the file (comments and other lines byte for byte, the
file's mode, a new store's 0600), that a written hash verifies with the
system's crypt(3) (through Python's `crypt` module when it exists) and that a
written SCRAM-SHA-256 verifier is the one RFC 5802 derives from the password,
that `users_file` is taken from the configuration, and the refusals (existing
or missing login, bad login, a store with errors, bad usage).
"""

import base64
import hashlib
import hmac
import os
import stat
import subprocess
import warnings

import pytest

from conftest import EXAMPLE_CONF, REPO, tern_bin

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import crypt  # deprecated in 3.11, gone in 3.13
    except ImportError:
        crypt = None


def user(*args, password=None, cwd=None):
    return subprocess.run([str(tern_bin()), "user", *map(str, args)], capture_output=True,
                          input=None if password is None else (password + "\n").encode(),
                          timeout=60, cwd=cwd)


def entries(path):
    """login -> (hash, {option: value}) for each entry line."""
    out = {}
    for line in path.read_text().splitlines():
        if not line or line[0] in "# \t":
            continue
        login, hash_, *rest = line.split(":", 2)
        opts = {}
        if rest and rest[0]:
            for o in rest[0].split(";"):
                k, v = o.split("=", 1)
                opts[k.strip()] = v.strip()
        out[login] = (hash_, opts)
    return out


def verifies(hash_, password):
    """Does hash_ verify password? Python's crypt when present, else `tern`'s
    own unit-tested path is all there is, so the check is skipped."""
    if crypt is None:
        pytest.skip("no crypt module under this python")
    return crypt.crypt(password, hash_) == hash_


def scram_matches(verifier, password):
    iters, salt, stored, server = verifier.split(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iters))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    return (int(iters) >= 4096 and len(base64.b64decode(salt)) == 16
            and base64.b64decode(stored) == hashlib.sha256(client_key).digest()
            and base64.b64decode(server) == server_key)


HEAD = "# our users\n#  keep this comment\n\n"
OTHER = "zed@example.test:$6$shortsalt$6x1XvBTH1CZHBxwOjDv5IzAuCXVa6w2yU1cfYAlcIYiY5s.GdhEFpx3vogqhsaxdWpqFAR3nnFMP9/gspqJa71:networks=10.0.0.0/8\n"


def test_add_passwd_del_list(tmp_path):
    f = tmp_path / "users"
    f.write_text(HEAD + OTHER + "# trailing comment\n")
    os.chmod(f, 0o640)

    r = user("add", "-f", f, "--password-stdin", "Alice@Example.TEST", password="pw one")
    assert r.returncode == 0, r
    text = f.read_text()
    assert text.startswith(HEAD + OTHER + "# trailing comment\n"), text
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    e = entries(f)
    h, opts = e["alice@example.test"]
    assert h.startswith("$y$") and opts == {}
    assert verifies(h, "pw one") and not verifies(h, "pw two")
    assert not (tmp_path / ("." + f.name)).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users", "users.lock"]

    # already there, in any case
    r = user("add", "-f", f, "--password-stdin", "ALICE@example.test", password="x")
    assert r.returncode == 1 and b"already" in r.stderr, r
    assert f.read_text() == text

    # add with SCRAM and CRAM-MD5
    r = user("add", "-f", f, "--password-stdin", "--scram", "--cram", "bob@example.test",
             password="bob secret")
    assert r.returncode == 0, r
    assert b"plaintext" in r.stderr
    h, opts = entries(f)["bob@example.test"]
    assert verifies(h, "bob secret")
    assert scram_matches(opts["scram-sha-256"], "bob secret")
    assert opts["cram-md5"] == "bob secret"

    # list: logins and mechanisms, never hashes or secrets
    r = user("list", "-f", f)
    assert r.returncode == 0, r
    out = r.stdout.decode()
    assert out.splitlines() == [
        "alice@example.test\tPLAIN LOGIN\tnetworks=any",
        "bob@example.test\tPLAIN LOGIN CRAM-MD5 SCRAM-SHA-256\tnetworks=any",
        "zed@example.test\tPLAIN LOGIN\tnetworks=10.0.0.0/8",
    ], out
    assert "$" not in out and "secret" not in out

    # passwd keeps networks= and recomputes scram/cram
    r = user("passwd", "-f", f, "--password-stdin", "zed@example.test", password="zed new")
    assert r.returncode == 0, r
    h, opts = entries(f)["zed@example.test"]
    assert h.startswith("$y$") and verifies(h, "zed new")
    assert opts == {"networks": "10.0.0.0/8"}
    r = user("passwd", "-f", f, "--password-stdin", "bob@example.test", password="bob 2")
    assert r.returncode == 0, r
    h, opts = entries(f)["bob@example.test"]
    assert verifies(h, "bob 2") and not verifies(h, "bob secret")
    assert scram_matches(opts["scram-sha-256"], "bob 2")
    assert opts["cram-md5"] == "bob 2"
    text = f.read_text()
    assert text.startswith(HEAD) and "# trailing comment\n" in text

    # del leaves everything else as it was
    before = f.read_text().splitlines(keepends=True)
    r = user("del", "-f", f, "alice@example.test")
    assert r.returncode == 0, r
    after = f.read_text().splitlines(keepends=True)
    assert after == [l for l in before if not l.startswith("alice@")]
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    r = user("del", "-f", f, "alice@example.test")
    assert r.returncode == 1 and b"not in" in r.stderr, r
    r = user("passwd", "-f", f, "--password-stdin", "nobody@example.test", password="x")
    assert r.returncode == 1, r


def test_new_store_and_continuation_lines(tmp_path):
    f = tmp_path / "sub" / "users"
    f.parent.mkdir()
    r = user("add", "-f", f, "--password-stdin", "carol@example.test", password="c")
    assert r.returncode == 0, r
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert list(entries(f)) == ["carol@example.test"]

    # an entry continued over lines, with a comment inside, is replaced whole
    h = entries(f)["carol@example.test"][0]
    f.write_text("# top\ncarol@example.test:%s:cram-md5=c;\n  # inside\n"
                 "   networks=::1/128\ndan@example.test:%s\n" % (h, h))
    r = user("passwd", "-f", f, "--password-stdin", "carol@example.test", password="c2")
    assert r.returncode == 0, r
    lines = f.read_text().splitlines()
    assert lines[0] == "# top" and lines[2] == "  # inside"
    assert lines[3].startswith("dan@example.test:")
    h2, opts = entries(f)["carol@example.test"]
    assert verifies(h2, "c2")
    assert opts == {"cram-md5": "c2", "networks": "::1/128"}
    r = user("del", "-f", f, "carol@example.test")
    assert r.returncode == 0, r
    assert f.read_text() == "# top\n  # inside\n" + lines[3] + "\n"


def test_refusals(tmp_path):
    f = tmp_path / "users"
    good = "ok@example.test:$y$j9T$22eWDy.tdJiWOOLk.tdO11$7Fnr1kzbfj4tUp6Z4IXlAMA8pJ447iq4VCokYrFrgL/\n"
    f.write_text(good + "bad@example.test:$1$abc$iCQ2D3nhptRYi27fDYv2s1\n")
    r = user("add", "-f", f, "--password-stdin", "new@example.test", password="x")
    assert r.returncode == 1, r
    assert ("%s:2:" % f).encode() in r.stderr, r.stderr
    r = user("list", "-f", f)
    assert r.returncode == 1 and ("%s:2:" % f).encode() in r.stderr, r
    f.write_text(good)

    for login in ("nodomain", "a b@example.test", "@example.test", ""):
        r = user("add", "-f", f, "--password-stdin", login, password="x")
        assert r.returncode == 1, (login, r)
    r = user("add", "-f", f, "--password-stdin", "e@example.test", password="")
    assert r.returncode == 1 and b"empty" in r.stderr, r
    r = user("add", "-f", f, "--password-stdin", "--cram", "e@example.test", password="a;b")
    assert r.returncode == 1 and b"CRAM-MD5" in r.stderr, r
    r = subprocess.run([str(tern_bin()), "user", "add", "-f", str(f), "--password-stdin",
                        "e@example.test"], capture_output=True, stdin=subprocess.DEVNULL,
                       timeout=60)
    assert r.returncode == 1, r
    # no terminal and no --password-stdin
    r = subprocess.run([str(tern_bin()), "user", "add", "-f", str(f), "e@example.test"],
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=60,
                       start_new_session=True)
    assert r.returncode == 1 and b"--password-stdin" in r.stderr, r
    assert f.read_text() == good

    for args in (["frob"], ["add"], ["list", "x@example.test"], ["del", "--scram", "ok@example.test"],
                 ["add", "--bogus", "x@example.test"], ["add", "-f"], []):
        r = user(*args)
        assert r.returncode == 2, (args, r)
    r = user("del", "-f", tmp_path / "missing", "x@example.test")
    assert r.returncode == 1, r


def test_users_file_from_config(tmp_path):
    store = tmp_path / "store"
    conf = tmp_path / "tern.conf"
    conf.write_text(EXAMPLE_CONF.read_text() + "\nusers_file = %s\n" % store)
    r = user("add", "-c", conf, "--password-stdin", "demo2@example.test", password="pw")
    assert r.returncode == 0, r
    assert list(entries(store)) == ["demo2@example.test"]
    r = user("list", "-c", conf)
    assert r.returncode == 0 and r.stdout.startswith(b"demo2@example.test\t"), r
    # a configuration without users_file needs -f
    conf.write_text(EXAMPLE_CONF.read_text().replace("users_file", "# users_file"))
    r = user("list", "-c", conf)
    assert r.returncode == 1 and b"-f" in r.stderr, r


def test_example_users():
    f = REPO / "examples" / "users"
    h, opts = entries(f)["demo@example.test"]
    assert h.startswith("$y$") and verifies(h, "tern-demo")
    assert opts == {"networks": "127.0.0.0/8,::1/128"}
    r = user("list", "-f", f)
    assert r.returncode == 0, r
    assert r.stdout == b"demo@example.test\tPLAIN LOGIN\tnetworks=127.0.0.0/8,::1/128\n"
