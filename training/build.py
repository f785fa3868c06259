"""Builds what a run trains and evaluates from a `Config`: datasets, loaders, detector, criterion."""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from training import distributed as dist_utils
from training.config import Config
from training.logging import get_logger

log = get_logger("trainer")


class SetupError(ValueError):
    """The run cannot start as configured (batch size vs process count, a training split without a batch)."""


@dataclass
class Parts:
    """What a run trains and evaluates (the detector already on its device, not yet wrapped in DDP)."""

    model: nn.Module
    criterion: Any
    train_loader: Iterable
    val_loader: Iterable | None = None
    val_dataset: Any = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_split(cfg: Config, split: str, *, train: bool, batch_size: int,
                distributed: bool = False) -> tuple[Any, Iterable]:
    """Dataset and loader of ``split`` ('train' or 'val'; training augmentation when ``train``)."""
    import data

    dataset = data.build_dataset(cfg.data, cfg.data.split_folder(split), train=train)
    loader = data.build_loader(dataset, cfg.data, train=train, batch_size=batch_size, distributed=distributed,
                               seed=cfg.seed)
    return dataset, loader


def build_model(cfg: Config, num_classes: int, device: torch.device, *, pretrained: bool = True) -> nn.Module:
    """The detector on ``device``; ``pretrained=False`` skips ``model.backbone.pretrained`` (weights that a
    checkpoint replaces anyway, and that may not exist on an evaluating machine)."""
    import models

    model_cfg = cfg.model
    if not pretrained:
        model_cfg = replace(model_cfg, backbone=replace(model_cfg.backbone, pretrained=None))
    return models.build_detector(model_cfg, num_classes).to(device)


def build_parts(cfg: Config, device: torch.device, info: dist_utils.DistInfo) -> Parts:
    """Datasets, loaders (this process's share of ``train.batch_size``), detector and criterion."""
    from alrp.losses.criterion import build_criterion
    from data.categories import category_table, check_same_categories

    train_set, train_loader = build_split(cfg, "train", train=True, batch_size=cfg.train.batch_size // info.world_size,
                                          distributed=info.distributed)
    log.info("training split %s: %s", cfg.data.split_folder("train"),  # dropped boxes and skipped images are never silent
             ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in train_set.summary().items()))
    val_set = val_loader = None
    if cfg.train.eval_interval > 0:
        val_set, val_loader = build_split(cfg, cfg.eval.split, train=False, batch_size=cfg.eval.batch_size,
                                          distributed=info.distributed)
        check_same_categories(category_table(train_set), train_set.ann_file, category_table(val_set),
                              val_set.ann_file)
    return Parts(model=build_model(cfg, train_set.num_classes, device), criterion=build_criterion(cfg.loss),
                 train_loader=train_loader, val_loader=val_loader, val_dataset=val_set)
