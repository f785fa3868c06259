"""The training step (training/loop.py) and inference (training/inference.py) on tiny fakes with the detector's surface."""
import json
import math

import pytest
import torch
from torch.utils.data import DataLoader

from training.inference import detections_to_coco, predict_coco_results
from training.loop import IterationLog, NonFiniteLossError, TrainStep
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


def _steps(step, loader, iteration=0, iter_log=None, after_step=None):
    """The trainer's epoch loop without checkpoints: [(iteration, values)] per step."""
    seen = []
    for images, targets in loader:
        values = step(images, targets, iteration)
        iteration += 1
        if iter_log is not None:
            iter_log.update(iteration, values)
        if after_step is not None:
            after_step()
        seen.append((iteration, values))
    return seen


def test_train_step_logs_and_accumulates(tmp_path):
    model, criterion, loader, opt, sched = _setup()
    jsonl = JsonlWriter(tmp_path / "m.jsonl")
    tb = TensorBoardWriter(tmp_path / "tb")
    iter_log = IterationLog(epoch=3, interval=2, jsonl=jsonl, tensorboard=tb)
    seen = _steps(TrainStep(model, criterion, opt, sched, torch.device("cpu")), loader, 10, iter_log)
    summary = iter_log.summary()
    tb.close()
    assert [it for it, _ in seen] == [11, 12, 13, 14]
    # lr recorded is the one used by the step: warmup factor 1/3 then 2/3 then 1 (scheduler stepped per iteration)
    assert [v["lr"] for _, v in seen] == pytest.approx([0.05 / 3, 0.05 * 2 / 3, 0.05, 0.05])
    assert summary["cls"] == pytest.approx(sum(v["cls"] for _, v in seen) / 4) and summary["seconds"] > 0
    assert all(v["loc_weight"] == 2.0 for _, v in seen) and "sb_weight" not in seen[0][1]  # one name
    assert criterion.self_balance.sums[2] == 4  # accumulated once per step with positives
    lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in lines] == [12, 14] and {r["epoch"] for r in lines} == {3}
    assert {"cls", "loc", "lr", "loc_weight", "grad_pos_sum", "grad_neg_sum", "it_per_s"} <= set(lines[0])
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_fixed_sb_period_updates_inside_the_epoch():
    from alrp.losses.balance import SelfBalance

    model, criterion, loader, opt, sched = _setup()
    criterion.self_balance = SelfBalance(2.0, period_iters=2)  # the mmdet release's rule, every 2 iterations
    seen = [v for _, v in _steps(TrainStep(model, criterion, opt, sched, torch.device("cpu")), loader)]
    assert [v["loc_weight"] for v in seen[:2]] == [2.0, 2.0]
    first = (seen[0]["cls"] + seen[1]["cls"] + seen[0]["loc"] + seen[1]["loc"]) / (seen[0]["loc"] + seen[1]["loc"])
    assert [v["loc_weight"] for v in seen[2:]] == pytest.approx([first, first], rel=1e-5)
    second = (seen[2]["cls"] + seen[3]["cls"] + seen[2]["loc"] + seen[3]["loc"]) / (seen[2]["loc"] + seen[3]["loc"])
    assert criterion.self_balance.weight == pytest.approx(second, rel=1e-5)
    assert criterion.end_epoch() == pytest.approx(second, rel=1e-5)  # the epoch end changes nothing


def test_training_reduces_the_loss():
    model, criterion, loader, opt, sched = _setup(lr=0.2, warmup=0)
    step = TrainStep(model, criterion, opt, sched, torch.device("cpu"))
    mean_total = [sum(v["total"] for _, v in _steps(step, loader)) / len(loader) for _ in range(6)]
    assert mean_total[-1] < 0.7 * mean_total[0]


def test_nan_raises_before_the_update_and_names_iteration_and_part():
    model, _, loader, opt, sched = _setup()
    criterion = FakeCriterion(nan_at_call=3)
    snapshots = []
    with pytest.raises(NonFiniteLossError, match=r"iteration 3: loc = nan") as err:
        _steps(TrainStep(model, criterion, opt, sched, torch.device("cpu")), loader,
               after_step=lambda: snapshots.append({k: p.detach().clone() for k, p in model.state_dict().items()}))
    assert err.value.iteration == 3 and err.value.part == "loc" and err.value.image_ids == [104, 105]
    assert len(snapshots) == 2  # the weights after the last good step are untouched by the bad one
    assert all(torch.equal(p, snapshots[-1][k]) for k, p in model.state_dict().items())


def test_grad_clip_reports_the_norm_before_clipping():
    model, criterion, loader, opt, sched = _setup()
    seen = _steps(TrainStep(model, criterion, opt, sched, torch.device("cpu"), grad_clip=1e-3), loader)
    assert all(math.isfinite(v["grad_norm"]) and v["grad_norm"] > 1e-3 for _, v in seen)  # clipped from larger
    unclipped = _steps(TrainStep(model, criterion, opt, sched, torch.device("cpu")), loader)
    assert all(math.isnan(v["grad_norm"]) for _, v in unclipped)  # measured only when clipping


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
    results = predict_coco_results(model, loader, torch.device("cpu"), show_progress=False)
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
        predict_coco_results(model, [(images, targets)], torch.device("cpu"), show_progress=False)


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


def test_non_finite_logits_stop_training_naming_iteration_and_part():
    from alrp.losses import LossConfig
    from alrp.losses.criterion import build_criterion

    class Exploding(FakeDetector):
        """Its classification logits become inf at the third forward pass (a diverged run)."""

        calls = 0

        def forward(self, images):
            out = super().forward(images)
            Exploding.calls += 1
            return {k: (v * float("inf") if k == "cls_logits" and Exploding.calls >= 3 else v)
                    for k, v in out.items()}

    torch.manual_seed(0)
    model = Exploding()
    loader = DataLoader(FakeDataset(8), batch_size=2, collate_fn=collate)
    opt = build_optimizer(model, name="sgd", lr=0.01)
    sched = build_scheduler(opt, schedule="step", iters_per_epoch=4, total_iters=4, lr_steps=[1], warmup_iters=0)
    criterion = build_criterion(LossConfig(name="alrp", box_loss="giou"))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at iteration 3: cls = nan"):
        _steps(TrainStep(model, criterion, opt, sched, torch.device("cpu")), loader)
