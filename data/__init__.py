"""Data package: COCO-format datasets, SSD-style augmentation presets and batching.

Public entry points: `DataConfig`, `build_dataset(cfg, split, train)`, `build_loader(dataset, cfg, train,
batch_size, distributed, seed)` and `collate`.
"""
from .build import build_dataset
from .coco import CocoDetection
from .config import DataConfig, SSDAugConfig
from .errors import BadImageError, DatasetError
from .loader import DetectionLoader, build_loader, collate

__all__ = ["BadImageError", "CocoDetection", "DataConfig", "DatasetError", "DetectionLoader", "SSDAugConfig",
           "build_dataset", "build_loader", "collate"]
