"""Optimal LRP (oLRP) and its components, on top of pycocotools' COCOeval matching.

LRP at a score threshold (tau = 0.5, the TP validation IoU):
    LRP = (sum_TP (1 - IoU) / (1 - tau) + N_FP + N_FN) / (N_TP + N_FP + N_FN)
oLRP of a class is the minimum LRP over every position of its detections sorted by descending score
(see ``docs/evaluation.md`` and ``alrp-math.md`` section 6).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pycocotools.cocoeval import COCOeval

AREA_NAMES = ("all", "small", "medium", "large")  # COCOeval.params.areaRng order


@dataclass
class ClassMatches:
    """Detections of one class over all images (each image capped at maxDets), sorted by descending score.

    Attributes:
        scores: (D,) detection scores.
        tp: (D,) bool, matched to a non-ignored ground truth.
        fp: (D,) bool, unmatched and not ignored (detections matched to ignored ground truths are neither).
        ious: (D,) IoU with the matched ground truth (0 where not a TP).
        num_gt: number of non-ignored ground truths of the class.
    """

    scores: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    ious: np.ndarray
    num_gt: int


@dataclass
class OptimalLRP:
    """oLRP of one class and its components at the LRP-optimal score threshold (NaN where undefined)."""

    olrp: float
    loc: float
    fp: float
    fn: float
    threshold: float
    num_gt: int
    num_tp: int
    num_fp: int


def _iou_threshold_index(evaluator: COCOeval, iou_thr: float) -> int:
    thrs = np.asarray(evaluator.params.iouThrs)
    idx = int(np.argmin(np.abs(thrs - iou_thr)))
    if abs(thrs[idx] - iou_thr) > 1e-9:
        raise ValueError(f"IoU threshold {iou_thr} is not one of COCOeval's iouThrs {thrs.tolist()}")
    return idx


def _matched_ious(evaluator: COCOeval, e: dict, matches: np.ndarray) -> np.ndarray:
    """IoU of each detection of one evalImgs entry with the ground truth it matched (0 if unmatched)."""
    out = np.zeros(len(e["dtIds"]))
    if not np.any(matches > 0):
        return out
    ious = evaluator.ious[e["image_id"], e["category_id"]]  # (D_sorted, G) rows: score order, cols: original gt order
    column = {g["id"]: j for j, g in enumerate(evaluator._gts[e["image_id"], e["category_id"]])}
    for d in np.nonzero(matches > 0)[0]:
        out[d] = ious[d, column[int(matches[d])]]
    return out


def class_matches(evaluator: COCOeval, cat_index: int, area_index: int = 0,
                  iou_thr: float = 0.5) -> ClassMatches | None:
    """Collect one class's matched detections from ``evaluator.evalImgs`` (after ``evaluate()``).

    Args:
        evaluator: a COCOeval on which ``evaluate()`` ran (bbox, useCats).
        cat_index: index into ``evaluator.params.catIds``.
        area_index: index into ``params.areaRng`` (0 all, 1 small, 2 medium, 3 large).
        iou_thr: the TP IoU threshold, one of ``params.iouThrs``.

    Returns:
        The matches, or None when the class has no non-ignored ground truth in that area range.
    """
    p = evaluator.params
    t = _iou_threshold_index(evaluator, iou_thr)
    n_img, n_area = len(p.imgIds), len(p.areaRng)
    start = cat_index * n_area * n_img + area_index * n_img
    entries = [e for e in evaluator.evalImgs[start:start + n_img] if e is not None]
    num_gt = int(sum(np.count_nonzero(e["gtIgnore"] == 0) for e in entries))
    if num_gt == 0:  # also when no image has an entry
        return None
    scores = np.concatenate([np.asarray(e["dtScores"], dtype=float) for e in entries])
    matches = np.concatenate([e["dtMatches"][t] for e in entries])
    ignore = np.concatenate([np.asarray(e["dtIgnore"][t], dtype=bool) for e in entries])
    ious = np.concatenate([_matched_ious(evaluator, e, e["dtMatches"][t]) for e in entries])
    order = np.argsort(-scores, kind="mergesort")  # stable, as COCOeval.accumulate
    tp = (matches[order] > 0) & ~ignore[order]
    fp = (matches[order] == 0) & ~ignore[order]
    return ClassMatches(scores[order], tp, fp, np.where(tp, ious[order], 0.0), num_gt)


def lrp_curve(m: ClassMatches, tau: float = 0.5) -> dict[str, np.ndarray]:
    """LRP and its components when keeping the first i+1 detections, for every position i.

    Returns:
        dict of (D,) arrays: ``lrp``, ``loc`` (mean 1 - IoU of TPs, NaN without TP), ``fp`` (N_FP / (N_TP + N_FP),
        NaN before any TP or FP), ``fn`` (N_FN / N_GT), ``threshold`` (the scores), ``tp``, ``fp_count``.
    """
    n_tp = np.cumsum(m.tp).astype(float)
    n_fp = np.cumsum(m.fp).astype(float)
    loc_sum = np.cumsum(np.where(m.tp, 1.0 - m.ious, 0.0))
    n_fn = m.num_gt - n_tp
    lrp = (loc_sum / (1.0 - tau) + n_fp + n_fn) / (m.num_gt + n_fp)
    with np.errstate(divide="ignore", invalid="ignore"):
        loc = np.where(n_tp > 0, loc_sum / np.maximum(n_tp, 1), np.nan)
        fp_part = np.where(n_tp + n_fp > 0, n_fp / np.maximum(n_tp + n_fp, 1), np.nan)
    return {"lrp": lrp, "loc": loc, "fp": fp_part, "fn": n_fn / m.num_gt, "threshold": m.scores,
            "tp": n_tp, "fp_count": n_fp}


def optimal_lrp(m: ClassMatches, tau: float = 0.5) -> OptimalLRP:
    """oLRP (first minimum over every position) and components; 1 / NaN / NaN / 1 / NaN without any TP."""
    if not np.any(m.tp):
        return OptimalLRP(1.0, math.nan, math.nan, 1.0, math.nan, m.num_gt, 0, int(np.count_nonzero(m.fp)))
    curve = lrp_curve(m, tau)
    i = int(np.argmin(curve["lrp"]))  # first position of the minimum
    return OptimalLRP(float(curve["lrp"][i]), float(curve["loc"][i]), float(curve["fp"][i]), float(curve["fn"][i]),
                      float(m.scores[i]), m.num_gt, int(curve["tp"][i]), int(curve["fp_count"][i]))


def _nanmean(values: list[float]) -> float:
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    return float(arr.mean()) if arr.size else math.nan


def matches_by_class(evaluator: COCOeval, area_index: int = 0,
                     iou_thr: float = 0.5) -> dict[int, ClassMatches | None]:
    """{category id: :func:`class_matches` (None without ground truth)} for every class of ``params.catIds``."""
    return {int(cat_id): class_matches(evaluator, k, area_index, iou_thr)
            for k, cat_id in enumerate(evaluator.params.catIds)}


def olrp_summary(evaluator: COCOeval, tau: float = 0.5, matches: dict[int, ClassMatches | None] | None = None
                 ) -> tuple[dict[str, float], dict[int, OptimalLRP | None]]:
    """moLRP over classes (NaN components ignored), its components, and moLRP per area range.

    Args:
        matches: ``matches_by_class(evaluator, 0, tau)`` if the caller already has it.

    Returns:
        (summary, per_class): summary has ``oLRP, oLRP_loc, oLRP_FP, oLRP_FN, oLRP_s, oLRP_m, oLRP_l`` (NaN when no
        class has ground truth in that range); per_class maps category id -> OptimalLRP (area all) or None for
        classes without ground truth.
    """
    if matches is None:
        matches = matches_by_class(evaluator, 0, tau)
    per_class = {cat_id: None if m is None else optimal_lrp(m, tau) for cat_id, m in matches.items()}
    valid = [r for r in per_class.values() if r is not None]
    summary = {"oLRP": _nanmean([r.olrp for r in valid]), "oLRP_loc": _nanmean([r.loc for r in valid]),
               "oLRP_FP": _nanmean([r.fp for r in valid]), "oLRP_FN": _nanmean([r.fn for r in valid])}
    for key, area in (("oLRP_s", 1), ("oLRP_m", 2), ("oLRP_l", 3)):
        area_matches = matches_by_class(evaluator, area, tau).values()
        summary[key] = _nanmean([optimal_lrp(m, tau).olrp for m in area_matches if m is not None])
    return summary, per_class
