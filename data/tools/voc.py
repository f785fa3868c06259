"""Pascal-VOC XML annotations -> COCO dict (used by scripts/voc_to_coco.py, scripts/prepare_voc.py and
scripts/prepare_demo_data.py).

VOC stores 1-based inclusive pixel indices: the box `xmin=1, xmax=10` covers the first ten pixels, i.e. the
continuous xyxy box [0, 10]. `one_based=False` reads files whose corners are already continuous coordinates.

Bad input policy (`voc_to_coco`): a malformed file (bad XML, a missing or non-numeric field) is an error. Bad boxes
(non-finite, inverted, zero or below `min_size` px wide or tall, wholly outside the image), images with no size
(0x0) and duplicate image file names are each reported with the file and the object index, and dropped; with
`strict=True` any of them is an error listing them all. Boxes extending past the image border are clipped and
counted.
"""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import DatasetError

DEFAULT_MIN_BOX_SIZE = 2.0  # px: a 1-pixel box (xmin == xmax in VOC's inclusive indices) is an annotation slip


@dataclass
class VocObject:
    """One object: class `name`, `box` continuous xyxy pixels (may be non-finite or inverted), `difficult` flag."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool = False


@dataclass
class VocAnnotation:
    """One XML file: image `filename`, `width`, `height` in pixels and its objects."""

    filename: str
    width: int
    height: int
    objects: list[VocObject] = field(default_factory=list)
    source: str = ""


@dataclass
class ConversionReport:
    """What `voc_to_coco` dropped or changed: one `problems` line per bad box or image (file and object index)."""

    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # reason -> number of boxes / images dropped
    clipped_boxes: int = 0

    def add(self, reason: str, where: str, detail: str = "") -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        self.problems.append(f"{where}: {reason}{f' {detail}' if detail else ''}")

    def summary(self) -> str:
        """One line: the counts by reason ('no bad boxes or images' when there are none)."""
        parts = [f"{n} {reason}" for reason, n in sorted(self.counts.items())]
        if self.clipped_boxes:
            parts.append(f"{self.clipped_boxes} boxes clipped to the image")
        return ", ".join(parts) if parts else "no bad boxes or images"

    def format(self, label: str = "") -> str:
        """Every problem on its own line, then the summary line (prefixed by `label`)."""
        head = f"{label}: " if label else ""
        return "\n".join([*(f"  {p}" for p in self.problems), f"{head}{self.summary()}"])


def save_coco_json(coco: dict[str, Any], path: str | Path) -> None:
    """Writes `coco` to `path` (via a temporary file) as strict JSON: NaN or Infinity raise instead of being written.

    Raises:
        DatasetError: a non-finite number in `coco`, or the file cannot be written (names the path and the cause).
    """
    path = Path(path)
    try:
        text = json.dumps(coco, allow_nan=False)
    except ValueError as err:
        raise DatasetError(f"{path}: not written, the COCO dict holds a non-finite number ({err})") from None
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        tmp.replace(path)
    except OSError as err:
        raise DatasetError(f"{path}: cannot write ({err.strerror or err})") from None


def _text(node: ET.Element, key: str, source: str, where: str) -> str:
    child = node.find(key)
    if child is None or child.text is None or not child.text.strip():
        raise DatasetError(f"{source}: {where} has no <{key}>")
    return child.text.strip()


def _number(node: ET.Element, key: str, source: str, where: str) -> float:
    text = _text(node, key, source, where)
    try:
        return float(text)
    except ValueError:
        raise DatasetError(f"{source}: {where} <{key}> is not a number: {text!r}") from None


def _size(node: ET.Element, key: str, source: str) -> int:
    value = _number(node, key, source, "<size>")
    return int(value) if math.isfinite(value) else 0  # a non-finite size is reported like 0x0 by voc_to_coco


def parse_voc_xml(data: str | bytes, source: str = "<xml>", one_based: bool = True) -> VocAnnotation:
    """Parses one VOC XML document (`data`); `source` names it in errors. Boxes are not checked here."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise DatasetError(f"{source}: malformed XML ({err})") from None
    size = root.find("size")
    if size is None:
        raise DatasetError(f"{source}: <annotation> has no <size>")
    ann = VocAnnotation(filename=_text(root, "filename", source, "<annotation>"),
                        width=_size(size, "width", source), height=_size(size, "height", source), source=source)
    offset = 1.0 if one_based else 0.0
    for i, obj in enumerate(root.findall("object")):
        where = f"<object> #{i}"
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DatasetError(f"{source}: {where} has no <bndbox>")
        x0, y0, x1, y1 = (_number(bnd, k, source, where) for k in ("xmin", "ymin", "xmax", "ymax"))
        difficult = obj.find("difficult")
        ann.objects.append(VocObject(name=_text(obj, "name", source, where), box=(x0 - offset, y0 - offset, x1, y1),
                                     difficult=difficult is not None and (difficult.text or "0").strip() == "1"))
    return ann


def read_split_list(path: str | Path) -> list[str]:
    """Image ids of a VOC split list (`ImageSets/Main/<split>.txt`): the first token of each non-empty line."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read split list ({err})") from None
    ids = [line.split()[0] for line in lines if line.strip()]
    if not ids:
        raise DatasetError(f"{path}: split list is empty")
    return ids


def category_table(annotations: Sequence[VocAnnotation], name_map: Mapping[str, str] | None = None) -> list[str]:
    """The sorted set of (mapped) class names in `annotations`: build it from all splits so they share one table."""
    name_map = dict(name_map or {})
    return sorted({name_map.get(o.name, o.name) for a in annotations for o in a.objects})


def _box_problem(box: tuple[float, float, float, float], width: int, height: int,
                 min_size: float) -> str | None:
    """Why `box` (continuous xyxy px) cannot be used, or None."""
    x0, y0, x1, y1 = box
    if not all(math.isfinite(v) for v in box):
        return "non-finite coordinate"
    if x1 < x0 or y1 < y0:
        return "inverted box (xmax < xmin or ymax < ymin)"
    if x1 == x0 or y1 == y0:
        return "zero-width or zero-height box"
    if x1 - x0 < min_size or y1 - y0 < min_size:
        return f"box under {min_size:g} px wide or tall"
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        return "box outside the image"
    return None


def voc_to_coco(annotations: Sequence[VocAnnotation], categories: Sequence[str] | None = None,
                name_map: Mapping[str, str] | None = None, difficult: str = "crowd", *,
                min_size: float = DEFAULT_MIN_BOX_SIZE, strict: bool = False,
                first_image_id: int = 1) -> tuple[dict[str, Any], ConversionReport]:
    """Converts parsed VOC files to a COCO dict (image ids from `first_image_id`, category ids 1..K in
    `categories` order) and a report of what was dropped (see the module docstring for the policy).

    Args:
        categories: class names in id order; None takes `category_table(annotations)`. Pass the same table for
            every split of a dataset.
        name_map: renames classes before lookup (e.g. {"Alive": "tree", "Dead": "tree"}).
        difficult: 'crowd' keeps difficult objects as iscrowd=1 (ignored in training and by COCOeval),
            'keep' as normal boxes, 'drop' removes them.
        min_size: boxes narrower or shorter than this (continuous px) are bad.
        strict: raise instead of dropping bad boxes and images.

    Raises:
        DatasetError: an object's class is not in `categories` (names the file and class); with `strict`, any bad
            box or image (all of them listed).
    """
    if difficult not in ("crowd", "keep", "drop"):
        raise ValueError(f"difficult must be 'crowd', 'keep' or 'drop', got {difficult!r}")
    name_map = dict(name_map or {})
    if categories is None:
        categories = category_table(annotations, name_map)
    cat_id = {name: k + 1 for k, name in enumerate(categories)}
    report = ConversionReport()
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for a in annotations:
        source = a.source or a.filename
        for obj in a.objects:
            if name_map.get(obj.name, obj.name) not in cat_id:
                raise DatasetError(f"{source}: class {obj.name!r} is not in categories {list(categories)}")
        if a.filename in seen:
            report.add("duplicate image file name", source, f"{a.filename!r} (also in {seen[a.filename]}): "
                       f"image and its {len(a.objects)} boxes dropped")
            continue
        seen[a.filename] = source
        if a.width <= 0 or a.height <= 0:
            report.add("image without a size", source, f"({a.width}x{a.height}): image and its {len(a.objects)} "
                       "boxes dropped")
            continue
        image_id = first_image_id + len(images)
        images.append({"id": image_id, "file_name": a.filename, "width": a.width, "height": a.height})
        for i, obj in enumerate(a.objects):
            problem = _box_problem(obj.box, a.width, a.height, min_size)
            if problem is not None:
                report.add(problem, f"{source} <object> #{i}", f"{obj.name} {list(obj.box)}")
                continue
            if obj.difficult and difficult == "drop":
                continue
            x0, y0 = max(obj.box[0], 0.0), max(obj.box[1], 0.0)
            x1, y1 = min(obj.box[2], float(a.width)), min(obj.box[3], float(a.height))
            report.clipped_boxes += int((x0, y0, x1, y1) != tuple(obj.box))
            name = name_map.get(obj.name, obj.name)
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat_id[name],
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "iscrowd": int(obj.difficult and difficult == "crowd")})
    if strict and report.problems:
        raise DatasetError(f"{len(report.problems)} bad boxes or images (strict mode): "
                           + "; ".join(report.problems))
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": i, "name": n, "supercategory": n} for n, i in cat_id.items()]}
    return coco, report
