"""Checkpoint files: atomic writes, keep-last-k, latest discovery, best copy, RNG round trip (training/checkpoint.py)."""
import random

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
        open(f, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
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
