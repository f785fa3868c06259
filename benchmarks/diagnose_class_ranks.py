#!/usr/bin/env python
"""What happens to each class's objects in a trained detector? Per ground-truth box, from anchors to detections.

For every val image (eval preset, batch 1) and every ground-truth box of class c, with the run's own assigner:
- whether any anchor is assigned to it (IoU >= the positive threshold): without one no loss can train it;
- its best positive score: the highest sigmoid score of class c over its positive anchors;
- how many negative (anchor, class) pairs of the image score above that: of class c only (what class c's AP ranks
  against) and of all classes (what a loss that ranks all pairs together, such as aLRP and AP Loss, sees);
- whether that score passes the post-processing threshold, and whether a final detection of class c (after NMS and
  the per-image cap) covers the box at IoU >= 0.5 (any such detection: not COCO's one-to-one matching, so dense
  classes can count one detection for two boxes).
The negatives counted are anchors before NMS, within one image: they bound, not equal, the false positives that
class c's AP ranks against.

Example (a run folder holds config.yaml and checkpoints/latest):
    python benchmarks/diagnose_class_ranks.py --run runs/platelets/alrp_giou_sb_s0 --run runs/platelets/focal_giou_s0
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from functools import partial
from pathlib import Path

import torch
from torch import Tensor
from torchvision.ops import box_iou

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.postprocess import image_geometry, to_original  # noqa: E402
from models.targets import pair_targets  # noqa: E402
from training.checkpoint import find_latest, load_checkpoint  # noqa: E402
from training.config import load_config  # noqa: E402


def gt_rows(scores: Tensor, labels: Tensor, matched_gt: Tensor, gt_labels: Tensor) -> list[dict]:
    """One row per ground-truth box of one image.

    Args:
        scores: (A, K) sigmoid scores. labels: (A,) anchor labels (-1 ignore, 0 background, 1 + class).
        matched_gt: (A,) index of the positive anchor's ground truth (anything for non-positives).
        gt_labels: (G,) class index of each ground-truth box.
    Returns rows with class, has_positive, best_score (NaN without a positive), neg_above_own (negatives of the box's
    class scoring above best_score), neg_above_all (negatives of every class above it).
    """
    pair_t = pair_targets(labels[None], scores.shape[1])[0]  # (A, K) in {1, 0, -1}
    negatives = scores[pair_t.eq(0)]
    negatives_of_class = [scores[pair_t[:, k].eq(0), k] for k in range(scores.shape[1])]
    rows = []
    for g, c in enumerate(gt_labels.tolist()):
        positive = labels.gt(0) & matched_gt.eq(g)
        row = {"class": c, "has_positive": bool(positive.any()), "best_score": math.nan,
               "neg_above_own": None, "neg_above_all": None}
        if row["has_positive"]:
            best = scores[positive, c].max()
            row["best_score"] = float(best)
            row["neg_above_own"] = int((negatives_of_class[c] > best).sum())
            row["neg_above_all"] = int((negatives > best).sum())
        rows.append(row)
    return rows


def covered(det_boxes: Tensor, det_labels: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
            iou: float = 0.5) -> list[bool]:
    """Per ground-truth box: does a detection of its class overlap it at IoU >= `iou`? Boxes (D, 4) / (G, 4) xyxy."""
    if not len(gt_boxes):
        return []
    if not len(det_boxes):
        return [False] * len(gt_boxes)
    same_class = gt_labels[:, None].eq(det_labels[None, :])
    return ((box_iou(gt_boxes, det_boxes) >= iou) & same_class).any(dim=1).tolist()


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows) if rows else math.nan


def summarise(rows: list[dict], class_names: list[str], score_threshold: float,
              detections_per_image: list[float]) -> dict[str, dict]:
    """Per class name: counts, shares and medians over its ground-truth boxes (rows of `gt_rows` with `covered`
    added), and the class's mean number of final detections per image."""
    out = {}
    for c, name in enumerate(class_names):
        mine = [r for r in rows if r["class"] == c]
        trained = [r for r in mine if r["has_positive"]]
        med = partial(_median, trained)
        out[name] = {
            "gt": len(mine),
            "with_positive": len(trained) / len(mine) if mine else math.nan,
            "median_best_score": med("best_score"),
            "best_above_threshold": (sum(r["best_score"] > score_threshold for r in trained) / len(trained)
                                     if trained else math.nan),
            "median_neg_above_own": med("neg_above_own"),
            "median_neg_above_all": med("neg_above_all"),
            "covered": sum(r["covered"] for r in mine) / len(mine) if mine else math.nan,
            "detections_per_image": detections_per_image[c],
        }
    return out


@torch.inference_mode()
def diagnose_run(run: Path, overrides: list[str], max_images: int | None) -> dict[str, dict]:
    """`summarise` of every val ground-truth box for the run folder `run` (its config.yaml and latest checkpoint)."""
    import data
    import models

    cfg = load_config(run / "config.yaml", overrides)
    if cfg.model.postprocess.level_score_thresholds is not None:
        raise SystemExit(f"{run}: per-level score thresholds are not supported (best_above_threshold uses one)")
    dataset = data.build_dataset(cfg.data, cfg.data.split_folder(cfg.eval.split), train=False)
    loader = data.build_loader(dataset, cfg.data, train=False, batch_size=1)
    net = models.build_detector(cfg.model, dataset.num_classes)
    net.load_state_dict(load_checkpoint(find_latest(run))["model"])
    net.eval()
    rows: list[dict] = []
    detections = torch.zeros(dataset.num_classes)
    n_images = 0
    for images, targets in loader:
        if max_images is not None and n_images >= max_images:
            break
        n_images += 1
        outputs = net(images)
        anchors = net.anchors(images)
        (boxes, gt_labels, crowd), = net.ground_truth(anchors.boxes, targets)
        (assignment,) = net.assign(anchors, [(boxes, gt_labels, crowd)])
        image_rows = gt_rows(outputs["cls_logits"][0].sigmoid(), assignment.labels, assignment.matched_gt, gt_labels)
        (det,) = net.postprocess(outputs, anchors, targets)
        gt_boxes = to_original(boxes, image_geometry(targets[0])[0])
        for row, hit in zip(image_rows, covered(det["boxes"], det["labels"], gt_boxes, gt_labels)):
            row["covered"] = hit
        rows.extend(image_rows)
        detections += torch.bincount(det["labels"], minlength=dataset.num_classes)[:dataset.num_classes]
    return summarise(rows, list(dataset.class_names), cfg.model.postprocess.score_threshold,
                     (detections / max(n_images, 1)).tolist())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, action="append", required=True, help="run folder (repeatable)")
    p.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. data.root=datasets/bccd")
    p.add_argument("--max-images", type=int)
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    for run in args.run:
        if not (run / "config.yaml").is_file() or find_latest(run) is None:
            p.error(f"{run} is not a finished run folder (needs config.yaml and a checkpoint)")
    result = {}
    for run in args.run:
        result[str(run)] = summary = diagnose_run(run, args.set, args.max_images)
        print(f"\n{run}:")
        keys = list(next(iter(summary.values())))
        print(f"{'class':<12}" + "".join(f"{k:>22}" for k in keys))
        for name, stats in summary.items():
            print(f"{name:<12}" + "".join(f"{v:>22.4g}" for v in stats.values()))
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
