"""AP Loss (Chen et al.), the ranking-based baseline, with the released interpolated-precision gradient.

``L_AP = 1 - mean_i interp_prec(i)`` where ``prec(i) = rank+(i) / rank(i)`` and the interpolated precision is the
running maximum of ``prec`` over positives visited in ascending score order (alrp-math.md Sec. 2). In the
error-driven framework this is ``l(i) - l*(i) = 1 - interp_prec(i)`` with ``Z = |P|``: a positive gets
``-(1 - interp_prec(i)) / |P|`` and negative j gets ``sum_i (1 - interp_prec(i)) H(s_j - s_i) / (N_FP(i) |P|)``,
which equals the released ``H / rank(i) * (1 - max_prec) / (1 - prec(i))``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from alrp.losses import ranking


def ap_loss_result(logits: Tensor, targets: Tensor, delta: float = 1.0) -> ranking.RankingResult:
    """AP Loss with its rank, gradient and Theorem-2 statistics.

    Args:
        logits: (M,) float classifier logits (cast to float32).
        targets: (M,) int, 1 positive, 0 negative, -1 ignored.
        delta: smoothing of the step function.
    """
    logits32, counts = ranking.prepare(logits, targets, delta)
    if counts is None:
        return ranking.empty_result(logits32)
    interp = torch.cummax(counts.rank_pos / counts.rank, dim=0).values  # ascending scores: highest recall first
    excess = 1.0 - interp
    return ranking.finish(logits32, counts, excess.mean(), excess, counts.pairs.num_pos)


def ap_loss(logits: Tensor, targets: Tensor, delta: float = 1.0) -> Tensor:
    """AP Loss value () whose backward w.r.t. ``logits (M,)`` is the released error-driven gradient."""
    return ap_loss_result(logits, targets, delta).loss
