"""The error-driven framework: exact bucketing, pair sums vs brute force, generic gradients, NDCG instance."""
import math

import numpy as np
import pytest
import torch

from alrp.losses import ranking
from alrp.losses.ndcg import ndcg_loss


def smooth_step(x, delta):
    return np.clip(x / (2 * delta) + 0.5, 0, 1)


def brute_pairs(logits, targets, delta):
    """Dense (P, N) H matrix, positives sorted ascending as in PairStructure."""
    s = logits.double().numpy()
    t = targets.numpy()
    pos = np.flatnonzero(t == 1)
    pos = pos[np.argsort(s[pos], kind="stable")]
    neg = np.flatnonzero(t == 0)
    h_neg = smooth_step(s[neg][None, :] - s[pos][:, None], delta)
    h_pos = smooth_step(s[pos][None, :] - s[pos][:, None], delta)
    np.fill_diagonal(h_pos, 0.0)
    return pos, neg, h_neg, h_pos


def random_case(seed, m=600, p=20):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(m, generator=g) * 2
    targets = torch.randint(-1, 1, (m,), generator=g)
    targets[torch.randperm(m, generator=g)[:p]] = 1
    return logits, targets


def test_bucketize_is_exact_searchsorted():
    g = torch.Generator().manual_seed(0)
    for trial in range(30):
        centers = torch.randn(int(torch.randint(1, 60, (1,), generator=g)), generator=g) * (1 + trial)
        centers = centers.round(decimals=trial % 3)  # duplicates on coarse grids
        edges = torch.cat([centers - 1, centers + 1]).sort().values
        inf = torch.tensor(float("inf"))
        values = torch.cat([torch.randn(5000, generator=g) * 3 * (1 + trial), edges, edges.nextafter(inf),
                            edges.nextafter(-inf), torch.tensor([float("inf"), -float("inf"), 1e30, -1e30])])
        expected = torch.searchsorted(edges, values, right=True)
        assert torch.equal(ranking.bucketize(edges, values).long(), expected)


@pytest.mark.parametrize("delta", [0.5, 1.0, 3.0])
def test_pair_sums_match_brute_force(delta):
    logits, targets = random_case(1)
    ps = ranking.build_pairs(logits, targets, delta)
    pos, neg, h_neg, h_pos = brute_pairs(logits, targets, delta)
    assert np.array_equal(ps.pos_index.numpy(), pos)
    np.testing.assert_allclose(ranking.negatives_above(ps).numpy(), h_neg.sum(1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ranking.positives_above(ps).numpy(), h_pos.sum(1),
                               rtol=1e-6, atol=1e-6)
    w = torch.rand(len(pos), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    np.testing.assert_allclose(ranking.positives_above(ps, w).numpy(), h_pos @ w.numpy(), rtol=1e-6, atol=1e-6)


def test_generic_error_driven_gradient_matches_dense_definition():
    logits, targets = random_case(3, m=800, p=30)
    ps = ranking.build_pairs(logits, targets, 1.0)
    pos, neg, h_neg, _ = brute_pairs(logits, targets, 1.0)
    n_fp = ranking.negatives_above(ps)
    excess = torch.rand(len(pos), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    grad, pos_sum, neg_sum = ranking.error_driven_gradient(ps, excess, n_fp, z=7.0, eps=1e-5)
    # Dense Alg. 1: dx_ij = -excess_i H_ij / N_FP(i); g_i = sum_j dx_ij / Z; g_j = -sum_i dx_ij / Z.
    nfp = h_neg.sum(1)
    active = nfp > 1e-5
    dx = -(excess.numpy() * active / np.where(active, nfp, 1.0))[:, None] * h_neg
    expected = np.zeros(len(logits))
    expected[pos] = dx.sum(1) / 7.0
    expected[neg] = -dx.sum(0) / 7.0
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-5, atol=1e-7)
    assert float(pos_sum) == pytest.approx(float(neg_sum), rel=1e-6)  # Theorem 2 for any excess >= 0


def test_attach_gradient_backward_scales_with_upstream():
    logits = torch.randn(4, requires_grad=True)
    grad = torch.tensor([1.0, -2.0, 0.0, 3.0])
    out = ranking.attach_gradient(logits, torch.tensor(0.5), grad)
    (3.0 * out).backward()
    assert out.item() == 0.5
    assert torch.equal(logits.grad, 3.0 * grad)


def ndcg_dense(logits, targets, delta=1.0):
    """NDCG Loss straight from its definition (our restoration of Appendix D) with dense pair matrices."""
    pos, neg, h_neg, h_pos = brute_pairs(logits, targets, delta)
    n_fp = h_neg.sum(1)
    rank_pos = 1 + h_pos.sum(1)
    rank = rank_pos + n_fp
    g_max = sum(1 / math.log2(1 + n) for n in range(1, len(pos) + 1))
    loss = 1 - (1 / np.log2(1 + rank)).sum() / g_max
    excess = (1 / np.log2(1 + rank_pos) - 1 / np.log2(1 + rank)) / g_max
    dx = -(excess / np.where(n_fp > 0, n_fp, 1.0))[:, None] * h_neg
    grad = np.zeros(len(logits))
    grad[pos] = dx.sum(1)
    grad[neg] = -dx.sum(0)
    return loss, grad


def test_ndcg_instance():
    logits, targets = random_case(5, m=500, p=15)
    res = ndcg_loss(logits, targets)
    loss, grad = ndcg_dense(logits, targets)
    assert res.loss.item() == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(res.grad.numpy(), grad, rtol=1e-5, atol=1e-7)
    assert 0.0 <= res.loss.item() <= 1.0
    assert (res.grad[targets == 1] <= 0).all() and (res.grad[targets == 0] >= 0).all()
    assert float(res.grad_pos_sum) == pytest.approx(float(res.grad_neg_sum), rel=1e-6)
    lifted = logits.clone()
    lifted[targets == 1] += 2.0
    assert ndcg_loss(lifted, targets).loss.item() < res.loss.item()
    lifted[targets == 1] = 100.0 + 3.0 * torch.arange(15.0)  # above all negatives, >= 2 delta apart: ideal
    assert ndcg_loss(lifted, targets).loss.item() == pytest.approx(0.0, abs=1e-6)
