"""Test oracle: a direct loop over positives, as in Algorithm A.2 of the aLRP paper and alrp-math.md Sec. 2/4.

Deliberately naive (O(|P| * |N|), float64 numpy) and independent of ``alrp.losses``: it is the definition the fast
implementation is checked against. Never used by the library.
"""
from __future__ import annotations

import numpy as np


def smooth_step(x: np.ndarray, delta: float) -> np.ndarray:
    return np.clip(x / (2.0 * delta) + 0.5, 0.0, 1.0)


def alrp_oracle(logits, targets, loc_errors, delta: float = 1.0, eps: float = 1e-5) -> dict:
    """aLRP Loss by the paper's loop. Returns cls, loc, rank (P,), grad (M,), all float64."""
    s = np.asarray(logits, dtype=np.float64)
    t = np.asarray(targets)
    e = np.asarray(loc_errors, dtype=np.float64)
    pos = np.flatnonzero(t == 1)
    grad = np.zeros_like(s)
    if len(pos) == 0:
        return {"cls": 0.0, "loc": 0.0, "rank": np.zeros(0), "grad": grad}
    s_pos = s[pos]
    threshold = s_pos.min() - delta  # line 8: relevant negatives
    neg = np.flatnonzero((t == 0) & (s >= threshold))
    s_neg = s[neg]
    rank = np.zeros(len(pos))
    prec = np.zeros(len(pos))
    loc_terms = np.zeros(len(pos))
    for i in range(len(pos)):
        pos_rel = smooth_step(s_pos - s_pos[i], delta)
        pos_rel[i] = 0.0
        neg_rel = smooth_step(s_neg - s_pos[i], delta)
        rank_pos = 1.0 + pos_rel.sum()
        n_fp = neg_rel.sum()
        rank[i] = rank_pos + n_fp
        prec[i] = rank_pos / rank[i]
        hard = (s_pos > s_pos[i]) + 0.5 * (s_pos == s_pos[i])  # hard step for the localisation component
        hard[i] = 1.0  # E_loc(i) itself; exact ties count half (the mean over tie-breaking orders)
        loc_terms[i] = (hard * e).sum() / rank[i]
        if n_fp > eps:
            c = (n_fp + (pos_rel * e).sum()) / rank[i]  # l(i) - l*(i), target E_loc(i) / rank(i)
            grad[pos[i]] = -c
            grad[neg] += c * neg_rel / n_fp
    grad /= len(pos)
    return {"cls": 1.0 - prec.mean(), "loc": loc_terms.mean(), "rank": rank, "grad": grad}


def ap_oracle(logits, targets, delta: float = 1.0) -> dict:
    """AP Loss with interpolated precision, visiting positives in ascending score order. Returns loss, grad."""
    s = np.asarray(logits, dtype=np.float64)
    t = np.asarray(targets)
    pos = np.flatnonzero(t == 1)
    grad = np.zeros_like(s)
    if len(pos) == 0:
        return {"loss": 0.0, "grad": grad}
    s_pos = s[pos]
    neg = np.flatnonzero((t == 0) & (s >= s_pos.min() - delta))
    s_neg = s[neg]
    max_prec = 0.0
    interp = np.zeros(len(pos))
    for i in np.argsort(s_pos, kind="stable"):
        pos_rel = smooth_step(s_pos - s_pos[i], delta)
        pos_rel[i] = 0.0
        neg_rel = smooth_step(s_neg - s_pos[i], delta)
        rank_pos = 1.0 + pos_rel.sum()
        rank = rank_pos + neg_rel.sum()
        prec = rank_pos / rank
        if max_prec <= prec:
            max_prec = prec
            grad[neg] += neg_rel / rank
        else:
            grad[neg] += neg_rel / rank * (1.0 - max_prec) / (1.0 - prec)
        grad[pos[i]] = -(1.0 - max_prec)
        interp[i] = max_prec
    grad /= len(pos)
    return {"loss": 1.0 - interp.mean(), "grad": grad}
