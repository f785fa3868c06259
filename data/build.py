"""`build_dataset`: the only place that turns a `DataConfig` into a dataset."""
from __future__ import annotations

from pathlib import Path

from .coco import CocoDetection
from .config import DataConfig
from .presets import build_eval_transforms, build_train_transforms


def build_dataset(cfg: DataConfig, split: str, train: bool) -> CocoDetection:
    """COCO split `split` under `cfg.root`: `annotations/instances_<split>.json` + images in `<split>/`.

    `train` selects the training preset (and drops images without usable boxes) or the eval preset.
    """
    root = Path(cfg.root)
    transforms = build_train_transforms(cfg) if train else build_eval_transforms(cfg)
    return CocoDetection(ann_file=root / "annotations" / f"instances_{split}.json", img_dir=root / split,
                         transforms=transforms, train=train, on_bad_image=cfg.on_bad_image)
