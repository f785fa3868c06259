"""Detections from raw outputs: sigmoid, per-level top-k, decode, clip, per-class NMS, map to original pixels."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image

from .box_coder import BoxCoder


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


class PostProcessor:
    """Turns raw outputs into per-image detections.

    Args:
        coder: box coder of the model. score_threshold: keep candidates with sigmoid score > this (0.05).
        pre_nms_topk: candidates kept per level (1000). nms_iou: per-class NMS IoU (0.5).
        max_detections: detections kept per image (100).
    """

    def __init__(self, *, coder: BoxCoder, score_threshold: float = 0.05, pre_nms_topk: int = 1000,
                 nms_iou: float = 0.5, max_detections: int = 100) -> None:
        self.coder = coder
        self.score_threshold = score_threshold
        self.pre_nms_topk = pre_nms_topk
        self.nms_iou = nms_iou
        self.max_detections = max_detections

    def candidates(self, cls_logits: Tensor, level_counts: Sequence[int]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-level top-k (anchor, class) pairs of every image, batched over images.

        Top-k runs on the logits (sigmoid is monotonic), then scores under the threshold are marked invalid: the
        same as taking the top k of the pairs over the threshold, without a host sync per level.

        Args:
            cls_logits: (N, HWA, K). level_counts: anchors per level.
        Returns:
            scores (N, C), anchor indices (N, C), class indices (N, C), valid (N, C) bool, C = sum of per-level k.
        """
        n, _, k = cls_logits.shape
        scores, anchors, classes, start = [], [], [], 0
        for count in level_counts:
            logits = cls_logits[:, start:start + count].reshape(n, count * k)
            top, idx = logits.topk(min(self.pre_nms_topk, count * k), dim=1)
            scores.append(torch.sigmoid(top))
            anchors.append(idx // k + start)
            classes.append(idx % k)
            start += count
        scores = torch.cat(scores, dim=1)
        return scores, torch.cat(anchors, dim=1), torch.cat(classes, dim=1), scores > self.score_threshold

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
        if len(targets) != cls_logits.shape[0]:
            raise ValueError(f"postprocess: {cls_logits.shape[0]} images but {len(targets)} targets")
        scores, anchor_idx, labels, valid = self.candidates(cls_logits, level_counts)  # (N, C) each
        deltas = box_deltas.gather(1, anchor_idx.unsqueeze(-1).expand(-1, -1, 4))  # (N, C, 4)
        boxes = self.coder.decode(deltas, anchors[anchor_idx])  # (N, C, 4) input pixels
        results = []
        for i, target in enumerate(targets):
            (sy, sx), input_hw, (oh, ow) = image_geometry(target)
            v = valid[i]
            b, s, lab = clip_boxes_to_image(boxes[i][v], input_hw), scores[i][v], labels[i][v]
            keep = batched_nms(b.float(), s.float(), lab, self.nms_iou)[:self.max_detections]
            b = b[keep] / b.new_tensor([sx, sy, sx, sy])
            results.append({"boxes": clip_boxes_to_image(b, (oh, ow)), "scores": s[keep], "labels": lab[keep]})
        return results
