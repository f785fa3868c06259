#!/usr/bin/env python
"""One full training iteration of RetinaNet R-50 with aLRP Loss vs AP Loss vs Focal Loss, in the same process.

An iteration: forward, `loss_targets` (assignment + flattening), criterion, backward, SGD step, on a fixed
synthetic batch already in memory (random images, 8 random boxes per image, K = 80 classes). The model is the
paper's (R-50 FPN 256 channels, A = 6 anchors, max-IoU assignment, random weights); every loss gets a fresh model
from the same seed. The losses are timed round-robin (one iteration each per round) so that load from other
processes on a shared machine hits them alike. The ratios use the fastest round of each loss (other processes
only ever add time, so the minimum is the least disturbed figure); the median is printed beside it.

Paper (V100, batch 32 at 512²): focal 0.28 s, AP Loss 0.71 s, aLRP 0.80 s per iteration (aLRP/focal 2.9x).
Last line: `alrp/focal train-step ratio: X.XX`.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alrp.losses.criterion import build_criterion  # noqa: E402
from alrp.losses.config import LossConfig  # noqa: E402
from models import ModelConfig, build_detector  # noqa: E402

NUM_CLASSES = 80
LOSSES = {  # name -> the loss section of the matching experiment config
    "aLRP": dict(name="alrp", box_loss="giou", self_balance=True, sb_init=50.0),
    "AP": dict(name="ap", box_loss="smooth_l1", self_balance=False, loc_weight=1.0),
    "focal": dict(name="focal", box_loss="smooth_l1", self_balance=False, loc_weight=1.0),
}


def synthetic_batch(batch: int, size: int, boxes_per_image: int, device: torch.device, seed: int = 0):
    """(images (B, 3, S, S) float32, targets list of dicts with boxes (n, 4) xyxy pixels and labels (n,))."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, 3, size, size, generator=g)
    targets = []
    for i in range(batch):
        wh = torch.rand(boxes_per_image, 2, generator=g) * 0.4 * size + 0.05 * size  # 5%..45% of the side
        xy = torch.rand(boxes_per_image, 2, generator=g) * (size - wh)
        boxes = torch.cat([xy, xy + wh], dim=1)
        labels = torch.randint(0, NUM_CLASSES, (boxes_per_image,), generator=g)
        targets.append({"boxes": boxes.to(device), "labels": labels.to(device), "image_id": i})
    return images.to(device), targets


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """A model + criterion + SGD optimiser for one loss; `step()` runs one timed training iteration."""

    def __init__(self, loss: dict, device: torch.device, seed: int) -> None:
        torch.manual_seed(seed)
        self.model = build_detector(ModelConfig(), NUM_CLASSES).to(device).train()
        self.criterion = build_criterion(LossConfig(**loss))
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=1e-4)
        self.device = device

    def step(self, images: torch.Tensor, targets: list) -> tuple[float, int]:
        """Seconds for one iteration and the number of positive anchors."""
        _sync(self.device)
        tic = time.perf_counter()
        outputs = self.model(images)
        lt = self.model.loss_targets(outputs, self.model.anchors(images), targets)
        losses = self.criterion(lt)
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.optimizer.step()
        _sync(self.device)
        return time.perf_counter() - tic, int(lt.num_pos)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default %(default)s)")
    p.add_argument("--size", type=int, default=512, help="square input side in pixels (default %(default)s)")
    p.add_argument("--batch", type=int, default=2, help="images per iteration (default %(default)s)")
    p.add_argument("--iters", type=int, default=5, help="timed rounds (default %(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.size % 128:
        p.error(f"--size must be a multiple of 128 (the P7 stride), got {args.size}")
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        p.error(f"--device {args.device!r}: {err}")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device {args.device}: CUDA is not available on this machine (torch {torch.__version__})")
    if args.threads:
        torch.set_num_threads(args.threads)
    images, targets = synthetic_batch(args.batch, args.size, 8, device)
    trainers = {name: Trainer(loss, device, seed=0) for name, loss in LOSSES.items()}
    times: dict[str, list[float]] = {name: [] for name in LOSSES}
    num_pos = {}
    for r in range(args.warmup + args.iters):
        for name, trainer in trainers.items():
            seconds, num_pos[name] = trainer.step(images, targets)
            if r >= args.warmup:
                times[name].append(seconds)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"RetinaNet R-50 FPN, A=6, K={NUM_CLASSES}, batch {args.batch} x {args.size}^2, {where}, "
          f"torch {torch.__version__}, {args.iters} rounds after {args.warmup} warm-up")
    print(f"{'loss':<8}{'min s/iter':>12}{'median':>10}{'vs focal':>10}{'positives':>11}")
    best = {name: min(t) for name, t in times.items()}
    for name, t in times.items():
        print(f"{name:<8}{best[name]:>12.3f}{statistics.median(t):>10.3f}{best[name] / best['focal']:>9.2f}x"
              f"{num_pos[name]:>11d}")
    print(f"ap/focal train-step ratio: {best['AP'] / best['focal']:.2f}")
    print(f"alrp/focal train-step ratio: {best['aLRP'] / best['focal']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
