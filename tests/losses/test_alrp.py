"""aLRP Loss: fast implementation vs the loop oracle, hand-computed numbers, Theorem 2, bounds, edge cases."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alrp import ALRPResult, alrp_loss, ap_loss
from alrp.losses.ap import ap_loss_result
from alrp.losses.box import loc_error
from tests.fixtures.class_pairs import class_pair_targets
from tests.fixtures.oracle_alrp import alrp_oracle


def random_case(seed: int, m: int = 3000, p: int = 30, ignored: float = 0.05, spread: float = 1.5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(m, generator=g) * spread - 2.0
    targets = torch.zeros(m, dtype=torch.int64)
    perm = torch.randperm(m, generator=g)
    targets[perm[: int(ignored * m)]] = -1
    targets[perm[int(ignored * m): int(ignored * m) + p]] = 1
    loc = torch.rand(p, generator=g) * 2.0
    return logits, targets, loc


def assert_matches_oracle(logits, targets, loc, delta=1.0, rtol=1e-4, atol=1e-6):
    res = alrp_loss(logits, targets, loc, delta)
    ref = alrp_oracle(logits.numpy(), targets.numpy(), loc.numpy(), delta)
    np.testing.assert_allclose(res.cls.item(), ref["cls"], rtol=rtol, atol=atol)
    np.testing.assert_allclose(res.loc.item(), ref["loc"], rtol=rtol, atol=atol)
    np.testing.assert_allclose(res.rank.numpy(), ref["rank"], rtol=rtol, atol=atol)
    np.testing.assert_allclose(res.grad.numpy(), ref["grad"], rtol=rtol, atol=atol)
    return res


def test_hand_computed_three_positives_four_negatives():
    # delta = 1: H(x) = clamp(x / 2 + 0.5, 0, 1). Positives p1 = 2, p2 = 0.5, p3 = -1; negatives n1 = 1, n2 = 0,
    # n3 = -0.5, n4 = -3 (below min(s_P) - delta = -2: irrelevant); one ignored pair at 5 (would be above all).
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0, 5.0], requires_grad=True)
    targets = torch.tensor([1, 0, 1, 0, 0, 1, 0, -1])
    loc = torch.tensor([0.2, 0.4, 0.6], requires_grad=True)
    # p1: nothing within reach -> N_FP = 0, rank+ = 1, rank = 1.
    # p2: n1 H(0.5) = 0.75, n2 H(-0.5) = 0.25 -> N_FP = 1; p1 H(1.5) = 1 -> rank+ = 2, rank = 3.
    # p3: n1 H(2) = 1, n2 H(1) = 1, n3 H(0.5) = 0.75 -> N_FP = 2.75; p1, p2 above -> rank+ = 3, rank = 5.75.
    rank = [1.0, 3.0, 5.75]
    l_cls = (0 / 1 + 1 / 3 + 2.75 / 5.75) / 3
    l_loc = (0.2 / 1 + (0.2 + 0.4) / 3 + (0.2 + 0.4 + 0.6) / 5.75) / 3
    # c_i = (N_FP(i) + sum_{k != i} E_k H(x_ik)) / rank(i): c1 unused (N_FP = 0), c2 = (1 + 0.2) / 3 = 0.4,
    # c3 = (2.75 + 0.2 + 0.4) / 5.75. Positive grad -c_i / 3; negative j: (1/3) sum_i c_i H(x_ij) / N_FP(i).
    c2, c3 = 0.4, 3.35 / 5.75
    grad = [0.0, (c2 * 0.75 + c3 / 2.75) / 3, -c2 / 3, (c2 * 0.25 + c3 / 2.75) / 3, (c3 * 0.75 / 2.75) / 3,
            -c3 / 3, 0.0, 0.0]
    res = alrp_loss(logits, targets, loc)
    assert isinstance(res, ALRPResult)
    assert res.cls.item() == pytest.approx(l_cls, rel=1e-6)
    assert res.loc.item() == pytest.approx(l_loc, rel=1e-6)
    np.testing.assert_allclose(res.rank.numpy(), rank, rtol=1e-6)
    np.testing.assert_allclose(res.grad.numpy(), grad, rtol=1e-6, atol=1e-8)
    (res.cls + res.loc).backward()
    np.testing.assert_allclose(logits.grad.numpy(), grad, rtol=1e-6, atol=1e-8)
    # L_loc's only gradient: d/dE_k = sum over i at or below k of 1 / (P rank(i)).
    np.testing.assert_allclose(loc.grad.numpy(), [(1 + 1 / 3 + 1 / 5.75) / 3, (1 / 3 + 1 / 5.75) / 3,
                                                  (1 / 5.75) / 3], rtol=1e-6)
    assert float(res.grad_pos_sum) == pytest.approx((c2 + c3) / 3, rel=1e-6)
    assert float(res.grad_neg_sum) == pytest.approx((c2 + c3) / 3, rel=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_matches_oracle_seeded(seed):
    logits, targets, loc = random_case(seed, spread=[0.5, 1.5, 4.0, 8.0][seed])
    assert_matches_oracle(logits, targets, loc)


def test_matches_oracle_other_delta_and_ties():
    logits, targets, loc = random_case(7, m=800, p=25)
    logits = (logits * 4).round() / 4  # many exact ties, also among positives
    for delta in (0.25, 2.0):
        assert_matches_oracle(logits, targets, loc, delta)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_matches_oracle_property(data):
    m = data.draw(st.integers(1, 40))
    grid = data.draw(st.sampled_from([0.0, 0.25, 1.0]))  # 0: continuous scores; else ties on a grid
    raw = data.draw(st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=m, max_size=m))
    logits = torch.tensor(raw, dtype=torch.float32)
    if grid:
        logits = (logits / grid).round() * grid
    targets = torch.tensor(data.draw(st.lists(st.sampled_from([1, 0, 0, -1]), min_size=m, max_size=m)))
    p = int((targets == 1).sum())
    loc = torch.tensor(data.draw(st.lists(st.floats(0, 2, width=32), min_size=p, max_size=p)), dtype=torch.float32)
    res = assert_matches_oracle(logits, targets, loc, rtol=1e-4, atol=1e-5)
    assert 0.0 <= res.cls.item() <= 1.0
    assert res.loc.item() >= 0.0
    if p:
        assert float(res.grad_pos_sum) == pytest.approx(float(res.grad_neg_sum), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("seed", range(3))
def test_theorem2_balance(seed):
    logits, targets, loc = random_case(100 + seed, m=20000, p=80)
    res = alrp_loss(logits, targets, loc)
    g = res.grad.double()
    pos, neg = g[targets == 1], g[targets == 0]
    assert (pos <= 0).all() and (neg >= 0).all()
    assert float(-pos.sum()) == pytest.approx(float(neg.sum()), rel=1e-6)
    assert float(res.grad_pos_sum) == pytest.approx(float(-pos.sum()), rel=1e-6)
    assert float(res.grad_neg_sum) == pytest.approx(float(neg.sum()), rel=1e-6)


def test_wrong_target_breaks_balance():
    logits, targets, loc = random_case(3, m=5000, p=40, spread=1.0)
    logits[targets == 1] += torch.linspace(0.0, 6.0, 40)  # some positives above every negative
    right = alrp_loss(logits, targets, loc)
    wrong = alrp_loss(logits, targets, loc, wrong_target=True)
    assert wrong.cls.item() == pytest.approx(right.cls.item())  # same loss value, different update
    assert float(wrong.grad_pos_sum) > float(wrong.grad_neg_sum) * 1.01
    assert float(right.grad_pos_sum) == pytest.approx(float(right.grad_neg_sum), rel=1e-6)


def test_zero_gradient_for_ignored_and_irrelevant_negatives():
    logits, targets, loc = random_case(11, m=4000, p=20, ignored=0.2, spread=3.0)
    logits[targets == 1] += 3.0
    res = alrp_loss(logits, targets, loc)
    threshold = float(logits[targets == 1].min()) - 1.0
    assert (res.grad[targets == -1] == 0).all()
    below = (targets == 0) & (logits < threshold)
    assert below.sum() > 100 and (res.grad[below] == 0).all()
    assert (res.grad[(targets == 0) & (logits > threshold + 0.1)] > 0).any()


def test_bounds_on_random_cases():
    for seed in range(5):
        logits, targets, loc = random_case(200 + seed, m=2000, p=25, spread=1.0 + seed)
        res = alrp_loss(logits, targets, loc.clamp(max=1.0))  # IoU-type errors <= 1
        assert 0.0 <= res.cls.item() <= 1.0
        assert 0.0 <= res.loc.item() <= 1.0
        assert (res.cls + res.loc).item() <= 1.0 + 1e-6


def test_separated_and_buried_extremes():
    logits = torch.tensor([5.0, 6.0, -5.0, -6.0, 2.9])
    targets = torch.tensor([1, 1, 0, 0, 0])
    res = alrp_loss(logits, targets, torch.tensor([0.5, 0.5]))
    assert res.cls.item() == 0.0 and (res.grad == 0).all()  # no negative within reach of any positive
    buried = alrp_loss(-logits, targets, torch.tensor([0.5, 0.5]))
    assert buried.cls.item() > 0.6


def test_no_positives_and_all_ignored():
    for targets in (torch.tensor([0, 0, -1, 0]), torch.full((4,), -1)):
        logits = torch.randn(4, requires_grad=True)
        loc = torch.zeros(0, requires_grad=True)
        res = alrp_loss(logits, targets, loc)
        assert res.cls.item() == 0.0 and res.loc.item() == 0.0 and res.rank.numel() == 0
        (res.cls + res.loc).backward()
        assert logits.grad is not None and (logits.grad == 0).all() and not torch.isnan(logits.grad).any()
        assert float(res.grad_pos_sum) == 0.0 == float(res.grad_neg_sum)
    empty = alrp_loss(torch.zeros(0), torch.zeros(0, dtype=torch.int64), torch.zeros(0))
    assert empty.cls.item() == 0.0


def test_single_positive_and_half_precision_input():
    logits = torch.tensor([0.3, 0.0, 0.9, -2.0], dtype=torch.float16, requires_grad=True)
    targets = torch.tensor([1, 0, 0, 0])
    res = alrp_loss(logits, targets, torch.tensor([0.3]))
    assert res.cls.dtype == torch.float32
    ref = alrp_oracle(logits.detach().float().numpy(), targets.numpy(), [0.3])
    assert res.cls.item() == pytest.approx(ref["cls"], rel=1e-5)
    res.cls.backward()
    assert logits.grad.dtype == torch.float16
    np.testing.assert_allclose(logits.grad.float().numpy(), ref["grad"], rtol=1e-3, atol=1e-4)


def test_loc_errors_from_iou_and_giou():
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]],
                        requires_grad=True)
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    # IoU 1, 1/3, 0; GIoU 1, 1/3 - 0, 0 - (300 - 200) / 300.
    np.testing.assert_allclose(loc_error(pred, gt, "iou").detach().numpy(), [0.0, (2 / 3) / 0.5, 2.0], atol=1e-5)
    np.testing.assert_allclose(loc_error(pred, gt, "giou").detach().numpy(), [0.0, 2 / 3, 1 + 1 / 3], atol=1e-5)
    logits = torch.tensor([1.0, 0.5, 0.2, 0.8])
    targets = torch.tensor([1, 1, 1, 0])
    res = alrp_loss(logits, targets, loc_error(pred, gt, "giou"))
    res.loc.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0


@pytest.mark.parametrize("bad, match", [
    (dict(logits=torch.zeros(3, 2)), "logits must be a 1-D"),
    (dict(targets=torch.tensor([1, 0])), "targets must be a tensor of the logits' shape"),
    (dict(targets=torch.tensor([1.0, 0.0, 0.0])), "integer"),
    (dict(targets=torch.tensor([2, 0, 0])), r"targets must be in \{1, 0, -1\}"),
    (dict(loc_errors=torch.zeros(2)), r"loc_errors must have shape \(1,\)"),
    (dict(delta=0.0), "delta must be a positive"),
    (dict(logits=torch.tensor([0.0, math.nan, 1.0])), "NaN"),
])
def test_bad_input_errors(bad, match):
    args = dict(logits=torch.zeros(3), targets=torch.tensor([1, 0, -1]), loc_errors=torch.zeros(1), delta=1.0)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        alrp_loss(**args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    logits, targets, loc = random_case(21, m=200_000, p=300, spread=2.0)
    cpu = alrp_loss(logits, targets, loc)
    x = logits.cuda().requires_grad_()
    gpu = alrp_loss(x, targets.cuda(), loc.cuda())
    assert gpu.cls.device.type == gpu.grad.device.type == gpu.rank.device.type == "cuda"
    assert gpu.cls.item() == pytest.approx(cpu.cls.item(), rel=1e-5)
    assert gpu.loc.item() == pytest.approx(cpu.loc.item(), rel=1e-5)
    np.testing.assert_allclose(gpu.rank.cpu().numpy(), cpu.rank.numpy(), rtol=1e-5)
    np.testing.assert_allclose(gpu.grad.cpu().numpy(), cpu.grad.numpy(), rtol=1e-4, atol=1e-9)
    gpu.cls.backward()
    torch.testing.assert_close(x.grad.cpu(), cpu.grad)
    y = logits.cuda().requires_grad_()
    ap_loss(y, targets.cuda()).backward()
    z = logits.clone().requires_grad_()
    ap_loss(z, targets).backward()
    np.testing.assert_allclose(y.grad.cpu().numpy(), z.grad.numpy(), rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("loss", ["alrp", "ap"])
def test_joint_ranking_at_tied_scores_splits_the_push_by_class_shares(loss):
    """One ranking over all classes (docs/experiments.md, "The rare class under one joint ranking"): with every
    logit tied (as at initialisation), each negative gets the same update and each positive the same, so class c's
    negatives get N_c / N of the total push and its positives P_c / P; a rare class is pushed down on net."""
    anchors, positives = 1000, (2, 40, 6)  # per class: Platelets-, RBC- and WBC-like counts
    targets = class_pair_targets(anchors, positives)
    flat = targets.flatten()
    logits = torch.zeros(flat.numel())
    if loss == "alrp":
        grad = alrp_loss(logits, flat, torch.full((sum(positives),), 0.5)).grad
    else:
        grad = ap_loss_result(logits, flat).grad
    grad, pos = grad.view(anchors, 3), targets == 1
    num_pos, num_neg = sum(positives), flat.numel() - sum(positives)
    for c, count in enumerate(positives):
        push_down = grad[~pos[:, c], c].abs().sum() / grad[~pos].abs().sum()
        push_up = grad[pos[:, c], c].abs().sum() / grad[pos].abs().sum()
        assert push_down.item() == pytest.approx((anchors - count) / num_neg, rel=1e-4)
        assert push_up.item() == pytest.approx(count / num_pos, rel=1e-4)  # Platelets: down/up = 0.338 / 0.042
