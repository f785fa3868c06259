"""Tiling of large annotated images into fixed-size tiles (used to build the demo tree-crown dataset)."""
from __future__ import annotations


import numpy as np


def tile_spans(length: int, tile: int) -> list[tuple[int, int]]:
    """Splits [0, length) into `max(1, round(length / tile))` near-equal, non-overlapping [start, end) spans.

    E.g. (1249, 400) -> [(0, 416), (416, 833), (833, 1249)]: tiles stay close to `tile` pixels and no pixel
    (or box) appears in two tiles.
    """
    n = max(1, int(round(length / tile)))
    edges = [int(round(i * length / n)) for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def tile_boxes(boxes: np.ndarray, origin: tuple[int, int], size: tuple[int, int],
               min_visible: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of one tile.

    Args:
        boxes: `(N, 4)` xyxy pixels in the full image.
        origin: tile (x0, y0) in the full image; size: tile (width, height).
        min_visible: boxes keeping at least this fraction of their area are kept (clipped); the others that
            still show at least 1x1 px become ignore regions (so the cut-off crowns are not negatives).

    Returns:
        (kept `(K, 4)`, ignored `(I, 4)`) float32 xyxy pixels in tile coordinates.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x0, y0 = origin
    lo = np.array([x0, y0, x0, y0], dtype=np.float32)
    hi = lo + np.array([size[0], size[1], size[0], size[1]], dtype=np.float32)
    clipped = np.clip(boxes, lo, hi) - lo
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    w, h = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    visible = np.where(area > 0, w * h / np.maximum(area, 1e-9), 0.0)
    shows = (w >= 1.0) & (h >= 1.0)
    keep = shows & (visible >= min_visible)
    return clipped[keep], clipped[shows & ~keep]
