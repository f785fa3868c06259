"""Drawing detections on an image with legible labels that do not pile up.

Boxes get one colour per class. Labels ('name 0.87') sit on a filled background, sized to the image. They are
placed greedily by decreasing score: above the box, else inside its top edge, else below it, else shifted
down in steps until free; a label that finds no free place is left out (its box is still drawn), so labels
never overlap each other.
"""
from __future__ import annotations

import colorsys
from typing import Mapping, Sequence

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


def class_colour(category_id: int) -> tuple[int, int, int]:
    """A saturated BGR colour per category id (golden-ratio hue steps: neighbouring ids differ clearly)."""
    hue = (int(category_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def text_style(height: int, width: int) -> tuple[float, int]:
    """(font scale, line thickness) readable at the image's size: ~1/60 of the short side per text line."""
    scale = max(0.35, min(height, width) / 1200.0)
    return scale, max(1, int(round(scale * 2)))


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_label(box: Rect, size: tuple[int, int], image_hw: tuple[int, int], taken: Sequence[Rect],
                max_shifts: int = 8) -> Rect | None:
    """Where a label of `size` (w, h) goes for `box`: the first free candidate inside the image, else None.

    Candidates: above the box's top-left corner, inside it below the top edge, below the box, then further
    down from the top edge in label-height steps (`max_shifts`).
    """
    w, h = size
    img_h, img_w = image_hw
    x = min(max(box[0], 0), max(img_w - w, 0))
    tops = [box[1] - h, box[1], box[3]] + [box[1] + k * h for k in range(1, max_shifts + 1)]
    for top in tops:
        rect = (x, top, x + w, top + h)
        if top < 0 or rect[3] > img_h:
            continue
        if not any(_overlaps(rect, t) for t in taken):
            return rect
    return None


def draw_detections(image: np.ndarray, detections: Sequence[dict], names: Mapping[int, str]) -> np.ndarray:
    """Draws COCO-format detections (`bbox` xywh pixels, `category_id`, `score`) on a copy of a BGR uint8 image.

    Args:
        image: (H, W, 3) BGR uint8.
        names: category id -> class name (missing ids are printed as the id).
    """
    out = np.ascontiguousarray(image).copy()
    img_h, img_w = out.shape[:2]
    scale, thick = text_style(img_h, img_w)
    pad = max(1, thick)
    order = sorted(detections, key=lambda d: -float(d["score"]))
    for det in reversed(order):  # highest score drawn last, on top
        x, y, w, h = det["bbox"]
        cv2.rectangle(out, (round(x), round(y)), (round(x + w), round(y + h)), class_colour(det["category_id"]),
                      thick + 1)
    taken: list[Rect] = []
    for det in order:
        x, y, w, h = det["bbox"]
        text = f"{names.get(det['category_id'], det['category_id'])} {float(det['score']):.2f}"
        (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
        rect = place_label((round(x), round(y), round(x + w), round(y + h)), (tw + 2 * pad, th + base + 2 * pad),
                           (img_h, img_w), taken)
        if rect is None:
            continue
        taken.append(rect)
        colour = class_colour(det["category_id"])
        cv2.rectangle(out, rect[:2], (rect[2] - 1, rect[3] - 1), colour, cv2.FILLED)
        ink = (0, 0, 0) if sum(colour) > 3 * 140 else (255, 255, 255)  # dark text on light backgrounds
        cv2.putText(out, text, (rect[0] + pad, rect[3] - pad - base), FONT, scale, ink, thick, cv2.LINE_AA)
    return out
