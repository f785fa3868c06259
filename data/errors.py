"""Errors raised by the data package: each message names the file and the offending key or id."""
from typing import Optional


class DatasetError(ValueError):
    """A dataset or annotation file is missing or malformed (fatal; the message names file and id)."""


class BadImageError(DatasetError):
    """An image file is missing, unreadable, truncated or has the wrong size.

    Attributes:
        path: the image file.
        reason: short human-readable cause (e.g. ``"truncated JPEG (no end-of-image marker)"``).
    """

    def __init__(self, path: str, reason: Optional[str] = None) -> None:
        # A single argument is a full message (DataLoader re-raises worker errors as `type(msg)`).
        super().__init__(str(path) if reason is None else f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason or ""
