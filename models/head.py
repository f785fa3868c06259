"""RetinaNet head: separate classification and box towers shared over the FPN levels."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _tower(channels: int, num_convs: int, norm: str | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers.append(nn.Conv2d(channels, channels, 3, padding=1))
        if norm == "gn":
            layers.append(nn.GroupNorm(32, channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _flatten(x: Tensor, last: int) -> Tensor:
    """(N, A*last, H, W) -> (N, H*W*A, last), anchors of a location contiguous."""
    n, _, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h * w * (x.shape[1] // last), last)


class RetinaHead(nn.Module):
    """Towers of `num_convs` x (3x3 conv [+ GroupNorm] + ReLU), then A*K class logits and A*4 box deltas.

    Init: tower and output convs N(0, 0.01), bias 0; class bias -log((1 - prior) / prior); box output
    N(0, box_init_std).

    Args:
        in_channels: FPN channels. num_anchors: A. num_classes: K. channels: tower width (the first tower conv
        maps in_channels -> channels). num_convs: 4. norm: None or 'gn'. prior_prob: 0.01. box_init_std: 0.001.
    """

    def __init__(self, *, in_channels: int, num_anchors: int, num_classes: int, channels: int = 256,
                 num_convs: int = 4, norm: str | None = None, prior_prob: float = 0.01,
                 box_init_std: float = 0.001) -> None:
        super().__init__()
        if in_channels != channels and num_convs == 0:
            raise ValueError(f"head: with num_convs=0 the channels ({channels}) must equal the FPN's ({in_channels})")
        self.num_anchors, self.num_classes = num_anchors, num_classes
        self.cls_tower = _tower(channels, num_convs, norm)
        self.box_tower = _tower(channels, num_convs, norm)
        if num_convs and in_channels != channels:
            self.cls_tower[0] = nn.Conv2d(in_channels, channels, 3, padding=1)
            self.box_tower[0] = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.cls_out = nn.Conv2d(channels, num_anchors * num_classes, 3, padding=1)
        self.box_out = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.box_out.weight, std=box_init_std)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: list[Tensor]) -> dict:
        """[P3..P7] (N, C, H_l, W_l) -> {"cls_logits": (N, HWA, K), "box_deltas": (N, HWA, 4)}."""
        cls = [_flatten(self.cls_out(self.cls_tower(f)), self.num_classes) for f in features]
        box = [_flatten(self.box_out(self.box_tower(f)), 4) for f in features]
        return {"cls_logits": torch.cat(cls, dim=1), "box_deltas": torch.cat(box, dim=1)}
