"""Deformable convolutions in the backbone (mmdet's `dcn` setting, used by the paper's X-101-DCN row of Table 6).

The mmdet release (`alrp_loss_retinanet_x101_64x4d_fpn_dcn_ATSS_100e_coco800.py`) sets
`dcn=dict(type='DCNv2', deformable_groups=1, fallback_on_stride=False)`, `stage_with_dcn=(False, True, True, True)`:
in every bottleneck of the stages producing C3, C4 and C5, the 3x3 `conv2` (with its stride and ResNeXt groups)
becomes a modulated deformable conv whose offsets and masks come from a plain 3x3 conv (`conv_offset`, same
stride, zero-initialised). At init the offsets are 0 and the masks sigmoid(0) = 0.5, so a DCNv2 layer computes
half the plain conv (DCNv1, without masks, computes exactly the plain conv).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck
from torchvision.ops import DeformConv2d


class DeformableConv2dPack(DeformConv2d):
    """A conv layer with learned sampling offsets (and, if `modulated`, masks), used like `nn.Conv2d`.

    `conv_offset` predicts per output location 2·k·k offsets (y, x per kernel point, torchvision's layout) and, if
    modulated, k·k mask logits; channel order [offsets; masks] as in mmcv's `ModulatedDeformConv2dPack`.
    Parameters `weight` (and `bias`) have the names and shapes of the conv they replace.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, bias: bool = False, modulated: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias)
        self.modulated = modulated
        points = self.kernel_size[0] * self.kernel_size[1]
        self.conv_offset = nn.Conv2d(in_channels, (3 if modulated else 2) * points, self.kernel_size,
                                     stride=self.stride, padding=self.padding, dilation=self.dilation, bias=True)
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """(N, C_in, H, W) -> (N, C_out, H', W') with H', W' as for the plain conv."""
        out = self.conv_offset(x)
        points = self.kernel_size[0] * self.kernel_size[1]
        offset, mask = out[:, :2 * points], (torch.sigmoid(out[:, 2 * points:]) if self.modulated else None)
        return super().forward(x, offset, mask)


def deformable_from_conv(conv: nn.Conv2d, *, modulated: bool = True) -> DeformableConv2dPack:
    """A `DeformableConv2dPack` with `conv`'s geometry, groups and (copied) weights, zero offsets."""
    dcn = DeformableConv2dPack(conv.in_channels, conv.out_channels, conv.kernel_size[0], stride=conv.stride[0],
                               padding=conv.padding[0], dilation=conv.dilation[0], groups=conv.groups,
                               bias=conv.bias is not None, modulated=modulated)
    with torch.no_grad():
        dcn.weight.copy_(conv.weight)
        if conv.bias is not None:
            dcn.bias.copy_(conv.bias)
    return dcn.to(conv.weight.device)


def add_deformable_convs(stage: nn.Sequential, *, modulated: bool = True) -> None:
    """Replaces `conv2` (the 3x3) of every bottleneck in a torchvision ResNet stage, in place."""
    for block in stage:
        if not isinstance(block, Bottleneck):
            raise ValueError(f"backbone.dcn_stages: deformable convs need bottleneck blocks (ResNet-50 and deeper, "
                             f"ResNeXt), got {type(block).__name__}")
        block.conv2 = deformable_from_conv(block.conv2, modulated=modulated)
