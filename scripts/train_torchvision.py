#!/usr/bin/env python
"""The external reference row of scripts/compare_losses.py: torchvision's own RetinaNet on our data and budget.

torchvision.models.detection.RetinaNet with its focal loss, L1 box loss, box coder, heads (GroupNorm, as its v2
head) and post-processing; a GroupNorm ResNet body with a `model.fpn.channels`-wide FPN (P6 from P5, its default);
anchors of our `model.anchors` sizes so that the comparison is not about anchor sizes. Data come from our loader
(same preset, input size, normalisation and seeds), the optimiser and schedule from our `train` section, and the
final weights are scored by our evaluator. Same command line as train.py (no --resume: an unfinished run restarts).

Run folder: config.yaml, metrics.jsonl (iter / epoch / stop / eval lines as train.py writes them),
eval_metrics.json (the final evaluation, as eval.py --json-out writes it) and eval/final_val_results.json (the
final weights' val detections, COCO results format, for benchmarks/ap_by_iou.py).

Example: python scripts/train_torchvision.py --config configs/small/bccd_torchvision_retinanet.yaml
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from alrp.metrics.report import class_ap_scalars, metrics_to_json  # noqa: E402
from data.categories import class_names  # noqa: E402
from models.config import FPN_STRIDES  # noqa: E402
from training.build import seed_everything  # noqa: E402
from training.config import Config, ConfigError, load_config, save_resolved_config  # noqa: E402
from training.distributed import resolve_device  # noqa: E402
from training.inference import coco_metrics, detections_to_coco  # noqa: E402
from training.logging import JsonlWriter  # noqa: E402
from training.optim import build_optimizer, build_scheduler, scaled_lr  # noqa: E402

METRICS_FILE = "eval_metrics.json"
FINAL_DETECTIONS = Path("eval") / "final_val_results.json"  # eval.py's <stem>_<split>_results.json, stem "final"


def build_tv_retinanet(cfg: Config, num_classes: int) -> RetinaNet:
    """torchvision RetinaNet: GroupNorm ResNet body (random init), FPN P3-P7, our anchor sizes, its own head."""
    gn = partial(nn.GroupNorm, 32)
    body = getattr(torchvision.models, cfg.model.backbone.name)(weights=None, norm_layer=gn)
    expansion = type(body.layer1[0]).expansion
    width = cfg.model.fpn.channels
    backbone = BackboneWithFPN(body, {"layer2": "0", "layer3": "1", "layer4": "2"},
                               [64 * 2 ** i * expansion for i in (1, 2, 3)], width,
                               extra_blocks=LastLevelP6P7(width, width))
    a = cfg.model.anchors
    sizes = tuple(tuple(a.base_scale * stride * s for s in a.scales) for stride in FPN_STRIDES)
    anchors = AnchorGenerator(sizes, (tuple(a.ratios),) * len(sizes))
    head = RetinaNetHead(width, anchors.num_anchors_per_location()[0], num_classes,
                         norm_layer=gn if cfg.model.head.norm == "gn" else None)
    pp = cfg.model.postprocess
    return RetinaNet(backbone, num_classes, min_size=cfg.data.train_size, max_size=cfg.data.train_size,
                     image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],  # our loader normalises already
                     anchor_generator=anchors, head=head, score_thresh=pp.score_threshold, nms_thresh=pp.nms_iou,
                     detections_per_img=pp.max_detections, topk_candidates=pp.pre_nms_topk,
                     fg_iou_thresh=cfg.model.assigner.pos_iou, bg_iou_thresh=cfg.model.assigner.neg_iou)


def tv_inputs(images: torch.Tensor, targets: list[dict], device: torch.device) -> tuple[list, list]:
    """Our padded batch (N, 3, H, W) -> torchvision's list of unpadded (3, h, w) images and box/label targets."""
    crops = [img[:, :int(t["size"][0]), :int(t["size"][1])].to(device) for img, t in zip(images, targets)]
    return crops, [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]


@torch.inference_mode()
def evaluate_tv(net: RetinaNet, loader, device: torch.device, cfg: Config) -> list[dict]:
    """COCO results of the val loader, boxes mapped back to original pixels (our eval resize is undone)."""
    net.eval()
    net.transform.min_size, net.transform.max_size = (cfg.data.eval_short_side,), cfg.data.eval_max_size
    results = []
    for images, targets in loader:
        crops, _ = tv_inputs(images, targets, device)
        for det, t in zip(net(crops), targets):
            det = {**det, "boxes": det["boxes"] / float(t["scale"])}
            results += detections_to_coco(det, int(t["image_id"]), loader.dataset.label_to_cat_id)
    net.train()
    net.transform.min_size, net.transform.max_size = (cfg.data.train_size,), cfg.data.train_size
    return results


def train(cfg: Config) -> dict:
    """Trains and evaluates like train.py (eval every `train.eval_interval` epochs and at the end)."""
    import data

    tc, run_dir, device = cfg.train, Path(cfg.run_dir), resolve_device(cfg.device)
    seed_everything(cfg.seed)
    train_set = data.build_dataset(cfg.data, cfg.data.split_folder("train"), train=True)
    val_set = data.build_dataset(cfg.data, cfg.data.split_folder("val"), train=False)
    train_loader = data.build_loader(train_set, cfg.data, train=True, batch_size=tc.batch_size, seed=cfg.seed)
    val_loader = data.build_loader(val_set, cfg.data, train=False, batch_size=cfg.eval.batch_size, seed=cfg.seed)
    net = build_tv_retinanet(cfg, train_set.num_classes).to(device).train()
    ipe = len(train_loader)
    total = min(tc.epochs * ipe, tc.max_iters or math.inf)
    opt = build_optimizer(net, name=tc.optimizer, lr=scaled_lr(tc.lr, tc.batch_size, tc.ref_batch_size),
                          momentum=tc.momentum, weight_decay=tc.weight_decay)
    sched = build_scheduler(opt, schedule=tc.lr_schedule, iters_per_epoch=ipe, total_iters=int(total),
                            lr_steps=tc.lr_steps, gamma=tc.lr_gamma, warmup_iters=tc.warmup_iters,
                            warmup_mode=tc.warmup_mode, warmup_factor=tc.warmup_factor)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # no resume: a restarted run starts its log afresh
    save_resolved_config(cfg, run_dir)
    jsonl, iteration, metrics = JsonlWriter(run_dir / "metrics.jsonl"), 0, None

    def evaluate(kind: str, epoch: int, seconds: float) -> dict:
        detections = evaluate_tv(net, val_loader, device, cfg)
        if kind == "eval":  # the final weights
            (run_dir / FINAL_DETECTIONS).parent.mkdir(parents=True, exist_ok=True)
            (run_dir / FINAL_DETECTIONS).write_text(json.dumps(detections))
        full = coco_metrics(val_set, detections)
        scalars = {k: v for k, v in full.items() if isinstance(v, (int, float))}
        scalars.update(class_ap_scalars(full, class_names(val_set)))
        jsonl.write({"type": kind, "epoch": epoch, "iteration": iteration, "train_seconds": seconds, **scalars})
        return full

    for epoch in range(tc.epochs):
        train_loader.set_epoch(epoch)
        tic, steps = time.perf_counter(), 0
        for images, targets in train_loader:
            losses = net(*tv_inputs(images, targets, device))
            loss = losses["classification"] + losses["bbox_regression"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at iteration {iteration + 1}: {float(loss)}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip:
                nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip)
            opt.step()
            sched.step()
            iteration, steps = iteration + 1, steps + 1
            if iteration % tc.log_interval == 0:
                parts = {k: float(v.detach()) for k, v in losses.items()}
                jsonl.write({"type": "iter", "epoch": epoch, "iteration": iteration, "total": float(loss.detach()),
                             "cls": parts["classification"], "loc": parts["bbox_regression"],
                             "it_per_s": steps / (time.perf_counter() - tic)})
            if iteration >= total:
                break
        seconds, done = time.perf_counter() - tic, iteration >= total
        if steps == ipe and (tc.eval_interval and (epoch + 1) % tc.eval_interval == 0) and not done:
            evaluate("epoch", epoch + 1, seconds)
        elif done:
            metrics = evaluate("eval", epoch + int(steps == ipe), seconds)
            break
        else:
            jsonl.write({"type": "epoch", "epoch": epoch + 1, "iteration": iteration, "train_seconds": seconds})
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics_to_json(metrics), indent=1) + "\n")
    return metrics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    p.add_argument("--output-dir")
    p.add_argument("--name")
    p.add_argument("--no-progress", action="store_true", help="accepted for train.py compatibility (no bars here)")
    args = p.parse_args(argv)
    overrides = [*args.overrides, *([f"output_dir={args.output_dir}"] if args.output_dir else []),
                 *([f"name={args.name}"] if args.name else [])]
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    metrics = train(cfg)
    print(f"done: AP {metrics['AP']:.4f}, oLRP {metrics['oLRP']:.4f} -> {Path(cfg.run_dir) / METRICS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
