"""`CocoDetection`: a COCO-format detection dataset returning normalised tensors and xyxy pixel targets."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from .annotations import ImageRecord, load_annotations
from .errors import BadImageError, DatasetError
from .image_io import read_image

log = logging.getLogger(__name__)
ItemKey = int | tuple[int, int, int]  # index, or (index, seed, epoch) as yielded by data.loader
MAX_CONSECUTIVE_BAD = 16


class CocoDetection(Dataset):
    """Detection dataset over a COCO annotation file.

    Item `key` is an index or `(index, seed, epoch)`; the transforms draw from
    `numpy.random.default_rng((seed, epoch, index))`, so an item is reproducible whatever worker loads it.
    Returns `(image (3, H, W) float32, target)` with `boxes (N, 4)` float32 xyxy pixels of the transformed
    image, `labels (N,)` int64 in 0..K-1, `crowd_boxes (C, 4)` float32, `image_id` int, `orig_size (h, w)`,
    `size (h, w)` of the transformed image (before batch padding) and `scale` (see the transforms).

    Training (`train=True`) drops images without a usable (non-crowd, non-degenerate) box; evaluation keeps all.
    `on_bad_image='skip'` replaces an unreadable image by the next readable one and counts it
    (`bad_image_report()`); the counter lives in shared memory, so DataLoader workers update it too.
    """

    def __init__(self, *, ann_file: str | Path, img_dir: str | Path,
                 transforms: Callable[..., Any] | None, train: bool, on_bad_image: str = "error") -> None:
        if on_bad_image not in ("error", "skip"):
            raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
        index = load_annotations(ann_file)
        self.ann_file, self.img_dir = str(ann_file), Path(img_dir)
        if not self.img_dir.is_dir():
            raise DatasetError(f"{self.img_dir}: image folder not found (annotations: {self.ann_file})")
        self.transforms, self.train, self.on_bad_image = transforms, train, on_bad_image
        self.coco = index.coco
        self.cat_ids: list[int] = index.cat_ids
        self.class_names: list[str] = index.class_names
        self.cat_id_to_label: dict[int, int] = {cid: k for k, cid in enumerate(index.cat_ids)}
        self.records: list[ImageRecord] = [r for r in index.records if not train or len(r.boxes) > 0]
        self.num_skipped_empty = len(index.records) - len(self.records)
        if train and not self.records:  # a data problem, not a config one: name the file and what it holds
            crowd = sum(len(r.crowd_boxes) for r in index.records)
            raise DatasetError(f"{self.ann_file}: no image with a usable box to train on ({len(index.records)} "
                               f"images, {index.num_degenerate} degenerate boxes dropped, {crowd} crowd boxes)")
        self.num_degenerate = index.num_degenerate
        self.degenerate_ann_ids = index.degenerate_ann_ids
        self._bad_counts = torch.zeros(len(self.records), dtype=torch.int32).share_memory_()

    @property
    def num_classes(self) -> int:
        """K, the number of categories in the annotation file."""
        return len(self.cat_ids)

    def label_to_cat_id(self, label: int) -> int:
        """Contiguous label 0..K-1 -> COCO category id."""
        return self.cat_ids[int(label)]

    def __len__(self) -> int:
        return len(self.records)

    def image_aspect_ratio(self, index: int) -> float:
        """Width / height of image `index`, from the annotation file (no decoding)."""
        r = self.records[index]
        return r.width / r.height

    def summary(self) -> dict[str, int]:
        """Counts: images, boxes, crowd boxes, degenerate boxes dropped, images skipped as empty."""
        return {"images": len(self.records), "boxes": int(sum(len(r.boxes) for r in self.records)),
                "crowd_boxes": int(sum(len(r.crowd_boxes) for r in self.records)),
                "degenerate_boxes": self.num_degenerate, "skipped_empty_images": self.num_skipped_empty}

    def bad_image_report(self, reset: bool = False) -> dict[str, Any]:
        """Unreadable images replaced so far (on_bad_image='skip'): {'skipped': count, 'files': [paths]}."""
        hits = torch.nonzero(self._bad_counts).flatten().tolist()
        report = {"skipped": int(self._bad_counts.sum()),
                  "files": [str(self.img_dir / self.records[i].file_name) for i in hits]}
        if reset:
            self._bad_counts.zero_()
        return report

    def __getitem__(self, key: ItemKey) -> tuple[torch.Tensor, dict[str, Any]]:
        index, seed, epoch = (int(key), 0, 0) if not isinstance(key, (tuple, list)) else (int(k) for k in key)
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} images ({self.ann_file})")
        rng = np.random.default_rng((seed % 2**32, epoch % 2**32, index))
        image, record = self._load(index)
        target = {"boxes": record.boxes.copy(), "labels": record.labels.copy(),
                  "crowd_boxes": record.crowd_boxes.copy(), "scale": 1.0}
        if self.transforms is not None:
            image, target = self.transforms(image, target, rng)
        if not isinstance(image, torch.Tensor):
            image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
        return image, {
            "boxes": torch.from_numpy(np.ascontiguousarray(target["boxes"], dtype=np.float32)).reshape(-1, 4),
            "labels": torch.from_numpy(np.ascontiguousarray(target["labels"], dtype=np.int64)),
            "crowd_boxes": torch.from_numpy(np.ascontiguousarray(target["crowd_boxes"], dtype=np.float32)).reshape(-1, 4),
            "image_id": record.image_id,
            "orig_size": (record.height, record.width),
            "size": (int(image.shape[1]), int(image.shape[2])),
            "scale": target["scale"],
        }

    def _load(self, index: int) -> tuple[np.ndarray, ImageRecord]:
        """Reads image `index` (BGR uint8); in 'skip' mode falls through to the next readable image."""
        n = len(self.records)
        for attempt in range(min(n, MAX_CONSECUTIVE_BAD)):
            i = (index + attempt) % n
            record = self.records[i]
            try:
                return read_image(self.img_dir / record.file_name, (record.height, record.width)), record
            except BadImageError as err:
                if self.on_bad_image == "error":
                    raise
                self._bad_counts[i] += 1
                log.warning("skipping unreadable image: %s", err)
        raise DatasetError(f"{self.img_dir}: {min(n, MAX_CONSECUTIVE_BAD)} consecutive unreadable images "
                           f"starting at {self.records[index].file_name} (on_bad_image='skip')")
