"""Batching: `collate` (pad to a multiple of 32), seeded per-epoch samplers, `build_loader`."""
from __future__ import annotations

import math
import random
from functools import partial
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .config import DataConfig


def collate(batch: Sequence[tuple[torch.Tensor, dict[str, Any]]],
            pad_divisor: int = 32) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Stacks `(3, H_i, W_i)` images into `(N, 3, Hp, Wp)`, zero-padded at the bottom/right.

    `Hp`, `Wp` are the largest height/width rounded up to a multiple of `pad_divisor` (0 is the normalised
    mean). Targets stay a list of per-image dicts; box coordinates are unaffected by the padding.
    """
    images = [item[0] for item in batch]
    hp = int(math.ceil(max(im.shape[1] for im in images) / pad_divisor) * pad_divisor)
    wp = int(math.ceil(max(im.shape[2] for im in images) / pad_divisor) * pad_divisor)
    out = images[0].new_zeros((len(images), images[0].shape[0], hp, wp))
    for i, im in enumerate(images):
        out[i, :, : im.shape[1], : im.shape[2]].copy_(im)
    return out, [item[1] for item in batch]


class KeyedBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Batches the indices of `sampler` as `(index, seed, epoch)` keys, so items know their random stream.

    `set_epoch(e)` reseeds both the augmentation stream and the inner sampler's shuffle (if it has one).
    With `group_fn` (index -> group id) every batch holds one group only (aspect-ratio grouping).
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, seed: int = 0, drop_last: bool = False,
                 group_fn: Any | None = None) -> None:
        self.sampler, self.batch_size, self.seed = sampler, batch_size, seed
        self.drop_last, self.group_fn, self.epoch = drop_last, group_fn, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(self.epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        buckets: dict[Any, list[tuple[int, int, int]]] = {}
        for idx in self.sampler:
            group = self.group_fn(idx) if self.group_fn is not None else 0
            bucket = buckets.setdefault(group, [])
            bucket.append((int(idx), self.seed, self.epoch))
            if len(bucket) == self.batch_size:
                yield bucket
                buckets[group] = []
        if not self.drop_last:
            for bucket in buckets.values():
                if bucket:
                    yield bucket

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        if self.drop_last:
            return n // self.batch_size
        if self.group_fn is None:
            return math.ceil(n / self.batch_size)
        return len(list(iter(self)))  # grouped: exact count needs a pass over the (cheap) indices


class DetectionLoader(DataLoader):
    """A DataLoader whose `set_epoch(e)` reseeds shuffling and augmentation; call it before each epoch."""

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)  # type: ignore[union-attr]

    @property
    def epoch(self) -> int:
        return self.batch_sampler.epoch  # type: ignore[union-attr]


def worker_init(worker_id: int) -> None:
    """Per-worker setup: no OpenCV thread pool inside workers; seed global RNGs from the worker seed."""
    cv2.setNumThreads(0)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(dataset: Dataset, cfg: DataConfig, train: bool, batch_size: int,
                 distributed: bool = False, seed: int = 0) -> DetectionLoader:
    """Loader over `dataset` with `collate`, padded to `cfg.pad_divisor`.

    Training shuffles (seeded by `seed` and the epoch set with `loader.set_epoch`); evaluation keeps order.
    `distributed=True` shards with `DistributedSampler` (needs an initialised process group; eval shards are
    padded with repeated images, so deduplicate results by `image_id`). Eval batches group landscape and
    portrait images apart when `cfg.aspect_grouping`.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"build_loader: batch_size must be a positive int, got {batch_size!r}")
    if distributed:
        sampler: Sampler[int] = DistributedSampler(dataset, shuffle=train, seed=seed)
    else:  # same shuffling code path as distributed, with one replica
        sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=train, seed=seed)
    group_fn = None
    if cfg.aspect_grouping and not train and hasattr(dataset, "image_aspect_ratio"):
        group_fn = lambda i: dataset.image_aspect_ratio(i) >= 1.0  # noqa: E731
    batch_sampler = KeyedBatchSampler(sampler, batch_size, seed=seed, drop_last=False, group_fn=group_fn)
    workers = cfg.num_workers
    return DetectionLoader(
        dataset, batch_sampler=batch_sampler, collate_fn=partial(collate, pad_divisor=cfg.pad_divisor),
        num_workers=workers, pin_memory=cfg.pin_memory and torch.cuda.is_available(),
        worker_init_fn=worker_init if workers > 0 else None, persistent_workers=workers > 0,
    )
