"""Criteria for the three losses on a tiny LossTargets-like object; config validation; focal statistics."""
from dataclasses import dataclass

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from alrp.losses.criterion import ALRPCriterion, FocalCriterion, build_criterion, focal_grad
from alrp.losses import LossConfig, alrp_loss
from alrp.losses.box import loc_error

KEYS = {"total", "cls", "loc", "loc_weight", "grad_pos_sum", "grad_neg_sum", "num_pos"}


@dataclass
class TinyTargets:
    logits: torch.Tensor
    targets: torch.Tensor
    pos_pred_boxes: torch.Tensor
    pos_gt_boxes: torch.Tensor
    pos_pred_deltas: torch.Tensor
    pos_gt_deltas: torch.Tensor

    @property
    def num_pos(self) -> int:
        return int((self.targets == 1).sum())


def tiny_targets(num_pos: int = 3, m: int = 60, seed: int = 0) -> TinyTargets:
    g = torch.Generator().manual_seed(seed)
    targets = torch.zeros(m, dtype=torch.int64)
    targets[:5] = -1
    targets[torch.arange(num_pos) * 7 + 6] = 1
    gt = torch.tensor([[10.0, 10.0, 50.0, 60.0]]).repeat(num_pos, 1)
    pred = (gt + torch.randn(num_pos, 4, generator=g) * 3).requires_grad_()
    deltas = torch.randn(num_pos, 4, generator=g).requires_grad_()
    return TinyTargets(logits=(torch.randn(m, generator=g) - 2).requires_grad_(), targets=targets,
                       pos_pred_boxes=pred, pos_gt_boxes=gt, pos_pred_deltas=deltas,
                       pos_gt_deltas=torch.zeros(num_pos, 4))


@pytest.mark.parametrize("cfg", [LossConfig(), LossConfig(box_loss="iou", self_balance=False, loc_weight=3.0),
                                 LossConfig(name="ap", box_loss="smooth_l1", self_balance=False),
                                 LossConfig(name="ap", box_loss="giou"),
                                 LossConfig(name="focal", box_loss="l1", self_balance=False)])
def test_outputs_and_backward(cfg):
    crit = build_criterion(cfg)
    lt = tiny_targets()
    out = crit(lt)
    assert set(out) == KEYS
    w = 50.0 if cfg.self_balance else cfg.loc_weight
    assert out["loc_weight"].item() == w
    assert out["total"].item() == pytest.approx(out["cls"].item() + w * out["loc"].item(), rel=1e-6)
    assert out["num_pos"].item() == 3
    assert (crit.self_balance is not None) == cfg.self_balance
    out["total"].backward()
    for t in (lt.logits, lt.pos_pred_boxes if cfg.box_loss in ("iou", "giou") else lt.pos_pred_deltas):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    if cfg.name != "focal":  # Theorem 2 for the ranking losses
        assert out["grad_pos_sum"].item() == pytest.approx(out["grad_neg_sum"].item(), rel=1e-6)


def test_alrp_criterion_matches_direct_call():
    lt = tiny_targets()
    out = ALRPCriterion(box_loss="giou")(lt)
    res = alrp_loss(lt.logits, lt.targets, loc_error(lt.pos_pred_boxes, lt.pos_gt_boxes, "giou"))
    assert out["cls"].item() == pytest.approx(res.cls.item())
    assert out["loc"].item() == pytest.approx(res.loc.item())
    assert out["grad_pos_sum"].item() == pytest.approx(float(res.grad_pos_sum))


def test_no_positives_all_losses():
    for name, box in (("alrp", "giou"), ("ap", "smooth_l1"), ("focal", "giou")):
        lt = tiny_targets(num_pos=0)
        out = build_criterion(LossConfig(name=name, box_loss=box))(lt)
        assert out["num_pos"].item() == 0 and out["loc"].item() == 0.0
        if name != "focal":
            assert out["cls"].item() == 0.0
        out["total"].backward()
        assert torch.isfinite(lt.logits.grad).all()


def test_focal_statistics_match_autograd():
    lt = tiny_targets()
    out = FocalCriterion(box_loss="smooth_l1")(lt)
    x = lt.logits.detach().clone().requires_grad_()
    valid = lt.targets >= 0
    y = (lt.targets == 1).float()
    loss = (sigmoid_focal_loss(x, y, reduction="none") * valid).sum() / 3
    loss.backward()
    assert out["cls"].item() == pytest.approx(loss.item(), rel=1e-6)
    assert out["grad_pos_sum"].item() == pytest.approx(x.grad[lt.targets == 1].abs().sum().item(), rel=1e-5)
    assert out["grad_neg_sum"].item() == pytest.approx(x.grad[lt.targets == 0].abs().sum().item(), rel=1e-5)
    z = torch.linspace(-12, 12, 49, requires_grad=True)
    for label in (0.0, 1.0):
        (g,) = torch.autograd.grad(sigmoid_focal_loss(z, torch.full_like(z, label), 0.4, 1.5, "sum"), z)
        torch.testing.assert_close(focal_grad(z.detach(), torch.full_like(z, label), 0.4, 1.5), g)


def test_float32_under_autocast():
    lt = tiny_targets()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lt.logits = lt.logits.to(torch.bfloat16)
        out = build_criterion(LossConfig())(lt)
    assert out["cls"].dtype == torch.float32 and out["loc"].dtype == torch.float32


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="dice"), "loss.name"), (dict(box_loss="smooth_l1"), "loss.box_loss"),
    (dict(name="focal", box_loss="ciou"), "loss.box_loss"), (dict(delta=0.0), "loss.delta"),
    (dict(sb_init=-1.0), "loss.sb_init"), (dict(focal_alpha=1.5), "loss.focal_alpha"),
    (dict(self_balance="yes"), "loss.self_balance"), (dict(name="ap", wrong_target=True), "wrong_target"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossConfig(**kwargs)


@pytest.mark.parametrize("name", ["alrp", "ap", "focal"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_logits_give_non_finite_parts_for_every_loss(name, bad):
    """The training step's documented stop needs a NaN part: the ranking losses' own input check must not raise."""
    criterion = build_criterion(LossConfig(name=name, box_loss="giou", self_balance=name != "focal"))
    lt = tiny_targets()
    with torch.no_grad():
        lt.logits[7] = bad
    out = criterion(lt)
    assert not torch.isfinite(out["cls"]) and not torch.isfinite(out["total"])

