"""The input of every criterion: (anchor, class) pairs of a batch and the boxes of the positive anchors.

The library defines it; the detector (`models/targets.py`) produces it.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class LossTargets:
    """Everything a criterion needs; `models.targets.build_loss_targets` makes it (see docs/architecture.md).

    Attributes:
        logits: (M,) float logits of (anchor, class) pairs over the batch, row-major (image, anchor, class).
        targets: (M,) int64, 1 positive, 0 negative, -1 ignored.
        pos_pred_boxes: (P, 4) xyxy pixels, decoded predictions of the positive anchors (differentiable).
        pos_gt_boxes: (P, 4) xyxy pixels, matched ground truth.
        pos_pred_deltas: (P, 4) raw predicted deltas (differentiable).
        pos_gt_deltas: (P, 4) encoded ground truth (BoxCoder weights 0.1, 0.1, 0.2, 0.2).
        num_images: N, the images of the batch (each contributes M / N pairs), for `loss.rank_group`; None when
            unknown (a criterion with `rank_group` then refuses it).
        num_classes: K, the classes of each anchor (pairs per anchor), for `loss.rank_per_class`; None when unknown.
    """

    logits: Tensor
    targets: Tensor
    pos_pred_boxes: Tensor
    pos_gt_boxes: Tensor
    pos_pred_deltas: Tensor
    pos_gt_deltas: Tensor
    num_images: int | None = None
    num_classes: int | None = None

    @property
    def num_pos(self) -> int:
        """P: number of positive anchors (= positive pairs)."""
        return int(self.pos_gt_boxes.shape[0])
