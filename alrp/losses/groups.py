"""Ranking groups: the images whose (anchor, class) pairs are ranked together (`loss.rank_group`), and the
per-class split of the `loss.rank_per_class` diagnostic.

Both releases compute the loss per GPU, on that GPU's images only (8 at 500, 4 at 800), and average over GPUs.
Splitting a process's batch into groups of consecutive images and averaging the per-group losses reproduces that
for any number of processes: DDP averages the processes' gradients, so the optimised loss is the mean over all
groups of all processes either way.
"""
from __future__ import annotations

import dataclasses
from typing import Any


def group_bounds(num_images: int, group_size: int | None) -> list[tuple[int, int]]:
    """[start, end) image ranges of consecutive groups; the last may be smaller; None = one group of all images."""
    if num_images < 1:
        raise ValueError(f"rank groups: a batch needs at least one image, got {num_images}")
    size = num_images if group_size is None else group_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"rank groups: group size must be a positive int or None, got {group_size!r}")
    return [(start, min(start + size, num_images)) for start in range(0, num_images, size)]


def split_images(lt: Any, group_size: int | None) -> list[Any]:
    """Splits LossTargets of `lt.num_images` images into LossTargets of consecutive image groups.

    Relies on the LossTargets order: pairs row-major (image, anchor, class), every image with the same number of
    pairs, positives' rows in the order of their positive pair (so image-major too).

    Returns:
        One LossTargets (a `dataclasses.replace` of `lt`) per group, with `num_images` set to the group's size.
    """
    if group_size is None:
        return [lt]
    if getattr(lt, "num_images", None) is None:
        raise ValueError(f"rank groups: {type(lt).__name__} has no num_images (needed by loss.rank_group)")
    n = int(lt.num_images)
    bounds = group_bounds(n, group_size)
    if len(bounds) == 1:
        return [lt]
    m = lt.logits.numel()
    if m % n:
        raise ValueError(f"rank groups: {m} (anchor, class) pairs do not split evenly over {n} images")
    per_image = m // n
    pos_counts = lt.targets.reshape(n, per_image).eq(1).sum(1).tolist()  # one positive pair per positive anchor
    pos_start = [0]
    for count in pos_counts:
        pos_start.append(pos_start[-1] + count)
    if pos_start[-1] != lt.pos_gt_boxes.shape[0]:
        raise ValueError(f"rank groups: {pos_start[-1]} positive pairs but {lt.pos_gt_boxes.shape[0]} positive boxes")
    groups = []
    for a, b in bounds:
        pairs, pos = slice(a * per_image, b * per_image), slice(pos_start[a], pos_start[b])
        groups.append(_subset(lt, lt.logits[pairs], lt.targets[pairs], pos, num_images=b - a))
    return groups


def split_classes(lt: Any) -> list[tuple[Any, float]]:
    """Splits LossTargets into one per class with positives, each with its weight P_c / P.

    Relies on the LossTargets order: pairs row-major (..., class) with `lt.num_classes` = K classes, positives' rows
    in the order of their positive pair. Part c: logits and targets (M / K,), positive rows (P_c, 4). A class
    without positives gets no part, so its negatives get no gradient (in the joint ranking they are pushed down).
    A batch without positives is returned whole (weight 1): its losses are 0.
    """
    k = getattr(lt, "num_classes", None)
    if k is None:
        raise ValueError(f"rank per class: {type(lt).__name__} has no num_classes (needed by loss.rank_per_class)")
    m = lt.logits.numel()
    if m % k:
        raise ValueError(f"rank per class: {m} (anchor, class) pairs do not split evenly over {k} classes")
    pos_class = lt.targets.eq(1).nonzero().flatten() % k  # (P,) class of each positive row
    num_pos = pos_class.numel()
    if num_pos != lt.pos_gt_boxes.shape[0]:
        raise ValueError(f"rank per class: {num_pos} positive pairs but {lt.pos_gt_boxes.shape[0]} positive boxes")
    if num_pos == 0:
        return [(lt, 1.0)]
    logits, targets = lt.logits.reshape(-1, k), lt.targets.reshape(-1, k)
    return [(_subset(lt, logits[:, c], targets[:, c], pos_class == c, num_classes=1),
             int((pos_class == c).sum()) / num_pos) for c in pos_class.unique().tolist()]


def _subset(lt: Any, logits: Any, targets: Any, pos: Any, **changes: Any) -> Any:
    """A `dataclasses.replace` of `lt` with these pairs and the positive rows `pos` (a slice or a (P,) mask)."""
    return dataclasses.replace(lt, logits=logits, targets=targets, pos_pred_boxes=lt.pos_pred_boxes[pos],
                               pos_gt_boxes=lt.pos_gt_boxes[pos], pos_pred_deltas=lt.pos_pred_deltas[pos],
                               pos_gt_deltas=lt.pos_gt_deltas[pos], **changes)
