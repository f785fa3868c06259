"""PR and LRP-vs-score-threshold curves (matplotlib, Agg, no pyplot state) and drawn detections (OpenCV).

Files written by `write_plots(evaluation, out_dir)`:
    pr_overall.png, pr_<cat_id>_<name>.png      precision vs recall at IoU 0.50 and 0.75 (COCOeval, area all)
    lrp_overall.png, lrp_<cat_id>_<name>.png    LRP and its components vs score threshold, optimum marked
`visualize(...)` writes vis_<image_id>.jpg: ground truth green, detections (score >= the class's LRP-optimal
threshold) red with "name score".
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .evaluation import Evaluation
from .lrp import ClassMatches, lrp_curve

THRESHOLDS = np.linspace(0.0, 1.0, 201)  # score thresholds of the overall LRP curve


def _slug(cat_id: int, name: str) -> str:
    return f"{cat_id}_" + re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:40]


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=80)
    return path


def lrp_at_thresholds(m: ClassMatches, thresholds: np.ndarray, tau: float = 0.5) -> np.ndarray:
    """LRP of one class when keeping detections with score >= each threshold; (T,) -> (T,). 1 when none kept."""
    curve = lrp_curve(m, tau)["lrp"] if len(m.scores) else np.zeros(0)
    kept = np.searchsorted(-m.scores, -np.asarray(thresholds), side="right")  # scores are sorted descending
    return np.where(kept > 0, curve[np.maximum(kept - 1, 0)] if len(curve) else 1.0, 1.0)


def _pr_figure(recall: np.ndarray, curves: Mapping[str, np.ndarray], title: str) -> Figure:
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    for label, precision in curves.items():
        ax.plot(recall, precision, label=label)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return fig


def plot_pr_curves(ev: Evaluation, out_dir: Path) -> list[Path]:
    """PR curves (COCOeval interpolated precision over its 101 recall points) per class with GT and overall."""
    precision = ev.cocoeval.eval["precision"]  # (T, R, K, A, M)
    recall = np.asarray(ev.cocoeval.params.recThrs)
    cat_ids = [int(c) for c in ev.cocoeval.params.catIds]
    paths, overall = [], {}
    for t, iou in ((0, "0.50"), (5, "0.75")):
        per_class = precision[t, :, :, 0, -1]  # (R, K)
        valid = per_class[:, (per_class > -1).all(axis=0)]
        label = f"IoU {iou} (mean of {valid.shape[1]} classes)"
        overall[label] = valid.mean(axis=1) if valid.size else np.zeros_like(recall)
    paths.append(_save(_pr_figure(recall, overall, "all classes"), out_dir / "pr_overall.png"))
    for k, cat_id in enumerate(cat_ids):
        if cat_id not in ev.matches:
            continue
        curves = {f"IoU {iou}": np.clip(precision[t, :, k, 0, -1], 0, None) for t, iou in ((0, "0.50"), (5, "0.75"))}
        name = ev.cat_names.get(cat_id, str(cat_id))
        paths.append(_save(_pr_figure(recall, curves, f"{name} ({cat_id})"), out_dir / f"pr_{_slug(cat_id, name)}.png"))
    return paths


def _lrp_figure(ev: Evaluation, cat_id: int) -> Figure:
    m = ev.matches[cat_id]
    row = ev.metrics["per_class"][cat_id]
    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    if len(m.scores):
        curve = lrp_curve(m)
        ax.plot(curve["threshold"], curve["lrp"], label="LRP", color="k")
        for key, color in (("loc", "tab:blue"), ("fp", "tab:orange"), ("fn", "tab:green")):
            ax.plot(curve["threshold"], curve[key], label=f"LRP_{key.upper() if key != 'loc' else 'loc'}",
                    color=color, alpha=0.7, lw=1)
    if not math.isnan(row["threshold"]):
        ax.axvline(row["threshold"], ls="--", color="r", lw=1)
        ax.plot([row["threshold"]], [row["oLRP"]], "ro", label=f"oLRP {row['oLRP']:.3f} @ {row['threshold']:.3f}")
    name = ev.cat_names.get(cat_id, str(cat_id))
    ax.set(xlabel="score threshold", ylabel="error", xlim=(0, 1), ylim=(0, 1.02), title=f"{name} ({cat_id})")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no detections", ha="center", transform=ax.transAxes)
    return fig


def plot_lrp_curves(ev: Evaluation, out_dir: Path) -> list[Path]:
    """LRP vs score threshold per class with GT, and the class-mean LRP on a common threshold grid."""
    paths = []
    if ev.matches:
        mean = np.mean([lrp_at_thresholds(m, THRESHOLDS) for m in ev.matches.values()], axis=0)
        fig = Figure(figsize=(5, 4))
        ax = fig.subplots()
        ax.plot(THRESHOLDS, mean, color="k", label="mean LRP over classes")
        best = int(np.argmin(mean))
        ax.plot([THRESHOLDS[best]], [mean[best]], "ro", label=f"min {mean[best]:.3f} @ {THRESHOLDS[best]:.3f}")
        ax.set(xlabel="score threshold (same for all classes)", ylabel="LRP", xlim=(0, 1), ylim=(0, 1.02),
               title=f"all classes (moLRP with per-class thresholds: {ev.metrics['oLRP']:.3f})")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        paths.append(_save(fig, out_dir / "lrp_overall.png"))
    for cat_id in ev.matches:
        name = ev.cat_names.get(cat_id, str(cat_id))
        paths.append(_save(_lrp_figure(ev, cat_id), out_dir / f"lrp_{_slug(cat_id, name)}.png"))
    return paths


def write_plots(ev: Evaluation, out_dir: str | Path) -> list[Path]:
    """Write all PR and LRP curve PNGs into ``out_dir`` (created); returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return plot_pr_curves(ev, out_dir) + plot_lrp_curves(ev, out_dir)


def draw_boxes(image: np.ndarray, gt_boxes: Sequence[Sequence[float]], detections: Sequence[dict],
               names: Mapping[int, str]) -> np.ndarray:
    """Draw xywh ground-truth boxes (green) and detections (red, 'name score') on a copy of a (H, W, 3) BGR uint8."""
    out = image.copy()
    for x, y, w, h in gt_boxes:
        cv2.rectangle(out, (round(x), round(y)), (round(x + w), round(y + h)), (0, 200, 0), 2)
    for det in detections:
        x, y, w, h = det["bbox"]
        p1 = (round(x), round(y))
        cv2.rectangle(out, p1, (round(x + w), round(y + h)), (0, 0, 255), 2)
        label = f"{names.get(det['category_id'], det['category_id'])} {det['score']:.2f}"
        cv2.putText(out, label, (p1[0], max(p1[1] - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 255), 1,
                    cv2.LINE_AA)
    return out


def visualize(ev: Evaluation, results: Sequence[dict], image_path: Callable[[int], Path], out_dir: str | Path,
              num_images: int) -> list[Path]:
    """Draw the first ``num_images`` images (by id) with GT and detections above their class's oLRP threshold.

    Args:
        image_path: image id -> file of the original image (as in the ground truth's ``file_name``).
    Raises:
        FileNotFoundError: an image file is missing or unreadable (message names it).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    coco = ev.cocoeval.cocoGt
    thresholds = {c: row["threshold"] for c, row in ev.metrics["per_class"].items()
                  if row is not None and not math.isnan(row["threshold"])}
    by_image: dict[int, list[dict]] = {}
    for det in results:
        if det["category_id"] in thresholds and det["score"] >= thresholds[det["category_id"]]:
            by_image.setdefault(det["image_id"], []).append(det)
    paths = []
    for image_id in sorted(coco.getImgIds())[:max(num_images, 0)]:
        path = Path(image_path(image_id))
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"image {image_id}: cannot read {path}")
        gts = [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=None))]
        drawn = draw_boxes(image, gts, by_image.get(image_id, []), ev.cat_names)
        target = out_dir / f"vis_{image_id}.jpg"
        if not cv2.imwrite(str(target), drawn):
            raise OSError(f"cannot write {target}")
        paths.append(target)
    return paths
