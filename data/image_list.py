"""Datasets of images without annotations: files/folders/globs given on the command line, or a COCO image-info
file (the test splits: `image_info_test-dev2017.json` lists images and categories, no annotations).

Both yield the same items as `CocoDetection` (empty boxes), so they run through the eval transforms and
`data.build_loader(..., train=False)` like any evaluation split. An image that cannot be decoded does not stop
the run: its item is a small blank placeholder, it is counted in shared memory (DataLoader workers update it
too) and `skipped()` says which files and why, so the caller drops its detections and reports it.
"""
from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .annotations import IMAGE_KEYS, read_json, validate
from .coco import ItemKey
from .errors import BadImageError, DatasetError
from .image_io import read_image

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
PLACEHOLDER_SIDE = 32  # px: what an unreadable image is replaced by (its detections are discarded)


@dataclass(frozen=True)
class ImageEntry:
    """One image to predict on: `image_id` (1-based position, or the id of an image-info file), file, size."""

    image_id: int
    path: Path
    height: int
    width: int


@dataclass(frozen=True)
class SkippedImage:
    """An input that gave no image: the path (or pattern) and a short reason."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def expand_inputs(specs: Sequence[str | Path]) -> tuple[list[Path], list[SkippedImage]]:
    """Files named by `specs` (files, folders: their image files, sorted, not recursive; globs, `**` recursive).

    Returns the files (as named) in order of appearance without repeats, and the specs that named nothing (missing file,
    empty folder, glob without match). Explicit files are kept whatever their suffix (decoding decides).
    """
    files: list[Path] = []
    skipped: list[SkippedImage] = []
    for spec in (str(s) for s in specs):
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                skipped.append(SkippedImage(spec, f"folder has no image files ({', '.join(IMAGE_SUFFIXES)})"))
        elif path.is_file():
            found = [path]
        elif glob.has_magic(spec):
            found = sorted(Path(p) for p in glob.glob(spec, recursive=True)
                           if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                skipped.append(SkippedImage(spec, "no image file matches this pattern"))
        else:
            found = []
            skipped.append(SkippedImage(spec, "file not found"))
        files.extend(found)
    unique: dict[Path, Path] = {}
    for p in files:  # the same file named twice (e.g. by a folder and a glob) is kept once, as first named
        unique.setdefault(p.resolve(), p)
    return list(unique.values()), skipped


def probe_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header (no full decode); raises BadImageError for non-images."""
    from PIL import Image, UnidentifiedImageError

    try:
        if path.stat().st_size == 0:
            raise BadImageError(str(path), "empty file")
        with Image.open(path) as im:
            width, height = im.size
    except UnidentifiedImageError:
        raise BadImageError(str(path), "not an image (unknown format)") from None
    except OSError as err:
        reason = "truncated image file" if "runcated" in str(err) else f"cannot read image file ({err.strerror or err})"
        raise BadImageError(str(path), reason) from None
    return int(height), int(width)


def entries_from_files(files: Sequence[Path]) -> tuple[list[ImageEntry], list[SkippedImage]]:
    """Probes every file's size; numbered 1.. in order. Unreadable files are returned as skipped."""
    entries: list[ImageEntry] = []
    skipped: list[SkippedImage] = []
    for path in files:
        try:
            h, w = probe_size(path)
        except BadImageError as err:
            skipped.append(SkippedImage(err.path, err.reason))
            continue
        entries.append(ImageEntry(len(entries) + 1, path, h, w))
    return entries, skipped


def load_image_info(info_file: str | Path, img_dir: str | Path) -> tuple[list[ImageEntry], list[dict[str, Any]]]:
    """Images and categories of a COCO image-info file (annotations optional); images are looked up in `img_dir`.

    Raises DatasetError naming the file (malformed JSON, missing keys, duplicate ids, bad sizes).
    """
    info_file = Path(info_file)
    data = read_json(info_file, keys=("images", "categories"))
    validate(info_file, {**data, "annotations": []}, IMAGE_KEYS)
    entries = [ImageEntry(int(img["id"]), Path(img_dir) / str(img["file_name"]), int(img["height"]),
                          int(img["width"])) for img in sorted(data["images"], key=lambda im: im["id"])]
    return entries, sorted(data["categories"], key=lambda c: c["id"])


class ImageListDataset(Dataset):
    """Images without annotations, as `CocoDetection` items with empty `boxes (0, 4)` and `labels (0,)`.

    Args:
        entries: the images (ids, files, sizes as stored, EXIF orientation ignored like COCO).
        transforms: the eval transforms (`data.presets.build_eval_transforms`).
    """

    def __init__(self, entries: Sequence[ImageEntry], transforms: Callable[..., Any] | None) -> None:
        if not entries:
            raise DatasetError("no readable image to predict on")
        self.entries = list(entries)
        self.transforms = transforms
        self.by_id = {e.image_id: e for e in self.entries}
        self._bad = torch.zeros(len(self.entries), dtype=torch.int8).share_memory_()

    def __len__(self) -> int:
        return len(self.entries)

    def image_aspect_ratio(self, index: int) -> float:
        """Width / height of image `index` (from the header or the image-info file; no decoding)."""
        e = self.entries[index]
        return e.width / e.height

    def skipped(self) -> list[SkippedImage]:
        """The images that failed to decode so far, with the reason (re-read here: workers cannot pass strings)."""
        out = []
        for i in torch.nonzero(self._bad).flatten().tolist():
            e = self.entries[i]
            try:
                read_image(e.path, (e.height, e.width))
                reason = "unreadable while predicting"
            except BadImageError as err:
                reason = err.reason
            out.append(SkippedImage(str(e.path), reason))
        return out

    def skipped_ids(self) -> set[int]:
        """Image ids of the images that failed to decode."""
        return {self.entries[i].image_id for i in torch.nonzero(self._bad).flatten().tolist()}

    def __getitem__(self, key: ItemKey) -> tuple[torch.Tensor, dict[str, Any]]:
        index = int(key[0]) if isinstance(key, (tuple, list)) else int(key)
        e = self.entries[index]
        target: dict[str, Any] = {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros((0,), np.int64),
                                  "crowd_boxes": np.zeros((0, 4), np.float32), "scale": 1.0}
        try:
            image = read_image(e.path, (e.height, e.width))
        except BadImageError as err:
            self._bad[index] = 1
            log.warning("skipping %s", err)
            side = PLACEHOLDER_SIDE
            return torch.zeros(3, side, side), {**{k: torch.from_numpy(v) for k, v in target.items() if k != "scale"},
                                                "image_id": e.image_id, "orig_size": (side, side),
                                                "size": (side, side), "scale": 1.0}
        if self.transforms is not None:
            image, target = self.transforms(image, target, np.random.default_rng(index))
        return image, {"boxes": torch.from_numpy(target["boxes"]).reshape(-1, 4),
                       "labels": torch.from_numpy(target["labels"]),
                       "crowd_boxes": torch.from_numpy(target["crowd_boxes"]).reshape(-1, 4),
                       "image_id": e.image_id, "orig_size": (e.height, e.width),
                       "size": (int(image.shape[1]), int(image.shape[2])), "scale": target["scale"]}
