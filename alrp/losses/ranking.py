"""The generalised error-driven ranking framework (Sec. 3 of the aLRP paper), without a loop over positives.

Notation (see ../shared/docs/alrp-math.md): logits ``s (M,)``, positives ``P`` (target 1), negatives ``N``
(target 0), ignored pairs (target -1) take no part. ``H(x) = clamp(x / (2 delta) + 0.5, 0, 1)``.

A ranking loss ``L = (1/Z) sum_i l(i)`` over positives is defined by its per-positive errors ``l(i)`` and targets
``l*(i)``. With ``p(j|i) = H(s_j - s_i) / N_FP(i)`` the error-driven update gives

- positive i: ``g_i = -(l(i) - l*(i)) / Z`` when ``N_FP(i) > eps``, else 0;
- negative j: ``g_j = (1/Z) sum_i (l(i) - l*(i)) H(s_j - s_i) / N_FP(i)``.

AP Loss, aLRP Loss and NDCG Loss only differ in ``l - l*`` (``excess`` below) and ``Z``.

How it is fast: every quantity is a sum of ``H`` over pairs, and ``H(s - s_i)`` is piecewise linear in ``s`` with
breakpoints ``s_i -+ delta``. The 2P sorted breakpoints cut the score axis into 2P + 1 bins. Each negative is
placed in its bin once (:func:`alrp.losses.binning.bucketize`, an exact ``searchsorted`` through a uniform-grid
table); per-bin counts and sums of scores (float64) then give every ``N_FP(i)`` by prefix sums, and the negatives'
gradient is ``A[bin] + B[bin] * s`` with per-bin coefficients built from prefix sums over the positives.
Cost: a few passes over the M logits plus O(P log P); memory O(M).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from alrp.losses.binning import bucketize


@dataclass
class RankingResult:
    """Output of a ranking loss built on the framework.

    Attributes:
        loss: () float32, the loss value; its gradient w.r.t. the logits is ``grad``.
        rank: (P,) float32, smoothed rank among all pairs of each positive, in the order positives appear.
        grad: (M,) float32, detached error-driven dL/dlogits (zero for ignored pairs).
        grad_pos_sum: () float64, detached sum of |g| over positives.
        grad_neg_sum: () float64, detached sum of |g| over negatives (equal to grad_pos_sum: Theorem 2).
    """

    loss: Tensor
    rank: Tensor
    grad: Tensor
    grad_pos_sum: Tensor
    grad_neg_sum: Tensor


@dataclass
class PairStructure:
    """The smoothed-step pair structure of one batch, shared by every quantity the losses need.

    Scores are stored centred (``value = logit - center``) so float32 differences stay accurate.
    Sorted positives are indexed ``0..P-1`` by ascending logit.

    Attributes:
        delta: smoothing of the step function.
        pos_index: (P,) int64 position in the logits of each sorted positive.
        pos_order: (P,) int64 index among positives (in order of appearance) of each sorted positive.
        pos_scores: (P,) float32 logits of the sorted positives (ascending, not centred: exact ties).
        pos_values: (P,) float32 centred logits of the sorted positives (ascending).
        edges: (2P,) float32 sorted breakpoints ``pos_values -+ delta``.
        k_lo, k_hi: (P,) int64 bin index of ``pos_values - delta`` / ``pos_values + delta``: a score lies in
            the linear part of ``H(s - s_i)`` iff ``k_lo[i] <= bin(s) < k_hi[i]`` and above it iff
            ``bin(s) >= k_hi[i]``.
        values: (M,) float32 centred logits of all pairs.
        neg_bins: (M,) int32 bin of each negative in ``0..2P``; other pairs get the dummy bin ``2P + 1``.
    """

    delta: float
    pos_index: Tensor
    pos_order: Tensor
    pos_scores: Tensor
    pos_values: Tensor
    edges: Tensor
    k_lo: Tensor
    k_hi: Tensor
    values: Tensor
    neg_bins: Tensor

    @property
    def num_pos(self) -> int:
        return int(self.pos_index.numel())

    @property
    def num_bins(self) -> int:
        """Number of real bins (2P + 1); the dummy bin has this index."""
        return 2 * self.num_pos + 1


def positive_positions(targets: Tensor) -> Tensor:
    """(P,) int64 positions of the positive pairs, in order of appearance."""
    return (targets == 1).nonzero().squeeze(1)


def build_pairs(logits: Tensor, targets: Tensor, delta: float, pos_appear: Tensor | None = None) -> PairStructure:
    """Sort the positives, build the breakpoints and bin every negative.

    Args:
        logits: (M,) float32 detached logits.
        targets: (M,) int, 1 positive, 0 negative, -1 ignored; at least one positive.
        delta: smoothing of the step function (> 0).
        pos_appear: ``positive_positions(targets)`` if already computed.
    """
    if pos_appear is None:
        pos_appear = positive_positions(targets)
    pos_sorted, pos_order = torch.sort(logits.index_select(0, pos_appear), stable=True)
    center = pos_sorted[pos_sorted.numel() // 2]
    pos_values = pos_sorted - center
    edges = torch.cat([pos_values - delta, pos_values + delta]).sort().values
    k_lo = torch.searchsorted(edges, pos_values - delta, right=True)
    k_hi = torch.searchsorted(edges, pos_values + delta, right=True)
    values = logits - center
    bins = bucketize(edges, values)
    dummy = torch.full((), edges.numel() + 1, dtype=bins.dtype, device=bins.device)
    neg_bins = torch.where(targets == 0, bins, dummy)
    return PairStructure(delta=float(delta), pos_index=pos_appear[pos_order], pos_order=pos_order,
                         pos_scores=pos_sorted, pos_values=pos_values, edges=edges, k_lo=k_lo, k_hi=k_hi,
                         values=values, neg_bins=neg_bins)


def _step_sums_from_bins(ps: PairStructure, counts: Tensor, sums: Tensor) -> Tensor:
    """``sum_j w_j H(s_j - s_i)`` for each sorted positive i from per-bin ``sum w`` and ``sum w * value``.

    Args:
        counts, sums: (2P + 1,) float64 per-bin totals (dummy bin already dropped).
    Returns:
        (P,) float64.
    """
    zero = counts.new_zeros(1)
    count_above = torch.cat([counts.flip(0).cumsum(0).flip(0), zero])  # (2P + 2,) suffix sums
    sum_above = torch.cat([sums.flip(0).cumsum(0).flip(0), zero])
    full = count_above[ps.k_hi]
    lin_count = count_above[ps.k_lo] - full
    lin_sum = sum_above[ps.k_lo] - sum_above[ps.k_hi]
    v = ps.pos_values.double()
    return full + (lin_sum - v * lin_count) / (2.0 * ps.delta) + 0.5 * lin_count


def negatives_above(ps: PairStructure) -> Tensor:
    """``N_FP(i) = sum_{j in N} H(s_j - s_i)`` for each sorted positive: (P,) float64."""
    nb = ps.num_bins + 1  # with the dummy bin
    # bincount (shared-memory histograms on CUDA) rather than index_add_: most negatives share a few bins
    counts = torch.bincount(ps.neg_bins, minlength=nb).double()
    sums = torch.bincount(ps.neg_bins, weights=ps.values.double(), minlength=nb)
    return _step_sums_from_bins(ps, counts[:-1], sums[:-1])


def positives_above(ps: PairStructure, weights: Tensor | None = None) -> Tensor:
    """``sum_{k in P, k != i} w_k H(s_k - s_i)`` for each sorted positive i: (P,) float64.

    Args:
        weights: (P,) per sorted positive (default all ones, giving ``rank+(i) - 1``).
    """
    w = torch.ones_like(ps.pos_values, dtype=torch.float64) if weights is None else weights.double()
    bins = torch.searchsorted(ps.edges, ps.pos_values, right=True)
    counts = torch.zeros(ps.num_bins, dtype=torch.float64, device=w.device).index_add_(0, bins, w)
    sums = torch.zeros_like(counts).index_add_(0, bins, w * ps.pos_values.double())
    return _step_sums_from_bins(ps, counts, sums) - 0.5 * w  # drop the self term H(0) = 0.5


def _negative_gradient(ps: PairStructure, coeff: Tensor) -> Tensor:
    """``g_j = sum_i coeff_i H(s_j - s_i)`` for every negative j, 0 for other pairs: (M,) float32.

    Within a bin the sum is linear in the score: per-bin ``A + B * value`` from difference arrays over positives.
    """
    nb = ps.num_bins
    two_delta = 2.0 * ps.delta
    v = ps.pos_values.double()
    lin_const = coeff * (0.5 - v / two_delta)
    lin_slope = coeff / two_delta
    zeros = torch.zeros(nb + 1, dtype=torch.float64, device=coeff.device)
    d_const = zeros.index_add(0, ps.k_hi, coeff).index_add_(0, ps.k_lo, lin_const).index_add_(0, ps.k_hi, -lin_const)
    d_slope = zeros.index_add(0, ps.k_lo, lin_slope).index_add_(0, ps.k_hi, -lin_slope)
    const = d_const.cumsum(0).float()
    slope = d_slope.cumsum(0).float()
    const[nb] = 0.0  # dummy bin: positives and ignored pairs
    slope[nb] = 0.0
    return torch.addcmul(const.index_select(0, ps.neg_bins), slope.index_select(0, ps.neg_bins), ps.values)


def error_driven_gradient(ps: PairStructure, excess: Tensor, n_fp: Tensor, z: float, eps: float = 0.0,
                          update_unranked: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Turn per-positive ``l(i) - l*(i)`` into the error-driven gradient w.r.t. all logits (Alg. 1, lines 3-4).

    Args:
        excess: (P,) float64 ``l(i) - l*(i) >= 0`` per sorted positive.
        n_fp: (P,) float64 ``N_FP(i)`` per sorted positive.
        z: normaliser of the loss.
        eps: a positive with ``N_FP(i) <= eps`` has no negative to pass its update to, so it gets none.
        update_unranked: still give such positives ``-excess / z`` (only correct targets make their excess 0;
            used to reproduce the wrong-target failure of Appendix G.3, which breaks Theorem 2).
    Returns:
        grad (M,) float32, grad_pos_sum () float64, grad_neg_sum () float64.
    """
    active = n_fp > eps
    spread = torch.where(active, excess, torch.zeros_like(excess)) / z
    coeff = spread / torch.where(active, n_fp, torch.ones_like(n_fp))
    grad = _negative_gradient(ps, coeff)
    grad_neg_sum = grad.sum(dtype=torch.float64)
    pos_update = excess / z if update_unranked else spread
    grad[ps.pos_index] = (-pos_update).float()
    return grad, pos_update.sum(), grad_neg_sum


class _ErrorDriven(torch.autograd.Function):
    """Identity on a precomputed loss value whose gradient w.r.t. the logits is a precomputed vector."""

    @staticmethod
    def forward(ctx, logits: Tensor, value: Tensor, grad: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(grad)
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # noqa: D102
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None


def attach_gradient(logits: Tensor, value: Tensor, grad: Tensor) -> Tensor:
    """Return ``value`` (a detached scalar) as a tensor whose backward w.r.t. ``logits`` is ``grad`` (M,)."""
    return _ErrorDriven.apply(logits, value, grad.to(logits.dtype))


@dataclass
class RankCounts:
    """Smoothed counts of one batch over the sorted positives, shared by every ranking loss.

    Attributes:
        pairs: the pair structure they were computed on.
        n_fp: (P,) float64 ``N_FP(i)``, negatives ranked above each sorted positive.
        rank_pos: (P,) float64 ``rank+(i)``, rank among positives.
    """

    pairs: PairStructure
    n_fp: Tensor
    rank_pos: Tensor

    @property
    def rank(self) -> Tensor:
        """(P,) float64 ``rank(i) = rank+(i) + N_FP(i)``, rank among all pairs."""
        return self.rank_pos + self.n_fp


def prepare(logits: Tensor, targets: Tensor, delta: float) -> tuple[Tensor, RankCounts | None]:
    """Validate the inputs of a ranking loss, cast the logits to float32 and count ranks.

    Args:
        logits: (M,) float logits. targets: (M,) int in {1, 0, -1}. delta: smoothing of the step function.
    Returns:
        logits (M,) float32 (still attached to the graph), and the :class:`RankCounts` (None without positives).
    """
    check_inputs(logits, targets, delta)
    logits32 = logits.float()
    pos_appear = positive_positions(targets)
    if pos_appear.numel() == 0:
        return logits32, None
    ps = build_pairs(logits32.detach(), targets, delta, pos_appear)
    return logits32, RankCounts(pairs=ps, n_fp=negatives_above(ps), rank_pos=1.0 + positives_above(ps))


def finish(logits32: Tensor, counts: RankCounts, value: Tensor, excess: Tensor, z: float, eps: float = 0.0,
           update_unranked: bool = False) -> RankingResult:
    """Package a ranking loss: its value with the error-driven gradient of ``excess`` attached to the logits.

    Args:
        logits32: (M,) float32 logits from :func:`prepare`.
        value: () the loss value (detached). excess: (P,) float64 ``l(i) - l*(i)`` per sorted positive.
        z, eps, update_unranked: see :func:`error_driven_gradient`.
    """
    grad, pos_sum, neg_sum = error_driven_gradient(counts.pairs, excess, counts.n_fp, z, eps=eps,
                                                   update_unranked=update_unranked)
    return RankingResult(loss=attach_gradient(logits32, value.float(), grad),
                         rank=unsort(counts.pairs, counts.rank.float()), grad=grad, grad_pos_sum=pos_sum,
                         grad_neg_sum=neg_sum)


def unsort(ps: PairStructure, sorted_values: Tensor) -> Tensor:
    """Reorder a (P,) tensor from ascending-score order to the order positives appear."""
    out = torch.empty_like(sorted_values)
    out[ps.pos_order] = sorted_values
    return out


def empty_result(logits: Tensor) -> RankingResult:
    """Result for a batch without positives: zero loss still connected to the graph, zero gradients."""
    zero = logits.new_zeros((), dtype=torch.float64)
    return RankingResult(loss=0.0 * logits.sum(), rank=logits.new_zeros(0), grad=torch.zeros_like(logits).detach(),
                         grad_pos_sum=zero, grad_neg_sum=zero.clone())


def check_inputs(logits: Tensor, targets: Tensor, delta: float) -> None:
    """Raise ValueError naming the argument when the inputs of a ranking loss are malformed."""
    if not isinstance(logits, Tensor) or logits.dim() != 1 or not logits.is_floating_point():
        raise ValueError(f"logits must be a 1-D floating tensor (M,), got "
                         f"{getattr(logits, 'shape', type(logits))} {getattr(logits, 'dtype', '')}")
    if not isinstance(targets, Tensor) or targets.shape != logits.shape:
        raise ValueError(f"targets must be a tensor of the logits' shape {tuple(logits.shape)}, got "
                         f"{getattr(targets, 'shape', type(targets))}")
    if targets.is_floating_point() or targets.is_complex():
        raise ValueError(f"targets must be an integer tensor with values in {{1, 0, -1}}, got dtype {targets.dtype}")
    if targets.device != logits.device:
        raise ValueError(f"targets are on {targets.device} but logits on {logits.device}")
    if targets.numel():
        lo, hi = torch.aminmax(targets)
        if int(lo) < -1 or int(hi) > 1:
            raise ValueError(f"targets must be in {{1, 0, -1}} (1 positive, 0 negative, -1 ignored), "
                             f"found values in [{int(lo)}, {int(hi)}]")
    if not bool(torch.isfinite(logits.sum(dtype=torch.float32))):  # one pass; NaN/inf propagate into the sum
        raise ValueError("logits contain NaN or infinite values")
    if not (isinstance(delta, (int, float)) and 0.0 < float(delta) < float("inf")):
        raise ValueError(f"delta must be a positive finite number, got {delta!r}")
