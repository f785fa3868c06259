"""Checkpoint files: atomic writes, keep-last-k, latest discovery, best copy, RNG round trip (training/checkpoint.py)."""
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from training import checkpoint as ck


def _state(v: float) -> dict:
    return {"model": {"w": torch.full((2,), v)}, "epoch": int(v)}


def test_keep_last_k_and_latest(tmp_path):
    mgr = ck.CheckpointManager(tmp_path, keep=2)
    assert mgr.latest() is None and ck.find_latest(tmp_path) is None
    paths = [mgr.save(_state(e), epoch=e, iteration=10 * e) for e in range(1, 5)]
    assert [p.name for p in mgr.list()] == [paths[2].name, paths[3].name]
    assert mgr.latest() == paths[3]
    assert ck.load_checkpoint(ck.find_latest(tmp_path))["epoch"] == 4
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))  # no temporary left behind


def test_latest_falls_back_to_newest_when_pointer_is_stale(tmp_path):
    mgr = ck.CheckpointManager(tmp_path, keep=5)
    mgr.save(_state(1), epoch=1, iteration=5)
    p2 = mgr.save(_state(2), epoch=2, iteration=10)
    (tmp_path / "checkpoints" / "latest").write_text("ckpt_e0009_i00000099.pth\n")  # names a deleted file
    assert mgr.latest() == p2


def test_ordering_by_iteration_not_string(tmp_path):
    mgr = ck.CheckpointManager(tmp_path, keep=10)
    mgr.save(_state(1), epoch=1, iteration=900)
    mgr.save(_state(1), epoch=1, iteration=1000)  # mid-epoch checkpoint after the epoch-1 file
    assert mgr.list()[-1].name == "ckpt_e0001_i00001000.pth"


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = ck.save_atomic(_state(1), tmp_path / "a.pth")

    def boom(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(ck.CheckpointError, match="cannot write .*a.pth: disk full"):
        ck.save_atomic(_state(2), path)
    monkeypatch.undo()
    assert ck.load_checkpoint(path)["epoch"] == 1
    assert list(tmp_path.iterdir()) == [path]


def test_best_copy(tmp_path):
    mgr = ck.CheckpointManager(tmp_path, keep=1)
    p1 = mgr.save(_state(1), epoch=1, iteration=1)
    best = mgr.save_best(p1)
    mgr.save(_state(2), epoch=2, iteration=2)  # prunes p1, best stays
    assert not p1.exists() and ck.load_checkpoint(best)["epoch"] == 1
    assert [p.name for p in mgr.list()] == ["ckpt_e0002_i00000002.pth"]


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ck.CheckpointError, match="not found"):
        ck.load_checkpoint(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ck.CheckpointError, match="bad.pth"):
        ck.load_checkpoint(bad)
    torch.save({"epoch": 1}, tmp_path / "nomodel.pth")
    with pytest.raises(ck.CheckpointError, match="model"):
        ck.load_checkpoint(tmp_path / "nomodel.pth")


def test_rng_round_trip_through_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in the numpy state
    ck.save_atomic({"model": {}, "rng": ck.capture_rng_state()}, tmp_path / "r.pth")
    expected = (random.random(), np.random.randn(3), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    ck.restore_rng_state(ck.load_checkpoint(tmp_path / "r.pth")["rng"])
    got = (random.random(), np.random.randn(3), torch.rand(3))
    assert got[0] == expected[0]
    np.testing.assert_array_equal(got[1], expected[1])
    assert torch.equal(got[2], expected[2])


def _full_disk(monkeypatch, tmp_path):
    """Makes the next temporary file a handle on /dev/full: every write fails with ENOSPC, as on a full disk."""
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full is Linux-only")

    def mkstemp(prefix="", suffix="", dir=None):
        return os.open("/dev/full", os.O_WRONLY), str(Path(dir) / f"{prefix}full{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)  # the one training.fs writes every checkpoint through


def test_full_disk_says_no_space_left_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    mgr = ck.CheckpointManager(tmp_path, keep=1)
    first = mgr.save(_state(1), epoch=1, iteration=1)
    _full_disk(monkeypatch, tmp_path)
    with pytest.raises(ck.CheckpointError) as info:
        mgr.save(_state(2), epoch=2, iteration=2)
    message = str(info.value)
    assert "ckpt_e0002_i00000002.pth" in message and "no space left on device" in message
    assert "ckpt_e0001_i00000001.pth is kept" in message and "inline_container" not in message
    monkeypatch.undo()
    assert mgr.latest() == first and ck.load_checkpoint(first)["epoch"] == 1


def test_unwritable_checkpoint_folder_is_one_line_naming_it(tmp_path):
    (tmp_path / "checkpoints").write_text("a file where the folder should be")
    with pytest.raises(ck.CheckpointError, match="checkpoints.*not a folder|checkpoints.*exists"):
        ck.CheckpointManager(tmp_path).save(_state(1), epoch=1, iteration=1)


def test_resume_falls_back_to_the_newest_readable_checkpoint(tmp_path):
    mgr = ck.CheckpointManager(tmp_path, keep=3)
    paths = [mgr.save(_state(e), epoch=e, iteration=e) for e in (1, 2, 3)]
    paths[2].write_bytes(paths[2].read_bytes()[:100])  # the newest is damaged
    torch.save({"epoch": 2}, paths[1])  # the next lacks a required entry
    path, state, skipped = mgr.load_newest_readable(required=("model", "epoch"))
    assert path == paths[0] and state["epoch"] == 1
    assert [p for p, _ in skipped] == [paths[2], paths[1]] and "lacks entries ['model']" in skipped[1][1]
    paths[0].write_bytes(b"")
    with pytest.raises(ck.CheckpointError,
                       match="no readable checkpoint in .*: cannot read checkpoint .*ckpt_e0003_i00000003.pth"):
        mgr.load_newest_readable()
    assert ck.CheckpointManager(tmp_path / "empty").load_newest_readable() == (None, None, [])


def test_orphaned_temporary_files_are_removed(tmp_path):
    mgr = ck.CheckpointManager(tmp_path)
    kept = mgr.save(_state(1), epoch=1, iteration=1)
    orphans = [mgr.dir / name for name in (".ckpt_e0002_i00000002.pth.abc123.tmp", ".latest.x1.tmp", ".best.pth.q.tmp")]
    for p in orphans:
        p.write_bytes(b"half a checkpoint")
    (mgr.dir / "notes.tmp").write_text("not ours")
    assert sorted(mgr.remove_orphans()) == sorted(orphans)
    assert sorted(p.name for p in mgr.dir.iterdir()) == sorted([kept.name, "latest", "notes.tmp"])
