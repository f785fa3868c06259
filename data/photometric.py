"""SSD photometric distortion on float32 BGR images in [0, 255] (values are clipped back to that range).

Order (AP-Loss ablation code and mmdet alike): brightness; then either contrast -> HSV(saturation, hue) or
HSV(saturation, hue) -> contrast; then PCA lighting noise (ablation) or a random channel swap (mmdet/SSD).
Each op fires with its own probability. Every draw comes from the `numpy.random.Generator` passed in.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .transforms import Sample, Target, _rng

# AlexNet PCA of ImageNet RGB pixels (0..255 units), as used by the AP-Loss ablation code.
PCA_EIGVAL = np.array([55.46, 4.794, 1.148])
PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                       [-0.5808, -0.0045, -0.8140],
                       [-0.5836, -0.6948, 0.4203]])
CHANNEL_PERMUTATIONS = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def _clip(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0.0, 255.0, out=image)


def adjust_brightness(image: np.ndarray, delta: float) -> np.ndarray:
    """Adds `delta` (pixel units) in place and clips."""
    image += np.float32(delta)
    return _clip(image)


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Multiplies by `factor` in place and clips."""
    image *= np.float32(factor)
    return _clip(image)


def adjust_saturation_hue(image: np.ndarray, saturation: float | None, hue: float | None) -> np.ndarray:
    """Scales HSV saturation by `saturation` (clipped to [0, 1]) and rotates hue by `hue` degrees (wrapped).

    Either may be None (skipped). Returns a new float32 BGR image in [0, 255].
    """
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)  # float32: H in [0, 360), S in [0, 1], V in [0, 255]
    if saturation is not None:
        s = hsv[:, :, 1]
        s *= np.float32(saturation)
        np.clip(s, 0.0, 1.0, out=s)
    if hue is not None:
        hch = hsv[:, :, 0]
        hch += np.float32(hue)
        np.mod(hch, np.float32(360.0), out=hch)
    return _clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR))


def pca_lighting(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """AlexNet lighting noise: adds `eigvec @ (alpha * eigval)` per channel (computed in RGB, applied to BGR)."""
    rgb = PCA_EIGVEC @ (alpha * PCA_EIGVAL)
    image += rgb[::-1].astype(np.float32)
    return _clip(image)


class PhotometricDistort:
    """The SSD photometric distortion (see module docstring); defaults are the AP-Loss ablation values."""

    def __init__(self, brightness_prob: float = 0.5, brightness_delta: float = 32.0,
                 contrast_prob: float = 0.5, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_prob: float = 0.5, saturation_range: Sequence[float] = (0.5, 1.5),
                 hue_prob: float = 0.5, hue_delta: float = 18.0, contrast_first_prob: float = 0.5,
                 lighting: str = "pca", lighting_prob: float = 0.5, lighting_std: float = 0.1) -> None:
        self.brightness_prob, self.brightness_delta = brightness_prob, brightness_delta
        self.contrast_prob, self.contrast_range = contrast_prob, tuple(contrast_range)
        self.saturation_prob, self.saturation_range = saturation_prob, tuple(saturation_range)
        self.hue_prob, self.hue_delta = hue_prob, hue_delta
        self.contrast_first_prob = contrast_first_prob
        self.lighting, self.lighting_prob, self.lighting_std = lighting, lighting_prob, lighting_std

    def __call__(self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None) -> Sample:
        """`image` `(H, W, 3)` BGR uint8 or float32 in [0, 255] -> float32 copy; `target` passes through."""
        rng = _rng(rng)
        image = image.astype(np.float32)  # always a copy; accepts uint8 input
        if rng.random() < self.brightness_prob:
            adjust_brightness(image, rng.uniform(-self.brightness_delta, self.brightness_delta))
        contrast_first = rng.random() < self.contrast_first_prob
        contrast = rng.uniform(*self.contrast_range) if rng.random() < self.contrast_prob else None
        saturation = rng.uniform(*self.saturation_range) if rng.random() < self.saturation_prob else None
        hue = rng.uniform(-self.hue_delta, self.hue_delta) if rng.random() < self.hue_prob else None
        if contrast is not None and contrast_first:
            adjust_contrast(image, contrast)
        if saturation is not None or hue is not None:
            image = adjust_saturation_hue(image, saturation, hue)
        if contrast is not None and not contrast_first:
            adjust_contrast(image, contrast)
        if self.lighting != "none" and rng.random() < self.lighting_prob:
            if self.lighting == "pca":
                image = pca_lighting(image, rng.normal(0.0, self.lighting_std, 3))
            else:
                perm = CHANNEL_PERMUTATIONS[int(rng.integers(len(CHANNEL_PERMUTATIONS)))]
                image = np.ascontiguousarray(image[:, :, list(perm)])
        return image, target
