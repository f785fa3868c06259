"""Anchor generation for the FPN levels P3-P7.

Layout (the same as the head outputs): levels in order P3..P7; inside a level, locations row-major (y, then x);
inside a location, ratio-major then scale: index `r * len(scales) + s`. Anchor centres sit at
`((x + center_offset) * stride, (y + center_offset) * stride)` pixels: the centre of their feature cell with the
default offset 0.5, its top-left corner with 0 (mmdetection 2.x).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor


def feature_sizes(image_size: tuple[int, int], strides: Sequence[int]) -> list[tuple[int, int]]:
    """Feature map (h, w) per stride for an input of `image_size` (h, w).

    Every ResNet/FPN down-sampling step is a padded stride-2 layer, so a stride-s map has ceil(size / s) cells.
    """
    h, w = image_size
    return [(-(-h // s), -(-w // s)) for s in strides]


class Anchors(NamedTuple):
    """The anchors of one padded input size, with the number of anchors of each FPN level (P3..P7, in order)."""

    boxes: Tensor                   # (sum_l h_l * w_l * A, 4) xyxy pixels
    level_counts: tuple[int, ...]   # anchors per level; sums to boxes.shape[0]


class AnchorGenerator:
    """Anchors in xyxy pixels for a padded input, cached per feature-map sizes, device and dtype.

    Args:
        strides: pixels per feature cell of each level (8, 16, 32, 64, 128).
        base_scale: base anchor side = base_scale * stride (4).
        scales: side multipliers ([1, 2 ** 0.5]).
        ratios: height / width ratios, area kept ([0.5, 1, 2]).
        center_offset: anchor centre within its feature cell, in cells (0.5).
    """

    def __init__(self, *, strides: Sequence[int], base_scale: float, scales: Sequence[float],
                 ratios: Sequence[float], center_offset: float = 0.5) -> None:
        self.strides = tuple(int(s) for s in strides)
        self.base_scale = float(base_scale)
        self.scales = tuple(float(s) for s in scales)
        self.ratios = tuple(float(r) for r in ratios)
        self.center_offset = float(center_offset)
        self._cache: dict[tuple, Anchors] = {}

    @property
    def num_anchors_per_location(self) -> int:
        """A: anchors at each feature cell."""
        return len(self.scales) * len(self.ratios)

    def cell_anchors(self, stride: int) -> Tensor:
        """(A, 4) float64 xyxy anchors of one level centred on (0, 0)."""
        rows = []
        for ratio in self.ratios:
            for scale in self.scales:
                side = self.base_scale * stride * scale
                w, h = side / math.sqrt(ratio), side * math.sqrt(ratio)
                rows.append((-w / 2, -h / 2, w / 2, h / 2))
        return torch.tensor(rows, dtype=torch.float64)

    def grid_anchors(self, sizes: Sequence[tuple[int, int]], device: torch.device,
                     dtype: torch.dtype = torch.float32) -> Anchors:
        """`Anchors` for given feature sizes ((h, w) of each level, in `strides` order)."""
        if len(sizes) != len(self.strides):
            raise ValueError(f"got {len(sizes)} feature sizes for {len(self.strides)} anchor strides")
        key = (tuple(tuple(int(v) for v in s) for s in sizes), str(device), dtype)
        if key not in self._cache:
            levels = []
            for (h, w), stride in zip(sizes, self.strides):
                ys = (torch.arange(h, dtype=torch.float64) + self.center_offset) * stride
                xs = (torch.arange(w, dtype=torch.float64) + self.center_offset) * stride
                cy, cx = torch.meshgrid(ys, xs, indexing="ij")
                centres = torch.stack((cx, cy, cx, cy), dim=-1).reshape(-1, 1, 4)  # (h*w, 1, 4)
                levels.append((centres + self.cell_anchors(stride)[None]).reshape(-1, 4))
            counts = tuple(int(level.shape[0]) for level in levels)
            self._cache[key] = Anchors(torch.cat(levels).to(device=device, dtype=dtype), counts)
        return self._cache[key]

    def __call__(self, image_size: tuple[int, int], device: torch.device,
                 dtype: torch.dtype = torch.float32) -> Anchors:
        """`Anchors` (xyxy pixels, per-level counts) for a padded input of `image_size` (h, w)."""
        return self.grid_anchors(feature_sizes(image_size, self.strides), device, dtype)
