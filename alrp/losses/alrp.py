"""aLRP Loss (Sec. 4 of the paper): classification and localisation from one ranking-based loss.

``L_aLRP = (1/|P|) sum_i l(i)`` with the LRP error of a positive (Eq. 10)
``l(i) = (N_FP(i) + E_loc(i) + sum_{k != i} E_loc(k) H(s_k - s_i)) / rank(i)``, split into ``L_cls`` (the
``N_FP`` part, trained with the error-driven gradient) and ``L_loc`` (the localisation part, a hard-step
cumulative sum over positives by descending score with ``rank(i)`` detached; differentiable w.r.t. E_loc only;
exact ties among positives count each other half).
The target (Eq. 12) is ``l*(i) = E_loc(i) / rank(i)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from alrp.losses import ranking

ALRP_EPS = 1e-5  # a positive with N_FP(i) <= eps gets no classification update (released code)


@dataclass
class ALRPResult:
    """Output of :func:`alrp_loss`.

    Attributes:
        cls: () L_cls; its backward w.r.t. the logits is the error-driven gradient ``grad``.
        loc: () L_loc; differentiable w.r.t. ``loc_errors`` only.
        rank: (P,) float32 detached smoothed rank of each positive among all pairs, in the order positives appear.
        grad: (M,) float32 detached dL_cls/dlogits (zero for ignored pairs and irrelevant negatives).
        grad_pos_sum, grad_neg_sum: () float64 sums of |grad| over positives / negatives (Theorem 2: equal).
    """

    cls: Tensor
    loc: Tensor
    rank: Tensor
    grad: Tensor
    grad_pos_sum: Tensor
    grad_neg_sum: Tensor

    @property
    def total(self) -> Tensor:
        """``L_cls + L_loc`` (without self-balancing)."""
        return self.cls + self.loc


def _hard_cumulative_loc(ps: ranking.PairStructure, loc_sorted: Tensor, rank_sorted: Tensor) -> Tensor:
    """``L_loc = (1/P) sum_i (E_loc(i) + sum_{k != i} E_loc(k) [s_k > s_i]) / rank(i)`` over sorted positives.

    The hard step is the cumulative sum over positives by descending score. Exactly tied positives count each
    other with weight 1/2 (the mean over tie-breaking orders, like ``H(0) = 1/2``), so the value does not depend
    on how a sort orders ties.

    Args:
        loc_sorted: (P,) E_loc per sorted positive (differentiable).
        rank_sorted: (P,) detached rank per sorted positive (cast to the dtype of ``loc_sorted``).
    """
    zero = loc_sorted.new_zeros(1)
    at_or_after = torch.cat([loc_sorted.flip(0).cumsum(0).flip(0), zero])  # (P + 1,) sum over sorted index >= m
    first_tied = torch.searchsorted(ps.pos_scores, ps.pos_scores, right=False)
    after_tied = torch.searchsorted(ps.pos_scores, ps.pos_scores, right=True)
    above = at_or_after[after_tied]
    tied = at_or_after[first_tied] - above  # includes E_loc(i) itself
    return ((above + 0.5 * (tied + loc_sorted)) / rank_sorted.to(loc_sorted.dtype)).mean()


def alrp_loss(logits: Tensor, targets: Tensor, loc_errors: Tensor, delta: float = 1.0, *,
              wrong_target: bool = False) -> ALRPResult:
    """aLRP Loss of flattened (anchor, class) pairs.

    Args:
        logits: (M,) float classifier logits (cast to float32).
        targets: (M,) int, 1 positive, 0 negative, -1 ignored.
        loc_errors: (P,) E_loc of each positive in the order positives appear in ``logits`` (e.g.
            ``alrp.losses.box.loc_error``); differentiable, used detached inside the classification gradient.
        delta: smoothing of the step function.
        wrong_target: use target 0 instead of ``E_loc(i) / rank(i)`` (Appendix G.3; for the balance
            demonstration only): positives ranked above all negatives keep the update ``-E_loc(i) / rank(i)``
            that no negative balances, which breaks Theorem 2.
    Returns:
        :class:`ALRPResult`. Without positives both losses are 0 (connected to the graph) and gradients are 0.
    """
    logits32, counts = ranking.prepare(logits, targets, delta)
    num_pos = 0 if counts is None else counts.pairs.num_pos
    if not isinstance(loc_errors, Tensor) or loc_errors.dim() != 1 or loc_errors.numel() != num_pos:
        got = tuple(loc_errors.shape) if isinstance(loc_errors, Tensor) else type(loc_errors).__name__
        raise ValueError(f"loc_errors must have shape ({num_pos},) (one per positive target), got {got}")
    if counts is None:
        empty = ranking.empty_result(logits32)
        return ALRPResult(cls=empty.loss, loc=0.0 * loc_errors.sum(), rank=empty.rank, grad=empty.grad,
                          grad_pos_sum=empty.grad_pos_sum, grad_neg_sum=empty.grad_neg_sum)
    ps, n_fp, rank = counts.pairs, counts.n_fp, counts.rank
    loc_sorted = loc_errors[ps.pos_order]
    e_det = loc_sorted.detach().double()
    excess = (n_fp + ranking.positives_above(ps, e_det)) / rank  # l(i) - l*(i); sum_{k != i} E_loc(k) H(x_ik)
    if wrong_target:
        excess = excess + e_det / rank
    res = ranking.finish(logits32, counts, (n_fp / rank).mean(), excess, num_pos, eps=ALRP_EPS,
                         update_unranked=wrong_target)
    loc = _hard_cumulative_loc(ps, loc_sorted.float(), rank)
    return ALRPResult(cls=res.loss, loc=loc, rank=res.rank, grad=res.grad, grad_pos_sum=res.grad_pos_sum,
                      grad_neg_sum=res.grad_neg_sum)
