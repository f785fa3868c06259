"""The training step and the evaluation loop (no config access: everything comes in as arguments).

The step, in order: forward (under ``torch.autocast`` when AMP is on) -> ``loss_targets`` and the criterion in
float32 -> finite check -> backward (through ``GradScaler`` with AMP) -> optional gradient-norm clip -> optimiser
step -> per-iteration scheduler step -> self-balance accumulation -> logging.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable

import torch
from torch import nn

from training import distributed as dist_utils
from training.logging import JsonlWriter, MetricLogger, TensorBoardWriter, format_postfix, get_logger, progress
from training.optim import current_lr

log = get_logger("engine")

# Criterion outputs logged as scalars; the first three are checked before the others when looking for a NaN.
LOSS_PARTS = ("cls", "loc", "total")
STAT_KEYS = ("loc_weight", "grad_pos_sum", "grad_neg_sum", "num_pos")
# TensorBoard names where they differ from the logged keys (the others, e.g. the paper Fig. 4 statistics
# grad_pos_sum / grad_neg_sum, keep their key).
TB_NAMES = {"cls": "L_cls", "loc": "L_loc", "total": "loss", "sb_weight": "SB_weight"}


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


def _scalars(losses: dict[str, torch.Tensor], sb_weight: float | None) -> dict[str, float]:
    """Detached float values of the logged loss parts and statistics (keys present on every rank)."""
    keys = [k for k in LOSS_PARTS + STAT_KEYS if k in losses]
    values = torch.stack([torch.as_tensor(losses[k]).detach().float().reshape(()) for k in keys]).cpu().tolist()
    out = dict(zip(keys, values))
    if sb_weight is not None:
        out["sb_weight"] = float(sb_weight)
    return out


def _first_non_finite(values: dict[str, float]) -> str | None:
    for key in LOSS_PARTS + tuple(k for k in values if k not in LOSS_PARTS):
        if key in values and not math.isfinite(values[key]):
            return key
    return None


def train_one_epoch(model: nn.Module, criterion: Callable[[Any], dict[str, torch.Tensor]],
                    batches: Iterable[tuple[torch.Tensor, list[dict[str, Any]]]],
                    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                    device: torch.device, epoch: int, *, start_iteration: int = 0, num_batches: int | None = None,
                    scaler: torch.amp.GradScaler | None = None, amp: bool = False, grad_clip: float | None = None,
                    log_interval: int = 20, max_iters: int | None = None, jsonl: JsonlWriter | None = None,
                    tensorboard: TensorBoardWriter | None = None,
                    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
                    show_progress: bool = True) -> dict[str, Any]:
    """Trains over ``batches`` (one epoch, or its remainder after a mid-epoch resume).

    Args:
        model: the detector, possibly wrapped in DDP (``anchors``/``loss_targets`` are called on the inner module).
        criterion: ``criterion(loss_targets) -> dict`` with ``total``, ``cls``, ``loc`` (+ statistics).
        batches: iterable of ``(images (N, 3, H, W), targets list[dict])`` (this process's share of the batch).
        start_iteration: optimiser steps already taken in the run (the global iteration counter).
        num_batches: length of ``batches`` for the progress bar and ETA (optional).
        scaler: a ``GradScaler`` when AMP is on (CUDA only); ``amp`` enables ``torch.autocast`` for the forward.
        max_iters: stop once the global iteration counter reaches this value.
        on_iteration: called as ``on_iteration(iteration, values)`` after every step (values averaged over ranks).

    Returns:
        ``{"epoch", "iteration" (global counter after the last step), "steps", "stopped_early"}`` plus the epoch
        means of the logged values (``total``, ``cls``, ``loc``, ``lr``, ``sb_weight``, ...).

    Raises:
        NonFiniteLossError: before the backward pass of a step whose (rank-averaged) loss is NaN or inf, so the
            weights stay those of the last good step.
    """
    net = dist_utils.model_without_ddp(model)
    model.train()
    meters = MetricLogger(window=max(1, log_interval))
    iteration, steps = start_iteration, 0
    rank0 = dist_utils.is_main_process()
    sb = getattr(criterion, "self_balance", None)
    if max_iters is not None and iteration >= max_iters:
        batches = []  # nothing left to do: do not even start the loader
    bar = progress(batches, total=num_batches, desc=f"epoch {epoch}", enabled=show_progress and rank0)
    tic = time.perf_counter()
    for images, targets in bar:
        images = images.to(device, non_blocking=True)
        targets = _to_device(targets, device)
        with torch.autocast(device_type=device.type, enabled=amp):
            outputs = model(images)
        outputs = {k: v.float() for k, v in outputs.items()}  # ranking losses in float32
        loss_targets = net.loss_targets(outputs, net.anchors(images), targets)
        losses = criterion(loss_targets)

        values = dist_utils.reduce_dict(_scalars(losses, None if sb is None else sb.weight), device)
        bad = _first_non_finite(values)
        if bad is not None:
            raise NonFiniteLossError(iteration + 1, bad, values[bad], _image_ids(targets))

        optimizer.zero_grad(set_to_none=True)
        values["grad_norm"] = _backward_and_step(losses["total"], model, optimizer, scaler, grad_clip)
        values["lr"] = current_lr(optimizer)
        scheduler.step()
        if sb is not None and int(loss_targets.num_pos) > 0:
            sb.accumulate(losses["cls"].detach(), losses["loc"].detach())

        iteration += 1
        steps += 1
        meters.update(**{k: v for k, v in values.items() if math.isfinite(v)})
        if rank0 and show_progress:
            bar.set_postfix_str(format_postfix({k: values[k] for k in ("cls", "loc", "lr", "sb_weight")
                                                if k in values}), refresh=False)
        if log_interval > 0 and iteration % log_interval == 0:
            _log_iteration(epoch, iteration, meters, time.perf_counter() - tic, steps, jsonl, tensorboard)
        if on_iteration is not None:
            on_iteration(iteration, values)
        if max_iters is not None and iteration >= max_iters:
            break
    stopped = max_iters is not None and iteration >= max_iters
    return {"epoch": epoch, "iteration": iteration, "steps": steps, "stopped_early": stopped,
            "seconds": time.perf_counter() - tic, **meters.global_averages()}


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
