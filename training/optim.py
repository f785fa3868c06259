"""Optimiser and the per-iteration learning-rate schedule (warmup, then multi-step or cosine decay).

Schedule (reference-settings.md, "Training"): the factor applied to the base lr at iteration ``t`` (0-based, the
number of optimiser steps already taken) is ``warmup(t) * decay(t)`` with

* warmup ``ablation`` (the authors' ablation code): ``1/3 + 2/3 * t / T`` for ``t < T``, else 1;
* warmup ``linear`` (mmdetection): ``w + (1 - w) * t / T`` for ``t < T`` with ``w = warmup_factor``, else 1;
* decay ``step``: ``gamma ** (number of milestones <= t)``, milestones given in iterations;
* decay ``cosine``: ``0.5 * (1 + cos(pi * t / total_iters))`` (0 at ``total_iters``).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

WARMUP_MODES = ("ablation", "linear")
SCHEDULES = ("step", "cosine")
OPTIMIZERS = ("sgd", "adamw")


def scaled_lr(lr: float, batch_size: int, ref_batch_size: int) -> float:
    """Linear scaling rule: ``lr * batch_size / ref_batch_size`` (total batch over all processes)."""
    if batch_size <= 0 or ref_batch_size <= 0:
        raise ValueError(f"batch sizes must be positive, got batch_size={batch_size}, ref_batch_size={ref_batch_size}")
    return lr * batch_size / ref_batch_size


def build_optimizer(model: nn.Module, *, name: str, lr: float, momentum: float = 0.9,
                    weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """SGD (with momentum) or AdamW over the trainable parameters of ``model``.

    Weight decay applies to every trainable parameter, as in the reference code.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"train.optimizer: unknown optimizer {name!r}, expected one of {OPTIMIZERS}")


class LRFactor:
    """Picklable ``t -> factor`` of the schedule described in the module docstring."""

    def __init__(self, *, schedule: str, total_iters: int, milestones: Sequence[int] = (), gamma: float = 0.1,
                 warmup_iters: int = 0, warmup_mode: str = "ablation", warmup_factor: float = 0.001) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"train.lr_schedule: unknown schedule {schedule!r}, expected one of {SCHEDULES}")
        if warmup_mode not in WARMUP_MODES:
            raise ValueError(f"train.warmup_mode: unknown mode {warmup_mode!r}, expected one of {WARMUP_MODES}")
        if warmup_iters < 0 or total_iters <= 0:
            raise ValueError(f"need warmup_iters >= 0 and total_iters > 0, got {warmup_iters}, {total_iters}")
        self.schedule = schedule
        self.total_iters = int(total_iters)
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        self.warmup_iters = int(warmup_iters)
        self.warmup_mode = warmup_mode
        self.warmup_factor = float(warmup_factor)

    def warmup(self, t: int) -> float:
        if t >= self.warmup_iters:
            return 1.0
        frac = t / self.warmup_iters
        if self.warmup_mode == "ablation":
            return 1.0 / 3.0 + 2.0 / 3.0 * frac
        return self.warmup_factor + (1.0 - self.warmup_factor) * frac

    def decay(self, t: int) -> float:
        if self.schedule == "step":
            return self.gamma ** sum(1 for m in self.milestones if t >= m)
        return 0.5 * (1.0 + math.cos(math.pi * min(t, self.total_iters) / self.total_iters))

    def __call__(self, t: int) -> float:
        return self.warmup(t) * self.decay(t)


def build_scheduler(optimizer: torch.optim.Optimizer, *, schedule: str, iters_per_epoch: int, total_iters: int,
                    lr_steps: Sequence[int] = (), gamma: float = 0.1, warmup_iters: int = 0,
                    warmup_mode: str = "ablation", warmup_factor: float = 0.001) -> LambdaLR:
    """Per-iteration scheduler: call ``scheduler.step()`` after every optimiser step.

    Args:
        lr_steps: decay milestones in epochs (converted to ``epoch * iters_per_epoch`` iterations).
        total_iters: length of the whole run in iterations (the cosine period).
    """
    if iters_per_epoch <= 0:
        raise ValueError(f"iters_per_epoch must be positive, got {iters_per_epoch}")
    factor = LRFactor(schedule=schedule, total_iters=total_iters,
                      milestones=[int(e) * iters_per_epoch for e in lr_steps], gamma=gamma,
                      warmup_iters=warmup_iters, warmup_mode=warmup_mode, warmup_factor=warmup_factor)
    return LambdaLR(optimizer, lr_lambda=factor)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the first parameter group."""
    return float(optimizer.param_groups[0]["lr"])
