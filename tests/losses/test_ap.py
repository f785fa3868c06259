"""AP Loss (interpolated, as released): loop oracle, hand-computed cases, Theorem 2, edge cases."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alrp import ap_loss
from alrp.losses.ap import ap_loss_result
from tests.fixtures.oracle_alrp import ap_oracle


def test_hand_computed_smooth_case():
    # Same scores as the aLRP hand case: p1 = 2, p2 = 0.5, p3 = -1; n1 = 1, n2 = 0, n3 = -0.5, n4 = -3.
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5, -1.0, -3.0], requires_grad=True)
    targets = torch.tensor([1, 0, 1, 0, 0, 1, 0])
    # rank+ / rank: p1 1/1, p2 2/3, p3 3/5.75; visited p3, p2, p1: precision rises, no interpolation.
    loss = 1 - (1 + 2 / 3 + 3 / 5.75) / 3
    # negatives gain H / rank(i): from p3 (n1 1, n2 1, n3 0.75) / 5.75, from p2 (n1 0.75, n2 0.25) / 3.
    grad = np.array([0.0, 1 / 5.75 + 0.75 / 3, -(1 - 2 / 3), 1 / 5.75 + 0.25 / 3, 0.75 / 5.75,
                     -(1 - 3 / 5.75), 0.0]) / 3
    value = ap_loss(logits, targets)
    value.backward()
    assert value.item() == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(logits.grad.numpy(), grad, rtol=1e-6, atol=1e-8)


def test_hand_computed_interpolation():
    # Hard ranks (all gaps >= 2 delta): P1 = 10, N1 = 8, P2 = 6, P3 = 4; N2..N4 below min(s_P) - delta.
    logits = torch.tensor([10.0, 8.0, 6.0, 4.0, 2.9, -5.0, -9.0, 20.0])
    targets = torch.tensor([1, 0, 1, 1, 0, 0, 0, -1])
    # precisions 1, 2/3, 3/4. Ascending visit: P3 0.75 (max 0.75), P2 2/3 < max -> interpolated to 0.75,
    # P1 1. Loss 1 - (1 + 0.75 + 0.75) / 3 = 1/6 (non-interpolated AP Loss would be 1 - (1 + 2/3 + 3/4) / 3).
    # P3: N1 gains 1 / 4; P2: N1 gains (1/3) (1 - 0.75) / (1 - 2/3) = 1/4. Positive grads -(1 - max_prec).
    res = ap_loss_result(logits, targets)
    assert res.loss.item() == pytest.approx(1 / 6, rel=1e-6)
    np.testing.assert_allclose(res.grad.numpy(), [0.0, 0.5 / 3, -0.25 / 3, -0.25 / 3, 0, 0, 0, 0], atol=1e-7)
    assert float(res.grad_pos_sum) == pytest.approx(float(res.grad_neg_sum), rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_matches_oracle_property(data):
    m = data.draw(st.integers(1, 40))
    raw = data.draw(st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=m, max_size=m))
    logits = torch.tensor(raw, dtype=torch.float32)
    if data.draw(st.booleans()):
        logits = (logits * 2).round() / 2  # ties
    targets = torch.tensor(data.draw(st.lists(st.sampled_from([1, 0, 0, -1]), min_size=m, max_size=m)))
    res = ap_loss_result(logits, targets)
    ref = ap_oracle(logits.numpy(), targets.numpy())
    assert res.loss.item() == pytest.approx(ref["loss"], rel=1e-4, abs=1e-5)
    np.testing.assert_allclose(res.grad.numpy(), ref["grad"], rtol=1e-4, atol=1e-5)
    assert 0.0 <= res.loss.item() <= 1.0


@pytest.mark.parametrize("seed", range(3))
def test_oracle_and_theorem2_seeded(seed):
    g = torch.Generator().manual_seed(seed)
    m = 3000
    logits = torch.randn(m, generator=g) * (1 + 2 * seed)
    targets = torch.zeros(m, dtype=torch.int64)
    perm = torch.randperm(m, generator=g)
    targets[perm[:100]] = -1
    targets[perm[100:140]] = 1
    logits[targets == 1] += seed  # from buried to partly separated
    res = ap_loss_result(logits, targets)
    ref = ap_oracle(logits.numpy(), targets.numpy())
    np.testing.assert_allclose(res.grad.numpy(), ref["grad"], rtol=1e-4, atol=1e-6)
    assert res.loss.item() == pytest.approx(ref["loss"], rel=1e-5)
    assert float(res.grad_pos_sum) == pytest.approx(float(res.grad_neg_sum), rel=1e-6)
    assert (res.grad[targets == -1] == 0).all()
    assert (res.grad[(targets == 0) & (logits < logits[targets == 1].min() - 1)] == 0).all()


def test_no_positives():
    logits = torch.randn(5, requires_grad=True)
    value = ap_loss(logits, torch.tensor([0, 0, -1, 0, 0]))
    value.backward()
    assert value.item() == 0.0 and (logits.grad == 0).all()


def test_bad_targets():
    with pytest.raises(ValueError, match="targets"):
        ap_loss(torch.zeros(3), torch.tensor([1, 3, 0]))
