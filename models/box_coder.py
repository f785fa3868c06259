"""Box coding between xyxy pixel boxes and anchor-relative deltas (dx, dy, log dw, log dh) / weights.

Widths are `x2 - x1` (no "+1" pixel convention), so decoded boxes are real image-space boxes that aLRP's IoU/GIoU
can be computed on.
"""
import math
from typing import Sequence

import torch
from torch import Tensor


class BoxCoder:
    """Encodes boxes against anchors and decodes deltas back.

    Args:
        weights: divisors (wx, wy, ww, wh) of the raw deltas; (0.1, 0.1, 0.2, 0.2) in the paper.
        clamp: decode clamps the log width/height ratios to [-clamp, clamp] (log(1000 / 16) ~ 4.135).
    """

    def __init__(self, *, weights: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
                 clamp: float = math.log(1000.0 / 16)) -> None:
        if len(weights) != 4:
            raise ValueError(f"BoxCoder weights must have 4 values, got {list(weights)}")
        self.weights = tuple(float(w) for w in weights)
        self.clamp = float(clamp)

    def _weights(self, ref: Tensor) -> Tensor:
        return torch.tensor(self.weights, dtype=ref.dtype, device=ref.device)

    def encode(self, boxes: Tensor, anchors: Tensor) -> Tensor:
        """Deltas that map `anchors` onto `boxes`.

        Args:
            boxes: (..., 4) xyxy pixels. anchors: (..., 4) xyxy pixels, same shape, positive sizes.
        Returns:
            (..., 4) raw (dx, dy, log dw, log dh) divided by the weights (centre offsets in anchor sizes).
        """
        aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
        ax, ay = anchors[..., 0] + 0.5 * aw, anchors[..., 1] + 0.5 * ah
        bw, bh = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        bx, by = boxes[..., 0] + 0.5 * bw, boxes[..., 1] + 0.5 * bh
        raw = torch.stack(((bx - ax) / aw, (by - ay) / ah, torch.log(bw / aw), torch.log(bh / ah)), dim=-1)
        return raw / self._weights(raw)

    def decode(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        """Boxes obtained by applying `deltas` to `anchors` (differentiable in `deltas`).

        Args:
            deltas: (..., 4) weighted deltas. anchors: (..., 4) xyxy pixels, broadcastable to `deltas`.
        Returns:
            (..., 4) xyxy boxes in pixels (not clipped).
        """
        d = deltas * self._weights(deltas)  # back to raw (dx, dy, log dw, log dh)
        aw, ah = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
        ax, ay = anchors[..., 0] + 0.5 * aw, anchors[..., 1] + 0.5 * ah
        cx, cy = ax + d[..., 0] * aw, ay + d[..., 1] * ah
        half_w = 0.5 * aw * torch.exp(d[..., 2].clamp(-self.clamp, self.clamp))
        half_h = 0.5 * ah * torch.exp(d[..., 3].clamp(-self.clamp, self.clamp))
        return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)
