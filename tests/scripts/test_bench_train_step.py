"""benchmarks/bench_train_step.py: its synthetic batch and its command-line checks (the timing itself is a
benchmark, run by hand; figures in BENCHMARKS.md)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from tests.fixtures.script_loader import load_script

REPO = Path(__file__).resolve().parents[2]


def _load_bench():
    return load_script("benchmarks/bench_train_step.py")


bench = _load_bench()


def test_synthetic_batch_boxes_are_valid_and_deterministic():
    images, targets = bench.synthetic_batch(3, 128, 8, torch.device("cpu"))
    again, targets2 = bench.synthetic_batch(3, 128, 8, torch.device("cpu"))
    assert images.shape == (3, 3, 128, 128) and torch.equal(images, again)
    for t, t2 in zip(targets, targets2):
        boxes = t["boxes"]
        assert boxes.shape == (8, 4) and torch.equal(boxes, t2["boxes"])
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 128).all()
        wh = boxes[:, 2:] - boxes[:, :2]
        assert (wh >= 0.05 * 128 - 1e-4).all() and (wh <= 0.45 * 128 + 1e-4).all()
        assert t["labels"].dtype == torch.int64 and ((t["labels"] >= 0) & (t["labels"] < bench.NUM_CLASSES)).all()


def test_cli_rejects_bad_size_and_unavailable_device(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--size", "500"])
    assert exc.value.code == 2 and "--size must be a multiple of 128" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--device", "nonsense"])
    assert "--device 'nonsense'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            bench.main(["--device", "cuda"])
        assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_run_times_all_three_losses_and_ends_with_the_ratio(capsys, one_thread):
    # one thread (the fixture restores the count the script changes): a tiny R-50 step is ~1 s per loss
    assert bench.main(["--size", "128", "--batch", "1", "--iters", "1", "--warmup", "0", "--threads", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = {line.split()[0]: line.split() for line in lines[2:5]}
    assert set(rows) == {"aLRP", "AP", "focal"} and rows["focal"][3] == "1.00x"
    assert len({row[4] for row in rows.values()}) == 1, "same batch and assigner: same number of positives"
    assert re.fullmatch(r"alrp/focal train-step ratio: \d+\.\d\d", lines[-1]), lines[-1]
    printed = float(lines[-1].rsplit(" ", 1)[1])
    assert printed == pytest.approx(float(rows["aLRP"][1]) / float(rows["focal"][1]), abs=0.01)
    assert lines[-2].startswith("ap/focal train-step ratio: ")
