"""The one validation vocabulary of the config sections (``data``, ``model``, ``loss``, ``train``, ``eval``).

Every check raises `ConfigValueError(key, message)` with the full dotted key (``model.backbone.name``); the config
loader shows it as ``<file that set the key>: <key>: <message>``. Choices read ``'x' is not one of ['a', 'b']``,
ranges ``v must be in [low, high]``.
"""
from __future__ import annotations

from typing import Sequence


class ConfigValueError(ValueError):
    """A config value outside its allowed set: ``key`` (dotted) and ``message``."""

    def __init__(self, key: str, message: str) -> None:
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


def check(ok: bool, key: str, message: str) -> None:
    """Raises `ConfigValueError(key, message)` unless ``ok``."""
    if not ok:
        raise ConfigValueError(key, message)


def check_choice(key: str, value: object, choices: Sequence[object]) -> None:
    check(value in choices, key, f"{value!r} is not one of {list(choices)}")


def check_range(key: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    """``low <= value <= high`` (``low < value`` with ``low_open``)."""
    ok = (value > low if low_open else value >= low) and value <= high
    check(ok, key, f"{value!r} must be in {'(' if low_open else '['}{low}, {high}]")
