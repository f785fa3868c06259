"""DataConfig validation and the mmdet augmentation variant."""
import pytest

from data import DataConfig, SSDAugConfig
from data.presets import normalization


def test_defaults_follow_the_ablation_code():
    cfg = DataConfig()
    assert (cfg.train_size, cfg.eval_short_side, cfg.eval_max_size, cfg.pad_divisor) == (512, 500, 833, 32)
    assert cfg.ssd.crop_modes == [None, 0.1, 0.3, 0.7, 0.9, 0.0] and cfg.ssd.crop_require == "any"
    assert cfg.ssd.lighting == "pca" and cfg.ssd.expand_ratio == [1.0, 4.0] and len(cfg.ssd.interpolations) == 5
    assert not cfg.ssd.photometric_clip and cfg.aspect_grouping
    assert normalization(cfg.normalize) == ((102.98, 115.95, 122.77), (1.0, 1.0, 1.0), False)


def test_mmdet_variant():
    mm = SSDAugConfig.mmdet()
    assert mm.lighting == "channel_swap" and 0.5 in mm.crop_modes and mm.crop_require == "all"
    assert mm.interpolations == ["linear"]


@pytest.mark.parametrize("kwargs,key", [
    ({"on_bad_image": "ignore"}, "on_bad_image"),
    ({"normalize": "rgb"}, "normalize"),
    ({"train_preset": "mosaic"}, "train_preset"),
    ({"eval_max_size": 400}, "eval_max_size"),
    ({"pad_divisor": 0}, "pad_divisor"),
    ({"num_workers": -1}, "num_workers"),
])
def test_bad_values_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=f"^data.{key}: "):
        DataConfig(**kwargs)


@pytest.mark.parametrize("kwargs,key", [
    ({"flip_prob": 1.5}, "ssd.flip_prob"),
    ({"contrast_range": [1.5, 0.5]}, "ssd.contrast_range"),
    ({"crop_modes": [None, 1.2]}, "ssd.crop_modes"),
    ({"crop_require": "most"}, "ssd.crop_require"),
    ({"interpolations": ["bilinear"]}, "ssd.interpolations"),
    ({"lighting": "fancy"}, "ssd.lighting"),
    ({"expand_ratio": [0.5, 2.0]}, "ssd.expand_ratio"),
])
def test_bad_augmentation_values_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=f"^data.{key}: "):
        SSDAugConfig(**kwargs)


def test_nested_section_from_mapping():
    cfg = DataConfig(ssd={"flip_prob": 0.0})
    assert isinstance(cfg.ssd, SSDAugConfig) and cfg.ssd.flip_prob == 0.0


def test_split_folder_maps_train_and_val_to_the_configured_folders():
    cfg = DataConfig(train_split="train", val_split="minival2014")
    assert cfg.split_folder("train") == "train" and cfg.split_folder("val") == "minival2014"
    with pytest.raises(ValueError, match="'test'"):
        cfg.split_folder("test")
