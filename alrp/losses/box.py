"""Localisation errors and box regression losses of matched (prediction, ground truth) pairs.

All boxes are (P, 4) xyxy in pixels, row i of the prediction matched with row i of the ground truth.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

from alrp.losses.config import BOX_LOSS_REDUCTIONS

IOU_TAU = 0.5  # the LRP / aLRP true-positive IoU threshold
_EPS = 1e-7


def _check_pairs(pred: Tensor, gt: Tensor, name: str) -> None:
    if pred.dim() != 2 or pred.shape[-1] != 4 or pred.shape != gt.shape:
        raise ValueError(f"{name}: expected matched (P, 4) boxes/deltas, got {tuple(pred.shape)} and {tuple(gt.shape)}")


def paired_iou(pred_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
    """IoU of row-matched boxes: (P, 4), (P, 4) xyxy pixels -> (P,) in [0, 1] (differentiable).

    torchvision's ``box_iou`` is pairwise (P x P); this is its diagonal without the matrix.
    """
    _check_pairs(pred_boxes, gt_boxes, "paired_iou")
    lt = torch.maximum(pred_boxes[:, :2], gt_boxes[:, :2])
    rb = torch.minimum(pred_boxes[:, 2:], gt_boxes[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area_p = (pred_boxes[:, 2:] - pred_boxes[:, :2]).clamp(min=0).prod(dim=1)
    area_g = (gt_boxes[:, 2:] - gt_boxes[:, :2]).clamp(min=0).prod(dim=1)
    return inter / (area_p + area_g - inter + _EPS)


def loc_error(pred_boxes: Tensor, gt_boxes: Tensor, kind: str = "giou", tau: float = IOU_TAU) -> Tensor:
    """aLRP localisation error E_loc (P,) of row-matched xyxy boxes (P, 4) in pixels.

    ``kind='iou'``: ``(1 - IoU) / (1 - tau)`` in [0, 2]; ``kind='giou'``: ``((1 - GIoU) / 2) / (1 - tau)``, which
    is ``1 - GIoU`` in [0, 2] for tau = 0.5. Differentiable w.r.t. both box sets.
    """
    _check_pairs(pred_boxes, gt_boxes, "loc_error")
    if kind == "iou":
        return (1.0 - paired_iou(pred_boxes, gt_boxes)) / (1.0 - tau)
    if kind == "giou":
        if pred_boxes.shape[0] == 0:
            return pred_boxes.sum(dim=1)
        return generalized_box_iou_loss(pred_boxes, gt_boxes, reduction="none") / (2.0 * (1.0 - tau))
    raise ValueError(f"loc_error kind must be 'iou' or 'giou', got {kind!r}")


def box_loss(kind: str, *, pred_boxes: Tensor, gt_boxes: Tensor, pred_deltas: Tensor, gt_deltas: Tensor,
             smooth_l1_beta: float = 0.11, reduction: str = "per_box") -> Tensor:
    """Box regression loss of the P positives, summed and divided by P or by 4·P: () tensor.

    Args:
        kind: 'smooth_l1' | 'l1' (on the encoded deltas (P, 4)) | 'iou' | 'giou' (``1 - IoU`` / ``1 - GIoU`` on
            the decoded xyxy boxes (P, 4) in pixels).
        smooth_l1_beta: transition point of the smooth-L1 loss, in delta units.
        reduction: 'per_box' divides the sum by P (mmdetection's RetinaNet); 'per_coordinate' divides it by 4·P,
            i.e. averages over the 4 coordinates too (the AP-Loss code and the aLRP ablation code, for every
            box loss including IoU/GIoU).
    Returns:
        The loss; 0 connected to the graph when P = 0.
    """
    if reduction not in BOX_LOSS_REDUCTIONS:
        raise ValueError(f"box_loss reduction must be one of {BOX_LOSS_REDUCTIONS}, got {reduction!r}")
    divisor = max(1, pred_deltas.shape[0]) * (4 if reduction == "per_coordinate" else 1)
    if kind in ("smooth_l1", "l1"):
        _check_pairs(pred_deltas, gt_deltas, f"box_loss[{kind}]")
        if kind == "l1":
            return F.l1_loss(pred_deltas, gt_deltas, reduction="sum") / divisor
        return F.smooth_l1_loss(pred_deltas, gt_deltas, reduction="sum", beta=smooth_l1_beta) / divisor
    if kind == "iou":
        return (1.0 - paired_iou(pred_boxes, gt_boxes)).sum() / divisor
    if kind == "giou":
        _check_pairs(pred_boxes, gt_boxes, "box_loss[giou]")
        if pred_boxes.shape[0] == 0:
            return 0.0 * pred_boxes.sum()
        return generalized_box_iou_loss(pred_boxes, gt_boxes, reduction="sum") / divisor
    raise ValueError(f"box_loss kind must be one of 'smooth_l1', 'l1', 'iou', 'giou', got {kind!r}")
