"""Multi-scale + horizontal-flip test-time augmentation, merged as the ablation code's `lib/util/coco_eval.py` does.

Rule (kemaloksuz/aLRPLoss-AblationExperiments, `evaluate_coco` with `test.image_size` a list and
`flip_augmentation`), for each image:
1. every test scale gives a view (short side s, long side <= the configured ratio; the data pipeline resizes from
   the original image); with flip, a second view mirrors the un-padded image (padding stays at the right);
2. each view keeps its pre-NMS candidates (per-level top-k over the score threshold, decoded, clipped to the
   view's image); flipped boxes map back by x -> W - x (W = the view's un-padded width), then all boxes are
   divided by the view's scale into original-image pixels;
3. optionally a scale keeps only boxes whose shorter side is under `max_size` original pixels (the ablation
   code's `multi_scale_thr`, 0 = keep all);
4. the candidates of all views are concatenated, one per-class NMS (IoU `nms_iou`) runs over them and the best
   `max_detections` are kept.
No score averaging or box voting: a detection comes from exactly one view.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms, clip_boxes_to_image

from .postprocess import image_geometry, to_original

Candidates = tuple[Tensor, Tensor, Tensor]  # boxes (C, 4), scores (C,), labels (C,)


def flip_images(images: Tensor, widths: Sequence[int]) -> Tensor:
    """(N, 3, H, W) padded batch -> the same with each image's first `widths[i]` columns mirrored."""
    flipped = images.clone()
    for i, w in enumerate(widths):
        flipped[i, :, :, :w] = images[i, :, :, :w].flip(-1)
    return flipped


def unflip_boxes(boxes: Tensor, width: float) -> Tensor:
    """(C, 4) xyxy boxes of a mirrored image of `width` pixels -> boxes of the unmirrored image (an involution)."""
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def keep_smaller_than(candidates: Candidates, max_size: float) -> Candidates:
    """Candidates whose shorter box side is < `max_size` pixels; `max_size` 0 keeps all."""
    if max_size <= 0:
        return candidates
    boxes, scores, labels = candidates
    keep = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) < max_size
    return boxes[keep], scores[keep], labels[keep]


@torch.no_grad()
def view_candidates(net: nn.Module, images: Tensor, targets: Sequence[dict], *, flip: bool) -> list[Candidates]:
    """Pre-NMS candidates of one view of a batch, boxes in original-image pixels.

    Args:
        net: a `RetinaNet` (eval mode). images: (N, 3, H, W) padded batch of the view. targets: the view's
            per-image dicts (`scale`, `orig_size`, `size`, see `models.postprocess.image_geometry`).
        flip: run on the mirrored images and map the boxes back.
    """
    geometry = [image_geometry(t) for t in targets]
    if flip:
        images = flip_images(images, [iw for _, (_, iw), _ in geometry])
    outputs = {k: v.float() for k, v in net(images).items()}
    result = []
    for (boxes, scores, labels), ((sy, sx), (_, iw), _) in zip(net.candidates(outputs, net.anchors(images), targets),
                                                             geometry):
        if flip:
            boxes = unflip_boxes(boxes, iw)
        result.append((to_original(boxes, (sy, sx)), scores, labels))
    return result


def merge_views(views: Sequence[Candidates], orig_hw: tuple[int, int], *, nms_iou: float,
                max_detections: int) -> dict[str, Tensor]:
    """One image's candidates of all views (original pixels) -> detections: concatenate, per-class NMS, top k.

    Returns:
        boxes (D, 4) clipped to `orig_hw` (h, w), scores (D,), labels (D,), best first, D <= max_detections.
    """
    boxes = torch.cat([v[0] for v in views])
    scores = torch.cat([v[1] for v in views])
    labels = torch.cat([v[2] for v in views])
    keep = batched_nms(boxes.float(), scores.float(), labels, nms_iou)[:max_detections]
    return {"boxes": clip_boxes_to_image(boxes[keep], orig_hw), "scores": scores[keep], "labels": labels[keep]}


class MultiScaleFlipTTA:
    """`predict_coco_results`'s `detect` for S scale views of a batch: [(images, targets)] * S -> detections.

    Args:
        flip: add the mirrored view of every scale. max_sizes: per scale, keep only boxes with shorter side under
            this many original pixels (0 = all); empty = all at every scale.
    """

    def __init__(self, *, flip: bool, max_sizes: Sequence[float] = ()) -> None:
        self.flip, self.max_sizes = flip, list(max_sizes)

    def __call__(self, net: nn.Module, batch: Sequence[tuple[Tensor, list[dict[str, Any]]]], device: torch.device,
                 amp: bool = False) -> tuple[list[dict[str, Tensor]], list[dict[str, Any]]]:
        """Returns (per-image detections in original pixels, the first view's targets)."""
        if self.max_sizes and len(self.max_sizes) != len(batch):
            raise ValueError(f"tta: {len(self.max_sizes)} max sizes for {len(batch)} scales")
        ids = [[t.get("image_id") for t in targets] for _, targets in batch]
        if any(view_ids != ids[0] for view_ids in ids):
            raise ValueError(f"tta: the scale loaders disagree on the images of a batch: {ids}")
        per_image: list[list[Candidates]] = [[] for _ in ids[0]]
        for s, (images, targets) in enumerate(batch):
            images = images.to(device, non_blocking=True)
            for flip in ((False, True) if self.flip else (False,)):
                with torch.autocast(device_type=device.type, enabled=amp):
                    views = view_candidates(net, images, targets, flip=flip)
                for i, view in enumerate(views):
                    per_image[i].append(keep_smaller_than(view, self.max_sizes[s] if self.max_sizes else 0))
        post = net.postprocessor
        first_targets = batch[0][1]
        detections = [merge_views(views, image_geometry(t)[2], nms_iou=post.nms_iou,
                                  max_detections=post.max_detections) for views, t in zip(per_image, first_targets)]
        return detections, first_targets


class ScaleViews:
    """S loaders over the same images in the same order, iterated in step: each item is [(images, targets)] * S."""

    def __init__(self, loaders: Sequence[Any]) -> None:
        if not loaders:
            raise ValueError("tta: at least one scale loader is needed")
        self.loaders = list(loaders)
        self.dataset = getattr(self.loaders[0], "dataset", None)

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self):
        return (list(batch) for batch in zip(*self.loaders, strict=True))
