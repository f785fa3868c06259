"""One training step and the per-iteration log (no config access: everything comes in as arguments).

The step, in order: forward (under ``torch.autocast`` when AMP is on) -> ``loss_targets`` and the criterion in
float32 -> finite check -> backward (through ``GradScaler`` with AMP) -> optional gradient-norm clip -> optimiser
step -> per-iteration scheduler step -> ``criterion.accumulate`` (self-balance statistics). The epoch loop that
calls it is `training.trainer.Trainer.train_one_epoch`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from alrp.losses.criterion import Criterion
from training import distributed as dist_utils
from training.logging import JsonlWriter, MetricLogger, TensorBoardWriter, format_postfix, get_logger
from training.optim import current_lr

log = get_logger("loop")

# Criterion outputs logged as scalars; the first three are checked before the others when looking for a NaN.
LOSS_PARTS = ("cls", "loc", "total")
STAT_KEYS = ("loc_weight", "grad_pos_sum", "grad_neg_sum", "num_pos")
# TensorBoard names where they differ from the logged keys (the others, e.g. the paper Fig. 4 statistics
# grad_pos_sum / grad_neg_sum, keep their key).
TB_NAMES = {"cls": "L_cls", "loc": "L_loc", "total": "loss"}
# Shown on the progress bar.
POSTFIX_KEYS = ("cls", "loc", "lr", "loc_weight")


class NonFiniteLossError(RuntimeError):
    """A loss part became NaN or inf: names the (1-based, global) iteration, the part and the images."""

    def __init__(self, iteration: int, part: str, value: float, image_ids: list[int]) -> None:
        self.iteration, self.part, self.value, self.image_ids = iteration, part, value, image_ids
        super().__init__(f"non-finite loss at iteration {iteration}: {part} = {value} "
                         f"(batch image ids {image_ids[:16]}{' ...' if len(image_ids) > 16 else ''})")


def _to_device(targets: list[dict[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    return [{k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
            for t in targets]


def _image_ids(targets: list[dict[str, Any]]) -> list[int]:
    return [int(t["image_id"]) for t in targets if "image_id" in t]


def _scalars(losses: dict[str, torch.Tensor]) -> dict[str, float]:
    """Detached float values of the logged loss parts and statistics (keys present on every rank)."""
    keys = [k for k in LOSS_PARTS + STAT_KEYS if k in losses]
    values = torch.stack([torch.as_tensor(losses[k]).detach().float().reshape(()) for k in keys]).cpu().tolist()
    return dict(zip(keys, values))


def _first_non_finite(values: dict[str, float]) -> str | None:
    for key in LOSS_PARTS + tuple(k for k in values if k not in LOSS_PARTS):
        if key in values and not math.isfinite(values[key]):
            return key
    return None


@dataclass
class TrainStep:
    """One optimiser step of the detector on one batch; ``step(images, targets, iteration)`` returns its logged values.

    Args:
        model: the detector, possibly wrapped in DDP (``anchors``/``loss_targets`` are called on the inner module).
        criterion: ``criterion(loss_targets) -> dict`` with ``total``, ``cls``, ``loc`` (+ statistics), and
            ``accumulate(losses, distributed)`` for its self-balance statistics.
        scaler: a ``GradScaler`` when AMP is on (CUDA only); ``amp`` enables ``torch.autocast`` for the forward.
    """

    model: nn.Module
    criterion: Criterion
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    scaler: torch.amp.GradScaler | None = None
    amp: bool = False
    grad_clip: float | None = None

    def __call__(self, images: torch.Tensor, targets: list[dict[str, Any]], iteration: int) -> dict[str, float]:
        """Trains on ``images (N, 3, H, W)`` and ``targets`` (this process's share of the batch).

        ``iteration`` is the number of steps already taken in the run (for the error message).
        Returns the loss parts and statistics averaged over processes, plus ``grad_norm`` and ``lr``.

        Raises:
            NonFiniteLossError: before the backward pass of a step whose (rank-averaged) loss is NaN or inf, so the
                weights stay those of the last good step.
        """
        net = dist_utils.model_without_ddp(self.model)
        images = images.to(self.device, non_blocking=True)
        targets = _to_device(targets, self.device)
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            outputs = self.model(images)
        outputs = {k: v.float() for k, v in outputs.items()}  # ranking losses in float32
        losses = self.criterion(net.loss_targets(outputs, net.anchors(images), targets))

        values = dist_utils.reduce_dict(_scalars(losses), self.device)
        bad = _first_non_finite(values)
        if bad is not None:
            raise NonFiniteLossError(iteration + 1, bad, values[bad], _image_ids(targets))

        self.optimizer.zero_grad(set_to_none=True)
        values["grad_norm"] = _backward_and_step(losses["total"], self.model, self.optimizer, self.scaler,
                                                 self.grad_clip)
        values["lr"] = current_lr(self.optimizer)
        self.scheduler.step()
        self.criterion.accumulate(losses, distributed=dist_utils.is_initialized())
        return values


@dataclass
class IterationLog:
    """Per-iteration meters of one epoch: window medians every ``interval`` steps to JSON lines and TensorBoard,
    epoch means at the end. ``epoch`` is 1-based (the epoch being trained), as in every log line."""

    epoch: int
    interval: int = 20
    jsonl: JsonlWriter | None = None
    tensorboard: TensorBoardWriter | None = None
    meters: MetricLogger = field(init=False)
    steps: int = field(init=False, default=0)
    tic: float = field(init=False, default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.meters = MetricLogger(window=max(1, self.interval))

    def update(self, iteration: int, values: dict[str, float]) -> str:
        """Adds one step's values (``iteration``: steps taken in the run, this one included); returns the
        progress-bar postfix."""
        self.steps += 1
        self.meters.update(**{k: v for k, v in values.items() if math.isfinite(v)})
        if self.interval > 0 and iteration % self.interval == 0:
            _log_iteration(self.epoch, iteration, self.meters, time.perf_counter() - self.tic, self.steps,
                           self.jsonl, self.tensorboard)
        return format_postfix({k: values[k] for k in POSTFIX_KEYS if k in values})

    def summary(self) -> dict[str, float]:
        """``seconds`` and the epoch means of the logged values (``total``, ``cls``, ``loc``, ``lr``, ...)."""
        return {"seconds": time.perf_counter() - self.tic, **self.meters.global_averages()}


def _backward_and_step(total: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer,
                       scaler: torch.amp.GradScaler | None, grad_clip: float | None) -> float:
    """Backward + (clip) + optimiser step; returns the gradient norm when clipping (NaN otherwise)."""
    norm = math.nan
    if scaler is not None:
        scaler.scale(total).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            norm = float(nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
        scaler.step(optimizer)
        scaler.update()
    else:
        total.backward()
        if grad_clip:
            norm = float(nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
        optimizer.step()
    return norm


def _log_iteration(epoch: int, iteration: int, meters: MetricLogger, seconds: float, steps: int,
                   jsonl: JsonlWriter | None, tensorboard: TensorBoardWriter | None) -> None:
    smoothed = meters.smoothed()
    record = {"type": "iter", "epoch": epoch, "iteration": iteration, "it_per_s": steps / max(seconds, 1e-9),
              **smoothed}
    if jsonl is not None:
        jsonl.write(record)
    if tensorboard is not None:
        tensorboard.scalars({TB_NAMES.get(k, k): v for k, v in smoothed.items()}, iteration, prefix="train/")
    log.debug("epoch %d iter %d %s", epoch, iteration, meters)
