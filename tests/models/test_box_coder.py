"""Box coder: hand-computed deltas, round trip, clamp, gradients."""
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from models.box_coder import BoxCoder


def test_encode_matches_hand_computed_deltas():
    coder = BoxCoder()
    anchor = torch.tensor([[0.0, 0, 10, 10]])  # centre (5, 5), 10 x 10
    box = torch.tensor([[1.0, 2, 11, 22]])  # centre (6, 12), 10 x 20
    expected = torch.tensor([[0.1 / 0.1, 0.7 / 0.1, 0.0, math.log(2) / 0.2]])
    torch.testing.assert_close(coder.encode(box, anchor), expected)
    torch.testing.assert_close(coder.decode(expected, anchor), box)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_encode_decode_round_trip(seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(20, 2, generator=g) * 500
    anchors = torch.cat([xy, xy + 16 + torch.rand(20, 2, generator=g) * 284], dim=1)  # sides 16..300
    bxy = torch.rand(20, 2, generator=g) * 500
    boxes = torch.cat([bxy, bxy + 8 + torch.rand(20, 2, generator=g) * 292], dim=1)  # ratios within the clamp
    coder = BoxCoder(weights=(0.1, 0.1, 0.2, 0.2))
    torch.testing.assert_close(coder.decode(coder.encode(boxes, anchors), anchors), boxes, atol=2e-3, rtol=1e-4)


def test_decode_clamps_log_ratios():
    coder = BoxCoder()
    anchor = torch.tensor([0.0, 0, 16, 16])
    huge = coder.decode(torch.tensor([0.0, 0, 100, -100]), anchor)
    torch.testing.assert_close(huge[2] - huge[0], torch.tensor(1000.0))  # 16 * 1000 / 16
    torch.testing.assert_close(huge[3] - huge[1], torch.tensor(16 * 16 / 1000.0))


def test_decode_is_differentiable_and_broadcasts():
    coder = BoxCoder()
    deltas = torch.zeros(3, 5, 4, requires_grad=True)
    anchors = torch.tensor([[0.0, 0, 8, 8]] * 5)
    boxes = coder.decode(deltas, anchors)
    assert boxes.shape == (3, 5, 4)
    torch.testing.assert_close(boxes[1], anchors)
    boxes.sum().backward()
    assert deltas.grad is not None and deltas.grad.abs().sum() > 0
