"""Experiments as YAML: the top-level typed `Config`, `_base_` inheritance, `--set` overrides, strict checking.

A YAML file mirrors the dataclasses (``train.lr``, ``model.backbone.name``, ...). Loading is generic: it walks the
dataclass fields and their type hints, so a section module only declares fields (and may validate them in
``__post_init__``). Every problem raises `ConfigError` naming the dotted key and the file that set it. The
generic machinery (YAML, ``_base_``, overrides, typed conversion) lives in `training.config_loader`; this module holds
the experiment schema, `load_config` and the run-folder provenance (`environment_info`, `save_resolved_config`).
"""
from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from training import config_loader
from training.config_loader import ConfigError, config_to_dict, parse_override  # noqa: F401 (re-exported API)
from alrp.losses.config import LossConfig
from alrp.validation import check, check_choice
from data.config import DataConfig
from models.config import ModelConfig


@dataclass
class TrainConfig:
    """Training schedule and loop options (read by the trainer only).

    lr is for ``ref_batch_size`` images per iteration; the trainer scales it by ``batch_size / ref_batch_size``.
    ``lr_steps`` are epochs; ``warmup_mode`` 'ablation': lr * (1/3 + 2/3 * t / warmup_iters), 'linear': from
    ``warmup_factor * lr`` to lr. ``eval_interval`` epochs between evaluations (0 = never); ``max_iters`` stops a
    smoke run after that many iterations. The self-balance weight is updated at every epoch end.
    """

    epochs: int = 100
    batch_size: int = 32
    ref_batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.008
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_schedule: str = "step"
    lr_steps: list[int] = field(default_factory=lambda: [60, 80])
    lr_gamma: float = 0.1
    warmup_iters: int = 500
    warmup_mode: str = "ablation"
    warmup_factor: float = 0.001
    grad_clip: float | None = None
    amp: bool = False
    log_interval: int = 20
    checkpoint_interval_iters: int = 0
    keep_checkpoints: int = 3
    eval_interval: int = 1
    max_iters: int | None = None

    def __post_init__(self) -> None:
        check(self.epochs >= 1, "train.epochs", f"{self.epochs} must be >= 1")
        check(self.batch_size >= 1, "train.batch_size", f"{self.batch_size} must be >= 1")
        check(self.ref_batch_size >= 1, "train.ref_batch_size", f"{self.ref_batch_size} must be >= 1")
        check_choice("train.optimizer", self.optimizer, ("sgd", "adamw"))
        check(self.lr > 0, "train.lr", f"{self.lr} must be > 0")
        check(0 <= self.momentum < 1, "train.momentum", f"{self.momentum} must be in [0, 1)")
        check(self.weight_decay >= 0, "train.weight_decay", f"{self.weight_decay} must be >= 0")
        check_choice("train.lr_schedule", self.lr_schedule, ("step", "cosine"))
        check(all(s >= 0 for s in self.lr_steps) and list(self.lr_steps) == sorted(self.lr_steps), "train.lr_steps",
              f"{self.lr_steps} must be non-negative epochs in increasing order")
        check(0 < self.lr_gamma <= 1, "train.lr_gamma", f"{self.lr_gamma} must be in (0, 1]")
        check(self.warmup_iters >= 0, "train.warmup_iters", f"{self.warmup_iters} must be >= 0")
        check_choice("train.warmup_mode", self.warmup_mode, ("ablation", "linear"))
        check(0 < self.warmup_factor <= 1, "train.warmup_factor", f"{self.warmup_factor} must be in (0, 1]")
        check(self.grad_clip is None or self.grad_clip > 0, "train.grad_clip", f"{self.grad_clip} must be > 0 or null")
        check(self.log_interval >= 1, "train.log_interval", f"{self.log_interval} must be >= 1")
        check(self.checkpoint_interval_iters >= 0, "train.checkpoint_interval_iters", "must be >= 0 (0 = off)")
        check(self.keep_checkpoints >= 1, "train.keep_checkpoints", f"{self.keep_checkpoints} must be >= 1")
        check(self.eval_interval >= 0, "train.eval_interval", f"{self.eval_interval} must be >= 0 (0 = never)")
        check(self.max_iters is None or self.max_iters >= 1, "train.max_iters",
              f"{self.max_iters} must be >= 1 or null")


@dataclass
class EvalConfig:
    """Evaluation options: ``split`` 'val' | 'train', images per batch, whether to write PR/LRP plots.

    Test-time augmentation (``eval.py``, ``models.tta``): ``tta_scales`` short sides to test at (the long side
    keeps ``data.eval_max_size / data.eval_short_side``; [] = ``data.eval_short_side`` only), ``tta_flip`` adds the
    mirrored image at each scale, ``tta_max_sizes`` per scale keeps only boxes whose shorter side is under that many
    original pixels (0 = all; the ablation code's ``multi_scale_thr``).
    """

    split: str = "val"
    batch_size: int = 8
    plots: bool = False
    tta_scales: list[int] = field(default_factory=list)
    tta_flip: bool = False
    tta_max_sizes: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_choice("eval.split", self.split, ("val", "train"))
        check(self.batch_size >= 1, "eval.batch_size", f"{self.batch_size} must be >= 1")
        check(all(s >= 1 for s in self.tta_scales), "eval.tta_scales", f"{self.tta_scales} must be positive sizes")
        check(not self.tta_max_sizes or len(self.tta_max_sizes) == len(self.tta_scales), "eval.tta_max_sizes",
              f"{self.tta_max_sizes} needs one value per eval.tta_scales entry ({self.tta_scales})")
        check(all(m >= 0 for m in self.tta_max_sizes), "eval.tta_max_sizes", f"{self.tta_max_sizes} must be >= 0")

    @property
    def tta(self) -> bool:
        """Whether evaluation uses test-time augmentation."""
        return bool(self.tta_scales) or self.tta_flip


@dataclass
class Config:
    """One experiment. The run folder is ``output_dir/name``; ``name`` defaults to the YAML file's stem.

    ``device``: 'auto' (CUDA if available), 'cpu', 'cuda' or 'cuda:N'.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    name: str = ""
    seed: int = 0
    device: str = "auto"
    output_dir: str = "runs"

    def __post_init__(self) -> None:
        check(re.fullmatch(r"[A-Za-z0-9_.+=-]*", self.name) is not None and self.name not in (".", ".."), "name",
              f"{self.name!r} must be a plain folder name (letters, digits, _ . + = -)")
        check(self.seed >= 0, "seed", f"{self.seed} must be >= 0")
        check(re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device) is not None, "device",
              f"{self.device!r} is not 'auto', 'cpu', 'cuda' or 'cuda:N'")
        check(bool(self.output_dir.strip()), "output_dir", "must not be empty")

    @property
    def run_dir(self) -> Path:
        """``output_dir / name``."""
        return Path(self.output_dir) / self.name


def load_config(path: str | Path, overrides: Sequence[str] = (), schema: type = Config) -> Any:
    """Load a YAML experiment (with its ``_base_`` chain) and ``--set``-style overrides into ``schema``.

    Args:
        path: the YAML file; ``_base_: other.yaml`` (or a list) is resolved relative to the file, recursively,
            and deep-merged (later files and keys win).
        overrides: ``["train.lr=0.004", "data.root=/coco"]``; values are parsed with ``yaml.safe_load``.
        schema: the top-level dataclass (``Config``; tests pass small stand-ins).

    Raises:
        ConfigError: unknown key, wrong type, missing required value, invalid value, bad YAML or missing file;
            the message names the dotted key and the file (or ``--set``) the value came from.
    """
    return config_loader.load_config(path, overrides, schema)


def environment_info() -> dict[str, Any]:
    """Git commit (None outside a checkout), dirty flag and the versions of python and the main libraries."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "command": " ".join(sys.argv)}
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        info["git_commit"] = head.stdout.strip() if head.returncode == 0 else None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, timeout=10)
        info["git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = info["git_dirty"] = None
    for name, dist in (("torch", "torch"), ("torchvision", "torchvision"), ("numpy", "numpy"),
                       ("pycocotools", "pycocotools"), ("pyyaml", "PyYAML")):
        try:
            info[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None
    try:
        import cv2
        info["cv2"] = cv2.__version__
    except ImportError:
        info["cv2"] = None
    return info


def save_resolved_config(cfg: Any, run_dir: str | Path) -> dict:
    """Write ``run_dir/config.yaml`` (the resolved config) and ``run_dir/environment.json``; returns the latter."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    env = environment_info()
    (run_dir / "environment.json").write_text(json.dumps(env, indent=2) + "\n")
    return env
