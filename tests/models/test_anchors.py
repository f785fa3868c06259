"""Anchor generator: hand-computed table, counts per level, caching, level recognition."""
import math

import pytest
import torch

from models.anchors import AnchorGenerator, feature_sizes

R = 22.627417  # 32 / sqrt(2): half side pieces of the sqrt(2)-scaled / ratio-changed anchors at stride 8
H = R / 2


def default_generator(**kw) -> AnchorGenerator:
    args = dict(strides=[8, 16, 32, 64, 128], base_scale=4, scales=[1, 2 ** 0.5], ratios=[0.5, 1, 2])
    args.update(kw)
    return AnchorGenerator(**args)


def test_anchor_table_for_a_1x2_map_matches_hand_computed_numbers():
    gen = AnchorGenerator(strides=[8], base_scale=4, scales=[1, 2 ** 0.5], ratios=[0.5, 1, 2])
    anchors, counts = gen.grid_anchors([(1, 2)], torch.device("cpu"))
    # cell (0, 0) has centre (4, 4); base side 32; ratio = h / w with the area kept; ratio-major, then scale
    cell0 = torch.tensor([
        [4 - R, 4 - H, 4 + R, 4 + H],  # ratio 0.5, scale 1: w 45.25, h 22.63
        [-28, -12, 36, 20],  # ratio 0.5, scale sqrt 2: w 64, h 32
        [-12, -12, 20, 20],  # ratio 1, scale 1: 32 x 32
        [4 - R, 4 - R, 4 + R, 4 + R],  # ratio 1, scale sqrt 2: 45.25 x 45.25
        [4 - H, 4 - R, 4 + H, 4 + R],  # ratio 2, scale 1
        [-12, -28, 20, 36],  # ratio 2, scale sqrt 2: w 32, h 64
    ])
    expected = torch.cat([cell0, cell0 + torch.tensor([8.0, 0, 8, 0])])  # cell (0, 1): centre (12, 4)
    assert counts == (12,)
    torch.testing.assert_close(anchors, expected, atol=1e-4, rtol=0)


def test_areas_are_kept_across_ratios():
    anchors = default_generator().cell_anchors(16)
    areas = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    torch.testing.assert_close(areas, torch.tensor([64.0 ** 2, 2 * 64.0 ** 2] * 3, dtype=torch.float64))


def test_512_input_has_32736_anchors_with_six_per_location():
    gen = default_generator()
    anchors = gen((512, 512), torch.device("cpu"))
    assert gen.num_anchors_per_location == 6
    assert anchors.boxes.shape == (32736, 4)
    assert anchors.level_counts == (6 * 64 * 64, 6 * 32 * 32, 6 * 16 * 16, 6 * 8 * 8, 6 * 4 * 4)
    assert anchors.boxes.dtype == torch.float32


def test_feature_sizes_round_up():
    assert feature_sizes((100, 130), [8, 16, 32, 64, 128]) == [(13, 17), (7, 9), (4, 5), (2, 3), (1, 2)]


def test_cache_returns_the_same_tensor_per_size_and_device():
    gen = default_generator()
    a = gen((256, 384), torch.device("cpu"))
    assert gen((256, 384), torch.device("cpu")) is a
    assert gen((384, 256), torch.device("cpu")) is not a


@pytest.mark.parametrize("size", [(100, 130), (128, 128), (333, 257)])
@pytest.mark.parametrize("kw", [{}, {"ratios": [1.0], "base_scale": 8.0}, {"base_scale": 3.0, "scales": [1.3, 1.0]}])
def test_level_counts_are_the_feature_cells_times_a(size, kw):
    gen = default_generator(**kw)
    anchors = gen(size, torch.device("cpu"))
    a = gen.num_anchors_per_location
    assert anchors.level_counts == tuple(h * w * a for h, w in feature_sizes(size, gen.strides))
    assert sum(anchors.level_counts) == anchors.boxes.shape[0]


def test_centres_tile_the_image():
    gen = default_generator(ratios=[1.0], scales=[1.0])
    anchors = gen((64, 64), torch.device("cpu")).boxes
    p3 = anchors[:64]
    centres = (p3[:, :2] + p3[:, 2:]) / 2
    assert centres[:, 0].min() == 4 and centres[:, 0].max() == 60  # (x + 0.5) * 8
    assert math.isclose(float((p3[0, 2] - p3[0, 0])), 32.0)


def test_center_offset_zero_puts_centres_on_cell_corners_as_mmdet():
    gen = default_generator(ratios=[1.0], scales=[1.0], center_offset=0.0)
    p3 = gen((64, 64), torch.device("cpu")).boxes[:64]
    centres = (p3[:, :2] + p3[:, 2:]) / 2
    assert centres[:, 0].min() == 0 and centres[:, 0].max() == 56  # x * 8
    shifted = default_generator(ratios=[1.0], scales=[1.0])((64, 64), torch.device("cpu")).boxes[:64]
    torch.testing.assert_close(shifted - p3, torch.full_like(p3, 4.0))
