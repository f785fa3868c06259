"""The CPU demo: `configs/demo/trees.yaml` encodes the settings of the CPU training notes, trains 2 iterations and
evaluates end to end (train.py -> checkpoint -> eval.py) on a tiny synthetic dataset; `scripts/demo.sh` is sound."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

import eval as eval_cli
import train as train_cli
from models.config import FPN_STRIDES
from training.config import load_config
from alrp.metrics import METRIC_KEYS

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "demo" / "trees.yaml"
DEMO_SH = REPO / "scripts" / "demo.sh"


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny images: one intra-op thread is faster


def test_demo_config_encodes_the_cpu_notes_settings():
    cfg = load_config(CONFIG)
    m, t, d, loss = cfg.model, cfg.train, cfg.data, cfg.loss
    assert cfg.name == "trees" and cfg.device == "cpu"
    assert (d.root, d.train_split, d.val_split) == ("datasets/trees", "train", "val")
    assert (m.backbone.name, m.backbone.norm, m.backbone.frozen_stages, m.backbone.pretrained) == (
        "resnet18", "gn", 0, None)
    assert m.fpn.channels == 64 and m.head.channels == 64 and m.head.norm == "gn"
    assert m.anchors.base_scale * FPN_STRIDES[0] == 24  # smallest anchor 24 px for 10-60 px crowns
    assert (loss.name, loss.box_loss, loss.self_balance) == ("alrp", "giou", True)
    assert (t.optimizer, t.lr, t.weight_decay, t.lr_schedule, t.grad_clip) == ("adamw", 1e-3, 0.05, "cosine", 10.0)
    assert t.batch_size == t.ref_batch_size == 4  # lr used as is
    assert 30 <= t.warmup_iters <= 100 and t.warmup_mode == "linear"
    assert 350 <= d.train_size <= 450 and d.train_size % d.pad_divisor == 0  # no padding waste in training
    assert 350 <= d.eval_short_side <= 450 and d.eval_max_size >= d.eval_short_side
    assert d.num_workers <= 1  # 2 cores: loader processes compete with compute
    assert t.max_iters is None and 1 <= t.keep_checkpoints <= 2


@pytest.mark.slow
def test_demo_config_trains_two_iterations_and_evaluates(tmp_path, capsys):
    from tests.fixtures.synthetic import write_synthetic_coco

    root = tmp_path / "data"
    write_synthetic_coco(root, "train", num_images=4, size=(96, 128), seed=1)
    write_synthetic_coco(root, "val", num_images=2, size=(96, 128), seed=2)
    small = [f"data.root={root}", "data.train_size=128", "data.eval_short_side=128", "data.eval_max_size=128",
             "train.batch_size=2", "train.ref_batch_size=2", "eval.batch_size=2", f"output_dir={tmp_path / 'runs'}"]
    rc = train_cli.main(["--config", str(CONFIG), "--no-progress", "--set", *small, "train.max_iters=2"])
    assert rc == 0
    run = tmp_path / "runs" / "trees"
    assert (run / "config.yaml").is_file() and list((run / "tensorboard").glob("events.out.tfevents.*"))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["type"] == "epoch"]
    assert epochs and all(math.isfinite(epochs[-1][k]) for k in ("train_cls", "train_loc"))
    log_text = (run / "log.txt").read_text()
    assert "eval after epoch 1: AP " in log_text and "oLRP " in log_text  # evaluated after the max_iters stop
    latest = (run / "checkpoints" / "latest").read_text().strip()
    ckpt = run / "checkpoints" / latest
    assert ckpt.is_file()

    capsys.readouterr()
    out, plots = tmp_path / "m.json", tmp_path / "plots"
    rc = eval_cli.main(["--config", str(CONFIG), "--checkpoint", str(ckpt), "--json-out", str(out),
                        "--plots", str(plots), "--set", *small])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "oLRP" in printed and "AP50" in printed
    metrics = json.loads(out.read_text())
    assert list(metrics) == list(METRIC_KEYS)
    assert metrics["oLRP"] is None or 0.0 <= metrics["oLRP"] <= 1.0
    assert (plots / "pr_overall.png").is_file() and (plots / "lrp_overall.png").is_file()


def test_demo_script_is_strict_bash_and_uses_the_demo_config():
    text = DEMO_SH.read_text()
    assert "set -euo pipefail" in text and "_setup_env.sh" in text
    assert "configs/demo/trees.yaml" in text and "prepare_demo_data.py" in text
    assert "train.py" in text and "eval.py" in text and "tensorboard --logdir" in text
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(DEMO_SH)], check=True)  # syntax only
