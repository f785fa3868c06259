#!/usr/bin/env python
"""The prepared GPU check: real training steps of the R-50 500 config with and without AMP, and the
CUDA aLRP Loss against the CPU one on the same tensors.

Runs `training.loop.TrainStep` (the training code path: autocast, float32 ranking loss, GradScaler,
self-balance accumulation) on a fixed synthetic batch kept in memory (random images and boxes, K = 80), so no
dataset is needed. Prints iterations per second and peak GPU memory for fp32 and AMP, then the largest
differences between the CUDA and CPU aLRP results (L_cls, L_loc, ranks, error-driven gradient).

Usage: python benchmarks/gpu_check.py [--iters 100] [--batch 8] [--config configs/table2/alrp_giou_sb.yaml]
Last line: `amp/fp32 train it/s ratio: X.XX`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from alrp import alrp_loss  # noqa: E402
from training.config import load_config  # noqa: E402
from alrp.losses.criterion import build_criterion  # noqa: E402
from training.loop import TrainStep  # noqa: E402
from alrp.losses.box import loc_error  # noqa: E402
from training.optim import build_optimizer, build_scheduler  # noqa: E402
from bench_train_step import _sync, synthetic_batch  # noqa: E402
from models import build_detector  # noqa: E402

NUM_CLASSES = 80


def train_speed(cfg, images, targets, iters: int, amp: bool, device: torch.device) -> dict:
    """Trains a fresh detector for `iters` steps on one batch; returns it/s, peak memory and the last losses."""
    torch.manual_seed(0)
    model = build_detector(cfg.model, NUM_CLASSES).to(device)
    criterion = build_criterion(cfg.loss)
    optimizer = build_optimizer(model, name=cfg.train.optimizer, lr=cfg.train.lr, momentum=cfg.train.momentum,
                                weight_decay=cfg.train.weight_decay)
    scheduler = build_scheduler(optimizer, schedule="step", iters_per_epoch=iters, total_iters=2 * iters,
                                warmup_iters=cfg.train.warmup_iters, warmup_mode=cfg.train.warmup_mode)
    scaler = torch.amp.GradScaler(device.type) if amp else None
    step = TrainStep(model, criterion, optimizer, scheduler, device, scaler=scaler, amp=amp)
    for i in range(5):
        step(images, targets, i)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    tic = time.perf_counter()
    for i in range(5, 5 + iters):
        out = step(images, targets, i)
    _sync(device)
    seconds = time.perf_counter() - tic
    return {"it_s": iters / seconds, "img_s": iters * images.shape[0] / seconds,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan"),
            "cls": out.get("cls"), "loc": out.get("loc")}


def loss_cuda_vs_cpu(cfg, images, targets, device: torch.device) -> dict:
    """Max |CUDA - CPU| of aLRP's outputs on the loss inputs of one real forward pass."""
    torch.manual_seed(0)
    model = build_detector(cfg.model, NUM_CLASSES).to(device)
    with torch.no_grad():
        outputs = model(images)
        lt = model.loss_targets(outputs, model.anchors(images), targets)
        errors = loc_error(lt.pos_pred_boxes, lt.pos_gt_boxes, kind="giou")
    results = {}
    for name, dev in (("cuda", device), ("cpu", torch.device("cpu"))):
        logits = lt.logits.detach().to(dev).float().requires_grad_(True)
        res = alrp_loss(logits, lt.targets.to(dev), errors.to(dev))
        res.cls.backward()
        results[name] = {"cls": res.cls.detach().cpu(), "loc": res.loc.detach().cpu(), "rank": res.rank.cpu(),
                         "grad": logits.grad.cpu()}
    diff = {k: float((results["cuda"][k] - results["cpu"][k]).abs().max()) for k in results["cpu"]}
    diff["grad_scale"] = float(results["cpu"]["grad"].abs().max())
    diff["pairs"], diff["positives"] = int(lt.logits.numel()), int(lt.num_pos)
    return diff


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "table2" / "alrp_giou_sb.yaml"))
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--batch", type=int, default=8, help="images per step (the paper: 32 over 4 GPUs = 8 per GPU)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--device", default="cuda", help="cuda (default); cpu only to try the script itself")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device", file=sys.stderr)
        return 2
    cfg = load_config(args.config, args.set)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; config {Path(args.config).name}; "
          f"batch {args.batch} x {args.size}^2; {args.iters} timed steps")
    images, targets = synthetic_batch(args.batch, args.size, 8, device)
    rows = {}
    for amp in (False, True) if device.type == "cuda" else (False,):
        rows[amp] = r = train_speed(cfg, images, targets, args.iters, amp, device)
        print(f"{'amp ' if amp else 'fp32'}: {r['it_s']:.2f} it/s ({r['img_s']:.1f} img/s), peak {r['peak_gib']:.2f} "
              f"GiB, last-epoch mean L_cls {r['cls']:.4f} L_loc {r['loc']:.4f}")
    d = loss_cuda_vs_cpu(cfg, images, targets, device)
    print(f"aLRP CUDA vs CPU on {d['pairs']} pairs / {d['positives']} positives: max|d L_cls| {d['cls']:.2e}, "
          f"max|d L_loc| {d['loc']:.2e}, max|d rank| {d['rank']:.2e}, max|d grad| {d['grad']:.2e} "
          f"(max|grad| {d['grad_scale']:.2e})")
    if True in rows:
        print(f"amp/fp32 train it/s ratio: {rows[True]['it_s'] / rows[False]['it_s']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
