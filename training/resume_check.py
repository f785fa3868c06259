"""What may change between a checkpoint and the run that resumes it: a config diff split into safe and unsafe."""
from __future__ import annotations

from typing import Any

from training.build import SetupError

# Keys that may change between a checkpoint and its resumed run: the length of the run and its schedule steps,
# logging and checkpoint cadence, evaluation, where files are, and loader mechanics. Any other change is refused.
RESUME_SAFE_KEYS = ("train.epochs", "train.max_iters", "train.lr_steps", "train.log_interval", "train.eval_interval",
                    "train.checkpoint_interval_iters", "train.keep_checkpoints", "eval.", "data.root",
                    "data.num_workers", "data.pin_memory", "data.on_bad_image", "model.backbone.pretrained",
                    "model.postprocess.", "device", "output_dir", "name")


class ResumeConfigError(SetupError):
    """``--resume`` with a config that differs from the checkpoint's in a key that changes the run."""


def flatten_config(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` of a nested config dict (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(saved: dict[str, Any], current: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``(unsafe, safe)`` changes ``"key old -> new"`` (sorted by key) from a checkpoint's config to the current one.

    A key only the current config has (added by a code change since the checkpoint) is listed with the safe ones, so
    the log says which new setting the resumed run takes; a key only the checkpoint has is dropped silently.
    """
    old, new = flatten_config(saved), flatten_config(current)
    unsafe, safe = [], []
    for key in sorted(old.keys() & new.keys()):
        if old[key] != new[key]:
            change = f"{key} {old[key]!r} -> {new[key]!r}"
            is_safe = any(key == s or (s.endswith(".") and key.startswith(s)) for s in RESUME_SAFE_KEYS)
            (safe if is_safe else unsafe).append(change)
    safe += [f"{key} (not in the checkpoint's config) -> {new[key]!r}" for key in sorted(new.keys() - old.keys())]
    return unsafe, safe
