"""The training step and the evaluation loop (training/loop.py, training/inference.py) on tiny fakes with the architecture's surface."""
import json
import math

import pytest
import torch
from torch.utils.data import DataLoader

from training.inference import detections_to_coco, evaluate
from training.loop import NonFiniteLossError, train_one_epoch
from training.logging import JsonlWriter, TensorBoardWriter
from training.optim import build_optimizer, build_scheduler
from tests.fixtures.train_fakes import FakeCriterion, FakeDataset, FakeDetector, collate

pytestmark = pytest.mark.usefixtures("one_thread")


def _setup(n=8, batch=2, lr=0.05, warmup=2):
    torch.manual_seed(0)
    model, criterion = FakeDetector(), FakeCriterion()
    loader = DataLoader(FakeDataset(n), batch_size=batch, collate_fn=collate)
    opt = build_optimizer(model, name="sgd", lr=lr)
    sched = build_scheduler(opt, schedule="step", iters_per_epoch=len(loader), total_iters=100, lr_steps=[1],
                            warmup_iters=warmup)
    return model, criterion, loader, opt, sched


def test_one_epoch_steps_logs_and_accumulates(tmp_path):
    model, criterion, loader, opt, sched = _setup()
    seen = []
    jsonl = JsonlWriter(tmp_path / "m.jsonl")
    tb = TensorBoardWriter(tmp_path / "tb")
    out = train_one_epoch(model, criterion, loader, opt, sched, torch.device("cpu"), epoch=0, start_iteration=10,
                          num_batches=len(loader), log_interval=2, jsonl=jsonl, tensorboard=tb,
                          on_iteration=lambda it, v: seen.append((it, v)), show_progress=False)
    tb.close()
    assert out["iteration"] == 14 and out["steps"] == 4 and not out["stopped_early"]
    assert [it for it, _ in seen] == [11, 12, 13, 14]
    # lr recorded is the one used by the step: warmup factor 1/3 then 2/3 then 1 (scheduler stepped per iteration)
    assert [v["lr"] for _, v in seen] == pytest.approx([0.05 / 3, 0.05 * 2 / 3, 0.05, 0.05])
    assert out["cls"] == pytest.approx(sum(v["cls"] for _, v in seen) / 4)
    assert all(v["sb_weight"] == 2.0 for _, v in seen)
    assert criterion.self_balance.sums[2] == 4  # accumulated once per step with positives
    lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines] == [12, 14]
    assert {"cls", "loc", "lr", "sb_weight", "grad_pos_sum", "grad_neg_sum", "it_per_s"} <= set(lines[0])
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_training_reduces_the_loss():
    model, criterion, loader, opt, sched = _setup(lr=0.2, warmup=0)
    first = train_one_epoch(model, criterion, loader, opt, sched, torch.device("cpu"), 0, show_progress=False)
    for epoch in range(1, 6):
        last = train_one_epoch(model, criterion, loader, opt, sched, torch.device("cpu"), epoch,
                               show_progress=False)
    assert last["total"] < 0.7 * first["total"]


def test_nan_raises_before_the_update_and_names_iteration_and_part():
    model, _, loader, opt, sched = _setup()
    criterion = FakeCriterion(nan_at_call=3)
    snapshots = []
    with pytest.raises(NonFiniteLossError, match=r"iteration 3: loc = nan") as err:
        train_one_epoch(model, criterion, loader, opt, sched, torch.device("cpu"), 0, show_progress=False,
                        on_iteration=lambda it, v: snapshots.append(
                            {k: p.detach().clone() for k, p in model.state_dict().items()}))
    assert err.value.iteration == 3 and err.value.part == "loc" and err.value.image_ids == [104, 105]
    assert len(snapshots) == 2  # the weights after the last good step are untouched by the bad one
    assert all(torch.equal(p, snapshots[-1][k]) for k, p in model.state_dict().items())


def test_max_iters_and_grad_clip():
    model, criterion, loader, opt, sched = _setup()
    out = train_one_epoch(model, criterion, loader, opt, sched, torch.device("cpu"), 0, start_iteration=5,
                          max_iters=7, grad_clip=1e-3, show_progress=False)
    assert out["iteration"] == 7 and out["steps"] == 2 and out["stopped_early"]
    assert math.isfinite(out["grad_norm"]) and out["grad_norm"] > 1e-3  # clipped from a larger norm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = train_one_epoch(model, criterion, loader, opt, sched, torch.device("cpu"), 1, start_iteration=7,
                          max_iters=7, show_progress=False)
    assert out["steps"] == 0 and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_detections_to_coco_hand_case():
    det = {"boxes": torch.tensor([[10.0, 20.0, 40.0, 30.0], [0.0, 0.0, 1.5, 2.5]]),
           "scores": torch.tensor([0.9, 0.25]), "labels": torch.tensor([1, 0])}
    got = detections_to_coco(det, 42, lambda label: [3, 7][label])
    assert got == [{"image_id": 42, "category_id": 7, "bbox": [10.0, 20.0, 30.0, 10.0], "score": pytest.approx(0.9)},
                   {"image_id": 42, "category_id": 3, "bbox": [0.0, 0.0, 1.5, 2.5], "score": pytest.approx(0.25)}]
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    assert detections_to_coco(empty, 1, lambda label: label) == []


def test_evaluate_results_and_mode():
    torch.manual_seed(0)
    model = FakeDetector()
    loader = DataLoader(FakeDataset(5), batch_size=2, collate_fn=collate)
    model.train()
    results = evaluate(model, loader, torch.device("cpu"), show_progress=False)
    assert model.training  # restored
    assert [r["image_id"] for r in results] == sorted(r["image_id"] for r in results)
    assert {r["image_id"] for r in results} <= set(range(100, 105))
    assert {r["category_id"] for r in results} <= {3, 7}
    # reference: the same detections computed directly
    with torch.no_grad():
        images, targets = next(iter(loader))
        out = model(images)
        ref = model.postprocess(out, model.anchors(images), targets)[0]
    first = [r for r in results if r["image_id"] == 100]
    assert len(first) == len(ref["scores"])
    x1, y1, x2, y2 = ref["boxes"][0].tolist()
    assert first[0]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
    with pytest.raises(ValueError, match="label_to_cat_id"):
        evaluate(model, [(images, targets)], torch.device("cpu"), show_progress=False)


def test_smoothed_value_and_metric_logger_hand_case():
    from training.logging import MetricLogger, SmoothedValue

    v = SmoothedValue(window=3)
    for x in (1.0, 5.0, 2.0, 10.0):
        v.update(x)
    assert v.value == 10.0 and v.median == 5.0 and v.avg == pytest.approx(17 / 3)
    assert v.global_avg == pytest.approx(18 / 4)
    meters = MetricLogger(window=2)
    meters.update(loss=4.0, lr=0.1)
    meters.update(loss=2.0, lr=0.2)
    assert meters.smoothed() == {"loss": 3.0, "lr": pytest.approx(0.15)}
    assert math.isnan(SmoothedValue().median)


def test_logging_is_quiet_on_other_ranks(tmp_path):
    import logging

    from training.logging import get_logger, setup_logging

    setup_logging(rank=1, log_file=tmp_path / "log.txt")
    assert not get_logger("x").isEnabledFor(logging.INFO) and get_logger("x").isEnabledFor(logging.WARNING)
    assert not (tmp_path / "log.txt").exists()  # only rank 0 writes the file
    setup_logging(rank=0, log_file=tmp_path / "log.txt")
    get_logger("x").info("hello")
    assert "hello" in (tmp_path / "log.txt").read_text()
