"""Errors raised by the data package: each message names the file and the offending key or id."""
from __future__ import annotations

import re


class DatasetError(ValueError):
    """A dataset or annotation file is missing or malformed (fatal; the message names file and id)."""


class BadImageError(DatasetError):
    """An image file is missing, unreadable, truncated or has the wrong size.

    Attributes:
        path: the image file.
        reason: short human-readable cause (e.g. ``"truncated JPEG (no end-of-image marker)"``).
    """

    def __init__(self, path: str, reason: str | None = None) -> None:
        # A single argument is a full message (DataLoader re-raises worker errors as `type(msg)`).
        super().__init__(str(path) if reason is None else f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason or ""


_WORKER_HEADER = "in DataLoader worker process"
_LAST_LINE = re.compile(r"^[\w.]*(?:Error|Exception): (.*)$")


def error_message(err: BaseException) -> str:
    """The one-line message of `err`, without the traceback a DataLoader worker folds into re-raised errors.

    A `DatasetError` raised inside a worker reaches the main process as ``"Caught BadImageError in DataLoader
    worker process 0.\\nOriginal Traceback ...\\ndata.errors.BadImageError: <file>: <reason>"``; this returns
    ``"<file>: <reason>"``. Other messages are returned unchanged.
    """
    text = str(err)
    if _WORKER_HEADER not in text.split("\n", 1)[0]:
        return text
    last = [line for line in text.strip().splitlines() if line.strip()][-1].strip()
    match = _LAST_LINE.match(last)
    return match.group(1) if match else last
