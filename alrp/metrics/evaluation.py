"""One entry point for detection metrics: COCO AP/AR, oLRP (+ components, areas, per class) and rho."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .coco import Results, class_ap, coco_summary, load_results, run_cocoeval
from .correlation import mean_rho, spearman
from .lrp import ClassMatches, matches_by_class, olrp_summary

TAU = 0.5  # TP validation IoU and LRP normaliser
METRIC_KEYS = ("AP", "AP50", "AP75", "AP90", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
               "oLRP", "oLRP_loc", "oLRP_FP", "oLRP_FN", "oLRP_s", "oLRP_m", "oLRP_l", "rho", "per_class")


@dataclass
class Evaluation:
    """Everything one evaluation computed.

    Attributes:
        metrics: the ``METRIC_KEYS`` dict (floats; NaN where undefined; ``per_class`` {cat_id: dict or None}).
        cocoeval: the pycocotools evaluator (``eval['precision']`` (T, R, K, A, M) feeds the PR plots).
        matches: {cat_id: ClassMatches at IoU 0.5, area all} for classes with ground truth (LRP curves, rho).
        cat_names: {cat_id: name}.
    """

    metrics: dict[str, Any]
    cocoeval: COCOeval
    matches: dict[int, ClassMatches]
    cat_names: dict[int, str]


def compute_evaluation(coco_gt: COCO, results: Results, source: str | None = None) -> Evaluation:
    """Evaluate COCO-format detections against ``coco_gt`` (see ``detection_metrics``).

    ``source`` names a results list in error messages (e.g. the file it was read from).
    """
    evaluator = run_cocoeval(coco_gt, load_results(coco_gt, results, source))
    metrics: dict[str, Any] = dict(coco_summary(evaluator))
    all_matches = matches_by_class(evaluator, 0, TAU)
    lrp, per_class_lrp = olrp_summary(evaluator, TAU, all_matches)
    metrics.update(lrp)
    aps = class_ap(evaluator)
    matches: dict[int, ClassMatches] = {}
    per_class: dict[int, dict[str, Any] | None] = {}
    rhos = []
    for cat_id, m in all_matches.items():
        if m is None:  # no ground truth
            per_class[cat_id] = None
            continue
        r = per_class_lrp[cat_id]
        matches[cat_id] = m
        rho = spearman(m.scores[m.tp], m.ious[m.tp])  # NaN with fewer than 2 TPs
        rhos.append(rho)
        per_class[cat_id] = {"oLRP": r.olrp, "oLRP_loc": r.loc, "oLRP_FP": r.fp, "oLRP_FN": r.fn,
                             "threshold": r.threshold, "num_gt": r.num_gt, "num_tp": r.num_tp, "num_fp": r.num_fp,
                             "AP": aps[cat_id]["AP"], "AP50": aps[cat_id]["AP50"], "rho": rho}
    metrics["rho"] = mean_rho(rhos)
    metrics["per_class"] = per_class
    metrics = {key: metrics[key] for key in METRIC_KEYS}
    names = {int(c["id"]): str(c.get("name", c["id"])) for c in coco_gt.dataset["categories"]}
    return Evaluation(metrics, evaluator, matches, names)


def detection_metrics(coco_gt: COCO, results: Results) -> dict[str, Any]:
    """COCO AP/AR, oLRP and rho of a set of detections.

    Args:
        coco_gt: ground truth (pycocotools COCO, original category ids).
        results: list of ``{image_id, category_id, bbox [x, y, w, h] pixels, score}`` or a path to such a JSON file.

    Returns:
        dict with exactly ``METRIC_KEYS``: AP keys as pycocotools (-1 when undefined), oLRP keys and rho as floats
        (NaN when undefined), ``per_class`` {category id: {oLRP, oLRP_loc, oLRP_FP, oLRP_FN, threshold, num_gt,
        num_tp, num_fp, AP, AP50, rho} or None for classes without ground truth}.
    """
    return compute_evaluation(coco_gt, results).metrics
