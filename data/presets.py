"""Named transform presets: `ssd` (training, AP-Loss style), `flip`, `none`, and `eval`."""
from __future__ import annotations


from alrp.validation import ConfigValueError

from .config import DataConfig
from .photometric import PhotometricDistort
from .transforms import Compose, Expand, HorizontalFlip, MinIoURandomCrop, Normalize, Resize, ResizeShortSide

# Pixel statistics in BGR order, 0..255 units.
BGR_MEAN_ABLATION = (102.98, 115.95, 122.77)  # AP-Loss ablation code: subtract mean only
BGR_MEAN_MMDET = (103.53, 116.28, 123.675)  # mmdet / torchvision ImageNet statistics (RGB 123.675, 116.28, 103.53)
BGR_STD_MMDET = (57.375, 57.12, 58.395)


def normalization(mode: str) -> tuple[tuple[float, ...], tuple[float, ...], bool]:
    """Returns (mean BGR, std BGR, to_rgb) for `DataConfig.normalize`.

    'bgr_mean': output channels B, G, R minus the ablation-code mean, std 1.
    'rgb_mean_std': output channels R, G, B, (x - mean) / std with ImageNet statistics.
    """
    if mode == "bgr_mean":
        return BGR_MEAN_ABLATION, (1.0, 1.0, 1.0), False
    if mode == "rgb_mean_std":
        return BGR_MEAN_MMDET, BGR_STD_MMDET, True
    raise ConfigValueError("data.normalize", f"unknown mode {mode!r}")


def build_train_transforms(cfg: DataConfig) -> Compose:
    """Training preset `cfg.train_preset`, output `cfg.train_size`² (aspect ignored).

    'ssd': photometric -> expand -> min-IoU crop -> resize -> flip -> normalise. The flip runs after the
    resize (the two commute exactly for boxes and up to interpolation rounding for pixels) so that it mirrors
    the small output instead of a large crop.
    """
    mean, std, to_rgb = normalization(cfg.normalize)
    size = (cfg.train_size, cfg.train_size)
    a = cfg.ssd
    normalize = Normalize(mean, std, to_rgb)
    if cfg.train_preset == "ssd":
        return Compose([
            PhotometricDistort(a.brightness_prob, a.brightness_delta, a.contrast_prob, a.contrast_range,
                               a.saturation_prob, a.saturation_range, a.hue_prob, a.hue_delta,
                               a.contrast_first_prob, a.lighting, a.lighting_prob, a.lighting_std,
                               a.photometric_clip),
            Expand(a.expand_prob, a.expand_ratio, fill=mean),
            MinIoURandomCrop(a.crop_modes, a.crop_require, a.crop_trials, a.crop_scale, a.crop_aspect),
            Resize(size, a.interpolations),
            HorizontalFlip(a.flip_prob),
            normalize,
        ])
    if cfg.train_preset == "flip":
        return Compose([Resize(size), HorizontalFlip(a.flip_prob), normalize])
    if cfg.train_preset == "none":
        return Compose([Resize(size), normalize])
    raise ConfigValueError("data.train_preset", f"unknown preset {cfg.train_preset!r}")


def build_eval_transforms(cfg: DataConfig) -> Compose:
    """Evaluation preset: short side `eval_short_side`, long side <= `eval_max_size`, normalise."""
    mean, std, to_rgb = normalization(cfg.normalize)
    return Compose([ResizeShortSide(cfg.eval_short_side, cfg.eval_max_size), Normalize(mean, std, to_rgb)])
