"""Image decoding with explicit detection of truncated and corrupt files.

OpenCV alone decodes a truncated JPEG grey-filled, and a JPEG whose entropy-coded data is damaged with garbage
pixels: libjpeg only prints a warning to stderr. So completeness is checked on the bytes (`check_complete`), and
the decoder's stderr is captured around each decode (`_DecoderMessages`); a corruption warning makes the image bad.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Callable, TypeVar

import cv2
import numpy as np

from .errors import BadImageError

T = TypeVar("T")

_JPEG_SOI = b"\xff\xd8"
_JPEG_SOS = b"\xff\xda"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Ignore EXIF orientation: COCO boxes are given in the stored pixel order.
_DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
# libjpeg warnings (jerror.h) after which pixels are wrong; its other warnings (e.g. a bad ICC marker, an unknown
# JFIF revision) leave the pixels intact.
_CORRUPTION_WARNING = re.compile(r"^(Corrupt JPEG data: (?!bad ICC marker).*|Premature end of JPEG file"
                                 r"|Invalid SOS parameters for sequential JPEG|Inconsistent progression sequence.*)$")


class _DecoderMessages:
    """Captures what native code writes to file descriptor 2 (stderr) while a decode runs.

    libjpeg reports recoverable corruption only by printing to stderr. Redirecting fd 2 to a per-process
    scratch file costs a few system calls per image (no measurable slowdown, see BENCHMARKS.md). Decodes in one
    process are serialised by a lock while fd 2 is redirected; DataLoader workers are processes and unaffected.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = -1
        self._scratch: IO[bytes] | None = None

    def _scratch_fd(self) -> int:
        # a forked worker must not share its parent's scratch file (and its offset)
        if self._scratch is None or self._pid != os.getpid():
            self._scratch = tempfile.TemporaryFile(prefix="alrp-decoder-")
            self._pid = os.getpid()
        return self._scratch.fileno()

    def run(self, decode: Callable[[], T]) -> tuple[T, str]:
        """``(decode(), text written to stderr meanwhile)``; without a usable stderr, decodes uncaptured."""
        with self._lock:
            try:
                sys.stderr.flush()  # Python's pending output is not the decoder's
                saved = os.dup(2)
            except (OSError, ValueError, AttributeError):
                return decode(), ""
            scratch = self._scratch_fd()
            os.lseek(scratch, 0, os.SEEK_SET)
            os.ftruncate(scratch, 0)
            os.dup2(scratch, 2)
            try:
                result = decode()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            size = os.lseek(scratch, 0, os.SEEK_CUR)
            text = os.pread(scratch, size, 0).decode(errors="replace") if size else ""
        return result, text


_DECODER_MESSAGES = _DecoderMessages()


def _corruption(messages: str) -> str | None:
    """The first corruption warning in the decoder's output; other lines are passed on to stderr."""
    found, others = None, []
    for line in messages.splitlines():
        if _CORRUPTION_WARNING.match(line.strip()):
            found = found or line.strip()
        elif line.strip():
            others.append(line)
    if others:
        sys.stderr.write("\n".join(others) + "\n")
    return found


def check_complete(data: bytes) -> str | None:
    """Returns why an encoded JPEG/PNG is incomplete, or None when it ends properly.

    A JPEG must contain an end-of-image marker after its last start-of-scan (entropy-coded data cannot
    contain 0xFFD9); a PNG must contain its IEND chunk. Other formats are left to the decoder.
    """
    if not data:
        return "empty file"
    if data.startswith(_JPEG_SOI):
        if data.find(_JPEG_SOS) < 0:
            return "truncated JPEG (no start-of-scan marker)"
        # searched from the end: an end marker with no scan after it (a backward search for the last scan would
        # walk the whole entropy-coded data, ~0.2 ms per COCO image)
        last_eoi = data.rfind(_JPEG_EOI)
        if last_eoi < 0 or data.find(_JPEG_SOS, last_eoi) >= 0:
            return "truncated JPEG (no end-of-image marker)"
    elif data.startswith(_PNG_SIGNATURE):
        if data.rfind(b"IEND") < 0:
            return "truncated PNG (no IEND chunk)"
    return None


def decode_image(data: bytes, path: str = "<bytes>") -> np.ndarray:
    """Decodes JPEG/PNG bytes to a BGR uint8 array `(H, W, 3)`; raises BadImageError naming `path`."""
    problem = check_complete(data)
    if problem is not None:
        raise BadImageError(path, problem)
    image, messages = _DECODER_MESSAGES.run(lambda: cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _DECODE_FLAGS))
    if image is None:
        raise BadImageError(path, "cannot decode image (corrupt or unsupported format)")
    warning = _corruption(messages) if messages else None
    if warning is not None:
        raise BadImageError(path, f"corrupt image data (decoder: {warning})")
    return image


def read_image(path: str | Path, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Reads an image file as BGR uint8 `(H, W, 3)`.

    Args:
        path: image file.
        expected_hw: (height, width) from the annotation file; a mismatch raises (boxes would be wrong).

    Raises:
        BadImageError: missing, unreadable, truncated, corrupt, or of unexpected size.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadImageError(str(path), "image file not found") from None
    except OSError as err:
        raise BadImageError(str(path), f"cannot read image file ({err.strerror})") from None
    image = decode_image(data, str(path))
    if expected_hw is not None and tuple(image.shape[:2]) != tuple(expected_hw):
        raise BadImageError(str(path), f"image is {image.shape[0]}x{image.shape[1]} (h x w) but the annotation "
                                       f"file says {expected_hw[0]}x{expected_hw[1]}")
    return image
