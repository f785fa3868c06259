"""Data package: COCO-format datasets, SSD-style augmentation presets and batching.

Public entry points: `DataConfig`, `build_dataset(cfg, split, train)`, `build_loader(dataset, cfg, train,
batch_size, distributed, seed)` and `collate`. They load on first use, so ``data.config`` imports without torch
or cv2 (a config error comes before any of them).
"""
from alrp.lazy import lazy_exports

_EXPORTS = {"build_dataset": ".build", "CocoDetection": ".coco", "DataConfig": ".config", "SSDAugConfig": ".config",
            "BadImageError": ".errors", "DatasetError": ".errors", "DetectionLoader": ".loader",
            "build_loader": ".loader", "collate": ".loader", "category_table": ".categories",
            "check_same_categories": ".categories"}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
