"""Detections from raw outputs: sigmoid, per-level top-k, decode, clip, per-class NMS, map to original pixels."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image

from .box_coder import BoxCoder
from .config import TOPK_UNITS


def _pair(value, key: str) -> tuple[float, float]:
    """A scalar or a 2-sequence/tensor -> (a, b) floats; scalars are repeated."""
    if isinstance(value, Tensor):
        value = value.tolist()
    if isinstance(value, (int, float)):
        return float(value), float(value)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return float(value[0]), float(value[1])
    raise ValueError(f"postprocess: target[{key!r}] must be a number or a pair, got {value!r}")


def image_geometry(target: dict) -> tuple[tuple[float, float], tuple[int, int], tuple[int, int]]:
    """((sy, sx), un-padded input (h, w), original (h, w)) of one target dict.

    `scale` is a float or (sy, sx) with original = transformed / scale; the un-padded input size is `size`
    (set by the data pipeline) when present, else round(orig_size * scale).
    """
    for key in ("orig_size", "scale"):
        if key not in target:
            raise KeyError(f"postprocess: target (image_id {target.get('image_id')}) has no {key!r}")
    sy, sx = _pair(target["scale"], "scale")
    oh, ow = _pair(target["orig_size"], "orig_size")
    if "size" in target:
        ih, iw = _pair(target["size"], "size")
    else:
        ih, iw = oh * sy, ow * sx
    return (sy, sx), (int(round(ih)), int(round(iw))), (int(round(oh)), int(round(ow)))


def to_original(boxes: Tensor, scale_yx: tuple[float, float]) -> Tensor:
    """(D, 4) xyxy boxes of the network input -> original-image pixels, by `image_geometry`'s (sy, sx)."""
    sy, sx = scale_yx
    return boxes / boxes.new_tensor([sx, sy, sx, sy])


class PostProcessor:
    """Turns raw outputs into per-image detections.

    Args:
        coder: box coder of the model. score_threshold: keep candidates with sigmoid score > this (0.05).
        pre_nms_topk: candidates kept per level (1000). nms_iou: per-class NMS IoU (0.5).
        max_detections: detections kept per image (100).
        level_score_thresholds: one threshold per level replacing `score_threshold` (the ablation code:
            0.01 on P3-P6, 0 on P7), or None.
        topk_unit: 'pair' keeps the top `pre_nms_topk` (anchor, class) pairs of a level (both AP-Loss-based
            codes); 'anchor' keeps the top `pre_nms_topk` anchors by their best class score, with all their
            classes (mmdetection). The score threshold applies after the top-k either way.
    """

    def __init__(self, *, coder: BoxCoder, score_threshold: float = 0.05, pre_nms_topk: int = 1000,
                 nms_iou: float = 0.5, max_detections: int = 100,
                 level_score_thresholds: Sequence[float] | None = None, topk_unit: str = "pair") -> None:
        if topk_unit not in TOPK_UNITS:
            raise ValueError(f"postprocess: topk_unit must be one of {TOPK_UNITS}, got {topk_unit!r}")
        self.coder = coder
        self.score_threshold = score_threshold
        self.pre_nms_topk = pre_nms_topk
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        self.level_score_thresholds = None if level_score_thresholds is None else tuple(level_score_thresholds)
        self.topk_unit = topk_unit

    def _level_threshold(self, level: int, num_levels: int) -> float:
        if self.level_score_thresholds is None:
            return self.score_threshold
        if len(self.level_score_thresholds) != num_levels:
            raise ValueError(f"postprocess: {len(self.level_score_thresholds)} level_score_thresholds for "
                             f"{num_levels} levels")
        return self.level_score_thresholds[level]

    def _level_topk(self, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Top-k of one level's (N, count, K) logits -> logits (N, c), anchor (N, c) and class (N, c) indices."""
        n, count, k = logits.shape
        if self.topk_unit == "pair":
            top, idx = logits.reshape(n, count * k).topk(min(self.pre_nms_topk, count * k), dim=1)
            return top, idx // k, idx % k
        best = logits.amax(dim=2).topk(min(self.pre_nms_topk, count), dim=1).indices  # (N, a)
        top = logits.gather(1, best.unsqueeze(-1).expand(-1, -1, k)).reshape(n, -1)  # (N, a * K)
        classes = torch.arange(k, device=logits.device).repeat(best.shape[1]).expand(n, -1)
        return top, best.repeat_interleave(k, dim=1), classes

    def candidates(self, cls_logits: Tensor, level_counts: Sequence[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-level top-k candidates of every image, batched over images (see `topk_unit`).

        Top-k runs on the logits (sigmoid is monotonic), then scores not above the level's threshold are marked
        invalid: the same as thresholding after the top-k, without a host sync per level.

        Args:
            cls_logits: (N, HWA, K). level_counts: anchors per level.
        Returns:
            scores (N, C), anchor indices (N, C), class indices (N, C), valid (N, C) bool, C = sum of per-level k.
        """
        n, _, k = cls_logits.shape
        scores, anchors, classes, valid, start = [], [], [], [], 0
        for level, count in enumerate(level_counts):
            top, anchor, cls = self._level_topk(cls_logits[:, start:start + count])
            score = torch.sigmoid(top)
            scores.append(score)
            anchors.append(anchor + start)
            classes.append(cls)
            valid.append(score > self._level_threshold(level, len(level_counts)))
            start += count
        return torch.cat(scores, dim=1), torch.cat(anchors, dim=1), torch.cat(classes, dim=1), torch.cat(valid, 1)

    @torch.no_grad()
    def decoded_candidates(self, cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor,
                           level_counts: Sequence[int], targets: Sequence[dict]) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Pre-NMS candidates of each image: per-level top-k over the threshold, decoded and clipped.

        Args: as `__call__`.
        Returns:
            N tuples (boxes (C_i, 4) xyxy in un-padded input pixels, scores (C_i,), labels (C_i,) int64).
        """
        if len(targets) != cls_logits.shape[0]:
            raise ValueError(f"postprocess: {cls_logits.shape[0]} images but {len(targets)} targets")
        scores, anchor_idx, labels, valid = self.candidates(cls_logits, level_counts)  # (N, C) each
        deltas = box_deltas.gather(1, anchor_idx.unsqueeze(-1).expand(-1, -1, 4))  # (N, C, 4)
        boxes = self.coder.decode(deltas, anchors[anchor_idx])  # (N, C, 4) input pixels
        out = []
        for i, target in enumerate(targets):
            _, input_hw, _ = image_geometry(target)
            v = valid[i]
            out.append((clip_boxes_to_image(boxes[i][v], input_hw), scores[i][v], labels[i][v]))
        return out

    @torch.no_grad()
    def __call__(self, cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor, level_counts: Sequence[int],
                 targets: Sequence[dict]) -> list[dict[str, Tensor]]:
        """Detections of a batch.

        Args:
            cls_logits: (N, HWA, K). box_deltas: (N, HWA, 4). anchors: (HWA, 4) xyxy pixels of the padded input.
            level_counts: anchors per level. targets: N dicts with `orig_size`, `scale` (and optional
                `size`), see `image_geometry`.
        Returns:
            N dicts: boxes (D, 4) xyxy in original image pixels, scores (D,), labels (D,) int64 class indices.
        """
        results = []
        for (b, s, lab), target in zip(self.decoded_candidates(cls_logits, box_deltas, anchors, level_counts,
                                                               targets), targets):
            (sy, sx), _, (oh, ow) = image_geometry(target)
            keep = batched_nms(b.float(), s.float(), lab, self.nms_iou)[:self.max_detections]
            b = to_original(b[keep], (sy, sx))
            results.append({"boxes": clip_boxes_to_image(b, (oh, ow)), "scores": s[keep], "labels": lab[keep]})
        return results
