"""COCO box AP/AR with pycocotools, plus loading and validating results files.

Boxes at this edge are COCO ``xywh`` in original-image pixels. Every pycocotools call here is silenced
(pycocotools prints progress to stdout).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from data.annotations import id_type_hint, is_finite_number, read_json, validate
from data.errors import DatasetError

Results = Sequence[dict] | str | Path

# (key, IoU-threshold index or None for the mean over 0.50:0.95, area index, maxDets index), as COCOeval.summarize.
AP_KEYS = (("AP", None, 0, 2), ("AP50", 0, 0, 2), ("AP75", 5, 0, 2), ("AP90", 8, 0, 2),
           ("APs", None, 1, 2), ("APm", None, 2, 2), ("APl", None, 3, 2))
AR_KEYS = (("AR1", 0, 0), ("AR10", 0, 1), ("AR100", 0, 2), ("ARs", 1, 2), ("ARm", 2, 2), ("ARl", 3, 2))


class EvaluationInputError(ValueError):
    """A ground-truth or results file (or list) is malformed; the message names the file and the entry."""


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def load_gt(path: str | Path) -> COCO:
    """Load and validate a COCO ground-truth annotation file.

    Images need only an ``id``; annotations need ``id``, ``image_id``, ``category_id`` and ``bbox`` (missing
    ``iscrowd`` / ``area`` are filled by `complete_gt`).

    Raises:
        FileNotFoundError: the file does not exist (message names it).
        EvaluationInputError: not valid JSON, not a COCO dict, duplicate ids, annotations that refer to unknown
            images or categories, or a malformed bbox; the message names the file and the offending id.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file not found: {path}")
    try:
        data = read_json(path)
        validate(path, data, image_keys=("id",))
    except DatasetError as err:
        raise EvaluationInputError(str(err)) from None
    coco = COCO()
    coco.dataset = data
    with _quiet():
        coco.createIndex()
    return complete_gt(coco)


def complete_gt(coco_gt: COCO) -> COCO:
    """Fills what COCOeval needs but box-only COCO files may omit: ``iscrowd`` (0) and ``area`` (bbox w * h).

    Modifies the annotation dicts in place (``coco_gt.anns`` and ``coco_gt.dataset`` share them); returns ``coco_gt``.
    """
    for ann in coco_gt.dataset.get("annotations", []):
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
    return coco_gt


def read_results(results: Results, source: str | None = None) -> tuple[list, str]:
    """(detections list, source name for messages) from a list or a JSON file path.

    ``source`` names a list in error messages (e.g. the file it was read from); default "results".
    """
    if isinstance(results, (str, Path)):
        path = Path(results)
        if not path.is_file():
            raise FileNotFoundError(f"detections file not found: {path}")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise EvaluationInputError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(data, list):
            raise EvaluationInputError(f"{path}: a COCO results file must hold a JSON list of detections")
        return data, str(path)
    return list(results), source or "results"


def _check_detection(det: Any, i: int, source: str, img_ids: set, cat_ids: set) -> None:
    where = f"{source}: detection #{i}"
    if not isinstance(det, dict):
        raise EvaluationInputError(f"{where} is not an object")
    for key in ("image_id", "category_id", "bbox", "score"):
        if key not in det:
            raise EvaluationInputError(f"{where} has no '{key}'")
    for key, known in (("image_id", img_ids), ("category_id", cat_ids)):
        if det[key] not in known:
            raise EvaluationInputError(f"{where}: {key} {det[key]!r} is not in the ground truth"
                                       f"{id_type_hint(key, det[key], known)}")
    bbox = det["bbox"]
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(is_finite_number(v) for v in bbox)):
        raise EvaluationInputError(f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {bbox!r}")
    for side, value in (("width", bbox[2]), ("height", bbox[3])):
        # pycocotools would ignore such a box (negative area is outside every area range) instead of counting it
        if value < 0:
            raise EvaluationInputError(f"{where}: bbox has a negative {side} ({bbox!r}; COCO boxes are "
                                       "[x, y, width, height])")
    if not is_finite_number(det["score"]):
        raise EvaluationInputError(f"{where}: score is not finite ({det['score']!r})")


def load_results(coco_gt: COCO, results: Results, source: str | None = None) -> COCO:
    """Validate detections and index them as a pycocotools results COCO (empty lists allowed).

    Args:
        coco_gt: the ground truth the detections refer to.
        results: list of ``{image_id, category_id, bbox [x, y, w, h] pixels, score}`` or a path to such a JSON list.
        source: how errors name a list (e.g. the file it came from).
    """
    dets, source = read_results(results, source)
    img_ids, cat_ids = set(coco_gt.getImgIds()), set(coco_gt.getCatIds())
    for i, det in enumerate(dets):
        _check_detection(det, i, source, img_ids, cat_ids)
    if not dets:
        coco_dt = COCO()
        coco_dt.dataset = {"images": list(coco_gt.dataset["images"]), "categories": copy.deepcopy(
            coco_gt.dataset["categories"]), "annotations": []}
        with _quiet():
            coco_dt.createIndex()
        return coco_dt
    with _quiet():
        return coco_gt.loadRes([dict(d) for d in dets])  # copies: loadRes adds keys in place


def run_cocoeval(coco_gt: COCO, coco_dt: COCO) -> COCOeval:
    """Run COCOeval (bbox) evaluate + accumulate quietly; ``evalImgs`` and ``ious`` stay available for oLRP."""
    evaluator = COCOeval(complete_gt(coco_gt), coco_dt, iouType="bbox")
    with _quiet():
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def coco_summary(evaluator: COCOeval) -> dict[str, float]:
    """AP/AR numbers as COCOeval.summarize computes them (-1 where nothing is defined), plus AP90.

    Returns:
        {AP, AP50, AP75, AP90, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl} as floats in [0, 1] (or -1).
    """
    precision = evaluator.eval["precision"]  # (T, R, K, A, M)
    recall = evaluator.eval["recall"]  # (T, K, A, M)
    out: dict[str, float] = {}
    for key, t, a, m in AP_KEYS:
        p = precision[:, :, :, a, m] if t is None else precision[t, :, :, a, m]
        out[key] = _mean_valid(p)
    for key, a, m in AR_KEYS:
        out[key] = _mean_valid(recall[:, :, a, m])
    return out


def class_ap(evaluator: COCOeval) -> dict[int, dict[str, float]]:
    """Per-class AP (0.50:0.95) and AP50, area all, maxDets 100 (-1 for classes without ground truth)."""
    precision = evaluator.eval["precision"]
    out = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        out[int(cat_id)] = {"AP": _mean_valid(precision[:, :, k, 0, -1]),
                            "AP50": _mean_valid(precision[0, :, k, 0, -1])}
    return out
