"""Loading and validating a COCO-format annotation file into per-image box arrays.

Boxes are converted once, here, from COCO `xywh` to `xyxy` float pixels (no "+1" convention), clipped to
the image; boxes narrower or shorter than 1 px after clipping are dropped and counted.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from pycocotools.coco import COCO

from .errors import DatasetError

MIN_BOX_SIZE = 1.0  # px: boxes with width or height below this after clipping are degenerate


@dataclass
class ImageRecord:
    """Annotations of one image: `boxes (N, 4)` / `crowd_boxes (C, 4)` float32 xyxy pixels, `labels (N,)` int64."""

    image_id: int
    file_name: str
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    crowd_boxes: np.ndarray


@dataclass
class AnnotationIndex:
    """A validated annotation file: pycocotools index, category mapping and one record per image."""

    coco: COCO
    cat_ids: list[int]  # sorted COCO category ids; label k <-> cat_ids[k]
    class_names: list[str]
    records: list[ImageRecord]
    degenerate_ann_ids: list[int] = field(default_factory=list)  # annotations dropped as < MIN_BOX_SIZE

    @property
    def num_degenerate(self) -> int:
        """Number of annotations dropped as degenerate."""
        return len(self.degenerate_ann_ids)


def _fail(path: Path, msg: str) -> NoReturn:
    raise DatasetError(f"{path}: {msg}")


def read_json(path: Path, keys: tuple[str, ...] = ("images", "annotations", "categories")) -> dict[str, Any]:
    """Reads a COCO annotation JSON whose `keys` are lists; errors name the file (and the line for malformed JSON).

    An image-info file (COCO test splits: images and categories, no annotations) needs `("images", "categories")`.
    """
    if not path.is_file():
        _fail(path, "annotation file not found")
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        _fail(path, f"malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}")
    except UnicodeDecodeError as err:
        _fail(path, f"not a UTF-8 JSON file ({err.reason})")
    if not isinstance(data, dict):
        _fail(path, f"top level must be a JSON object, got {type(data).__name__}")
    for key in keys:
        if not isinstance(data.get(key), list):
            _fail(path, f"missing or non-list key {key!r}")
    return data


def is_finite_number(value: Any) -> bool:
    """A finite int/float that is not a bool (JSON true/false would pass `isinstance(v, int)`)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(path: Path, entry: Any, keys: tuple, what: str, index: int) -> None:
    if not isinstance(entry, dict):
        _fail(path, f"{what} #{index} is not an object")
    for key in keys:
        if key not in entry:
            ident = entry.get("id", f"#{index}")
            _fail(path, f"{what} id {ident} has no {key!r}")


def id_type_hint(kind: str, value: Any, known: Any) -> str:
    """Why an id was not found when it is a string among numeric ids (JSON keeps ``"1"`` and ``1`` apart), else ''."""
    numbers = sorted(k for k in known if isinstance(k, int)) if isinstance(value, str) else []
    if not numbers:
        return ""
    example = int(value) if value.strip().isdigit() and int(value) in known else numbers[0]
    return f" (a string; the {kind.removesuffix('_id')} ids are numbers, e.g. {example})"


IMAGE_KEYS = ("id", "file_name", "width", "height")  # what a training/eval dataset needs of each image


def validate(path: Path, data: dict[str, Any], image_keys: tuple[str, ...] = IMAGE_KEYS) -> None:
    """Checks ids and references; raises DatasetError naming the file and the offending id.

    `image_keys`: keys every image entry must have (evaluating a results file needs only `("id",)`).
    """
    images: dict[int, dict[str, Any]] = {}
    for i, img in enumerate(data["images"]):
        _require(path, img, image_keys, "image", i)
        if img["id"] in images:
            _fail(path, f"duplicate image id {img['id']}")
        size = (img.get("width"), img.get("height"))
        if "width" in image_keys and not all(is_finite_number(v) and v > 0 for v in size):
            _fail(path, f"image id {img['id']} has a non-positive or non-numeric size {size[0]!r}x{size[1]!r}")
        images[img["id"]] = img
    cats = set()
    for i, cat in enumerate(data["categories"]):
        _require(path, cat, ("id", "name"), "category", i)
        if cat["id"] in cats:
            _fail(path, f"duplicate category id {cat['id']}")
        cats.add(cat["id"])
    if not cats:
        _fail(path, "no categories")
    ann_ids = set()
    for i, ann in enumerate(data["annotations"]):
        _require(path, ann, ("id", "image_id", "category_id", "bbox"), "annotation", i)
        if ann["id"] in ann_ids:
            _fail(path, f"duplicate annotation id {ann['id']}")
        ann_ids.add(ann["id"])
        if ann["image_id"] not in images:
            _fail(path, f"annotation id {ann['id']} refers to unknown image_id {ann['image_id']!r}"
                  f"{id_type_hint('image_id', ann['image_id'], images)}")
        if ann["category_id"] not in cats:
            _fail(path, f"annotation id {ann['id']} refers to unknown category_id "
                  f"{ann['category_id']!r}{id_type_hint('category_id', ann['category_id'], cats)}")
        bbox = ann["bbox"]
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_finite_number(v) for v in bbox)):
            _fail(path, f"annotation id {ann['id']} has a malformed bbox {bbox!r} (expected [x, y, w, h])")


def _to_coco(data: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        coco.createIndex()
    return coco


def load_annotations(path: str | Path) -> AnnotationIndex:
    """Reads, validates and indexes `path`; labels are contiguous 0..K-1 over sorted category ids."""
    path = Path(path)
    data = read_json(path)
    validate(path, data)
    coco = _to_coco(data)
    cats = sorted(data["categories"], key=lambda c: c["id"])
    cat_ids = [c["id"] for c in cats]
    cat_to_label = {cid: k for k, cid in enumerate(cat_ids)}
    index = AnnotationIndex(coco=coco, cat_ids=cat_ids, class_names=[str(c["name"]) for c in cats], records=[])
    for image_id in sorted(coco.imgs):
        img = coco.imgs[image_id]
        index.records.append(_image_record(img, coco.imgToAnns.get(image_id, []), cat_to_label, index))
    return index


def _image_record(img: dict[str, Any], anns: list[dict[str, Any]], cat_to_label: dict[int, int],
                  index: AnnotationIndex) -> ImageRecord:
    h, w = int(img["height"]), int(img["width"])
    boxes, labels, crowd = [], [], []
    for ann in anns:
        x, y, bw, bh = (float(v) for v in ann["bbox"])
        box = [min(max(x, 0.0), w), min(max(y, 0.0), h), min(max(x + bw, 0.0), w), min(max(y + bh, 0.0), h)]
        if box[2] - box[0] < MIN_BOX_SIZE or box[3] - box[1] < MIN_BOX_SIZE:
            index.degenerate_ann_ids.append(int(ann["id"]))
            continue
        if ann.get("iscrowd", 0):
            crowd.append(box)
        else:
            boxes.append(box)
            labels.append(cat_to_label[ann["category_id"]])
    return ImageRecord(
        image_id=int(img["id"]), file_name=str(img["file_name"]), height=h, width=w,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        labels=np.asarray(labels, dtype=np.int64),
        crowd_boxes=np.asarray(crowd, dtype=np.float32).reshape(-1, 4),
    )
