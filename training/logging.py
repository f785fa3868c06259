"""Training logs: Python logging (quiet on non-zero ranks), smoothed metrics, a tqdm bar, JSON lines, TensorBoard.

Only rank 0 writes files (``log.txt``, ``metrics.jsonl``, ``tensorboard/``) and shows a progress bar.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterable, Iterator

from tqdm import tqdm

from alrp.metrics.report import metrics_to_json

LOGGER_NAME = "alrp"


def setup_logging(rank: int = 0, log_file: str | Path | None = None, level: int = logging.INFO) -> logging.Logger:
    """Configures the ``alrp`` logger: INFO to stderr (and ``log_file``) on rank 0, WARNING only elsewhere."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level if rank == 0 else logging.WARNING)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(fmt)
    logger.addHandler(stream)
    if log_file is not None and rank == 0:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, mode="a")
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger


def get_logger(name: str = "") -> logging.Logger:
    """A child of the ``alrp`` logger (``alrp.<name>``)."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


class SmoothedValue:
    """A scalar series: the latest value, the median/mean of the last ``window`` values and the global mean."""

    def __init__(self, window: int = 20) -> None:
        self.window: deque[float] = deque(maxlen=window)
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        self.window.append(float(value))
        self.total += float(value) * n
        self.count += n

    @property
    def value(self) -> float:
        return self.window[-1] if self.window else math.nan

    @property
    def median(self) -> float:
        if not self.window:
            return math.nan
        ordered = sorted(self.window)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])

    @property
    def avg(self) -> float:
        return sum(self.window) / len(self.window) if self.window else math.nan

    @property
    def global_avg(self) -> float:
        return self.total / self.count if self.count else math.nan


class MetricLogger:
    """Named ``SmoothedValue`` meters; ``update(loss=..., lr=...)`` adds one value to each."""

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self.meters: dict[str, SmoothedValue] = {}

    def update(self, **values: float) -> None:
        for name, value in values.items():
            self.meters.setdefault(name, SmoothedValue(self.window)).update(float(value))

    def smoothed(self) -> dict[str, float]:
        """Window median of every meter (for the progress bar and the periodic JSON line)."""
        return {name: m.median for name, m in self.meters.items()}

    def global_averages(self) -> dict[str, float]:
        """Mean over everything seen (for the per-epoch JSON line)."""
        return {name: m.global_avg for name, m in self.meters.items()}

    def __str__(self) -> str:
        return "  ".join(f"{k}: {m.median:.4f} ({m.global_avg:.4f})" for k, m in self.meters.items())


def progress(iterable: Iterable[Any], *, total: int | None, desc: str, enabled: bool = True) -> Iterator[Any]:
    """A tqdm bar (it/s and ETA come from tqdm); a plain iterator when ``enabled`` is False (non-zero ranks)."""
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True, leave=False,
                mininterval=1.0, file=sys.stderr)


def format_postfix(values: dict[str, float]) -> str:
    """Compact ``key=value`` string for a tqdm postfix (lr in scientific notation)."""
    parts = []
    for key, value in values.items():
        parts.append(f"{key}={value:.2e}" if key == "lr" else f"{key}={value:.4g}")
    return " ".join(parts)


class JsonlWriter:
    """Appends one JSON object per line to ``path`` (no-op when ``path`` is None, e.g. on non-zero ranks).

    Non-finite numbers (an undefined oLRP component, a NaN statistic) are written as ``null``, so every line is
    strict JSON (readable by jq, pandas, JavaScript).
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def drop_after(self, iteration: int) -> int:
        """Removes the lines of iterations after ``iteration`` (a resumed run writes them again); returns how many.

        A last line cut short by a kill is dropped too.
        """
        if self.path is None or not self.path.is_file():
            return 0
        kept, dropped = [], 0
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1
                continue
            if isinstance(record, dict) and int(record.get("iteration", 0)) > iteration:
                dropped += 1
            else:
                kept.append(line)
        if dropped:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            tmp.replace(self.path)
        return dropped

    def write(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        record = metrics_to_json({"time": round(time.time(), 3), **record})
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=str, allow_nan=False) + "\n")


class TensorBoardWriter:
    """Thin ``SummaryWriter`` wrapper that skips non-finite values and does nothing when disabled."""

    def __init__(self, log_dir: str | Path | None, purge_step: int | None = None) -> None:
        """``purge_step``: on resume, the first step to be written again; TensorBoard then discards the earlier
        files' events from that step on (no doubled curves after a kill and resume)."""
        self._writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        if self._writer is None:
            return
        for name, value in values.items():
            if value is not None and math.isfinite(float(value)):
                self._writer.add_scalar(f"{prefix}{name}", float(value), step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
