"""Self-balancing (SB) weight of the localisation loss (Sec. 4.2, Appendix F of the aLRP paper).

Training loss = ``L_cls + w * L_loc`` with ``w = mean(L_cls + L_loc) / mean(L_loc)`` over the previous period
(an epoch by default), starting from ``init`` (50). Under torch.distributed the sums are all-reduced, so every
process uses the same weight.
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
    """

    def __init__(self, init: float = 50.0) -> None:
        if not (isinstance(init, (int, float)) and math.isfinite(init) and init > 0):
            raise ValueError(f"SelfBalance init must be a positive finite number, got {init!r}")
        self.init = float(init)
        self.weight = float(init)
        self._sum_cls = 0.0
        self._sum_loc = 0.0
        self._count = 0

    def accumulate(self, cls: float | torch.Tensor, loc: float | torch.Tensor) -> None:
        """Add one iteration's (detached) L_cls and L_loc. Call only for batches with positives."""
        self._sum_cls += float(cls)
        self._sum_loc += float(loc)
        self._count += 1

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
                "count": self._count}

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


def _reduce_device() -> torch.device:
    """Where a collective of this process group runs: the current CUDA device for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
