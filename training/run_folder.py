"""Run-folder hygiene at start-up: is it writable, and does it hold logs of an earlier run that left no checkpoint."""
from __future__ import annotations

import time
from pathlib import Path

from training.checkpoint import CKPT_DIR
from training.fs import writable_problem

LOG_FILES = ("log.txt", "metrics.jsonl", "tensorboard")  # what a run writes besides checkpoints and config


class RunFolderError(RuntimeError):
    """The run folder (or its ``checkpoints`` folder) cannot be written."""


def check_run_folder(run_dir: Path) -> None:
    """Raises `RunFolderError` naming the folder and the cause when the run folder or its ``checkpoints`` folder
    cannot be written (found at start-up rather than after a whole epoch); creates both."""
    for folder in (run_dir, run_dir / CKPT_DIR):
        problem = writable_problem(folder, folder=True)
        if problem is not None:
            raise RunFolderError(f"run folder {folder}: {problem}")


def set_aside_stale_logs(run_dir: Path) -> Path | None:
    """Moves the logs of an earlier run that left no checkpoint into ``run_dir/stale-<time>/`` so that a fresh
    start does not mix their lines with its own; returns that folder (None when there was nothing to move)."""
    stale = [run_dir / name for name in LOG_FILES if (run_dir / name).exists()]
    if not stale:
        return None
    target = run_dir / time.strftime("stale-%Y%m%d-%H%M%S")
    target.mkdir()
    for path in stale:
        path.rename(target / path.name)
    return target
