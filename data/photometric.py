"""SSD photometric distortion on float32 BGR images in [0, 255].

Order (AP-Loss ablation code and mmdet alike): brightness; then either contrast -> HSV(saturation, hue) or
HSV(saturation, hue) -> contrast; then PCA lighting noise (ablation) or a random channel swap (mmdet/SSD).
Each op fires with its own probability. Every draw comes from the `numpy.random.Generator` passed in.

Clipping: neither release clips, so values may leave [0, 255] (and HSV saturation may exceed 1); with
`clip=True` every op clips its result back to [0, 255] (saturation to [0, 1]). As in both releases, the image
always goes through the BGR -> HSV -> BGR round trip (not the identity for pixels whose channels are all negative).
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
# All 6 orders, identity included: mmdet draws `numpy.random.permutation(3)`.
CHANNEL_PERMUTATIONS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def _clip(image: np.ndarray, clip: bool) -> np.ndarray:
    return np.clip(image, 0.0, 255.0, out=image) if clip else image


def adjust_brightness(image: np.ndarray, delta: float, clip: bool = False) -> np.ndarray:
    """Adds `delta` (pixel units) in place (then clips to [0, 255] if `clip`)."""
    image += np.float32(delta)
    return _clip(image, clip)


def adjust_contrast(image: np.ndarray, factor: float, clip: bool = False) -> np.ndarray:
    """Multiplies by `factor` in place (then clips to [0, 255] if `clip`)."""
    image *= np.float32(factor)
    return _clip(image, clip)


def adjust_saturation_hue(image: np.ndarray, saturation: float | None, hue: float | None,
                          clip: bool = False) -> np.ndarray:
    """Scales HSV saturation by `saturation` and rotates hue by `hue` degrees (wrapped to [0, 360)).

    Either may be None (skipped). With `clip`, saturation is clipped to [0, 1] and the result to [0, 255].
    Returns a new float32 BGR image.
    """
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)  # float32: H in [0, 360), S in [0, 1], V in [0, 255] for inputs in range
    if saturation is not None:
        s = hsv[:, :, 1]
        s *= np.float32(saturation)
        if clip:
            np.clip(s, 0.0, 1.0, out=s)
    if hue is not None:
        hch = hsv[:, :, 0]
        hch += np.float32(hue)
        np.mod(hch, np.float32(360.0), out=hch)
    return _clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR), clip)


def pca_lighting(image: np.ndarray, alpha: np.ndarray, clip: bool = False) -> np.ndarray:
    """AlexNet lighting noise: adds `eigvec @ (alpha * eigval)` per channel (computed in RGB, applied to BGR)."""
    rgb = PCA_EIGVEC @ (alpha * PCA_EIGVAL)
    image += rgb[::-1].astype(np.float32)
    return _clip(image, clip)


class PhotometricDistort:
    """The SSD photometric distortion (see module docstring); defaults are the AP-Loss ablation values."""

    def __init__(self, brightness_prob: float = 0.5, brightness_delta: float = 32.0,
                 contrast_prob: float = 0.5, contrast_range: Sequence[float] = (0.5, 1.5),
                 saturation_prob: float = 0.5, saturation_range: Sequence[float] = (0.5, 1.5),
                 hue_prob: float = 0.5, hue_delta: float = 18.0, contrast_first_prob: float = 0.5,
                 lighting: str = "pca", lighting_prob: float = 0.5, lighting_std: float = 0.1,
                 clip: bool = False) -> None:
        self.brightness_prob, self.brightness_delta = brightness_prob, brightness_delta
        self.contrast_prob, self.contrast_range = contrast_prob, tuple(contrast_range)
        self.saturation_prob, self.saturation_range = saturation_prob, tuple(saturation_range)
        self.hue_prob, self.hue_delta = hue_prob, hue_delta
        self.contrast_first_prob = contrast_first_prob
        self.lighting, self.lighting_prob, self.lighting_std = lighting, lighting_prob, lighting_std
        self.clip = clip

    def __call__(self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None) -> Sample:
        """`image` `(H, W, 3)` BGR uint8 or float32 in [0, 255] -> float32 copy; `target` passes through."""
        clip = self.clip
        rng = _rng(rng)
        image = image.astype(np.float32)  # always a copy; accepts uint8 input
        if rng.random() < self.brightness_prob:
            adjust_brightness(image, rng.uniform(-self.brightness_delta, self.brightness_delta), clip)
        contrast_first = rng.random() < self.contrast_first_prob
        contrast = rng.uniform(*self.contrast_range) if rng.random() < self.contrast_prob else None
        saturation = rng.uniform(*self.saturation_range) if rng.random() < self.saturation_prob else None
        hue = rng.uniform(-self.hue_delta, self.hue_delta) if rng.random() < self.hue_prob else None
        if contrast is not None and contrast_first:
            adjust_contrast(image, contrast, clip)
        image = adjust_saturation_hue(image, saturation, hue, clip)
        if contrast is not None and not contrast_first:
            adjust_contrast(image, contrast, clip)
        if self.lighting != "none" and rng.random() < self.lighting_prob:
            if self.lighting == "pca":
                image = pca_lighting(image, rng.normal(0.0, self.lighting_std, 3), clip)
            else:
                perm = CHANNEL_PERMUTATIONS[int(rng.integers(len(CHANNEL_PERMUTATIONS)))]
                image = np.ascontiguousarray(image[:, :, list(perm)])
        return image, target
