"""Self-balancing (SB) weight of the localisation loss (Sec. 4.2, Appendix F of the aLRP paper).

Training loss = ``L_cls + w * L_loc`` with ``w = mean(L_cls + L_loc) / mean(L_loc)`` over the previous period
(an epoch by default, or every ``period_iters`` iterations), starting from ``init`` (50). Under torch.distributed
the sums are all-reduced, so every process uses the same weight.

Statistic window: ours averages every iteration of the period. The ablation code averages the last 50 snapshots
(one per 50-iteration logging step) of a 300-iteration running mean, i.e. roughly the last 2,500 iterations of
the epoch, weighted towards its end; the mmdet release averages every iteration of its fixed 3,665-iteration
period, separately on each GPU. See docs/fidelity.md.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


class SelfBalance:
    """Running statistics and the current SB weight.

    Args:
        init: weight used until the first update.
        period_iters: update after this many iterations (counted by :meth:`end_iteration`) instead of at each
            epoch end; None (default) = the epoch.
    """

    def __init__(self, init: float = 50.0, period_iters: int | None = None) -> None:
        if not (isinstance(init, (int, float)) and math.isfinite(init) and init > 0):
            raise ValueError(f"SelfBalance init must be a positive finite number, got {init!r}")
        if period_iters is not None and (isinstance(period_iters, bool) or not isinstance(period_iters, int)
                                         or period_iters < 1):
            raise ValueError(f"SelfBalance period_iters must be a positive int or None, got {period_iters!r}")
        self.init = float(init)
        self.period_iters = period_iters
        self.weight = float(init)
        self._sum_cls = 0.0
        self._sum_loc = 0.0
        self._count = 0
        self._iters = 0

    def accumulate(self, cls: float | torch.Tensor, loc: float | torch.Tensor) -> None:
        """Add one iteration's (detached) L_cls and L_loc. Call only for batches with positives."""
        self._sum_cls += float(cls)
        self._sum_loc += float(loc)
        self._count += 1

    def end_iteration(self, distributed: bool = False) -> bool:
        """Count one training iteration (with or without positives); every process must call it each iteration.

        With ``period_iters`` set, the ``period_iters``-th call runs :meth:`update` and restarts the count.
        Returns True when the weight was updated.
        """
        if self.period_iters is None:
            return False
        self._iters += 1
        if self._iters < self.period_iters:
            return False
        self._iters = 0
        self.update(distributed)
        return True

    @property
    def updates_at_epoch_end(self) -> bool:
        """True when the weight is updated at epoch ends (no ``period_iters``)."""
        return self.period_iters is None

    def end_epoch(self, distributed: bool = False) -> float:
        """Epoch end: :meth:`update` unless a fixed iteration period is set; every process must call it.

        Returns the weight now in use.
        """
        return self.update(distributed) if self.updates_at_epoch_end else self.weight

    def update(self, distributed: bool = False) -> float:
        """End of a period: set ``weight = (sum L_cls + sum L_loc) / sum L_loc`` and reset the statistics.

        With ``distributed=True`` (and an initialised process group) the sums and counts of all processes are
        all-reduced first; every process must call it. Nothing accumulated (anywhere): the weight is kept.
        Returns the weight now in use.
        """
        sums = [self._sum_cls, self._sum_loc, float(self._count)]
        if distributed and dist.is_available() and dist.is_initialized():
            totals = torch.tensor(sums, dtype=torch.float64, device=_reduce_device())
            dist.all_reduce(totals, op=dist.ReduceOp.SUM)
            sums = totals.tolist()
        sum_cls, sum_loc, count = sums
        self._sum_cls, self._sum_loc, self._count = 0.0, 0.0, 0
        if count <= 0:
            return self.weight
        if not (sum_loc > 0 and math.isfinite(sum_cls + sum_loc)):
            log.warning("self-balance: mean L_loc is %g over %d iterations; keeping weight %g",
                        sum_loc / count, int(count), self.weight)
            return self.weight
        self.weight = (sum_cls + sum_loc) / sum_loc
        return self.weight

    def state_dict(self) -> dict[str, Any]:
        """Weight and pending statistics, for checkpoints."""
        return {"init": self.init, "weight": self.weight, "sum_cls": self._sum_cls, "sum_loc": self._sum_loc,
                "count": self._count, "iters": self._iters}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (raises KeyError naming a missing key)."""
        missing = [k for k in ("weight", "sum_cls", "sum_loc", "count") if k not in state]
        if missing:
            raise KeyError(f"SelfBalance state is missing {missing}; has {sorted(state)}")
        self.init = float(state.get("init", self.init))
        self.weight = float(state["weight"])
        self._sum_cls = float(state["sum_cls"])
        self._sum_loc = float(state["sum_loc"])
        self._count = int(state["count"])
        self._iters = int(state.get("iters", 0))


def _reduce_device() -> torch.device:
    """Where a collective of this process group runs: the current CUDA device for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
