"""Box regression losses: the released AP-Loss reduction (÷ 4·P) and ours (÷ P) on hand-computed cases."""
import pytest
import torch

from alrp.losses.box import box_loss
from alrp.losses.config import LossConfig

# Two positives. Deltas differ by (0.5, -2, 0, 0.1) and (0, 0, 3, -0.5).
PRED = torch.tensor([[0.5, -2.0, 0.0, 0.1], [0.0, 0.0, 3.0, -0.5]])
GT = torch.zeros(2, 4)
# Boxes: IoU 0.5 (a 2x1 box against its left half, 1x1) and IoU 1.
PRED_BOXES = torch.tensor([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 4.0, 4.0]])
GT_BOXES = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 4.0, 4.0]])


def _loss(kind, reduction, beta=1.0):
    return box_loss(kind, pred_boxes=PRED_BOXES, gt_boxes=GT_BOXES, pred_deltas=PRED, gt_deltas=GT,
                    smooth_l1_beta=beta, reduction=reduction).item()


def test_smooth_l1_beta_1_per_coordinate_is_the_released_ap_loss_value():
    # beta 1: |d| < 1 -> 0.5 d^2, else |d| - 0.5.
    # row 1: 0.125 + 1.5 + 0 + 0.005 = 1.63; row 2: 0 + 0 + 2.5 + 0.125 = 2.625; sum 4.255.
    assert _loss("smooth_l1", "per_coordinate") == pytest.approx(4.255 / 8)  # released: sum / (4 * P)
    assert _loss("smooth_l1", "per_box") == pytest.approx(4.255 / 2)


def test_smooth_l1_beta_011_per_box_was_the_old_default():
    # beta 0.11: |d| < 0.11 -> 0.5 d^2 / 0.11, else |d| - 0.055.
    # row 1: 0.445 + 1.945 + 0 + 0.005/0.11; row 2: 2.945 + 0.445.
    total = 0.445 + 1.945 + 0.005 / 0.11 + 2.945 + 0.445
    assert _loss("smooth_l1", "per_box", beta=0.11) == pytest.approx(total / 2)
    # The old AP-Loss baseline was this many times stronger than the released one on this case.
    assert _loss("smooth_l1", "per_box", beta=0.11) / _loss("smooth_l1", "per_coordinate") == pytest.approx(
        4 * total / 4.255)


def test_iou_and_giou_losses_divide_by_4p_as_the_ablation_code():
    # IoU 0.5 and 1 -> (1 - IoU) sums to 0.5; the enclosing box of row 1 is the prediction, so GIoU = IoU.
    assert _loss("iou", "per_coordinate") == pytest.approx(0.5 / 8)
    assert _loss("giou", "per_coordinate") == pytest.approx(0.5 / 8)
    assert _loss("giou", "per_box") == pytest.approx(0.5 / 2)


def test_l1_per_box_is_mmdetection_retinanet():
    assert _loss("l1", "per_box") == pytest.approx((0.5 + 2 + 0.1 + 3 + 0.5) / 2)


def test_no_positives_is_zero_and_connected():
    empty = torch.zeros(0, 4, requires_grad=True)
    out = box_loss("smooth_l1", pred_boxes=empty, gt_boxes=empty, pred_deltas=empty, gt_deltas=empty,
                   reduction="per_coordinate")
    out.backward()
    assert out.item() == 0.0 and empty.grad is not None


def test_bad_reduction_is_a_clear_error():
    with pytest.raises(ValueError, match="reduction"):
        _loss("l1", "mean")
    with pytest.raises(ValueError, match="box_loss_reduction"):
        LossConfig(name="ap", box_loss="smooth_l1", box_loss_reduction="sum")


def test_ap_criterion_of_the_released_config_uses_beta_1_over_4p():
    from types import SimpleNamespace

    from alrp.losses.criterion import build_criterion

    lt = SimpleNamespace(logits=torch.tensor([2.0, -1.0, 0.5, -3.0]), targets=torch.tensor([1, 0, 1, 0]),
                         pos_pred_boxes=PRED_BOXES, pos_gt_boxes=GT_BOXES, pos_pred_deltas=PRED, pos_gt_deltas=GT,
                         num_pos=2)
    released = LossConfig(name="ap", box_loss="smooth_l1", self_balance=False, smooth_l1_beta=1.0,
                          box_loss_reduction="per_coordinate")
    assert build_criterion(released)(lt)["loc"].item() == pytest.approx(4.255 / 8)
    old = LossConfig(name="ap", box_loss="smooth_l1", self_balance=False)  # code defaults: beta 0.11, / P
    assert build_criterion(old)(lt)["loc"].item() == pytest.approx(_loss("smooth_l1", "per_box", beta=0.11))
    periodic = build_criterion(LossConfig(sb_period_iters=3665))
    assert periodic.self_balance.period_iters == 3665
