"""Loss targets: per-image assignments flattened into (anchor, class) pairs over the whole batch.

Pairs are ordered row-major (image, anchor, class), i.e. exactly `cls_logits.reshape(-1)`. A positive anchor
gives target 1 for its class and 0 for the other classes, a background anchor 0 for all, an ignored anchor -1
for all. Positives' boxes are listed in the order their positive pair appears.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from alrp.losses.targets import LossTargets

from .assigners import BACKGROUND, IGNORE, Assignment
from .box_coder import BoxCoder


def pair_targets(labels: Tensor, num_classes: int) -> Tensor:
    """(N, HWA) anchor labels (IGNORE / BACKGROUND / 1 + class) -> (N, HWA, K) int64 pair targets in {1, 0, -1}."""
    targets = torch.zeros(*labels.shape, num_classes, dtype=torch.int64, device=labels.device)
    targets[labels == IGNORE] = -1
    pos = (labels > BACKGROUND).nonzero(as_tuple=True)
    targets[pos + (labels[pos] - 1,)] = 1
    return targets


def build_loss_targets(cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor,
                       assignments: Sequence[Assignment], gt_boxes: list[Tensor], coder: BoxCoder) -> LossTargets:
    """Flattens per-image assignments.

    Args:
        cls_logits: (N, HWA, K). box_deltas: (N, HWA, 4). anchors: (HWA, 4) xyxy pixels.
        assignments: N assignments of the anchors. gt_boxes: N tensors (G_i, 4) xyxy pixels.
        coder: box coder used for the decoded predictions and the encoded targets.
    """
    n, _, k = cls_logits.shape
    if len(assignments) != n or len(gt_boxes) != n:
        raise ValueError(f"loss targets: {n} images but {len(assignments)} assignments / {len(gt_boxes)} targets")
    labels = torch.stack([a.labels for a in assignments])  # (N, HWA)
    offsets = torch.tensor([0] + [b.shape[0] for b in gt_boxes], device=anchors.device).cumsum(0)[:-1]
    matched = torch.stack([a.matched_gt for a in assignments]) + offsets[:, None]  # (N, HWA) batch gt index
    all_gt = torch.cat([b.reshape(-1, 4) for b in gt_boxes]).to(anchors)  # (sum G_i, 4)
    img, anc = (labels > BACKGROUND).nonzero(as_tuple=True)  # row-major: same order as the positive pairs
    pos_anchors = anchors[anc]  # (P, 4)
    pos_pred_deltas = box_deltas[img, anc]  # (P, 4)
    pos_gt_boxes = all_gt[matched[img, anc]]
    return LossTargets(
        logits=cls_logits.reshape(-1),
        targets=pair_targets(labels, k).reshape(-1),
        pos_pred_boxes=coder.decode(pos_pred_deltas, pos_anchors),
        pos_gt_boxes=pos_gt_boxes,
        pos_pred_deltas=pos_pred_deltas,
        pos_gt_deltas=coder.encode(pos_gt_boxes, pos_anchors),
        num_images=n,
        num_classes=k,
    )
