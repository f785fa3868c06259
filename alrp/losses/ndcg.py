"""NDCG Loss (Appendix D of the aLRP paper): a third instance of the error-driven framework.

The formulas of Appendix D were lost in the paper's text extraction; this is our restoration from its prose:
``L_NDCG = 1 - sum_{i in P} G(i) / G_max`` with gain ``G(i) = 1 / log2(1 + rank(i))`` and
``G_max = sum_{n=1}^{|P|} 1 / log2(1 + n)`` (all positives on top). ``Z = 1`` since NDCG is already normalised.
The error of a positive is ``l(i) = 1/|P| - G(i) / G_max`` (so ``sum_i l(i) = L``); ranked properly (no negative
above it) its rank is ``rank+(i)``, so ``l*(i) = 1/|P| - G+(i) / G_max`` with ``G+(i) = 1 / log2(1 + rank+(i))``,
and ``l(i) - l*(i) = (G+(i) - G(i)) / G_max >= 0``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from alrp.losses import ranking


def ndcg_loss(logits: Tensor, targets: Tensor, delta: float = 1.0) -> ranking.RankingResult:
    """NDCG Loss with its error-driven gradient.

    Args:
        logits: (M,) float classifier logits (cast to float32).
        targets: (M,) int, 1 positive, 0 negative, -1 ignored.
        delta: smoothing of the step function.
    """
    ranking.check_inputs(logits, targets, delta)
    logits32 = logits.float()
    pos_appear = ranking.positive_positions(targets)
    if pos_appear.numel() == 0:
        return ranking.empty_result(logits32)
    ps = ranking.build_pairs(logits32.detach(), targets, delta, pos_appear)
    n_fp = ranking.negatives_above(ps)
    rank_pos = 1.0 + ranking.positives_above(ps)
    rank = rank_pos + n_fp
    g_max = sum(1.0 / math.log2(1.0 + n) for n in range(1, ps.num_pos + 1))
    gain = 1.0 / torch.log2(1.0 + rank)
    excess = (1.0 / torch.log2(1.0 + rank_pos) - gain) / g_max
    grad, pos_sum, neg_sum = ranking.error_driven_gradient(ps, excess, n_fp, 1.0, eps=0.0)
    value = (1.0 - gain.sum() / g_max).float()
    return ranking.RankingResult(loss=ranking.attach_gradient(logits32, value, grad),
                                 rank=ranking.unsort(ps, rank.float()), grad=grad, grad_pos_sum=pos_sum,
                                 grad_neg_sum=neg_sum)
