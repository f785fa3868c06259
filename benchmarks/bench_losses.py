#!/usr/bin/env python
"""Benchmark the classification losses: fwd+bwd time and peak memory on realistic detector-sized tensors.

Sizes: 1, 2 and 8 images of 512 x 512 (32,736 anchors per image with A = 6 over P3-P7, K = 80 classes:
2.62 M (anchor, class) pairs per image), ~100 positive anchors per image, ~1 % ignored anchors (all their pairs).
Score distributions: ``early`` (every logit ~ N(-4.6, 0.5), the prior-0.01 initialisation) and ``late``
(negatives ~ N(-7, 1.5), positives ~ N(0, 2): mostly separated, spread out).
Methods: our aLRP Loss (L_cls + L_loc), our AP Loss, the loop oracle of tests/oracle_alrp.py (numpy float64
loop over positives, only where |P| x |relevant N| is small enough to finish in ~20 s) and torchvision's
sigmoid_focal_loss on the same tensors (summed over non-ignored pairs / |P|, as alrp.losses.criterion does).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the inputs; on CPU the running total of the torch
profiler's per-op allocations net of frees (inputs excluded). The last line is the headline
``alrp/focal fwd+bwd ratio (2 img, early): X.XX``.

Usage: python benchmarks/bench_losses.py [--device cpu|cuda] [--quick] [--repeats N]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torchvision.ops import sigmoid_focal_loss

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from alrp.losses.alrp import alrp_loss  # noqa: E402
from alrp.losses.ap import ap_loss  # noqa: E402

ANCHORS_PER_IMAGE = 32_736  # 512^2, strides 8..128 -> 5,456 locations x A = 6
NUM_CLASSES = 80
POS_PER_IMAGE = 100
IGNORED_FRACTION = 0.01
ORACLE_MAX_PAIRS = 3e8  # |P| x |relevant N| above which the loop oracle is skipped (> ~20 s here)


def make_batch(images: int, dist: str, device: torch.device, seed: int = 0):
    """Flattened (image, anchor, class) logits (M,), targets (M,) in {1, 0, -1}, loc errors (P,)."""
    g = torch.Generator().manual_seed(seed)
    anchors = images * ANCHORS_PER_IMAGE
    kind = torch.zeros(anchors, dtype=torch.int64)  # 0 background, 1 positive, -1 ignored
    perm = torch.randperm(anchors, generator=g)
    num_pos = images * POS_PER_IMAGE
    num_ign = int(IGNORED_FRACTION * anchors)
    kind[perm[:num_ign]] = -1
    kind[perm[num_ign:num_ign + num_pos]] = 1
    targets = torch.zeros(anchors, NUM_CLASSES, dtype=torch.int64)
    targets[kind == -1] = -1
    pos_anchor = (kind == 1).nonzero().squeeze(1)
    targets[pos_anchor, torch.randint(0, NUM_CLASSES, (num_pos,), generator=g)] = 1
    targets = targets.flatten()
    if dist == "early":
        logits = torch.randn(targets.numel(), generator=g) * 0.5 - 4.6
    else:
        logits = torch.randn(targets.numel(), generator=g) * 1.5 - 7.0
        pos = targets == 1
        logits[pos] = torch.randn(int(pos.sum()), generator=g) * 2.0
    loc = torch.rand(num_pos, generator=g)
    return logits.to(device), targets.to(device), loc.to(device)


def step_alrp(logits, targets, loc):
    res = alrp_loss(logits, targets, loc)
    (res.cls + res.loc).backward()


def step_ap(logits, targets, loc):
    ap_loss(logits, targets).backward()


def step_focal(logits, targets, loc):
    y = targets.eq(1).to(logits.dtype)
    valid = targets.ge(0).to(logits.dtype)
    loss = (sigmoid_focal_loss(logits, y, reduction="none") * valid).sum() / max(1, int(y.sum()))
    loss.backward()


def step_oracle(logits, targets, loc):
    from tests.fixtures.oracle_alrp import alrp_oracle
    alrp_oracle(logits.detach().cpu().numpy(), targets.cpu().numpy(), loc.cpu().numpy())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(steps: dict[str, Callable], inputs, device: torch.device, repeats: int,
               warmup: bool = True) -> dict[str, float]:
    """Median wall time (ms) of one fwd+bwd per method, after a warm-up run each (if ``warmup``).

    Methods are timed in interleaved rounds so that a shared machine's load drifts affect them alike.
    """
    logits, targets, loc = inputs
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(repeats + int(warmup)):
        for name, step in steps.items():
            x = logits.detach().requires_grad_()
            _sync(device)
            t0 = time.perf_counter()
            step(x, targets, loc)
            _sync(device)
            if i or not warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def peak_memory_mb(step: Callable, inputs, device: torch.device) -> float:
    """Peak memory (MB) allocated by one fwd+bwd beyond the inputs."""
    logits, targets, loc = inputs
    x = logits.detach().requires_grad_()
    if device.type == "cuda":
        _sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step(x, targets, loc)
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(x, targets, loc)
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    running = itertools.accumulate(e.self_cpu_memory_usage for e in events)
    return max(running, default=0) / 2**20


def relevant_pairs(inputs) -> float:
    logits, targets, _ = inputs
    pos = targets == 1
    threshold = logits[pos].min() - 1.0
    return float(pos.sum()) * float(((targets == 0) & (logits >= threshold)).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description="aLRP / AP / focal loss fwd+bwd benchmark")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="cpu (default) or cuda")
    parser.add_argument("--quick", action="store_true", help="2 images only, 2 repeats, no oracle")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but CUDA is not available")
    sizes = [2] if args.quick else [1, 2, 8]
    repeats = 2 if args.quick else args.repeats
    methods = {"focal": step_focal, "alrp": step_alrp, "ap": step_ap, "oracle": step_oracle}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; median of {repeats} interleaved runs (oracle: 1 run)")
    print(f"{'images':>6} {'scores':>6} {'pairs M':>10} {'P':>5} {'method':>7} {'fwd+bwd ms':>11} "
          f"{'peak MB':>8} {'x focal':>8}")
    headline = None
    for images, dist in itertools.product(sizes, ["early", "late"]):
        inputs = make_batch(images, dist, device)
        m, p = inputs[0].numel(), int((inputs[1] == 1).sum())
        timed = {k: v for k, v in methods.items() if k != "oracle"}
        results = time_steps(timed, inputs, device, repeats)
        run_oracle = not args.quick and relevant_pairs(inputs) <= ORACLE_MAX_PAIRS
        if run_oracle:
            results["oracle"] = time_steps({"oracle": step_oracle}, inputs, device, 1, warmup=False)["oracle"]
        for method in methods:
            if method not in results:
                print(f"{images:>6} {dist:>6} {m:>10,} {p:>5} {method:>7} {'skipped (too slow)':>21}")
                continue
            mem = peak_memory_mb(methods[method], inputs, device) if method != "oracle" else float("nan")
            print(f"{images:>6} {dist:>6} {m:>10,} {p:>5} {method:>7} {results[method]:>11.1f} {mem:>8.1f} "
                  f"{results[method] / results['focal']:>8.2f}")
        if images == 2 and dist == "early":
            headline = results["alrp"] / results["focal"]
    print(f"alrp/focal fwd+bwd ratio (2 img, early): {headline:.2f}")


if __name__ == "__main__":
    main()
