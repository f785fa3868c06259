"""rho: Spearman rank correlation between classification scores and IoUs of true positives.

It measures how well the classification and localisation branches agree (aLRP Loss paper, Table 2 / Sec. 5).
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a (n,) array, ties sharing the mean of their ranks (as Spearman needs)."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values), dtype=float)
    # boundaries of runs of equal values in the sorted array
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # run s..e-1: mean of ranks s+1 .. e
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman correlation of two (n,) arrays: Pearson on average ranks. NaN if n < 2 or either is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman needs two 1-D arrays of the same length, got {x.shape} and {y.shape}")
    if len(x) < 2:
        return math.nan
    rx, ry = average_ranks(x) - (len(x) + 1) / 2.0, average_ranks(y) - (len(y) + 1) / 2.0
    denom = math.sqrt(float(np.dot(rx, rx)) * float(np.dot(ry, ry)))
    return float(np.dot(rx, ry) / denom) if denom > 0 else math.nan


def mean_rho(per_class: Iterable[float | None]) -> float:
    """Average of per-class rho, skipping None/NaN (classes with < 2 TPs or constant scores/IoUs); NaN if none."""
    vals = [v for v in per_class if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan
