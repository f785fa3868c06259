"""Inference over a loader: the detector's detections as COCO results (gathered over processes), and their metrics."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn
from torchvision.ops import box_convert

from training import distributed as dist_utils
from training.logging import progress


def detections_to_coco(detections: dict[str, torch.Tensor], image_id: int,
                       label_to_cat_id: Callable[[int], int]) -> list[dict[str, Any]]:
    """One image's detections as COCO results.

    Args:
        detections: ``boxes (D, 4)`` xyxy in original-image pixels, ``scores (D,)``, ``labels (D,)`` in 0..K-1.

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}, ...]``.
    """
    boxes = box_convert(detections["boxes"].detach().float().cpu(), "xyxy", "xywh").tolist()
    scores = detections["scores"].detach().float().cpu().tolist()
    labels = detections["labels"].detach().cpu().tolist()
    cat_ids = {label: int(label_to_cat_id(int(label))) for label in set(labels)}
    return [{"image_id": int(image_id), "category_id": cat_ids[label], "bbox": [float(v) for v in box],
             "score": float(score)} for box, score, label in zip(boxes, scores, labels)]


def detect_batch(net: nn.Module, batch: tuple[torch.Tensor, list[dict[str, Any]]], device: torch.device,
                 amp: bool = False) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, Any]]]:
    """Single-view detections of one ``(images (N, 3, H, W), targets)`` batch, in original-image pixels."""
    images, targets = batch
    images = images.to(device, non_blocking=True)
    with torch.autocast(device_type=device.type, enabled=amp):
        outputs = net(images)
    outputs = {k: v.float() for k, v in outputs.items()}
    return net.postprocess(outputs, net.anchors(images), targets), targets


Detect = Callable[[nn.Module, Any, torch.device, bool], tuple[list[dict[str, torch.Tensor]], list[dict[str, Any]]]]


@torch.inference_mode()
def predict_coco_results(model: nn.Module, loader: Iterable[tuple[torch.Tensor, list[dict[str, Any]]]],
                         device: torch.device, *, label_to_cat_id: Callable[[int], int] | None = None,
                         amp: bool = False, show_progress: bool = True, desc: str = "eval",
                         detect: Detect | None = None) -> list[dict[str, Any]]:
    """Runs the detector over ``loader`` and returns COCO-format results, sorted by image id.

    Under DDP every process evaluates its shard; the per-image results are gathered (duplicates from sampler
    padding collapse onto one entry per image) and every rank returns the full list.

    Args:
        label_to_cat_id: maps a contiguous label to a COCO category id; defaults to
            ``loader.dataset.label_to_cat_id``.
        detect: ``detect(net, batch, device, amp) -> (per-image detections, per-image targets)`` for one item of
            ``loader``; default :func:`detect_batch` (``models.tta.MultiScaleFlipTTA`` for test-time augmentation).
    """
    if label_to_cat_id is None:
        dataset = getattr(loader, "dataset", None)
        label_to_cat_id = getattr(dataset, "label_to_cat_id", None)
        if label_to_cat_id is None:
            raise ValueError("predict_coco_results: pass label_to_cat_id, or use a loader whose dataset has label_to_cat_id")
    net = dist_utils.model_without_ddp(model)
    was_training = net.training
    net.eval()
    per_image: dict[int, list[dict[str, Any]]] = {}
    try:
        total = len(loader) if hasattr(loader, "__len__") else None
        for batch in progress(loader, total=total, desc=desc, enabled=show_progress and dist_utils.is_main_process()):
            detections, targets = (detect or detect_batch)(net, batch, device, amp)
            for det, target in zip(detections, targets):
                image_id = int(target["image_id"])
                per_image[image_id] = detections_to_coco(det, image_id, label_to_cat_id)
    finally:
        net.train(was_training)
    merged: dict[int, list[dict[str, Any]]] = {}
    for part in dist_utils.all_gather_object(per_image):
        merged.update(part)
    return [r for image_id in sorted(merged) for r in merged[image_id]]


def coco_metrics(dataset: Any, results: list[dict]) -> dict[str, Any]:
    """COCO AP and oLRP of ``results`` against ``dataset.coco``."""
    from alrp.metrics import detection_metrics

    return detection_metrics(dataset.coco, results)
