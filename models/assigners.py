"""Anchor assignment: per-anchor label (IGNORE / BACKGROUND / 1 + class) and matched ground-truth index.

Both assigners share one call signature and return an `Assignment`; crowd boxes turn background anchors that they
cover (intersection over anchor area > `crowd_ignore_iof`) into IGNORE, unless `crowd_ignore_iof` is None: then
crowd boxes are not used and anchors on crowd regions stay negatives (both authors' releases drop crowd boxes).
All operations are tensor ops over the (G, A) IoU matrix; the only Python loop is over the (5) FPN levels in ATSS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_area, box_iou

IGNORE = -1  # label: anchor takes no part in the classification loss
BACKGROUND = 0  # label: negative anchor; positives are 1 + class index
NO_MATCH = -1  # matched_gt of anchors that are not positive


@dataclass
class Assignment:
    """Result of assigning one image.

    Attributes:
        labels: (A,) int64, IGNORE (-1), BACKGROUND (0) or 1 + class index.
        matched_gt: (A,) int64 index into the image's ground-truth boxes for positives, NO_MATCH elsewhere.
    """

    labels: Tensor
    matched_gt: Tensor


def _finish(anchors: Tensor, gt_labels: Tensor, gt_index: Tensor, positive: Tensor, negative: Tensor,
            crowd_boxes: Tensor, crowd_ignore_iof: float | None) -> Assignment:
    """Builds labels from positive/negative masks (neither = ignore) and applies crowd ignore to negatives."""
    labels = torch.full((anchors.shape[0],), IGNORE, dtype=torch.int64, device=anchors.device)
    labels[negative] = BACKGROUND
    if gt_labels.numel():
        labels = torch.where(positive, gt_labels.to(torch.int64)[gt_index.clamp(min=0)] + 1, labels)
    matched = torch.where(positive, gt_index, torch.full_like(gt_index, NO_MATCH))
    if crowd_ignore_iof is not None and crowd_boxes is not None and crowd_boxes.numel():
        covered = crowd_iof(crowd_boxes.to(anchors), anchors).amax(dim=0) > crowd_ignore_iof
        labels[covered & (labels == BACKGROUND)] = IGNORE
    return Assignment(labels=labels, matched_gt=matched)


def _all_background(anchors: Tensor, gt_labels: Tensor, crowd_boxes: Tensor,
                    crowd_ignore_iof: float | None) -> Assignment:
    """Assignment of an image without ground truth: every anchor background, then crowd ignore."""
    nobody = torch.zeros(anchors.shape[0], dtype=torch.bool, device=anchors.device)
    no_match = torch.full_like(nobody, NO_MATCH, dtype=torch.int64)
    return _finish(anchors, gt_labels, no_match, nobody, ~nobody, crowd_boxes, crowd_ignore_iof)


def crowd_iof(crowd_boxes: Tensor, anchors: Tensor) -> Tensor:
    """(C, A) intersection of each crowd box with each anchor, over the anchor's area."""
    lt = torch.maximum(crowd_boxes[:, None, :2], anchors[None, :, :2])
    rb = torch.minimum(crowd_boxes[:, None, 2:], anchors[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    return inter / box_area(anchors).clamp(min=1e-12)[None]


def _check(anchors: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> None:
    if gt_boxes.ndim != 2 or gt_boxes.shape[-1] != 4 or gt_labels.shape != gt_boxes.shape[:1]:
        raise ValueError(f"assigner: expected boxes (G, 4) and labels (G,), got {tuple(gt_boxes.shape)} and "
                         f"{tuple(gt_labels.shape)}")
    if anchors.ndim != 2 or anchors.shape[-1] != 4:
        raise ValueError(f"assigner: expected anchors (A, 4), got {tuple(anchors.shape)}")


class MaxIoUAssigner:
    """RetinaNet assignment: positive if IoU >= pos_iou, background if max IoU < neg_iou, ignored in between.

    With `low_quality_matches`, every ground truth also claims the anchors that reach its best IoU (ties included,
    best IoU > 0); an anchor that is the best of several ground truths takes the one it overlaps most.

    Args:
        pos_iou: 0.5. neg_iou: 0.4. low_quality_matches: True. crowd_ignore_iof: see module docstring.
    """

    def __init__(self, *, pos_iou: float = 0.5, neg_iou: float = 0.4, low_quality_matches: bool = True,
                 crowd_ignore_iof: float | None = 0.5) -> None:
        if not 0 <= neg_iou <= pos_iou:
            raise ValueError(f"MaxIoUAssigner: need 0 <= neg_iou ({neg_iou}) <= pos_iou ({pos_iou})")
        self.pos_iou, self.neg_iou = pos_iou, neg_iou
        self.low_quality_matches = low_quality_matches
        self.crowd_ignore_iof = crowd_ignore_iof

    def __call__(self, anchors: Tensor, gt_boxes: Tensor, gt_labels: Tensor, crowd_boxes: Tensor = None,
                 level_counts: Sequence[int] = None) -> Assignment:
        """Assigns one image.

        Args:
            anchors: (A, 4) xyxy pixels. gt_boxes: (G, 4) xyxy pixels. gt_labels: (G,) int64 class indices.
            crowd_boxes: (C, 4) xyxy pixels or None. level_counts: unused (same signature as ATSS).
        """
        _check(anchors, gt_boxes, gt_labels)
        if gt_boxes.shape[0] == 0:
            return _all_background(anchors, gt_labels, crowd_boxes, self.crowd_ignore_iof)
        iou = box_iou(gt_boxes.to(anchors), anchors)  # (G, A)
        max_iou, gt_index = iou.max(dim=0)
        positive = max_iou >= self.pos_iou
        negative = max_iou < self.neg_iou
        if self.low_quality_matches:
            best = iou.max(dim=1, keepdim=True).values  # (G, 1)
            is_best = (iou == best) & (best > 0)  # (G, A)
            claimed = is_best.any(dim=0)
            best_gt = torch.where(is_best, iou, torch.full_like(iou, -1.0)).argmax(dim=0)
            gt_index = torch.where(claimed & ~positive, best_gt, gt_index)
            positive = positive | claimed
            negative = negative & ~claimed
        return _finish(anchors, gt_labels, gt_index, positive, negative, crowd_boxes, self.crowd_ignore_iof)


class ATSSAssigner:
    """Adaptive training sample selection (Zhang et al. 2020).

    For each ground truth: the `topk` anchors per level closest by centre distance are candidates; those with
    IoU >= mean + std (unbiased std) of the candidates' IoUs and whose centre lies strictly inside the box are
    positive. An anchor positive for several ground truths takes the one with the highest IoU. Everything else
    is background (then crowd ignore applies).

    Args:
        topk: candidates per level (9). crowd_ignore_iof: see module docstring.
    """

    def __init__(self, *, topk: int = 9, crowd_ignore_iof: float | None = 0.5) -> None:
        self.topk = int(topk)
        self.crowd_ignore_iof = crowd_ignore_iof

    def __call__(self, anchors: Tensor, gt_boxes: Tensor, gt_labels: Tensor, crowd_boxes: Tensor = None,
                 level_counts: Sequence[int] = None) -> Assignment:
        """Assigns one image; `level_counts` (anchors per level, summing to A) is required. Shapes as MaxIoU."""
        _check(anchors, gt_boxes, gt_labels)
        if level_counts is None or sum(level_counts) != anchors.shape[0]:
            raise ValueError(f"ATSSAssigner: level_counts {level_counts} must sum to {anchors.shape[0]} anchors")
        if gt_boxes.shape[0] == 0:
            return _all_background(anchors, gt_labels, crowd_boxes, self.crowd_ignore_iof)
        gt_boxes = gt_boxes.to(anchors)
        iou = box_iou(gt_boxes, anchors)  # (G, A)
        a_ctr = (anchors[:, :2] + anchors[:, 2:]) / 2
        g_ctr = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        dist = torch.cdist(g_ctr, a_ctr)  # (G, A)
        candidates, start = [], 0
        for count in level_counts:
            k = min(self.topk, count)
            if k:
                candidates.append(dist[:, start:start + count].topk(k, dim=1, largest=False).indices + start)
            start += count
        cand = torch.cat(candidates, dim=1)  # (G, C)
        cand_iou = iou.gather(1, cand)
        std = cand_iou.std(dim=1, keepdim=True) if cand.shape[1] > 1 else torch.zeros_like(cand_iou[:, :1])
        threshold = cand_iou.mean(dim=1, keepdim=True) + std
        c = a_ctr[cand]  # (G, C, 2)
        inside = ((c - gt_boxes[:, None, :2]).amin(dim=-1) > 0) & ((gt_boxes[:, None, 2:] - c).amin(dim=-1) > 0)
        keep = (cand_iou >= threshold) & inside  # (G, C)
        pos_iou = torch.full_like(iou, -1.0)
        pos_iou.scatter_(1, cand, torch.where(keep, cand_iou, torch.full_like(cand_iou, -1.0)))
        best_iou, gt_index = pos_iou.max(dim=0)
        positive = best_iou >= 0
        return _finish(anchors, gt_labels, gt_index, positive, ~positive, crowd_boxes, self.crowd_ignore_iof)
