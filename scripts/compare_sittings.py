"""Which rows of an earlier `compare_losses.py` table in the same `--out` a new sitting may keep.

A sitting tabulates its own `--setups`; the setups of the earlier `results.json` that it does not run are tabulated
again from their finished runs on disk, but only when the earlier sitting shared everything that makes rows
comparable (`SITTING_KEYS`). Rows of another sitting are left out with a reason, never silently.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# What every row of one table shares: the data and configs, the device, the seeds, the lr grid, the kind of budget
# (--minutes, or None for iterations: per-setup iteration counts may differ and are listed) and every override.
SITTING_KEYS = ("data", "train_split", "val_split", "config_dir", "prefix", "device", "seeds", "lrs", "minutes",
                "batch_size", "overrides")


def sitting_settings(args: Any) -> dict[str, Any]:
    """The SITTING_KEYS values of a parsed compare_losses.py command line, as results.json stores them."""
    return {"data": args.data, "train_split": args.train_split, "val_split": args.val_split,
            "config_dir": str(args.config_dir), "prefix": args.prefix, "device": args.device, "seeds": args.seeds,
            "lrs": args.lrs, "minutes": args.minutes, "batch_size": args.batch_size, "overrides": args.overrides}


def read_results(path: Path) -> tuple[dict | None, str | None]:
    """(results.json's settings and setups, None); (None, None) when there is no file; (None, why) when it cannot
    be read as a table."""
    if not path.is_file():
        return None, None
    try:
        results = json.loads(path.read_text())
        ok = (isinstance(results, dict) and isinstance(results.get("settings"), dict)
              and isinstance(results.get("setups"), dict))
    except (OSError, ValueError) as err:
        return None, f"{path.name} unreadable ({err})"
    return (results, None) if ok else (None, f"{path.name} is not a results table")


def differing_keys(earlier: dict[str, Any], sitting: dict[str, Any]) -> list[str]:
    """The SITTING_KEYS in which an earlier table's settings differ from this sitting's (the lr grid in any order)."""
    def same(key: str) -> bool:
        if key == "lrs":
            return sorted(earlier.get(key) or []) == sorted(sitting[key])
        return earlier.get(key) == sitting[key]

    return [k for k in SITTING_KEYS if not same(k)]


def earlier_setups(path: Path, sitting: dict[str, Any], setups: list[str]
                   ) -> tuple[dict[str, str], list[str], list[str]]:
    """The setups of the table at `path` that this sitting (settings `sitting`, running `setups`) may tabulate again
    from their runs, each with the command that made its row; one reason per setup left out; and the table's row
    order (empty when there is no table to add to)."""
    results, unreadable = read_results(path)
    if results is None:
        return {}, [unreadable] if unreadable else [], []
    settings = results["settings"]
    others = [s for s in results["setups"] if s not in setups]
    differs = differing_keys(settings, sitting)
    if differs:
        return {}, [f"{s} (its sitting had other {', '.join(differs)})" for s in others], []
    commands = settings.get("commands") if isinstance(settings.get("commands"), dict) else {}
    return {s: commands.get(s, settings.get("command")) for s in others}, [], list(results["setups"])


def write_atomically(path: Path, text: str) -> None:
    """Writes `path` through a temporary file, so a sitting reading it beside another never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
