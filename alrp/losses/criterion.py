"""Detection criteria: LossTargets -> named losses for aLRP Loss, AP Loss + box loss, focal loss + box loss.

The input is a `LossTargets` (alrp/losses/targets.py: ``logits (M,)``, ``targets (M,)``,
``pos_pred_boxes (P, 4)``, ``pos_gt_boxes (P, 4)``, ``pos_pred_deltas (P, 4)``, ``pos_gt_deltas (P, 4)``,
``num_pos``). Every criterion returns ``{"total", "cls", "loc", "loc_weight", "grad_pos_sum", "grad_neg_sum",
"num_pos"}``; backpropagate ``total = cls + loc_weight * loc``. The rest are detached. The losses run in float32
even under autocast. With ``rank_group`` the batch's images are split into groups (``alrp.losses.groups``, by
``num_images``), each group is ranked alone, and ``cls``, ``loc`` and the gradient statistics are group means.
With ``rank_per_class`` (a diagnostic) each group's classes are ranked apart and weighted by their share of positives.

A criterion owns its state, the self-balance weight: the training loop calls `accumulate(losses)` after each step
and `end_epoch()` at each epoch end, and checkpoints hold `state_dict()`.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from alrp.losses.alrp import alrp_loss
from alrp.losses.ap import ap_loss_result
from alrp.losses.balance import SelfBalance
from alrp.losses.box import box_loss, loc_error
from alrp.losses.config import LossConfig
from alrp.losses.groups import split_classes, split_images
from alrp.losses.targets import LossTargets


class Criterion:
    """Base: combines a classification and a box loss with a self-balance or constant weight.

    Args:
        box_loss: name of the box loss / E_loc form (see :class:`LossConfig`).
        self_balance: the SB object, or None for the constant ``loc_weight``.
        loc_weight: constant weight of the box loss when ``self_balance`` is None.
        smooth_l1_beta: smooth-L1 transition point.
        box_loss_reduction: 'per_box' (sum / P) or 'per_coordinate' (sum / 4P, the released AP Loss baseline).
        rank_group: images ranked together (None: all images of the batch).
        rank_per_class: rank each class's pairs apart, weighted by P_c / P (a diagnostic, not the paper's loss).
    """

    def __init__(self, *, box_loss: str, self_balance: SelfBalance | None = None, loc_weight: float = 1.0,
                 smooth_l1_beta: float = 0.11, box_loss_reduction: str = "per_box",
                 rank_group: int | None = None, rank_per_class: bool = False) -> None:
        self.box_loss = box_loss
        self.rank_group = rank_group
        self.rank_per_class = rank_per_class
        self.self_balance = self_balance
        self.loc_weight = float(loc_weight)
        self.smooth_l1_beta = float(smooth_l1_beta)
        self.box_loss_reduction = box_loss_reduction

    @property
    def current_loc_weight(self) -> float:
        """The weight of the box loss for the current iteration."""
        return self.self_balance.weight if self.self_balance is not None else self.loc_weight

    def accumulate(self, losses: dict[str, Tensor], distributed: bool = False) -> None:
        """Records one training step's (detached) ``cls`` and ``loc`` for the self-balance weight.

        Steps without positives are left out (their L_loc is 0). With a fixed SB period (``loss.sb_period_iters``)
        the step that closes the period updates the weight (all processes' statistics under DDP: every process
        must call this each step).
        """
        if self.self_balance is None:
            return
        if int(losses["num_pos"]) > 0:
            self.self_balance.accumulate(losses["cls"].detach(), losses["loc"].detach())
        self.self_balance.end_iteration(distributed=distributed)

    def end_epoch(self, distributed: bool = False) -> float:
        """Updates the self-balance weight from the epoch's steps (all processes' under DDP; every process must
        call it), unless it follows a fixed iteration period; returns the box-loss weight of the next epoch."""
        if self.self_balance is not None:
            self.self_balance.end_epoch(distributed=distributed)
        return self.current_loc_weight

    def state_dict(self) -> dict[str, Any]:
        """``{"self_balance": SB state or None}``, for checkpoints."""
        return {"self_balance": self.self_balance.state_dict() if self.self_balance is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict` (a criterion without SB ignores the SB entry)."""
        if self.self_balance is not None and state.get("self_balance") is not None:
            self.self_balance.load_state_dict(state["self_balance"])

    def __call__(self, lt: LossTargets) -> dict[str, Tensor]:
        """Compute the named losses of one batch's LossTargets."""
        logits = lt.logits
        if not isinstance(logits, Tensor) or logits.dim() != 1:
            raise ValueError(f"LossTargets.logits must be a (M,) tensor, got {getattr(logits, 'shape', logits)}")
        groups = [lt] if self.rank_group is None else split_images(lt, self.rank_group)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            if bool(torch.isfinite(logits.detach().sum(dtype=torch.float32))):  # one pass; NaN/inf propagate
                per_group = [self._group_losses(group) for group in groups]
                cls, loc, pos_sum, neg_sum = (torch.stack(values).mean() for values in zip(*per_group))
            else:  # a diverged run: NaN parts for the training step's finite check (the ranking losses would raise)
                cls = loc = pos_sum = neg_sum = torch.tensor(math.nan, device=logits.device)
        w = self.current_loc_weight
        num_pos = int(lt.num_pos)
        device = logits.device
        return {"total": cls + w * loc, "cls": cls, "loc": loc,
                "loc_weight": torch.tensor(w, dtype=torch.float32, device=device),
                "grad_pos_sum": pos_sum.detach().to(device), "grad_neg_sum": neg_sum.detach().to(device),
                "num_pos": torch.tensor(num_pos, dtype=torch.int64, device=device)}

    def _group_losses(self, lt: LossTargets) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """`losses` (four scalars) of one ranking group; with ``rank_per_class`` their P_c / P-weighted sums over the
        group's classes."""
        if not self.rank_per_class:
            return self.losses(lt)
        parts = split_classes(lt)
        per_class = [self.losses(part) for part, _ in parts]
        return tuple(sum(weight * value for (_, weight), value in zip(parts, column)) for column in zip(*per_class))

    def losses(self, lt: LossTargets) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(cls, loc, grad_pos_sum, grad_neg_sum) in float32 / float64; implemented by subclasses."""
        raise NotImplementedError

    def _box_loss(self, lt: LossTargets) -> Tensor:
        return box_loss(self.box_loss, pred_boxes=lt.pos_pred_boxes.float(), gt_boxes=lt.pos_gt_boxes.float(),
                        pred_deltas=lt.pos_pred_deltas.float(), gt_deltas=lt.pos_gt_deltas.float(),
                        smooth_l1_beta=self.smooth_l1_beta, reduction=self.box_loss_reduction)


class ALRPCriterion(Criterion):
    """aLRP Loss: ``L_cls`` and ``L_loc`` from one ranking loss, E_loc from IoU or GIoU of the decoded boxes."""

    def __init__(self, *, delta: float = 1.0, wrong_target: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.box_loss not in ("iou", "giou"):
            raise ValueError(f"aLRP Loss needs an IoU-based E_loc ('iou' or 'giou'), got {self.box_loss!r}")
        self.delta = float(delta)
        self.wrong_target = bool(wrong_target)

    def losses(self, lt: LossTargets) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        errors = loc_error(lt.pos_pred_boxes.float(), lt.pos_gt_boxes.float(), kind=self.box_loss)
        res = alrp_loss(lt.logits.float(), lt.targets, errors, self.delta, wrong_target=self.wrong_target)
        return res.cls, res.loc, res.grad_pos_sum, res.grad_neg_sum


class APCriterion(Criterion):
    """AP Loss (interpolated, as released) for classification plus a box regression loss."""

    def __init__(self, *, delta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delta = float(delta)

    def losses(self, lt: LossTargets) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        res = ap_loss_result(lt.logits.float(), lt.targets, self.delta)
        return res.loss, self._box_loss(lt), res.grad_pos_sum, res.grad_neg_sum


class FocalCriterion(Criterion):
    """Sigmoid focal loss (torchvision) summed over non-ignored pairs / max(1, P), plus a box regression loss.

    Its Theorem-2 statistics come from the analytic gradient (:func:`focal_grad`) of a detached copy.
    """

    def __init__(self, *, alpha: float = 0.25, gamma: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def losses(self, lt: LossTargets) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        targets = lt.targets
        x = lt.logits.float()
        y = targets.eq(1).to(x.dtype)
        negative = targets.eq(0).to(x.dtype)
        norm = max(1, int(y.sum()))
        per_pair = sigmoid_focal_loss(x, y, alpha=self.alpha, gamma=self.gamma, reduction="none")
        cls = (per_pair * (y + negative)).sum() / norm  # ignored pairs weigh 0
        grad = focal_grad(x.detach(), y, self.alpha, self.gamma)
        pos_sum = -(grad * y).sum(dtype=torch.float64) / norm
        neg_sum = (grad * negative).sum(dtype=torch.float64) / norm
        return cls, self._box_loss(lt), pos_sum, neg_sum


def focal_grad(x: Tensor, y: Tensor, alpha: float, gamma: float) -> Tensor:
    """Analytic d(sigmoid focal loss)/d logit per pair: x, y (K,) logits and {0, 1} labels -> (K,).

    Positive: ``alpha (1-p)^gamma (gamma p log p - (1-p))``; negative:
    ``(1-alpha) p^gamma (p - gamma (1-p) log(1-p))`` with ``p = sigmoid(x)``.
    """
    p = torch.sigmoid(x)
    log_p = F.logsigmoid(x)
    log_1mp = F.logsigmoid(-x)
    g_pos = alpha * (1 - p).pow(gamma) * (gamma * p * log_p - (1 - p))
    g_neg = (1 - alpha) * p.pow(gamma) * (p - gamma * (1 - p) * log_1mp)
    return torch.where(y > 0.5, g_pos, g_neg)


def build_criterion(loss_cfg: LossConfig) -> Criterion:
    """Build the criterion (and its self-balance object) of a ``loss`` config section."""
    sb = SelfBalance(loss_cfg.sb_init, loss_cfg.sb_period_iters) if loss_cfg.self_balance else None
    common = {"box_loss": loss_cfg.box_loss, "self_balance": sb, "loc_weight": loss_cfg.loc_weight,
              "smooth_l1_beta": loss_cfg.smooth_l1_beta, "box_loss_reduction": loss_cfg.box_loss_reduction,
              "rank_group": loss_cfg.rank_group, "rank_per_class": loss_cfg.rank_per_class}
    if loss_cfg.name == "alrp":
        return ALRPCriterion(delta=loss_cfg.delta, wrong_target=loss_cfg.wrong_target, **common)
    if loss_cfg.name == "ap":
        return APCriterion(delta=loss_cfg.delta, **common)
    if loss_cfg.name == "focal":
        return FocalCriterion(alpha=loss_cfg.focal_alpha, gamma=loss_cfg.focal_gamma, **common)
    raise ValueError(f"unknown loss.name {loss_cfg.name!r}")
