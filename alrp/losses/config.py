"""The ``loss`` config section."""
from __future__ import annotations

import math
from dataclasses import dataclass

from alrp.validation import check, check_choice, check_range

LOSS_NAMES = ("alrp", "ap", "focal")
BOX_LOSS_REDUCTIONS = ("per_box", "per_coordinate")  # box-loss sum divided by P or by 4·P
BOX_LOSSES = {"alrp": ("iou", "giou"), "ap": ("smooth_l1", "l1", "iou", "giou"),
              "focal": ("smooth_l1", "l1", "iou", "giou")}


@dataclass
class LossConfig:
    """Which loss trains the detector, and its constants.

    Attributes:
        name: 'alrp' (aLRP Loss), 'ap' (AP Loss + box loss) or 'focal' (sigmoid focal loss + box loss).
        delta: smoothing of the step function of the ranking losses.
        box_loss: aLRP: the E_loc form, 'iou' | 'giou'; ap/focal: 'smooth_l1' | 'l1' | 'iou' | 'giou'.
        self_balance: weight the box loss by the self-balance weight (else by ``loc_weight``).
        sb_init: self-balance weight before its first update.
        sb_period_iters: update the self-balance weight every this many iterations (the mmdet release: 3665,
            one COCO epoch at batch 32) instead of at each epoch end (null, the ablation code).
        loc_weight: constant box-loss weight when ``self_balance`` is false.
        smooth_l1_beta: smooth-L1 transition point (delta units).
        box_loss_reduction: ap/focal box loss divided by P ('per_box') or by 4·P ('per_coordinate', the AP-Loss
            and ablation code: smooth-L1, IoU and GIoU alike).
        focal_alpha, focal_gamma: focal loss constants.
        wrong_target: aLRP with target 0 instead of E_loc(i)/rank(i) (Appendix G.3 demonstration only).
        rank_group: images whose pairs are ranked together (both releases: one GPU's images, 8 at 500, 4 at 800);
            each process's batch is split into groups of consecutive images and the loss is the mean over groups.
            None: one group per process (then results depend on the number of processes).
        rank_per_class: a diagnostic, not the paper's loss (which, like both releases, ranks the pairs of all classes
            in one list): rank each class's pairs apart and weight class c's losses by P_c / P, so that a class's
            negatives are pushed down only by its own positives, and not at all in a group without them (ranking
            losses only).
    """

    name: str = "alrp"
    delta: float = 1.0
    box_loss: str = "giou"
    self_balance: bool = True
    sb_init: float = 50.0
    sb_period_iters: int | None = None
    loc_weight: float = 1.0
    smooth_l1_beta: float = 0.11
    box_loss_reduction: str = "per_box"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    wrong_target: bool = False
    rank_group: int | None = None
    rank_per_class: bool = False

    def __post_init__(self) -> None:
        check_choice("loss.name", self.name, LOSS_NAMES)
        check_choice("loss.box_loss", self.box_loss, BOX_LOSSES[self.name])
        check_choice("loss.box_loss_reduction", self.box_loss_reduction, BOX_LOSS_REDUCTIONS)
        check(self.sb_period_iters is None or (isinstance(self.sb_period_iters, int)
                                               and not isinstance(self.sb_period_iters, bool)
                                               and self.sb_period_iters >= 1),
              "loss.sb_period_iters", f"{self.sb_period_iters!r} must be a positive integer or null")
        for key in ("delta", "sb_init", "smooth_l1_beta"):
            _require(key, getattr(self, key), positive=True)
        for key in ("loc_weight", "focal_gamma", "focal_alpha"):
            _require(key, getattr(self, key), positive=False)
        check_range("loss.focal_alpha", self.focal_alpha, 0.0, 1.0)
        for key in ("self_balance", "wrong_target", "rank_per_class"):
            check(isinstance(getattr(self, key), bool), f"loss.{key}", f"{getattr(self, key)!r} must be true or false")
        group = self.rank_group
        check(group is None or (isinstance(group, int) and not isinstance(group, bool) and group >= 1),
              "loss.rank_group", f"{group!r} must be a positive number of images or null")
        check(not self.wrong_target or self.name == "alrp", "loss.wrong_target",
              f"applies to loss.name='alrp' only, got name={self.name!r}")
        check(not self.rank_per_class or self.name in ("alrp", "ap"), "loss.rank_per_class",
              f"applies to the ranking losses ('alrp', 'ap') only, got name={self.name!r}")


def _require(key: str, value: object, positive: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    check(ok, f"loss.{key}", f"{value!r} must be a finite number {'> 0' if positive else '>= 0'}")
