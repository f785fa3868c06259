"""Predictions on images without ground truth: class table and thresholds from the checkpoint, results JSON with
file names and sizes, drawn images.

`eval.py --images PATH...` builds the detector and calls `predict_images`; the images go through the eval
transforms and `data.build_loader(..., train=False)` (so they are batched like any evaluation split) and
`training.inference.predict_coco_results`, so the detections equal those of a model-mode evaluation.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import torch

from data.categories import category_table
from training import inference
from training.drawing import draw_detections
from training.logging import progress

log = logging.getLogger("predict")
DEFAULT_SCORE_THRESHOLD = 0.5  # for classes without a stored LRP-optimal threshold


@dataclass
class ClassTable:
    """Category ids (label k <-> `cat_ids[k]`) and their names."""

    cat_ids: list[int]
    names: list[str]

    def name_of(self) -> dict[int, str]:
        """{category id: name}."""
        return dict(zip(self.cat_ids, self.names))


def checkpoint_extras(dataset: Any, metrics: Mapping[str, Any] | None,
                      previous: Mapping[int, float] | None = None) -> dict[str, Any]:
    """What a training checkpoint stores for prediction: `categories` [{id, name}] of the training set and
    `lrp_thresholds` {category id: LRP-optimal score threshold} of the latest evaluation (`metrics["per_class"]`),
    else `previous` (those of the checkpoint a run resumed from). Plain containers: weights-only loadable.
    """
    extras: dict[str, Any] = {}
    categories = category_table(dataset)
    if categories is not None:
        extras["categories"] = categories
    per_class = (metrics or {}).get("per_class") or {}
    thresholds = {int(c): float(row["threshold"]) for c, row in per_class.items()
                  if row is not None and math.isfinite(float(row.get("threshold", math.nan)))}
    extras["lrp_thresholds"] = thresholds or dict(previous or {})
    return extras


def class_table(state: Mapping[str, Any], ann_file: str | Path) -> ClassTable:
    """The classes the checkpoint was trained on: its `categories` entry, else the categories of `ann_file`.

    Raises:
        ValueError: neither is available (one line naming both).
    """
    cats = state.get("categories")
    source = "checkpoint"
    if not cats:
        path = Path(ann_file)
        if not path.is_file():
            raise ValueError(f"the checkpoint has no class table (it predates 'categories') and {path} is missing; "
                             "point data.root at the dataset it was trained on (--set data.root=...)")
        with open(path, "rb") as f:
            cats = json.load(f).get("categories") or []
        source = str(path)
    cats = sorted(cats, key=lambda c: int(c["id"]))
    if not cats:
        raise ValueError(f"{source}: no categories")
    return ClassTable([int(c["id"]) for c in cats], [str(c.get("name", c["id"])) for c in cats])


def score_thresholds(state: Mapping[str, Any], override: float | None) -> tuple[dict[int, float], float, str]:
    """Per-class drawing thresholds: ({cat_id: threshold}, default for other classes, description).

    `override` (``--score-threshold``) applies to every class; otherwise the LRP-optimal thresholds the
    checkpoint stores (`lrp_thresholds`, from its last evaluation), with 0.5 for classes it has none for.
    """
    if override is not None:
        return {}, float(override), f"score >= {override:g} (--score-threshold)"
    stored = {int(k): float(v) for k, v in (state.get("lrp_thresholds") or {}).items() if math.isfinite(float(v))}
    if stored:
        return stored, DEFAULT_SCORE_THRESHOLD, (f"the checkpoint's LRP-optimal thresholds ({len(stored)} classes; "
                                                 f"{DEFAULT_SCORE_THRESHOLD} for the others)")
    return {}, DEFAULT_SCORE_THRESHOLD, f"score >= {DEFAULT_SCORE_THRESHOLD} (the checkpoint stores no thresholds)"


def with_file_names(results: Sequence[dict], dataset: Any) -> list[dict]:
    """COCO results plus `file_name`, `width`, `height` of their image; images that failed to decode are dropped."""
    bad = dataset.skipped_ids()
    out = []
    for r in results:
        if r["image_id"] in bad:
            continue
        e = dataset.by_id[r["image_id"]]
        out.append({**r, "file_name": str(e.path), "width": e.width, "height": e.height})
    return out


def drawn_names(dataset: Any) -> dict[int, str]:
    """{image_id: output file name}: `<stem>.jpg`, or `<stem>_<id>.jpg` when two inputs share a stem."""
    counts: dict[str, int] = {}
    for e in dataset.entries:
        counts[e.path.stem] = counts.get(e.path.stem, 0) + 1
    return {e.image_id: f"{e.path.stem}.jpg" if counts[e.path.stem] == 1 else f"{e.path.stem}_{e.image_id}.jpg"
            for e in dataset.entries}


def draw_all(dataset: Any, results: Sequence[dict], out_dir: Path, names: Mapping[int, str],
             thresholds: Mapping[int, float], default_threshold: float, show_progress: bool = True) -> list[Path]:
    """Writes every readable image with its detections above threshold to `out_dir`; returns the files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    by_image: dict[int, list[dict]] = {}
    for r in results:
        if r["score"] >= thresholds.get(r["category_id"], default_threshold):
            by_image.setdefault(r["image_id"], []).append(r)
    bad, file_names, written = dataset.skipped_ids(), drawn_names(dataset), []
    for e in progress(dataset.entries, total=len(dataset.entries), desc="draw", enabled=show_progress):
        if e.image_id in bad:
            continue
        target = out_dir / file_names[e.image_id]
        if target.resolve() == e.path.resolve():
            target = out_dir / f"{e.path.stem}_pred.jpg"  # never overwrite an input image
        image = cv2.imread(str(e.path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if image is None or not cv2.imwrite(str(target), draw_detections(image, by_image.get(e.image_id, []), names)):
            raise OSError(f"cannot draw {e.path} into {target}")
        written.append(target)
    return written


@torch.inference_mode()
def predict_images(model: torch.nn.Module, dataset: Any, loader: Any, device: torch.device, table: ClassTable,
                   *, amp: bool = False, show_progress: bool = True) -> list[dict]:
    """Detections on every image of `dataset` (an `ImageListDataset` behind `loader`), with file names and sizes."""
    results = inference.predict_coco_results(model, loader, device, label_to_cat_id=lambda k: table.cat_ids[k],
                                             amp=amp, show_progress=show_progress, desc="predict")
    return with_file_names(results, dataset)
