"""Crash consistency, reduced form: tests/crash/crash.py kills Tern with
SIGKILL 12 times under a 50-client load (mid-commit, mid-Maildir delivery,
mid-relay, right after a compaction, at random), restarting it on the same
spool each time, then checks that every acknowledged message reached every
recipient, that duplicates come only from kills, that no delivered file is
corrupt and that recovery logged no damage. The full form is
tests/crash/run.sh (60 kills); docs/testing.md."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))

from crash import Harness  # noqa: E402


def test_crash_consistency(tern, tmp_path):
    """Every other kill is also a power failure for the spool."""
    h = Harness(tmp_path, lambda overrides: tern(overrides, start=False), kills=12, clients=50)
    result = h.run()
    assert result["kills"] == 12
    assert result["acknowledged"] >= 500, "too little traffic got through: %r" % result
    landed = sum(m["landed"] for m in result["kills_by_mode"].values())
    assert landed >= 10, "kills did not land where they were aimed: %r" % result["kills_by_mode"]
    assert result["compaction_passes"] > 0 and result["kills_with_peer_in_data"] > 0, result
    assert not result["failures"], "\n".join(result["failures"])
    assert result["lost"] == 0


def test_harness_catches_a_lying_disk(tern, tmp_path):
    """The harness itself: with a disk whose fdatasync reports success without
    syncing, power failures lose acknowledged mail, and the harness says so."""
    h = Harness(tmp_path, lambda overrides: tern(overrides, start=False), kills=4, clients=20,
                power_loss="all", drain_timeout=10, faults=["fdatasync OK path=SPOOL count=-1"])
    result = h.run()
    assert result["lost"] > 0, result
    assert any("acknowledged deliveries lost" in f for f in result["failures"]), result
