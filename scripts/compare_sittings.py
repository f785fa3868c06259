"""Which rows of an earlier `compare_losses.py` table in the same `--out` a new sitting may keep.

A sitting tabulates its own `--setups`; the setups of the earlier `results.json` that it does not run are tabulated
again from their finished runs on disk, but only when the earlier sitting shared everything that makes rows
comparable (`SITTING_KEYS`). Rows of another sitting are left out with a reason, never silently.
"""
from __future__ import annotations

import json
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep import _repo_module  # noqa: E402

# What every row of one table shares: the data and configs, the device, the seeds, the lr grid, the kind of budget
# (--minutes, or None for iterations: per-setup iteration counts may differ and are listed) and every override.
SITTING_KEYS = ("data", "train_split", "val_split", "config_dir", "prefix", "device", "seeds", "lrs", "minutes",
                "batch_size", "overrides")


class Earlier(NamedTuple):
    """What a sitting takes from the table already in its --out."""

    commands: dict[str, str]  # setup -> the command that made its row, for the setups to tabulate again
    left_out: list[str]  # one reason per setup (or unreadable file) left out
    order: list[str]  # the earlier table's rows (empty when there is no table to add to)
    minutes: float | None  # the table's --minutes: this sitting's, or for a --report sitting without one the earlier


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
    except (OSError, ValueError) as err:
        return None, f"{path} unreadable ({err})"
    ok = (isinstance(results, dict) and isinstance(results.get("settings"), dict)
          and isinstance(results.get("setups"), dict))
    return (results, None) if ok else (None, f"{path} is not a results table")


def _same(key: str, earlier: Any, mine: Any) -> bool:
    if key == "lrs":  # the grid in any order
        try:
            return sorted(earlier) == sorted(mine)
        except TypeError:
            return False
    return earlier == mine


def differing_keys(earlier: dict[str, Any], sitting: dict[str, Any]) -> list[str]:
    """The SITTING_KEYS in which an earlier table's settings differ from this sitting's, as `key (theirs vs
    mine)`; keys the earlier table never recorded are not listed (see `unrecorded_keys`)."""
    return [f"{k} ({earlier[k]!r} vs {sitting[k]!r})" for k in SITTING_KEYS
            if k in earlier and not _same(k, earlier[k], sitting[k])]


def unrecorded_keys(earlier: dict[str, Any]) -> list[str]:
    """The SITTING_KEYS that a table written before they were recorded lacks."""
    return [k for k in SITTING_KEYS if k not in earlier]


def earlier_setups(path: Path, sitting: dict[str, Any], setups: list[str], report: bool) -> Earlier:
    """The setups of the table at `path` that this sitting (settings `sitting`, running `setups`, `report`: a
    --report sitting) may tabulate again from their runs. A --report sitting without --minutes takes the earlier
    table's, since it starts no run to which a budget applies."""
    results, unreadable = read_results(path)
    if results is None:
        return Earlier({}, [unreadable] if unreadable else [], [], sitting["minutes"])
    settings = results["settings"]
    others = [s for s in results["setups"] if s not in setups]
    minutes = settings.get("minutes") if report and sitting["minutes"] is None else sitting["minutes"]
    unrecorded, differing = unrecorded_keys(settings), differing_keys(settings, {**sitting, "minutes": minutes})
    reason = None
    if unrecorded:
        reason = (f"its table predates the record of {', '.join(unrecorded)}; rewrite that table once with --report "
                  "and its own settings")
    elif differing:
        reason = (f"its sitting had other {'; '.join(differing)}; its finished runs stay on disk: --report with its "
                  "settings tabulates them")
    if reason:
        return Earlier({}, [f"{s} ({reason})" for s in others], [], minutes)
    commands = settings.get("commands") if isinstance(settings.get("commands"), dict) else {}
    return Earlier({s: commands.get(s, settings.get("command")) for s in others}, [], list(results["setups"]),
                   minutes)


def table_lock(out: Path) -> AbstractContextManager[None]:
    """Held by a sitting from reading a shared file of `out` (results.json, calibration.json, levers.json) to
    writing it, so a sitting never writes over rows another added after its read. Not re-entrant."""
    return _repo_module("training.fs").exclusive_lock(out / ".table.lock")


def write_atomically(path: Path, text: str) -> None:
    """Writes the text file `path` (readable by all) through a temporary file, so a sitting reading it beside another
    never sees half a file."""
    _repo_module("training.fs").replace_through_temporary(path, lambda f: f.write(text.encode()), mode=0o644)
