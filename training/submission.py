"""COCO evaluation-server submissions: check a results list against the split's image-info table, then zip it as
`detections_<split>_<method>_results.json` (the name the server expects).

Checks (all must pass before anything is written): every image id belongs to the split; every category id is in
the file's category table; at most `MAX_PER_IMAGE` detections per image; boxes and scores are finite numbers with
non-negative width and height.
"""
from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from data.annotations import is_finite_number

MAX_PER_IMAGE = 100  # the COCO detection server's limit
_MAX_LISTED = 5


class SubmissionError(ValueError):
    """The results would be rejected (or silently mis-scored) by the evaluation server; names the problem."""


def result_file_name(split: str, method: str) -> str:
    """`detections_<split>_<method>_results.json`; `method` keeps letters, digits and '-' (the name uses '_')."""
    clean = re.sub(r"[^A-Za-z0-9-]+", "-", method).strip("-")
    if not clean:
        raise SubmissionError(f"method name {method!r} has no letters or digits")
    return f"detections_{split}_{clean}_results.json"


def _listed(values: Iterable) -> str:
    values = list(values)
    more = f" ... ({len(values)} in all)" if len(values) > _MAX_LISTED else ""
    return ", ".join(str(v) for v in values[:_MAX_LISTED]) + more


def _finite_box(r: dict) -> bool:
    box = r.get("bbox")
    return (isinstance(box, (list, tuple)) and len(box) == 4 and all(is_finite_number(v) for v in box)
            and box[2] >= 0 and box[3] >= 0)


def check_results(results: Sequence[dict], image_ids: Iterable[int], category_ids: Iterable[int],
                  max_per_image: int = MAX_PER_IMAGE) -> None:
    """Raises SubmissionError listing every kind of problem found (a few examples each)."""
    image_ids, category_ids = set(image_ids), set(category_ids)
    problems = []
    unknown_images = sorted({r.get("image_id") for r in results if r.get("image_id") not in image_ids}, key=str)
    if unknown_images:
        problems.append(f"image ids not in the split: {_listed(unknown_images)}")
    unknown_cats = sorted({r.get("category_id") for r in results if r.get("category_id") not in category_ids},
                          key=str)
    if unknown_cats:
        problems.append(f"category ids not in the split's category table: {_listed(unknown_cats)}")
    counts = Counter(r.get("image_id") for r in results)
    crowded = sorted(i for i, n in counts.items() if n > max_per_image and i in image_ids)
    if crowded:
        problems.append(f"more than {max_per_image} detections on images {_listed(crowded)} "
                        f"(set model.postprocess.max_detections <= {max_per_image})")
    bad_boxes = [i for i, r in enumerate(results) if not _finite_box(r)]
    if bad_boxes:
        problems.append(f"non-finite or negative-size bbox in detections #{_listed(bad_boxes)}")
    bad_scores = [i for i, r in enumerate(results) if not is_finite_number(r.get("score"))]
    if bad_scores:
        problems.append(f"non-finite score in detections #{_listed(bad_scores)}")
    if problems:
        raise SubmissionError("submission rejected: " + "; ".join(problems))


def write_submission(zip_path: str | Path, results: Sequence[dict], split: str, method: str,
                     image_ids: Iterable[int], category_ids: Iterable[int]) -> Path:
    """Checks `results` (see `check_results`), then writes `zip_path` holding the one server-named JSON file.

    Only the COCO result keys (`image_id`, `category_id`, `bbox`, `score`) are written.
    """
    check_results(results, image_ids, category_ids)
    name = result_file_name(split, method)
    payload = json.dumps([{"image_id": int(r["image_id"]), "category_id": int(r["category_id"]),
                           "bbox": [float(v) for v in r["bbox"]], "score": float(r["score"])}
                          for r in results])
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_name(f".{zip_path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(name, payload)
    tmp.replace(zip_path)
    return zip_path
