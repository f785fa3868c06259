"""Image decoding with explicit detection of truncated files (OpenCV alone would decode them grey-filled)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import BadImageError

_JPEG_SOI = b"\xff\xd8"
_JPEG_SOS = b"\xff\xda"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Ignore EXIF orientation: COCO boxes are given in the stored pixel order.
_DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def check_complete(data: bytes) -> str | None:
    """Returns why an encoded JPEG/PNG is incomplete, or None when it ends properly.

    A JPEG must contain an end-of-image marker after its last start-of-scan (entropy-coded data cannot
    contain 0xFFD9); a PNG must contain its IEND chunk. Other formats are left to the decoder.
    """
    if not data:
        return "empty file"
    if data.startswith(_JPEG_SOI):
        last_sos = data.rfind(_JPEG_SOS)
        if last_sos < 0:
            return "truncated JPEG (no start-of-scan marker)"
        if data.find(_JPEG_EOI, last_sos) < 0:
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
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _DECODE_FLAGS)
    if image is None:
        raise BadImageError(path, "cannot decode image (corrupt or unsupported format)")
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
