"""Builds what a run trains and evaluates from a `Config`: datasets, loaders, detector, criterion."""
from __future__ import annotations

import random
from dataclasses import dataclass
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


def build_parts(cfg: Config, device: torch.device, info: dist_utils.DistInfo) -> Parts:
    """Datasets, loaders (this process's share of ``train.batch_size``), detector and criterion."""
    import data
    import models
    from alrp.losses.criterion import build_criterion

    train_set = data.build_dataset(cfg.data, cfg.data.split_folder("train"), train=True)
    log.info("training split %s: %s", cfg.data.split_folder("train"),  # dropped boxes and skipped images are never silent
             ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in train_set.summary().items()))
    per_process = cfg.train.batch_size // info.world_size
    train_loader = data.build_loader(train_set, cfg.data, train=True, batch_size=per_process,
                                     distributed=info.distributed, seed=cfg.seed)
    val_set = val_loader = None
    if cfg.train.eval_interval > 0:
        val_set = data.build_dataset(cfg.data, cfg.data.split_folder(cfg.eval.split), train=False)
        val_loader = data.build_loader(val_set, cfg.data, train=False, batch_size=cfg.eval.batch_size,
                                       distributed=info.distributed, seed=cfg.seed)
    model = models.build_detector(cfg.model, train_set.num_classes).to(device)
    return Parts(model=model, criterion=build_criterion(cfg.loss), train_loader=train_loader,
                 val_loader=val_loader, val_dataset=val_set)
