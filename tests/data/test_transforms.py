"""Transforms and presets: hand-computed cases and property tests (hypothesis)."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from data.config import DataConfig, SSDAugConfig
from data.photometric import PhotometricDistort, adjust_brightness, adjust_contrast, adjust_saturation_hue, pca_lighting
from data.presets import build_eval_transforms, build_train_transforms
from data.transforms import (Compose, Expand, HorizontalFlip, MinIoURandomCrop, Normalize, Resize,
                             ResizeShortSide, flip_boxes)

FAST = settings(max_examples=25, deadline=None)


@st.composite
def samples(draw, max_side=120):
    """A random uint8 BGR image and 1..6 valid boxes with distinct labels."""
    h = draw(st.integers(16, max_side))
    w = draw(st.integers(16, max_side))
    n = draw(st.integers(1, 6))
    boxes = []
    for _ in range(n):
        x0 = draw(st.floats(0, w - 2))
        y0 = draw(st.floats(0, h - 2))
        x1 = draw(st.floats(x0 + 1, w))
        y1 = draw(st.floats(y0 + 1, h))
        boxes.append([x0, y0, x1, y1])
    seed = draw(st.integers(0, 2**31))
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    target = {"boxes": np.array(boxes, np.float32), "labels": np.arange(n, dtype=np.int64),
              "crowd_boxes": np.array([[0, 0, w / 2, h / 2]], np.float32)}
    return image, target, seed


def _boxes_inside(boxes, h, w, tol=1e-3):
    return bool(np.all(boxes[:, :2] >= -tol) and np.all(boxes[:, 2] <= w + tol) and np.all(boxes[:, 3] <= h + tol))


@FAST
@given(samples())
def test_ssd_preset_boxes_inside_and_labels_kept(sample):
    image, target, seed = sample
    cfg = DataConfig(train_size=64)
    out, t = build_train_transforms(cfg)(image, target, np.random.default_rng(seed))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 64, 64) and out.dtype == torch.float32
    assert len(t["boxes"]) >= 1, "training transforms must never empty a non-empty target"
    assert _boxes_inside(t["boxes"], 64, 64) and _boxes_inside(t["crowd_boxes"], 64, 64)
    assert np.all(t["boxes"][:, 2] > t["boxes"][:, 0]) and np.all(t["boxes"][:, 3] > t["boxes"][:, 1])
    labels = t["labels"].tolist()
    assert len(set(labels)) == len(labels) and set(labels) <= set(range(len(target["labels"])))


@FAST
@given(samples())
def test_mmdet_variant_preset_also_valid(sample):
    image, target, seed = sample
    cfg = DataConfig(train_size=48, ssd=SSDAugConfig.mmdet(), normalize="rgb_mean_std")
    out, t = build_train_transforms(cfg)(image, target, np.random.default_rng(seed))
    assert out.shape == (3, 48, 48) and len(t["boxes"]) >= 1 and _boxes_inside(t["boxes"], 48, 48)


@FAST
@given(samples())
def test_flip_twice_is_identity(sample):
    image, target, _ = sample
    flip = HorizontalFlip(prob=1.0)
    once_img, once = flip(image, target)
    twice_img, twice = flip(once_img, once)
    np.testing.assert_array_equal(twice_img, image)
    np.testing.assert_allclose(twice["boxes"], target["boxes"], atol=1e-4)
    np.testing.assert_allclose(twice["crowd_boxes"], target["crowd_boxes"], atol=1e-4)
    assert not np.allclose(once_img, image) or image.shape[1] == 1 or np.array_equal(image, image[:, ::-1])


def test_flip_hand_computed():
    boxes = np.array([[10, 5, 30, 25]], np.float32)
    np.testing.assert_array_equal(flip_boxes(boxes, 100), [[70, 5, 90, 25]])
    image = np.zeros((2, 4, 3), np.uint8)
    image[:, 0] = 255  # first column white -> last column after the flip
    out, _ = HorizontalFlip(1.0)(image, {"boxes": boxes, "labels": np.zeros(1), "crowd_boxes": np.zeros((0, 4))})
    assert out[:, 3].min() == 255 and out[:, :3].max() == 0


@FAST
@given(samples(max_side=80), st.sampled_from([0.0, 0.1, 0.3, 0.7, 0.9]))
def test_crop_keeps_exactly_the_boxes_whose_centre_is_inside(sample, min_iou):
    image, target, seed = sample
    h, w = image.shape[:2]
    # Encode pixel coordinates in the image so the crop rectangle can be read back from the output.
    coords = np.zeros((h, w, 3), np.float32)
    coords[:, :, 0] = np.arange(w)[None, :]
    coords[:, :, 1] = np.arange(h)[:, None]
    out, t = MinIoURandomCrop([min_iou], require="any", max_rounds=3)(coords, target, np.random.default_rng(seed))
    x0, y0 = int(out[0, 0, 0]), int(out[0, 0, 1])
    x1, y1 = x0 + out.shape[1], y0 + out.shape[0]
    if out.shape[:2] == (h, w):  # no crop found: unchanged
        np.testing.assert_array_equal(t["boxes"], target["boxes"])
        return
    centres = (target["boxes"][:, :2] + target["boxes"][:, 2:]) / 2
    inside = (centres[:, 0] > x0) & (centres[:, 0] < x1) & (centres[:, 1] > y0) & (centres[:, 1] < y1)
    assert inside.any()
    np.testing.assert_array_equal(t["labels"], target["labels"][inside])
    expected = np.clip(target["boxes"][inside], [x0, y0, x0, y0], [x1, y1, x1, y1]) - [x0, y0, x0, y0]
    np.testing.assert_allclose(t["boxes"], expected, atol=1e-4)
    ious = _iou(target["boxes"], np.array([x0, y0, x1, y1], np.float32))
    assert ious.max() >= min_iou - 1e-6


def _iou(boxes, rect):
    lt = np.maximum(boxes[:, :2], rect[:2])
    rb = np.minimum(boxes[:, 2:], rect[2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (area + np.prod(rect[2:] - rect[:2]) - inter)


def test_crop_require_all_vs_any():
    # One box covers the image, one is tiny: IoU >= 0.9 with *all* boxes is impossible, with *some* box it is not.
    image = np.zeros((100, 100, 3), np.float32)
    target = {"boxes": np.array([[0, 0, 100, 100], [45, 45, 47, 47]], np.float32),
              "labels": np.array([0, 1]), "crowd_boxes": np.zeros((0, 4), np.float32)}
    out_all, t_all = MinIoURandomCrop([0.9], require="all", max_rounds=5)(image, target, np.random.default_rng(0))
    assert out_all.shape == (100, 100, 3) and len(t_all["boxes"]) == 2
    hits = 0
    for seed in range(20):
        out_any, t_any = MinIoURandomCrop([0.9], require="any")(image, target, np.random.default_rng(seed))
        if out_any.shape != image.shape:
            hits += 1
            assert out_any.shape[0] * out_any.shape[1] >= 0.9 * 100 * 100 - 1e-6
    assert hits > 0


@FAST
@given(samples(max_side=60))
def test_expand_then_crop_never_empties_targets(sample):
    image, target, seed = sample
    aug = Compose([Expand(1.0, (1.0, 4.0), fill=(1, 2, 3)), MinIoURandomCrop([0.0, 0.1, 0.3, 0.7, 0.9])])
    for k in range(4):
        out, t = aug(image.astype(np.float32), target, np.random.default_rng((seed, k)))
        assert len(t["boxes"]) >= 1 and len(t["labels"]) == len(t["boxes"])
        assert _boxes_inside(t["boxes"], *out.shape[:2])


def test_expand_hand_computed():
    image = np.full((2, 3, 3), 9, np.uint8)
    target = {"boxes": np.array([[0, 0, 3, 2]], np.float32), "labels": np.zeros(1), "crowd_boxes": np.zeros((0, 4), np.float32)}
    out, t = Expand(1.0, (3.0, 3.0), fill=(1, 2, 3))(image, target, np.random.default_rng(0))
    assert out.shape == (6, 9, 3)
    x0, y0 = int(t["boxes"][0, 0]), int(t["boxes"][0, 1])
    np.testing.assert_array_equal(t["boxes"][0], [x0, y0, x0 + 3, y0 + 2])
    assert (out[y0:y0 + 2, x0:x0 + 3] == 9).all()
    assert (out == 9).all(axis=2).sum() == 6 and (out[out[:, :, 0] != 9] == [1, 2, 3]).all()


@FAST
@given(st.integers(0, 2**31), st.sampled_from(["pca", "channel_swap", "none"]))
def test_photometric_clip_option_keeps_dtype_and_range(seed, lighting):
    image = np.random.default_rng(seed).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    aug = PhotometricDistort(brightness_prob=1, brightness_delta=255, contrast_prob=1, contrast_range=(0, 3),
                             saturation_prob=1, saturation_range=(0, 3), hue_prob=1, hue_delta=180,
                             lighting=lighting, lighting_prob=1, lighting_std=5.0, clip=True)
    out, _ = aug(image, {}, np.random.default_rng(seed))
    assert out.dtype == np.float32 and out.shape == image.shape
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_photometric_default_does_not_clip_as_the_releases():
    image = np.full((4, 4, 3), 250, np.uint8)
    aug = PhotometricDistort(brightness_prob=1, brightness_delta=32, contrast_prob=0, saturation_prob=0,
                             hue_prob=0, lighting="none")
    assert not aug.clip and not DataConfig().ssd.photometric_clip
    out, _ = aug(image, {}, np.random.default_rng(1))
    rng = np.random.default_rng(1)
    rng.random()  # the first draw decides whether brightness fires (p = 1), the second is its delta
    delta = rng.uniform(-32, 32)
    assert delta > 5
    np.testing.assert_allclose(out, 250 + delta, atol=1e-3)  # no clip at 255 when delta > 5
    clipped, _ = PhotometricDistort(brightness_prob=1, contrast_prob=0, saturation_prob=0, hue_prob=0,
                                    lighting="none", clip=True)(image, {}, np.random.default_rng(1))
    np.testing.assert_allclose(clipped, min(250 + delta, 255), atol=1e-3)


def test_photometric_ops_hand_computed():
    px = np.array([[[10.0, 100.0, 250.0]]], np.float32)
    np.testing.assert_allclose(adjust_brightness(px.copy(), 10), [[[20, 110, 260]]])  # released: no clipping
    np.testing.assert_allclose(adjust_brightness(px.copy(), 10, clip=True), [[[20, 110, 255]]])
    np.testing.assert_allclose(adjust_contrast(px.copy(), 0.5), [[[5, 50, 125]]])
    np.testing.assert_allclose(adjust_contrast(px.copy(), 2.0), [[[20, 200, 500]]])
    np.testing.assert_allclose(adjust_contrast(px.copy(), 2.0, clip=True), [[[20, 200, 255]]])
    # saturation x2 of S = 0.96: 1.92 unclipped (channels leave [0, 255]) vs 1 clipped (min channel 0;
    # hue 22.5 deg puts G at V * 22.5 / 60)
    assert adjust_saturation_hue(px.copy(), 2.0, None).min() < 0
    np.testing.assert_allclose(adjust_saturation_hue(px.copy(), 2.0, None, clip=True), [[[0, 250 * 0.375, 250]]],
                               atol=1e-2)
    np.testing.assert_allclose(adjust_saturation_hue(px.copy(), 1.0, 0.0), px, atol=1e-3)
    np.testing.assert_allclose(adjust_saturation_hue(px.copy(), 1.0, 360.0), px, atol=1e-3)
    grey = adjust_saturation_hue(px.copy(), 0.0, None)  # saturation 0 -> grey at V = max channel
    np.testing.assert_allclose(grey, [[[250, 250, 250]]], atol=1e-3)
    out = pca_lighting(np.full((1, 1, 3), 100, np.float32), np.array([0.1, 0.0, 0.0]))
    np.testing.assert_allclose(out[0, 0], 100 + 0.1 * 55.46 * np.array([-0.5836, -0.5808, -0.5675]), atol=1e-3)


def test_resize_hand_computed():
    image = np.zeros((100, 200, 3), np.uint8)
    target = {"boxes": np.array([[20, 10, 60, 50]], np.float32), "labels": np.zeros(1),
              "crowd_boxes": np.array([[0, 0, 200, 100]], np.float32)}
    out, t = Resize((50, 50), ["nearest", "area"])(image, target, np.random.default_rng(0))
    assert out.shape == (50, 50, 3) and t["scale"] == (0.5, 0.25)
    np.testing.assert_allclose(t["boxes"], [[5, 5, 15, 25]])
    np.testing.assert_allclose(t["crowd_boxes"], [[0, 0, 50, 50]])


@FAST
@given(st.integers(20, 900), st.integers(20, 900), st.integers(0, 2**31))
def test_eval_transforms_map_boxes_back_exactly(h, w, seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, [w - 2, h - 2], (4, 2))
    wh = rng.uniform(1, 50, (4, 2))
    boxes = np.concatenate([xy, np.minimum(xy + wh, [w, h])], axis=1).astype(np.float32)
    target = {"boxes": boxes, "labels": np.arange(4), "crowd_boxes": np.zeros((0, 4), np.float32)}
    cfg = DataConfig(eval_short_side=500, eval_max_size=833)
    out, t = build_eval_transforms(cfg)(np.zeros((h, w, 3), np.uint8), target)
    s = t["scale"]
    assert isinstance(s, float)
    assert out.shape[1:] == (round(h * s), round(w * s))
    assert min(out.shape[1:]) <= 500 + 1 and max(out.shape[1:]) <= 833 + 1
    assert abs(min(h, w) * s - 500) < 1e-6 or abs(max(h, w) * s - 833) < 1e-6
    np.testing.assert_allclose(t["boxes"] / s, boxes, rtol=1e-5, atol=1e-3)


def test_eval_resize_hand_computed():
    target = {"boxes": np.array([[0, 0, 640, 480]], np.float32), "labels": np.zeros(1), "crowd_boxes": np.zeros((0, 4), np.float32)}
    out, t = ResizeShortSide(500, 833)(np.zeros((480, 640, 3), np.uint8), target)
    assert out.shape[:2] == (500, 667) and t["scale"] == pytest.approx(500 / 480)
    out, t = ResizeShortSide(500, 833)(np.zeros((100, 1000, 3), np.uint8), dict(target))
    assert out.shape[:2] == (83, 833) and t["scale"] == pytest.approx(0.833)


def test_normalize_modes_hand_computed():
    image = np.zeros((1, 1, 3), np.uint8)
    image[0, 0] = (110, 120, 130)  # B, G, R
    bgr, _ = Normalize((102.98, 115.95, 122.77), (1, 1, 1), to_rgb=False)(image, {})
    np.testing.assert_allclose(bgr[:, 0, 0].numpy(), [110 - 102.98, 120 - 115.95, 130 - 122.77], rtol=1e-5)
    rgb, _ = Normalize((103.53, 116.28, 123.675), (57.375, 57.12, 58.395), to_rgb=True)(image, {})
    expected = [(130 - 123.675) / 58.395, (120 - 116.28) / 57.12, (110 - 103.53) / 57.375]  # R, G, B
    np.testing.assert_allclose(rgb[:, 0, 0].numpy(), expected, rtol=1e-5)


def test_same_generator_seed_same_output():
    image = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    target = {"boxes": np.array([[5, 5, 40, 30]], np.float32), "labels": np.zeros(1, np.int64),
              "crowd_boxes": np.zeros((0, 4), np.float32)}
    aug = build_train_transforms(DataConfig(train_size=32))
    a = aug(image, target, np.random.default_rng(7))
    b = aug(image, target, np.random.default_rng(7))
    torch.testing.assert_close(a[0], b[0])
    np.testing.assert_array_equal(a[1]["boxes"], b[1]["boxes"])
    outs = [aug(image, target, np.random.default_rng(s))[0] for s in range(8, 12)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
