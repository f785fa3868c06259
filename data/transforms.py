"""Geometric transforms and normalisation. Every transform is `t(image, target, rng) -> (image, target)`.

`image` is an `(H, W, 3)` BGR numpy array (uint8, or float32 in [0, 255] once photometric ops ran);
`target` holds numpy arrays `boxes (N, 4)` float32 xyxy pixels, `labels (N,)` int64, `crowd_boxes (C, 4)`
float32 xyxy pixels, plus `scale` (set by the resize steps). `rng` is a `numpy.random.Generator`: every random
draw comes from it, so a seeded generator reproduces the output exactly. Pixel coordinates are continuous
(pixel i spans [i, i + 1)); no "+1" width convention.
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

Target = dict[str, Any]
Sample = tuple[np.ndarray, Target]

CV2_INTERPOLATION = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST,
                     "cubic": cv2.INTER_CUBIC, "lanczos4": cv2.INTER_LANCZOS4}


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng()


class Compose:
    """Applies transforms in order, all drawing from the same generator."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None) -> Sample:
        rng = _rng(rng)
        for t in self.transforms:
            image, target = t(image, target, rng)
        return image, target

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(type(t).__name__ for t in self.transforms) + ")"


class Expand:
    """Zoom out: with probability `prob` place the image on a canvas `ratio` times larger, filled with `fill`.

    Source: SSD / AP-Loss ablation code (p 0.5, ratio U(1, 4), fill = pixel mean, integer offsets).
    """

    def __init__(self, prob: float, ratio_range: Sequence[float], fill: Sequence[float]) -> None:
        self.prob, self.ratio_range, self.fill = prob, tuple(ratio_range), tuple(float(v) for v in fill)

    def __call__(self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None) -> Sample:
        rng = _rng(rng)
        if rng.random() >= self.prob:
            return image, target
        h, w = image.shape[:2]
        ratio = rng.uniform(*self.ratio_range)
        canvas_h, canvas_w = int(h * ratio), int(w * ratio)
        left = int(rng.uniform(0, canvas_w - w))
        top = int(rng.uniform(0, canvas_h - h))
        image = cv2.copyMakeBorder(image, top, canvas_h - h - top, left, canvas_w - w - left,
                                   cv2.BORDER_CONSTANT, value=self.fill)
        shift = np.array([left, top, left, top], dtype=np.float32)
        target = dict(target, boxes=target["boxes"] + shift, crowd_boxes=target["crowd_boxes"] + shift)
        return image, target


class MinIoURandomCrop:
    """SSD min-IoU random crop. Keeps the ground-truth boxes whose centre lies strictly inside the crop.

    Per image a mode is drawn uniformly from `modes`: None keeps the whole image, a float `t` asks for a crop
    whose IoU with the boxes reaches `t` (`require='any'`: some box, AP-Loss ablation; `'all'`: every box,
    mmdet / standard SSD). Up to `trials` candidate crops are drawn per mode (side U(scale)·image side, h/w
    within `aspect`); a crop must keep at least one box. If no mode succeeds in `max_rounds` draws the
    image is returned unchanged. Fixes of the common port: the IoU test is a plain lower bound (the port's
    "min and max" test could never be true) and modes are indexed, not `np.random.choice`-n over ragged tuples.
    """

    def __init__(self, modes: Sequence[float | None], require: str = "any", trials: int = 50,
                 scale: Sequence[float] = (0.3, 1.0), aspect: Sequence[float] = (0.5, 2.0),
                 max_rounds: int = 50) -> None:
        self.modes, self.require, self.trials = list(modes), require, trials
        self.scale, self.aspect, self.max_rounds = tuple(scale), tuple(aspect), max_rounds

    def __call__(self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None) -> Sample:
        rng = _rng(rng)
        boxes = target["boxes"]
        if len(boxes) == 0:
            return image, target
        boxes_t = torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32))
        centres = 0.5 * (boxes_t[:, :2] + boxes_t[:, 2:]).numpy()  # (N, 2)
        for _ in range(self.max_rounds):
            mode = self.modes[int(rng.integers(len(self.modes)))]
            if mode is None:
                return image, target
            found = self._sample(image.shape[0], image.shape[1], boxes_t, centres, float(mode), rng)
            if found is not None:
                return crop(image, target, *found)
        return image, target

    def _sample(self, h: int, w: int, boxes_t: torch.Tensor, centres: np.ndarray, min_iou: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
        """Draws `trials` candidates at once; returns (rect (4,) int xyxy, keep mask (N,)) of the first valid."""
        n = self.trials
        cw = rng.uniform(self.scale[0] * w, self.scale[1] * w, n)
        ch = rng.uniform(self.scale[0] * h, self.scale[1] * h, n)
        left = rng.uniform(0.0, 1.0, n) * (w - cw)
        top = rng.uniform(0.0, 1.0, n) * (h - ch)
        rects = np.floor(np.stack([left, top, left + cw, top + ch], axis=1))  # (n, 4) integer edges
        aspect = ch / cw
        valid = (aspect >= self.aspect[0]) & (aspect <= self.aspect[1])
        valid &= (rects[:, 2] - rects[:, 0] >= 1) & (rects[:, 3] - rects[:, 1] >= 1)
        iou = box_iou(boxes_t, torch.from_numpy(rects.astype(np.float32))).numpy()  # (N, n)
        valid &= (iou.max(0) if self.require == "any" else iou.min(0)) >= min_iou
        inside = ((centres[:, None, 0] > rects[None, :, 0]) & (centres[:, None, 0] < rects[None, :, 2])
                  & (centres[:, None, 1] > rects[None, :, 1]) & (centres[:, None, 1] < rects[None, :, 3]))
        valid &= inside.any(0)
        hits = np.flatnonzero(valid)
        if len(hits) == 0:
            return None
        return rects[hits[0]].astype(np.int64), inside[:, hits[0]]


def crop(image: np.ndarray, target: Target, rect: np.ndarray, keep: np.ndarray) -> Sample:
    """Crops `image` to integer `rect` (x0, y0, x1, y1); keeps boxes where `keep` (N,) and clips them.

    Crowd boxes are clipped and kept when they still overlap the crop with positive area.
    """
    x0, y0, x1, y1 = (int(v) for v in rect)
    lo = np.array([x0, y0, x0, y0], dtype=np.float32)
    hi = np.array([x1, y1, x1, y1], dtype=np.float32)
    boxes = np.clip(target["boxes"][keep], lo, hi) - lo
    crowd = np.clip(target["crowd_boxes"], lo, hi) - lo
    crowd = crowd[(crowd[:, 2] > crowd[:, 0]) & (crowd[:, 3] > crowd[:, 1])]
    target = dict(target, boxes=boxes, labels=target["labels"][keep], crowd_boxes=crowd)
    return image[y0:y1, x0:x1], target


class HorizontalFlip:
    """Mirror left-right with probability `prob`: x -> W - x (exact inverse of itself)."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None) -> Sample:
        if _rng(rng).random() >= self.prob:
            return image, target
        w = image.shape[1]
        return cv2.flip(np.ascontiguousarray(image), 1), dict(
            target, boxes=flip_boxes(target["boxes"], w), crowd_boxes=flip_boxes(target["crowd_boxes"], w))


def flip_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    """Mirrors `(N, 4)` xyxy boxes in an image of `width` pixels."""
    out = boxes.copy()
    out[:, 0] = width - boxes[:, 2]
    out[:, 2] = width - boxes[:, 0]
    return out


class Resize:
    """Resize to a fixed `(height, width)`, ignoring aspect; interpolation drawn from `interpolations`.

    Source: AP-Loss ablation code (512² and a random OpenCV interpolation; mmdet: bilinear). Sets
    `target["scale"] = (sy, sx)` so that, without crop/expand, original = transformed / scale.
    """

    def __init__(self, size: tuple[int, int], interpolations: Sequence[str] = ("linear",)) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.modes: list[int] = [CV2_INTERPOLATION[name] for name in interpolations]

    def __call__(self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None) -> Sample:
        mode = self.modes[int(_rng(rng).integers(len(self.modes)))] if len(self.modes) > 1 else self.modes[0]
        h, w = image.shape[:2]
        sy, sx = self.size[0] / h, self.size[1] / w
        image = cv2.resize(image, (self.size[1], self.size[0]), interpolation=mode)
        factor = np.array([sx, sy, sx, sy], dtype=np.float32)
        target = dict(target, boxes=target["boxes"] * factor, crowd_boxes=target["crowd_boxes"] * factor,
                      scale=(sy, sx))
        return image, target


class ResizeShortSide:
    """Evaluation resize: short side to `short`, long side at most `max_size`, aspect kept (bilinear).

    Sets `target["scale"]` to one float s: boxes are multiplied by s, so original = transformed / s. The image
    is `round(h·s) x round(w·s)`, i.e. its grid differs from the exact scale by under half a pixel.
    """

    def __init__(self, short: int, max_size: int) -> None:
        self.short, self.max_size = short, max_size

    def __call__(self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None) -> Sample:
        h, w = image.shape[:2]
        s = min(self.short / min(h, w), self.max_size / max(h, w))
        new_w, new_h = max(1, int(round(w * s))), max(1, int(round(h * s)))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        target = dict(target, boxes=target["boxes"] * np.float32(s), crowd_boxes=target["crowd_boxes"] * np.float32(s),
                      scale=float(s))
        return image, target


class Normalize:
    """BGR `(H, W, 3)` array -> `(3, H, W)` float32 tensor `(x - mean) / std`, optionally in RGB order.

    `mean`/`std` are given in BGR order (pixel units 0..255).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], to_rgb: bool = False) -> None:
        self.mean = [np.float32(v) for v in mean]
        self.inv_std = [np.float32(1.0 / v) for v in std]
        self.to_rgb = to_rgb

    def __call__(self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None):
        h, w = image.shape[:2]
        out = np.empty((3, h, w), dtype=np.float32)
        for c in range(3):
            dst = out[2 - c] if self.to_rgb else out[c]
            np.subtract(image[:, :, c], self.mean[c], out=dst, dtype=np.float32)
            if self.inv_std[c] != 1.0:
                dst *= self.inv_std[c]
        return torch.from_numpy(out), target
