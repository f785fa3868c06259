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
    logits32, counts = ranking.prepare(logits, targets, delta)
    if counts is None:
        return ranking.empty_result(logits32)
    g_max = sum(1.0 / math.log2(1.0 + n) for n in range(1, counts.pairs.num_pos + 1))
    gain = 1.0 / torch.log2(1.0 + counts.rank)
    excess = (1.0 / torch.log2(1.0 + counts.rank_pos) - gain) / g_max
    return ranking.finish(logits32, counts, 1.0 - gain.sum() / g_max, excess, 1.0)
