"""Trainer runs on tiny fakes: exact resume (epoch boundary, after a crash, mid-epoch), NaN stop, best checkpoint."""
import json

import pytest
import torch
from torch.utils.data import DataLoader

from tests.fixtures.train_fakes import FakeCriterion, FakeDataset, FakeDetector, collate
from training import checkpoint as ck
from training.config import Config, EvalConfig, TrainConfig
from training.loop import NonFiniteLossError
from training.resume_check import ResumeConfigError
from training.trainer import Parts, Trainer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def _parts_builder(crash_at_call=None, nan_at_call=None):
    def build(cfg, device, info):
        criterion = FakeCriterion(nan_at_call=nan_at_call, crash_at_call=crash_at_call)
        train = DataLoader(FakeDataset(12, flip=True), batch_size=cfg.train.batch_size // info.world_size,
                           shuffle=True, collate_fn=collate)  # order and flips from the global RNG
        val = DataLoader(FakeDataset(4), batch_size=2, collate_fn=collate)
        return Parts(model=FakeDetector().to(device), criterion=criterion, train_loader=train, val_loader=val,
                     val_dataset=val.dataset)
    return build


def _metrics(dataset, results):
    return {"AP": sum(r["score"] for r in results) / max(len(results), 1), "n": len(results)}


def _cfg(tmp_path, name="run", **train):
    base = dict(epochs=3, batch_size=4, ref_batch_size=4, lr=0.05, lr_steps=[2], warmup_iters=2, log_interval=2,
                keep_checkpoints=2, eval_interval=1)
    base.update(train)
    return Config(name=name, output_dir=str(tmp_path), device="cpu", seed=3, train=TrainConfig(**base),
                  eval=EvalConfig(batch_size=2))


def _fit(cfg, resume=False, **builder):
    trainer = Trainer(cfg, resume=resume, parts_builder=_parts_builder(**builder), metrics_fn=_metrics,
                      show_progress=False)
    return trainer, trainer.fit()


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.net.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 3-epoch run (3 iterations per epoch)."""
    tmp = tmp_path_factory.mktemp("ref")
    trainer, summary = _fit(_cfg(tmp))
    return trainer, summary


def test_reference_run_folder(reference):
    trainer, summary = reference
    run = trainer.run_dir
    assert summary["epoch"] == 3 and summary["iteration"] == 9
    assert (run / "config.yaml").is_file() and (run / "environment.json").is_file()
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines if r["type"] == "epoch"] == [1, 2, 3]
    assert all("AP" in r and "train_cls" in r for r in lines if r["type"] == "epoch")
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    names = [p.name for p in trainer.ckpt.list()]
    assert names == ["ckpt_e0002_i00000006.pth", "ckpt_e0003_i00000009.pth"]  # keep_checkpoints=2
    state = ck.load_checkpoint(trainer.ckpt.latest())
    assert state["config"]["train"]["epochs"] == 3 and "git_commit" in state["environment"]
    assert state["epoch"] == 3 and state["iteration"] == 9 and state["epoch_step"] == 0
    assert state["criterion"][0]["self_balance"]["weight"] == trainer.criterion.self_balance.weight != 2.0  # SB updated
    best = ck.load_checkpoint(run / "checkpoints" / "best.pth")
    assert best["best_ap"] == max(r["AP"] for r in lines if r["type"] == "epoch")
    assert best["epoch"] == best["best_epoch"]
    tags = _tensorboard_scalars(run / "tensorboard")
    assert {"train/L_cls", "train/L_loc", "train/loc_weight", "train/lr", "train/grad_pos_sum",
            "train/grad_neg_sum", "eval/AP"} <= set(tags)
    assert [step for step, _ in tags["eval/AP"]] == [3, 6, 9]  # after each epoch, at the global iteration
    assert [v for _, v in tags["eval/AP"]] == pytest.approx([r["AP"] for r in lines if r["type"] == "epoch"])
    assert [step for step, _ in tags["train/lr"]] == [2, 4, 6, 8]  # every log_interval=2 iterations


def _tensorboard_scalars(folder):
    """{tag: [(step, value), ...]} of the event files in ``folder`` (read with TensorBoard's own reader)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _strict_json(line):
    """json.loads that rejects NaN/Infinity tokens (not JSON; jq and JavaScript refuse them)."""
    return json.loads(line, parse_constant=lambda token: pytest.fail(f"non-JSON constant {token} in {line}"))


def test_resume_at_epoch_boundary_is_exact(tmp_path, reference):
    _, first = _fit(_cfg(tmp_path, max_iters=3))  # stops exactly after epoch 1
    assert first["epoch"] == 1 and first["iteration"] == 3
    trainer, summary = _fit(_cfg(tmp_path), resume=True)
    assert summary["iteration"] == 9
    _assert_same(_weights(trainer), _weights(reference[0]))
    assert trainer.criterion.self_balance.weight == reference[0].criterion.self_balance.weight


def test_resume_after_a_crash_inside_an_epoch_is_exact(tmp_path, reference):
    with pytest.raises(KeyboardInterrupt):
        _fit(_cfg(tmp_path), crash_at_call=5)  # killed at iteration 5 (epoch 2); last checkpoint: epoch 1
    assert ck.find_latest(tmp_path / "run").name == "ckpt_e0001_i00000003.pth"
    trainer, _ = _fit(_cfg(tmp_path), resume=True)
    _assert_same(_weights(trainer), _weights(reference[0]))


def test_mid_epoch_checkpoint_resume_replays_data_order(tmp_path, reference):
    _fit(_cfg(tmp_path, checkpoint_interval_iters=4, max_iters=5, keep_checkpoints=5))
    names = [p.name for p in ck.CheckpointManager(tmp_path / "run").list()]
    assert names == ["ckpt_e0001_i00000003.pth", "ckpt_e0001_i00000004.pth", "ckpt_e0001_i00000005.pth"]
    # drop the stop checkpoint: resume from iteration 4, one step into epoch 2
    (tmp_path / "run" / "checkpoints" / names[-1]).unlink()
    trainer, summary = _fit(_cfg(tmp_path, checkpoint_interval_iters=4), resume=True)
    assert summary["iteration"] == 9
    _assert_same(_weights(trainer), _weights(reference[0]))


def test_resume_falls_back_to_the_newest_readable_checkpoint_and_says_which(tmp_path, reference):
    _fit(_cfg(tmp_path, max_iters=6))  # checkpoints after epochs 1 and 2
    mgr = ck.CheckpointManager(tmp_path / "run")
    older, newest = mgr.list()
    newest.write_bytes(newest.read_bytes()[:1000])  # damaged, e.g. by a copy that did not finish
    trainer, summary = _fit(_cfg(tmp_path), resume=True)
    log = (tmp_path / "run" / "log.txt").read_text()
    assert f"WARNING alrp.trainer: skipping unreadable checkpoint {newest}: PytorchStreamReader failed" in log
    assert f"resumed from {older} (epoch 1, iteration 3)" in log
    assert summary["iteration"] == 9
    _assert_same(_weights(trainer), _weights(reference[0]))  # epoch 2 retrained from epoch 1: same weights


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, caplog):
    with pytest.raises(NonFiniteLossError, match="iteration 5: loc"):
        _fit(_cfg(tmp_path), nan_at_call=5)
    latest = ck.find_latest(tmp_path / "run")
    assert latest.name == "ckpt_e0001_i00000003.pth"
    assert torch.isfinite(torch.cat([v.flatten() for v in ck.load_checkpoint(latest)["model"].values()])).all()


def test_existing_run_needs_resume_and_resume_without_checkpoint_starts_fresh(tmp_path):
    _, summary = _fit(_cfg(tmp_path, epochs=1, eval_interval=0), resume=True)  # nothing to resume: fresh
    assert summary["iteration"] == 3 and summary["metrics"] is None
    with pytest.raises(FileExistsError, match="--resume"):
        _fit(_cfg(tmp_path, epochs=1))


# ------------------------------------------------------------------------------------------- real parts, via the CLI
TINY_YAML = """
seed: 0
device: cpu
output_dir: {out}
data: {{root: {root}, train_split: train, val_split: val, train_preset: ssd, train_size: 128, eval_short_side: 128,
        eval_max_size: 128, pad_divisor: 128, num_workers: 0, pin_memory: false}}
model:
  backbone: {{name: resnet18, norm: gn, frozen_stages: 1}}
  fpn: {{channels: 64}}
  head: {{channels: 64, num_convs: 1, norm: gn}}
  postprocess: {{score_threshold: 0.0}}
loss: {{name: alrp, box_loss: giou, self_balance: true, sb_init: 50.0}}
train: {{epochs: 2, batch_size: 2, ref_batch_size: 2, optimizer: sgd, lr: 0.01, warmup_iters: 2, lr_steps: [1],
         log_interval: 1, eval_interval: 1, keep_checkpoints: 2}}
eval: {{batch_size: 1}}
"""


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    from tests.fixtures.synthetic import write_synthetic_coco

    tmp = tmp_path_factory.mktemp("tiny")
    write_synthetic_coco(tmp / "coco", "train", num_images=4, size=(96, 128), seed=1)  # 2 iterations per epoch
    write_synthetic_coco(tmp / "coco", "val", num_images=2, size=(96, 128), seed=2)
    path = tmp / "tiny.yaml"
    path.write_text(TINY_YAML.format(out=tmp / "runs", root=tmp / "coco"))
    return path


def test_cli_real_parts_resume_is_exact(tiny_config):
    """train.py with the real data (SSD augmentation), RetinaNet and aLRP Loss: interrupted + resumed == straight."""
    import train

    base = ["--config", str(tiny_config), "--no-progress"]
    assert train.main(base + ["--name", "straight"]) == 0
    assert train.main(base + ["--name", "resumed", "--set", "train.max_iters=2"]) == 0  # stops after epoch 1
    assert train.main(base + ["--name", "resumed"]) == 1  # refuses to overwrite without --resume
    assert train.main(base + ["--name", "resumed", "--resume"]) == 0
    runs = tiny_config.parent / "runs"
    a = ck.load_checkpoint(ck.find_latest(runs / "straight"))
    b = ck.load_checkpoint(ck.find_latest(runs / "resumed"))
    assert a["iteration"] == b["iteration"] == 4 and a["epoch"] == b["epoch"] == 2
    _assert_same(a["model"], b["model"])
    assert a["criterion"] == b["criterion"] and a["criterion"][0]["self_balance"]["weight"] != 50.0
    # for eval.py --images: the class table and the LRP-optimal thresholds of the last evaluation
    val = json.loads((tiny_config.parent / "coco" / "annotations" / "instances_val.json").read_text())
    assert a["categories"] == [{"id": c["id"], "name": c["name"]} for c in sorted(val["categories"],
                                                                             key=lambda c: c["id"])]
    assert a["lrp_thresholds"] and set(a["lrp_thresholds"]) <= {c["id"] for c in val["categories"]}
    assert all(0.0 <= t <= 1.0 for t in a["lrp_thresholds"].values())
    assert b["lrp_thresholds"] == pytest.approx(a["lrp_thresholds"])
    epochs = [_strict_json(x) for x in (runs / "straight" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in epochs if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and all("oLRP" in r and "AP" in r for r in epochs)
    assert all(r["bad_images_skipped"] == 0 for r in epochs)
    assert (runs / "straight" / "checkpoints" / "best.pth").is_file()
    tags = _tensorboard_scalars(runs / "straight" / "tensorboard")
    assert {"eval/AP", "eval/oLRP", "eval/AP50", "train/L_cls", "train/L_loc", "train/loc_weight",
            "train/grad_pos_sum", "train/grad_neg_sum"} <= set(tags)


def _last_line(text):
    return text.strip().splitlines()[-1]


def test_cli_bad_input_gives_one_line_errors(tiny_config, tmp_path, capsys):
    """Missing data, a device that is not there, unreadable images: one log line and an exit code, no traceback."""
    import train
    from tests.fixtures.synthetic import write_synthetic_coco

    base = ["--config", str(tiny_config), "--no-progress", "--output-dir", str(tmp_path / "runs"),
            "--set", "train.epochs=1", "train.eval_interval=0"]
    assert train.main(base + ["--name", "nodata", "--set", f"data.root={tmp_path / 'none'}"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and _last_line(err).endswith(
        f"{tmp_path / 'none' / 'annotations' / 'instances_train.json'}: annotation file not found")
    if not torch.cuda.is_available():
        assert train.main(base + ["--name", "nocuda", "--set", "device=cuda"]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "config error: device='cuda' but CUDA is not available" in err

    no_val = tmp_path / "no_val"
    write_synthetic_coco(no_val, "train", num_images=2, size=(96, 128), seed=1)
    assert train.main(base + ["--name", "noval", "--set", f"data.root={no_val}", "train.eval_interval=1"]) == 1
    err = capsys.readouterr().err
    assert _last_line(err).endswith(f"{no_val / 'annotations' / 'instances_val.json'}: annotation file not found")
    assert ck.find_latest(tmp_path / "runs" / "noval") is None  # found at start-up, not after an epoch
    not_a_folder = tmp_path / "runs.txt"
    not_a_folder.write_text("")
    assert train.main(base + ["--name", "x", "--output-dir", str(not_a_folder)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and _last_line(err).endswith(
        f"run folder {not_a_folder / 'x'}: {not_a_folder} exists and is not a folder")
    empty = tmp_path / "empty"
    write_synthetic_coco(empty, "train", num_images=2, size=(96, 128), seed=1, boxes_per_image=0)
    assert train.main(base + ["--name", "empty", "--set", f"data.root={empty}"]) == 1
    err = _last_line(capsys.readouterr().err)
    assert "config error" not in err and "instances_train.json: no image with a usable box to train on" in err

    root = tmp_path / "coco"
    write_synthetic_coco(root, "train", num_images=4, size=(96, 128), seed=1)
    bad = root / "train" / "000003.png"
    bad.write_bytes(bad.read_bytes()[:-30])  # truncated PNG
    data = ["--set", f"data.root={root}"]
    assert train.main(base + data + ["--name", "skip", "--set", "data.on_bad_image=skip"]) == 0
    run = tmp_path / "runs" / "skip"
    epoch = [_strict_json(x) for x in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert epoch["type"] == "epoch" and epoch["bad_images_skipped"] == 1
    assert f"1 unreadable image(s) skipped (data.on_bad_image=skip): {bad}" in (run / "log.txt").read_text()
    capsys.readouterr()
    assert train.main(base + data + ["--name", "error", "--set", "data.num_workers=1"]) == 1  # default: error
    err = capsys.readouterr().err
    assert "Traceback" not in err and _last_line(err).endswith(f"{bad}: truncated PNG (no IEND chunk)")


# ------------------------------------------------------------------------------------------- bad input
def _failing_metrics(fail_at_epochs):
    """metrics_fn that raises like a truncated val image at the given evaluations (1-based), else `_metrics`."""
    from data.errors import BadImageError

    calls = []

    def metrics(dataset, results):
        calls.append(1)
        if len(calls) in fail_at_epochs:
            raise BadImageError("val/000002.jpg", "truncated JPEG (no end-of-image marker)")
        return _metrics(dataset, results)
    return metrics


def test_failed_evaluation_loses_no_epoch_and_resume_runs_it_first(tmp_path, reference):
    trainer = Trainer(_cfg(tmp_path), parts_builder=_parts_builder(), metrics_fn=_failing_metrics({2}),
                      show_progress=False)
    with pytest.raises(Exception, match="truncated JPEG"):
        trainer.fit()  # epoch 2's evaluation fails
    state = ck.load_checkpoint(ck.find_latest(tmp_path / "run"))
    assert (state["epoch"], state["iteration"], state["eval_pending"]) == (2, 6, True)  # epoch 2 is saved
    trainer, summary = _fit(_cfg(tmp_path), resume=True)
    assert summary["iteration"] == 9
    _assert_same(_weights(trainer), _weights(reference[0]))
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (reference[0].run_dir / "metrics.jsonl").read_text().splitlines()]
    ap = {r["epoch"]: r["AP"] for r in lines if "AP" in r}
    assert ap == {r["epoch"]: r["AP"] for r in ref if r["type"] == "epoch"}  # epoch 2 evaluated on resume
    # every epoch keeps its line with its training time and losses (epoch 2's is written after the resumed eval)
    epochs = [r for r in lines if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert all(r["train_seconds"] > 0 and "train_cls" in r for r in epochs)
    best = ck.load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pth")
    ref_best = ck.load_checkpoint(reference[0].run_dir / "checkpoints" / "best.pth")
    assert best["best_ap"] == ref_best["best_ap"] and best["epoch"] == ref_best["epoch"]


def test_pending_evaluation_is_skipped_with_a_warning_when_evaluation_is_now_off(tmp_path):
    trainer = Trainer(_cfg(tmp_path), parts_builder=_parts_builder(), metrics_fn=_failing_metrics({2}),
                      show_progress=False)
    with pytest.raises(Exception, match="truncated JPEG"):
        trainer.fit()  # epoch 2's evaluation fails; its checkpoint is marked eval_pending
    calls = []
    trainer = Trainer(_cfg(tmp_path, eval_interval=0), resume=True, parts_builder=_parts_builder(),
                      metrics_fn=lambda *a: calls.append(a), show_progress=False)
    summary = trainer.fit()
    assert summary["iteration"] == 9 and not calls  # trained to the end, evaluated nothing
    assert "evaluation is now off" in (tmp_path / "run" / "log.txt").read_text()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epoch2 = [r for r in lines if r["type"] == "epoch" and r["epoch"] == 2]
    assert len(epoch2) == 1 and epoch2[0]["train_seconds"] > 0 and "AP" not in epoch2[0]  # its line, no result


def test_a_skipped_pending_evaluation_is_written_once_across_two_resumes(tmp_path):
    trainer = Trainer(_cfg(tmp_path), parts_builder=_parts_builder(), metrics_fn=_failing_metrics({2}),
                      show_progress=False)
    with pytest.raises(Exception, match="truncated JPEG"):
        trainer.fit()  # epoch 2's evaluation fails
    off = Trainer(_cfg(tmp_path, eval_interval=0), resume=True, parts_builder=_parts_builder(),
                  metrics_fn=lambda *a: None, show_progress=False)
    off._run_pending_eval()  # skipped, line written; then the run is killed before training on
    _fit(_cfg(tmp_path), resume=True)  # resumed again, evaluation back on
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines if r["type"] == "epoch"] == [1, 2, 3]
    assert ck.load_checkpoint(ck.find_latest(tmp_path / "run"))["eval_pending"] is False


def test_a_setting_the_checkpoint_predates_is_listed_with_the_safe_changes():
    from training.resume_check import config_changes

    saved = {"train": {"lr": 0.1}, "loss": {"name": "alrp"}}
    current = {"train": {"lr": 0.1}, "loss": {"name": "alrp", "rank_group": 8}}
    assert config_changes(saved, current) == ([], ["loss.rank_group (not in the checkpoint's config) -> 8"])


@pytest.mark.parametrize("blocker", ["checkpoints_file", "output_dir_file", "read_only"])
def test_run_folder_problems_are_found_before_training(tmp_path, blocker):
    from tests.fixtures.bad_inputs import read_only_dir
    from training.run_folder import RunFolderError

    output = tmp_path
    if blocker == "checkpoints_file":
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "checkpoints").write_text("")
        expected = f"{tmp_path / 'run' / 'checkpoints'}: exists and is not a folder"
    elif blocker == "output_dir_file":
        output = tmp_path / "out.txt"
        output.write_text("")
        expected = f"{output / 'run'}: {output} exists and is not a folder"
    else:
        output = read_only_dir(tmp_path)
        expected = f"{output / 'run'}: permission denied"
    calls = []
    with pytest.raises(RunFolderError) as info:
        Trainer(_cfg(output), parts_builder=lambda *a: calls.append(a), metrics_fn=_metrics, show_progress=False)
    assert str(info.value) == f"run folder {expected}" and not calls  # before any data or model is built


def test_resume_with_a_changed_config_refuses_with_a_one_line_diff(tmp_path):
    _fit(_cfg(tmp_path, max_iters=3))
    cfg = _cfg(tmp_path, optimizer="adamw", batch_size=2)
    cfg.model.fpn.channels = 32
    with pytest.raises(ResumeConfigError) as info:
        _fit(cfg, resume=True)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"cannot resume {tmp_path / 'run'}: the config differs from "
                                                      "the checkpoint's: ")
    assert "model.fpn.channels 256 -> 32" in message and "train.optimizer 'sgd' -> 'adamw'" in message
    assert "train.batch_size 4 -> 2" in message and "train.max_iters" not in message  # max_iters is safe


def test_resume_allows_safe_changes_and_says_so(tmp_path):
    _fit(_cfg(tmp_path, max_iters=3))
    trainer, summary = _fit(_cfg(tmp_path, epochs=4, log_interval=1), resume=True)
    assert summary["epoch"] == 4
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "resuming with changed settings (safe): train.epochs 3 -> 4, train.log_interval 2 -> 1, " \
           "train.max_iters 3 -> None" in log


def test_orphaned_temporary_checkpoints_are_removed_on_start(tmp_path):
    _fit(_cfg(tmp_path, max_iters=3))
    orphan = tmp_path / "run" / "checkpoints" / ".ckpt_e0002_i00000006.pth.k2j3.tmp"
    orphan.write_bytes(b"half a checkpoint, the process was killed")
    _fit(_cfg(tmp_path, epochs=1), resume=True)
    assert not orphan.exists()
    assert f"removed 1 temporary file(s) left by an interrupted write: {orphan.name}" in \
        (tmp_path / "run" / "log.txt").read_text()


def test_kill_and_resume_never_duplicates_metrics_lines(tmp_path, reference):
    with pytest.raises(KeyboardInterrupt):
        _fit(_cfg(tmp_path), crash_at_call=6)  # killed in iteration 6; iteration 4 was logged after checkpoint 3
    _fit(_cfg(tmp_path), resume=True)
    run = tmp_path / "run"
    records = [_strict_json(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["type"] == "iter"] == [2, 4, 6, 8]
    assert [(r["type"], r["iteration"]) for r in records if r["type"] == "resume"] == [("resume", 3)]
    assert [r["epoch"] for r in records if r["type"] == "epoch"] == [1, 2, 3]
    steps = [step for step, _ in _tensorboard_scalars(run / "tensorboard")["train/lr"]]
    assert steps == [2, 4, 6, 8]
    assert "resumed from" in (run / "log.txt").read_text()


def test_reused_run_folder_without_checkpoints_starts_clean_logs(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _fit(_cfg(tmp_path), crash_at_call=3)  # leaves log.txt, metrics.jsonl (iteration 2), tensorboard/
    run = tmp_path / "run"
    assert not ck.find_latest(run) and (run / "metrics.jsonl").is_file()
    _fit(_cfg(tmp_path, epochs=1))
    records = [_strict_json(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["type"] == "iter"] == [2]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert (run / "log.txt").read_text().count("[rank 0] INFO alrp.trainer: run ") == 1
    stale = [p for p in run.iterdir() if p.name.startswith("stale-")]
    assert len(stale) == 1 and {p.name for p in stale[0].iterdir()} == {"log.txt", "metrics.jsonl", "tensorboard"}


@pytest.mark.parametrize("val_categories", ["fewer", "renamed"])
def test_train_and_val_category_tables_must_match(tiny_config, tmp_path, capsys, val_categories):
    """A val file with fewer categories crashed after the epoch; other names evaluated silently against wrong ids."""
    import train
    from tests.fixtures.synthetic import write_synthetic_coco

    root = tmp_path / "coco"
    train_ann = write_synthetic_coco(root, "train", num_images=4, size=(96, 128), seed=1)
    if val_categories == "fewer":
        val_ann = write_synthetic_coco(root, "val", num_images=2, size=(96, 128), seed=2, cat_ids=(3, 7))
    else:
        val_ann = write_synthetic_coco(root, "val", num_images=2, size=(96, 128), seed=2)
        coco = json.loads(val_ann.read_text())
        coco["categories"][0]["name"], coco["categories"][1]["name"] = "class7", "class3"
        val_ann.write_text(json.dumps(coco))
    argv = ["--config", str(tiny_config), "--no-progress", "--output-dir", str(tmp_path / "runs"),
            "--set", f"data.root={root}"]
    assert train.main(argv) == 1
    err = _last_line(capsys.readouterr().err)
    assert f"category tables differ: {train_ann} has" in err and f"but {val_ann} has" in err
    assert ck.find_latest(tmp_path / "runs" / "tiny") is None  # refused before training


class _TabledDataset(FakeDataset):
    """FakeDataset with a category table, as CocoDetection has."""

    def __init__(self, n, flip, names):
        super().__init__(n, flip=flip)
        self.cat_ids, self.class_names, self.ann_file = [3, 7], names, f"/data/{'_'.join(names)}.json"


def test_checkpoint_stores_the_category_table_and_resume_compares_it(tmp_path):
    def builder(names):
        def build(cfg, device, info):
            train = DataLoader(_TabledDataset(12, True, names), batch_size=cfg.train.batch_size, shuffle=True,
                               collate_fn=collate)
            return Parts(model=FakeDetector().to(device), criterion=FakeCriterion(), train_loader=train)
        return build

    cfg = _cfg(tmp_path, max_iters=3, eval_interval=0)
    Trainer(cfg, parts_builder=builder(["cat", "dog"]), metrics_fn=_metrics, show_progress=False).fit()
    state = ck.load_checkpoint(ck.find_latest(tmp_path / "run"))
    assert state["categories"] == [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
    with pytest.raises(Exception, match=r"category tables differ: checkpoint .*ckpt_e0001_i00000003.pth has "
                                        r"\[3 'cat', 7 'dog'\] but /data/dog_cat.json has \[3 'dog', 7 'cat'\]"):
        Trainer(_cfg(tmp_path, eval_interval=0), resume=True, parts_builder=builder(["dog", "cat"]),
                metrics_fn=_metrics, show_progress=False)


def test_evaluations_log_each_class_ap_by_name(tmp_path):
    def build(cfg, device, info):
        parts = _parts_builder()(cfg, device, info)
        parts.val_dataset.cat_ids, parts.val_dataset.class_names = [3, 5], ["Platelets", "RBC"]
        return parts

    def metrics(dataset, results):
        return {"AP": 0.5, "per_class": {3: {"AP": 0.125}, 5: {"AP": 0.75}}}

    Trainer(_cfg(tmp_path, epochs=2), parts_builder=build, metrics_fn=metrics, show_progress=False).fit()
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in lines if "AP" in r]
    assert len(evaluated) == 2
    assert all(r["AP/Platelets"] == 0.125 and r["AP/RBC"] == 0.75 for r in evaluated)
    tensorboard = _tensorboard_scalars(tmp_path / "run" / "tensorboard")
    assert [value for _, value in tensorboard["eval/AP/Platelets"]] == [0.125, 0.125]
    assert [value for _, value in tensorboard["eval/AP/RBC"]] == [0.75, 0.75]
