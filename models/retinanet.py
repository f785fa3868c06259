"""The detector: backbone + FPN + head returning raw outputs, plus anchors, loss targets and post-processing.

`forward` is the same in train and eval mode; the loss lives in `alrp/` and consumes `loss_targets(...)`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from .anchors import AnchorGenerator, Anchors
from .assigners import Assignment
from .box_coder import BoxCoder
from .postprocess import PostProcessor
from .targets import LossTargets, build_loss_targets

Assigner = Callable[..., Assignment]


def _target_tensor(target: dict, key: str, shape_tail: tuple, dtype: torch.dtype, device: torch.device) -> Tensor:
    """target[key] as a tensor on `device`; a missing `crowd_boxes` is empty; bad shapes name the image."""
    if key not in target:
        if key == "crowd_boxes":
            return torch.zeros(0, 4, dtype=dtype, device=device)
        raise KeyError(f"loss_targets: target (image_id {target.get('image_id')}) has no {key!r}")
    value = torch.as_tensor(target[key], device=device)
    value = value.reshape(0, *shape_tail) if value.numel() == 0 else value
    if tuple(value.shape[1:]) != shape_tail:
        expected = "(n" + "".join(f", {d}" for d in shape_tail) + ")"
        raise ValueError(f"loss_targets: target[{key!r}] of image_id {target.get('image_id')} has shape "
                         f"{tuple(value.shape)}, expected {expected}")
    return value.to(dtype)


class RetinaNet(nn.Module):
    """Single-stage detector with A anchors per location and K sigmoid classes.

    Args:
        backbone: module images -> {"c3", "c4", "c5"}. fpn: module -> [P3..P7]. head: module -> raw outputs.
        anchor_generator, box_coder, assigner, postprocessor: see their modules. num_classes: K.
    """

    def __init__(self, *, backbone: nn.Module, fpn: nn.Module, head: nn.Module, anchor_generator: AnchorGenerator,
                 box_coder: BoxCoder, assigner: Assigner, postprocessor: PostProcessor, num_classes: int) -> None:
        super().__init__()
        self.backbone, self.fpn, self.head = backbone, fpn, head
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder
        self.assigner = assigner
        self.postprocessor = postprocessor
        self.num_classes = num_classes

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """(N, 3, H, W) -> {"cls_logits": (N, HWA, K), "box_deltas": (N, HWA, 4)} raw logits and deltas."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"RetinaNet: expected images (N, 3, H, W), got {tuple(images.shape)}")
        return self.head(self.fpn(self.backbone(images)))

    def anchors(self, images: Tensor) -> Anchors:
        """`Anchors` of the padded input `images` (N, 3, H, W): boxes (HWA, 4) xyxy pixels and per-level counts;
        cached per size and device."""
        return self.anchor_generator(tuple(images.shape[-2:]), images.device)

    def ground_truth(self, anchors: Tensor, targets: Sequence[dict]) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per target dict: (boxes (G, 4), labels (G,) int64, crowd_boxes (C, 4)) on the anchors' device.

        Labels are range-checked once for the whole batch (one host sync); a bad one names its image.
        """
        gt = [(_target_tensor(t, "boxes", (4,), anchors.dtype, anchors.device),
               _target_tensor(t, "labels", (), torch.int64, anchors.device).reshape(-1),
               _target_tensor(t, "crowd_boxes", (4,), anchors.dtype, anchors.device)) for t in targets]
        labels = torch.cat([lab for _, lab, _ in gt]) if gt else torch.zeros(0, dtype=torch.int64)
        if bool(((labels < 0) | (labels >= self.num_classes)).any()):
            for t, (_, lab, _) in zip(targets, gt):
                bad = lab[(lab < 0) | (lab >= self.num_classes)]
                if bad.numel():
                    raise ValueError(f"loss_targets: labels of image_id {t.get('image_id')} must be in "
                                     f"[0, {self.num_classes - 1}], got {sorted(set(bad.tolist()))[:10]}")
        return gt

    def assign(self, anchors: Anchors, gt: Sequence[tuple[Tensor, Tensor, Tensor]]) -> list[Assignment]:
        """One `Assignment` per image of `gt` (as returned by `ground_truth`)."""
        return [self.assigner(anchors.boxes, boxes, labels, crowd, anchors.level_counts) for boxes, labels, crowd in gt]

    def loss_targets(self, outputs: dict[str, Tensor], anchors: Anchors, targets: Sequence[dict]) -> LossTargets:
        """Assigns every image and flattens to (anchor, class) pairs; see `models.targets`."""
        gt = self.ground_truth(anchors.boxes, targets)
        return build_loss_targets(outputs["cls_logits"], outputs["box_deltas"], anchors.boxes,
                                  self.assign(anchors, gt), [boxes for boxes, _, _ in gt], self.box_coder)

    def postprocess(self, outputs: dict[str, Tensor], anchors: Anchors,
                    targets: Sequence[dict]) -> list[dict[str, Tensor]]:
        """Per-image dicts boxes (D, 4) in original image pixels, scores (D,), labels (D,); see `models.postprocess`."""
        return self.postprocessor(outputs["cls_logits"], outputs["box_deltas"], anchors.boxes, anchors.level_counts,
                                  targets)

    def candidates(self, outputs: dict[str, Tensor], anchors: Anchors,
                   targets: Sequence[dict]) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per image (boxes (C, 4) un-padded input pixels, scores (C,), labels (C,)) before NMS (for `models.tta`)."""
        return self.postprocessor.decoded_candidates(outputs["cls_logits"], outputs["box_deltas"], anchors.boxes,
                                                     anchors.level_counts, targets)
