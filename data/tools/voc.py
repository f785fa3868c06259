"""Pascal-VOC XML annotations -> COCO dict (used by scripts/voc_to_coco.py and scripts/prepare_demo_data.py).

VOC stores 1-based inclusive pixel indices: the box `xmin=1, xmax=10` covers the first ten pixels, i.e. the
continuous xyxy box [0, 10]. `one_based=False` reads files whose corners are already continuous coordinates.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import DatasetError


@dataclass
class VocObject:
    """One object: class `name`, `box` continuous xyxy pixels, `difficult` flag."""

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


def parse_voc_xml(data: str | bytes, source: str = "<xml>", one_based: bool = True) -> VocAnnotation:
    """Parses one VOC XML document (`data`); `source` names it in errors."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise DatasetError(f"{source}: malformed XML ({err})") from None
    size = root.find("size")
    if size is None:
        raise DatasetError(f"{source}: <annotation> has no <size>")
    ann = VocAnnotation(filename=_text(root, "filename", source, "<annotation>"),
                        width=int(_number(size, "width", source, "<size>")),
                        height=int(_number(size, "height", source, "<size>")), source=source)
    offset = 1.0 if one_based else 0.0
    for i, obj in enumerate(root.findall("object")):
        where = f"<object> #{i}"
        bnd = obj.find("bndbox")
        if bnd is None:
            raise DatasetError(f"{source}: {where} has no <bndbox>")
        x0, y0, x1, y1 = (_number(bnd, k, source, where) for k in ("xmin", "ymin", "xmax", "ymax"))
        if x1 < x0 or y1 < y0:
            raise DatasetError(f"{source}: {where} has xmax < xmin or ymax < ymin: {(x0, y0, x1, y1)}")
        difficult = obj.find("difficult")
        ann.objects.append(VocObject(name=_text(obj, "name", source, where), box=(x0 - offset, y0 - offset, x1, y1),
                                     difficult=difficult is not None and (difficult.text or "0").strip() == "1"))
    return ann


def voc_to_coco(annotations: Sequence[VocAnnotation], categories: Sequence[str] | None = None,
                name_map: Mapping[str, str] | None = None, difficult: str = "crowd") -> dict[str, Any]:
    """Converts parsed VOC files to a COCO dict (image ids 1.., category ids 1..K in `categories` order).

    Args:
        categories: class names in id order; None takes the sorted set of (mapped) names found.
        name_map: renames classes before lookup (e.g. {"Alive": "tree", "Dead": "tree"}).
        difficult: 'crowd' keeps difficult objects as iscrowd=1 (ignored in training and by COCOeval),
            'keep' as normal boxes, 'drop' removes them.

    Raises:
        DatasetError: an object's class is not in `categories` (names the file and class).
    """
    if difficult not in ("crowd", "keep", "drop"):
        raise ValueError(f"difficult must be 'crowd', 'keep' or 'drop', got {difficult!r}")
    name_map = dict(name_map or {})
    if categories is None:
        categories = sorted({name_map.get(o.name, o.name) for a in annotations for o in a.objects})
    cat_id = {name: k + 1 for k, name in enumerate(categories)}
    images, anns = [], []
    for image_id, a in enumerate(annotations, start=1):
        images.append({"id": image_id, "file_name": a.filename, "width": a.width, "height": a.height})
        for obj in a.objects:
            name = name_map.get(obj.name, obj.name)
            if name not in cat_id:
                raise DatasetError(f"{a.source or a.filename}: class {obj.name!r} is not in categories {list(categories)}")
            if obj.difficult and difficult == "drop":
                continue
            x0, y0, x1, y1 = obj.box
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat_id[name],
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "iscrowd": int(obj.difficult and difficult == "crowd")})
    return {"images": images, "annotations": anns,
            "categories": [{"id": i, "name": n, "supercategory": n} for n, i in cat_id.items()]}
