"""Checkpoints of a run folder: atomic writes, keep the last k, ``latest`` discovery, best-by-AP copy, RNG states.

Layout inside the run folder::

    checkpoints/ckpt_e0003_i00001200.pth   # epochs completed, iterations completed
    checkpoints/latest                     # text file: name of the newest checkpoint
    checkpoints/best.pth                   # copy of the checkpoint with the highest AP so far

Every file is written to a temporary name in the same folder and renamed, so a crash never leaves a truncated
checkpoint behind. Checkpoints hold only tensors and plain Python containers, so they load with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np
import torch

from training.fs import os_error_cause, replace_through_temporary

CKPT_DIR = "checkpoints"
LATEST = "latest"
BEST = "best.pth"
TMP_SUFFIX = ".tmp"  # temporary files are ".<target name>.<random>.tmp" beside their target
_CKPT_RE = re.compile(r"^ckpt_e(\d+)_i(\d+)\.pth$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or lacks a required entry."""


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Calls ``write(file)`` on a temporary file beside ``path``, then renames it onto ``path``.

    Raises:
        CheckpointError: the folder cannot be created or written (read-only, a file in its place, a full disk);
            the message names the path and the cause, and ``path`` keeps its previous content.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # through a Python file object, so a failed write raises OSError with its errno (torch.save given a path
        # reports a full disk as a cryptic "inline_container.cc ... unexpected pos" error)
        replace_through_temporary(path, write, suffix=TMP_SUFFIX)
    except OSError as err:
        raise CheckpointError(f"cannot write {path}: {os_error_cause(err, path)}") from None


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """``torch.save(state, path)`` through a temporary file + rename (raises `CheckpointError`)."""
    path = Path(path)
    _atomic_write(path, lambda f: torch.save(state, f))
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    required: tuple[str, ...] = ("model",)) -> dict[str, Any]:
    """Loads a checkpoint written by this module; errors name the file and the missing entry."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt file, foreign pickle, ...
        cause = "empty file" if path.stat().st_size == 0 else str(exc).split(". ")[0].strip() or type(exc).__name__
        # (only the first sentence: torch appends paragraphs of advice)
        raise CheckpointError(f"cannot read checkpoint {path}: {cause}") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks entries {missing}")
    return state


# ----------------------------------------------------------------------------------------------- RNG states
def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (if available) CUDA generator states, as weights-only-loadable values."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state`` (CUDA states are restored only when CUDA is in use)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# ----------------------------------------------------------------------------------------------- run folder
class CheckpointManager:
    """Saves ``ckpt_e{epoch}_i{iteration}.pth`` files in ``run_dir/checkpoints``, keeping the newest ``keep``."""

    def __init__(self, run_dir: str | Path, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"train.keep_checkpoints must be >= 1, got {keep}")
        self.dir = Path(run_dir) / CKPT_DIR
        self.keep = keep

    def list(self) -> list[Path]:
        """Regular checkpoints, oldest first (ordered by iteration, then epoch)."""
        found = []
        if self.dir.is_dir():
            for p in self.dir.iterdir():
                m = _CKPT_RE.match(p.name)
                if m:
                    found.append(((int(m.group(2)), int(m.group(1))), p))
        return [p for _, p in sorted(found)]

    def save(self, state: dict[str, Any], *, epoch: int, iteration: int) -> Path:
        """Writes ``state`` atomically, points ``latest`` at it and deletes all but the newest ``keep``.

        Raises:
            CheckpointError: the write failed (e.g. a full disk); the message says which checkpoint is kept.
        """
        previous = self.latest()
        try:
            path = save_atomic(state, self.dir / f"ckpt_e{epoch:04d}_i{iteration:08d}.pth")
            _atomic_write(self.dir / LATEST, lambda f: f.write((path.name + "\n").encode()))
        except CheckpointError as err:
            kept = f"{previous.name} is kept" if previous is not None else "no earlier checkpoint exists"
            raise CheckpointError(f"{err}; the previous checkpoint {kept}" if previous else f"{err}; {kept}") from None
        for old in self.list()[:-self.keep]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> Path | None:
        """Newest checkpoint: the one ``latest`` names if it exists, else the newest by name; None if none."""
        pointer = self.dir / LATEST
        if pointer.is_file():
            candidate = self.dir / pointer.read_text().strip()
            if candidate.is_file():
                return candidate
        existing = self.list()
        return existing[-1] if existing else None

    def save_best(self, source: str | Path) -> Path:
        """Copies checkpoint ``source`` to ``best.pth`` (atomically)."""
        target = self.dir / BEST
        with open(source, "rb") as src:
            _atomic_write(target, lambda f: shutil.copyfileobj(src, f))
        return target

    def load_newest_readable(self, map_location: str | torch.device = "cpu", required: tuple[str, ...] = ("model",)
                             ) -> tuple[Path | None, dict[str, Any] | None, list[tuple[Path, str]]]:
        """Loads the newest checkpoint that reads (``latest`` first, then the others, newest first).

        Returns:
            ``(path, state, skipped)``: ``skipped`` lists the newer ``(path, why)`` that could not be read;
            ``(None, None, [])`` when the folder holds no checkpoint.

        Raises:
            CheckpointError: checkpoints exist but none is readable (every file and cause named).
        """
        newest = self.latest()
        candidates = ([newest] if newest is not None else []) + [p for p in reversed(self.list()) if p != newest]
        skipped: list[tuple[Path, str]] = []
        for path in candidates:
            try:
                return path, load_checkpoint(path, map_location, required), skipped
            except CheckpointError as err:
                skipped.append((path, str(err)))
        if skipped:
            raise CheckpointError(f"no readable checkpoint in {self.dir}: " + "; ".join(why for _, why in skipped))
        return None, None, []

    def remove_orphans(self) -> list[Path]:
        """Deletes the temporary files a kill during a write left behind (``.<name>.<random>.tmp``); returns them."""
        orphans = [p for p in self.dir.glob(f".*{TMP_SUFFIX}") if p.is_file()] if self.dir.is_dir() else []
        for p in orphans:
            p.unlink(missing_ok=True)
        return orphans


def find_latest(run_dir: str | Path) -> Path | None:
    """Newest checkpoint of a run folder, or None."""
    return CheckpointManager(run_dir).latest()
