"""`DataConfig`: the `data` section of the run config (dataset location, presets, loader, augmentation).

Defaults follow the AP-Loss ablation code (see `../shared/docs/reference-settings.md`, section Data);
`SSDAugConfig.mmdet()` gives the mmdetection / standard-SSD variant of the augmentation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from alrp.validation import check, check_choice

INTERPOLATIONS = ("linear", "area", "nearest", "cubic", "lanczos4")
LIGHTING_MODES = ("pca", "channel_swap", "none")
NORMALIZE_MODES = ("bgr_mean", "rgb_mean_std")
TRAIN_PRESETS = ("ssd", "flip", "none")


def _check_interval(value: list[float], key: str, lo: float, hi: float) -> None:
    check(len(value) == 2, key, f"expected [low, high], got {value!r}")
    check(lo <= value[0] <= value[1] <= hi, key, f"need {lo} <= low <= high <= {hi}, got {value!r}")


def _check_prob(value: float, key: str) -> None:
    check(0.0 <= value <= 1.0, key, f"probability must be in [0, 1], got {value!r}")


@dataclass
class SSDAugConfig:
    """Parameters of the `ssd` training preset (photometric -> expand -> min-IoU crop -> flip -> resize).

    Defaults: AP-Loss ablation code. Units: brightness in pixel values (0..255), hue in degrees, contrast and
    saturation as multiplicative factors, expand ratio as the side of the canvas over the image side.
    `crop_modes` entries: `null` keeps the whole image, a float is the minimum IoU a crop must reach with the
    ground truth (`0.0` = any crop); one mode is drawn uniformly per image.
    """

    brightness_prob: float = 0.5
    brightness_delta: float = 32.0
    contrast_prob: float = 0.5
    contrast_range: list[float] = field(default_factory=lambda: [0.5, 1.5])
    saturation_prob: float = 0.5
    saturation_range: list[float] = field(default_factory=lambda: [0.5, 1.5])
    hue_prob: float = 0.5
    hue_delta: float = 18.0
    contrast_first_prob: float = 0.5  # contrast before (else after) the HSV ops
    lighting: str = "pca"  # 'pca' (AlexNet lighting noise) | 'channel_swap' (mmdet/SSD) | 'none'
    lighting_prob: float = 0.5
    lighting_std: float = 0.1
    photometric_clip: bool = False  # clip to [0, 255] after every op (ours before); neither release clips
    expand_prob: float = 0.5
    expand_ratio: list[float] = field(default_factory=lambda: [1.0, 4.0])
    crop_modes: list[float | None] = field(default_factory=lambda: [None, 0.1, 0.3, 0.7, 0.9, 0.0])
    crop_require: str = "any"  # 'any': some box reaches the IoU (ablation) | 'all': every box (mmdet/SSD)
    crop_trials: int = 50
    crop_scale: list[float] = field(default_factory=lambda: [0.3, 1.0])  # crop side / image side
    crop_aspect: list[float] = field(default_factory=lambda: [0.5, 2.0])  # crop h / w
    flip_prob: float = 0.5
    interpolations: list[str] = field(default_factory=lambda: list(INTERPOLATIONS))

    @classmethod
    def mmdet(cls) -> "SSDAugConfig":
        """The mmdetection release / standard SSD variant (channel swap, mode 0.5, all boxes reach the IoU)."""
        return cls(lighting="channel_swap", crop_modes=[None, 0.1, 0.3, 0.5, 0.7, 0.9, 0.0],
                   crop_require="all", interpolations=["linear"])

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation", "hue", "contrast_first", "lighting", "expand", "flip"):
            _check_prob(getattr(self, f"{name}_prob"), f"data.ssd.{name}_prob")
        check(0.0 <= self.brightness_delta <= 255.0, "data.ssd.brightness_delta", "must be in [0, 255]")
        check(0.0 <= self.hue_delta <= 180.0, "data.ssd.hue_delta", "must be in [0, 180] degrees")
        _check_interval(self.contrast_range, "data.ssd.contrast_range", 0.0, float("inf"))
        _check_interval(self.saturation_range, "data.ssd.saturation_range", 0.0, float("inf"))
        check_choice("data.ssd.lighting", self.lighting, LIGHTING_MODES)
        check(self.lighting_std >= 0.0, "data.ssd.lighting_std", "must be >= 0")
        _check_interval(self.expand_ratio, "data.ssd.expand_ratio", 1.0, float("inf"))
        check(len(self.crop_modes) > 0, "data.ssd.crop_modes", "must not be empty")
        for mode in self.crop_modes:
            check(mode is None or 0.0 <= mode <= 1.0, "data.ssd.crop_modes",
                  f"entries are null or an IoU in [0, 1], got {mode!r}")
        check_choice("data.ssd.crop_require", self.crop_require, ("any", "all"))
        check(self.crop_trials >= 1, "data.ssd.crop_trials", "must be >= 1")
        _check_interval(self.crop_scale, "data.ssd.crop_scale", 0.0, 1.0)
        check(self.crop_scale[1] > 0.0, "data.ssd.crop_scale", "high must be > 0")
        _check_interval(self.crop_aspect, "data.ssd.crop_aspect", 0.0, float("inf"))
        check(len(self.interpolations) > 0, "data.ssd.interpolations", "must not be empty")
        for name in self.interpolations:
            check_choice("data.ssd.interpolations", name, INTERPOLATIONS)


@dataclass
class DataConfig:
    """Dataset location, presets and loader settings.

    COCO layout: `<root>/annotations/instances_<split>.json` and images in `<root>/<split>/`.
    Sizes in pixels: training resizes to `train_size`² ignoring aspect; evaluation resizes the short side to
    `eval_short_side` with the long side capped at `eval_max_size`; batches are padded to `pad_divisor`.
    """

    root: str = "datasets/coco"
    train_split: str = "train2017"
    val_split: str = "val2017"
    train_preset: str = "ssd"  # 'ssd' | 'flip' (flip + resize) | 'none' (resize only)
    train_size: int = 512
    eval_short_side: int = 500
    eval_max_size: int = 833
    pad_divisor: int = 32  # both releases; P7's stride (128) needs no more (feature sizes are ceil(size / s))
    num_workers: int = 2
    pin_memory: bool = True
    on_bad_image: str = "error"  # 'error' | 'skip' (counted, reported by dataset.bad_image_report())
    aspect_grouping: bool = True  # eval batches of landscape-only / portrait-only images (less padding)
    normalize: str = "bgr_mean"  # 'bgr_mean' (ablation code) | 'rgb_mean_std' (mmdet, torchvision weights)
    ssd: SSDAugConfig = field(default_factory=SSDAugConfig)

    def __post_init__(self) -> None:
        if isinstance(self.ssd, dict):  # tolerate a plain mapping (e.g. from YAML) for the nested section
            self.ssd = SSDAugConfig(**self.ssd)
        check(bool(self.root), "data.root", "must not be empty")
        check_choice("data.train_preset", self.train_preset, TRAIN_PRESETS)
        for key in ("train_size", "eval_short_side", "eval_max_size", "pad_divisor"):
            check(getattr(self, key) >= 1, f"data.{key}", "must be >= 1")
        check(self.eval_max_size >= self.eval_short_side, "data.eval_max_size", "must be >= eval_short_side")
        check(self.num_workers >= 0, "data.num_workers", "must be >= 0")
        check_choice("data.on_bad_image", self.on_bad_image, ("error", "skip"))
        check_choice("data.normalize", self.normalize, NORMALIZE_MODES)

    def split_folder(self, split: str) -> str:
        """The split folder/annotation name of `split` ('train' or 'val'), e.g. 'val' -> `val_split` ('val2017')."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return self.train_split if split == "train" else self.val_split
