"""Model speed: forward and forward+backward per image at 512² for our R-50 RetinaNet next to torchvision's
`retinanet_resnet50_fpn` (same input, same run, A = 6, K = 80), and post-processing time per image.

Both models run their raw path (backbone + FPN + head, no resize/normalise transform) with frozen BatchNorm and the
stem + stage 1 frozen, as in fine-tuning from ImageNet weights. Timings alternate between the two models each
iteration and report the median, so a shared machine's load hits both alike.

    python benchmarks/bench_model.py --device cpu --batch 1 --iters 10
Last line: `model/torchvision forward ratio: X.XX`.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torchvision.models.detection import retinanet_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchors
from torchvision.ops import FrozenBatchNorm2d

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import ModelConfig, build_detector  # noqa: E402


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replaces every BatchNorm2d in `module` by a FrozenBatchNorm2d with the same statistics (in place)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.load_state_dict(child.state_dict(), strict=False)
            setattr(module, name, frozen.to(child.weight.device))
        else:
            freeze_batchnorm(child)
    return module


def torchvision_model(device: torch.device) -> Callable[[Tensor], dict[str, Tensor]]:
    """torchvision RetinaNet R-50-FPN with A = 6 anchors, frozen BN, frozen stem + layer1; returns raw outputs."""
    anchors = TorchvisionAnchors(tuple((s, s * 2 ** 0.5) for s in (32, 64, 128, 256, 512)), ((0.5, 1.0, 2.0),) * 5)
    tv = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=80, anchor_generator=anchors)
    freeze_batchnorm(tv.backbone.body)
    for name, p in tv.backbone.body.named_parameters():
        if name.startswith(("conv1", "layer1")):
            p.requires_grad_(False)
    tv.to(device)

    def run(images: Tensor) -> dict[str, Tensor]:
        return tv.head(list(tv.backbone(images).values()))

    run.module = tv  # type: ignore[attr-defined]
    return run


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def forward_only(run: Callable, images: Tensor) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            run(images)
    return step


def forward_backward(run: Callable, module: nn.Module, images: Tensor) -> Callable[[], None]:
    def step() -> None:
        module.zero_grad(set_to_none=True)
        out = run(images)
        boxes = out.get("box_deltas", out.get("bbox_regression"))
        (out["cls_logits"].mean() + boxes.mean()).backward()
    return step


def bench_pair(steps: dict[str, Callable[[], None]], iters: int, warmup: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each step, alternating the steps every iteration."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(warmup + iters):
        for name, step in steps.items():
            t = timed(step, device)
            if i >= warmup:
                times[name].append(t)
    return {name: statistics.median(v) for name, v in times.items()}


def stress_outputs(batch: int, num_anchors: int, device: torch.device) -> dict[str, Tensor]:
    """Logits where ~29% of pairs clear the 0.05 threshold: every level fills its 1000 pre-NMS candidates."""
    g = torch.Generator(device="cpu").manual_seed(0)
    logits = torch.randn(batch, num_anchors, 80, generator=g) - 3.5
    deltas = torch.randn(batch, num_anchors, 4, generator=g) * 0.5
    return {"cls_logits": logits.to(device), "box_deltas": deltas.to(device)}


def parse_args() -> argparse.Namespace:
    """Command-line options, checked (a bad value is a one-line usage error)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=None, help="images per step (default 1 on CPU, 8 on CUDA)")
    parser.add_argument("--iters", type=int, default=None, help="timed iterations (default 10 on CPU, 20 on CUDA)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--p6-from", default="c5", choices=["c5", "p5"],
                        help="our P6 source: c5 (default, ablation code) or p5 (torchvision's design)")
    args = parser.parse_args()
    for key in ("size", "batch", "iters"):
        value = getattr(args, key)
        if value is not None and value < 1:
            parser.error(f"--{key} must be >= 1, got {value}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    cuda = args.device == "cuda"
    args.batch = args.batch or (8 if cuda else 1)
    args.iters = args.iters or (20 if cuda else 10)
    return args


def bench_postprocess(ours: nn.Module, tv_module: nn.Module, images: Tensor, args: argparse.Namespace,
                      device: torch.device) -> tuple:
    """Median seconds of our post-processor and torchvision's on the worst-case outputs; and our detections."""
    batch, size = images.shape[0], images.shape[-1]
    anchors = ours.anchors(images)
    outputs = stress_outputs(batch, anchors.boxes.shape[0], device)
    targets = [{"orig_size": (size, size), "scale": 1.0}] * batch
    counts = list(anchors.level_counts)
    tv_outputs = {"cls_logits": list(outputs["cls_logits"].split(counts, dim=1)),
                  "bbox_regression": list(outputs["box_deltas"].split(counts, dim=1))}
    tv_anchors = [list(anchors.boxes.split(counts))] * batch
    tv_post = tv_module.postprocess_detections
    post = bench_pair({"post": lambda: ours.postprocess(outputs, anchors, targets),
                       "tv_post": lambda: tv_post(tv_outputs, tv_anchors, [(size, size)] * batch)},
                      args.iters, args.warmup, device)
    return post, ours.postprocess(outputs, anchors, targets)


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    cuda, batch, iters = device.type == "cuda", args.batch, args.iters
    torch.manual_seed(0)
    if cuda:
        torch.backends.cudnn.benchmark = True

    ours = build_detector(ModelConfig(fpn={"p6_from": args.p6_from}), num_classes=80).to(device)
    tv_run = torchvision_model(device)
    images = torch.randn(batch, 3, args.size, args.size, device=device)
    ours.eval(), tv_run.module.eval()
    fwd = bench_pair({"ours": forward_only(ours, images), "torchvision": forward_only(tv_run, images)},
                     iters, args.warmup, device)
    ours.train(), tv_run.module.train()
    fb = bench_pair({"ours": forward_backward(ours, ours, images),
                     "torchvision": forward_backward(tv_run, tv_run.module, images)}, iters, args.warmup, device)
    post, dets = bench_postprocess(ours, tv_run.module, images, args, device)

    threads = torch.get_num_threads()
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {threads} threads"
    print(f"device: {name}; input {batch}x3x{args.size}x{args.size}; median of {iters} iterations; "
          f"our P6 from {args.p6_from.upper()}")
    print(f"{'per image':<34}{'ours (ms)':>12}{'torchvision (ms)':>18}{'ratio':>8}")
    for label, res in (("forward (no grad)", fwd), ("forward + backward", fb)):
        o, t = res["ours"] / batch * 1e3, res["torchvision"] / batch * 1e3
        print(f"{label:<34}{o:>12.1f}{t:>18.1f}{o / t:>8.2f}")
    p, tp = post["post"] / batch * 1e3, post["tv_post"] / batch * 1e3
    print(f"{'post-processing (5000 candidates)':<34}{p:>12.1f}{tp:>18.1f}{p / tp:>8.2f}")
    print(f"post-processing / our forward: {p / (fwd['ours'] / batch * 1e3):.2f} "
          f"({sum(len(d['scores']) for d in dets) / batch:.0f} detections/image)")
    print(f"model/torchvision forward ratio: {fwd['ours'] / fwd['torchvision']:.2f}")


if __name__ == "__main__":
    main()
