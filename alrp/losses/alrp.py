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
        rank_sorted: (P,) detached rank per sorted positive.
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
    ranking.check_inputs(logits, targets, delta)
    logits32 = logits.float()
    pos_appear = ranking.positive_positions(targets)
    num_pos = pos_appear.numel()
    if loc_errors.dim() != 1 or loc_errors.numel() != num_pos:
        raise ValueError(f"loc_errors must have shape ({num_pos},) (one per positive target), "
                         f"got {tuple(loc_errors.shape)}")
    if num_pos == 0:
        empty = ranking.empty_result(logits32)
        return ALRPResult(cls=empty.loss, loc=0.0 * loc_errors.sum(), rank=empty.rank, grad=empty.grad,
                          grad_pos_sum=empty.grad_pos_sum, grad_neg_sum=empty.grad_neg_sum)
    ps = ranking.build_pairs(logits32.detach(), targets, delta, pos_appear)
    loc_sorted = loc_errors[ps.pos_order]
    e_det = loc_sorted.detach().double()
    n_fp = ranking.negatives_above(ps)
    rank = 1.0 + ranking.positives_above(ps) + n_fp
    loc_above = ranking.positives_above(ps, e_det)  # sum_{k != i} E_loc(k) H(s_k - s_i)
    excess = (n_fp + loc_above) / rank  # l(i) - l*(i)
    if wrong_target:
        excess = excess + e_det / rank
    grad, pos_sum, neg_sum = ranking.error_driven_gradient(ps, excess, n_fp, num_pos, eps=ALRP_EPS,
                                                           update_unranked=wrong_target)
    cls_value = (n_fp / rank).mean().float()
    loc = _hard_cumulative_loc(ps, loc_sorted.float(), rank.float())
    return ALRPResult(cls=ranking.attach_gradient(logits32, cls_value, grad), loc=loc,
                      rank=ranking.unsort(ps, rank.float()), grad=grad, grad_pos_sum=pos_sum,
                      grad_neg_sum=neg_sum)
