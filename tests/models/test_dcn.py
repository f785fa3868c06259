"""Deformable convs in the backbone: init equals the plain conv (x0.5 with DCNv2 masks), offsets sample where they
say, gradients reach the offsets, the mmdet X-101-DCN layout (c3-c5 bottleneck conv2s) and config checks."""
import pytest
import torch
import torch.nn.functional as F
import torchvision

from models import ModelConfig, build_detector
from models.backbone import ResNetBackbone
from models.config import BackboneConfig
from models.dcn import DeformableConv2dPack, deformable_from_conv


def _grouped_strided_conv() -> torch.nn.Conv2d:
    torch.manual_seed(0)
    return torch.nn.Conv2d(8, 12, 3, stride=2, padding=1, groups=4, bias=False)


@pytest.mark.parametrize("modulated,factor", [(False, 1.0), (True, 0.5)])
def test_zero_offsets_give_the_plain_conv_at_init(modulated, factor):
    conv = _grouped_strided_conv()
    dcn = deformable_from_conv(conv, modulated=modulated)
    x = torch.randn(2, 8, 9, 11)
    torch.testing.assert_close(dcn(x), factor * conv(x), rtol=1e-5, atol=1e-5)
    assert dcn.conv_offset.out_channels == (27 if modulated else 18) and dcn.conv_offset.stride == (2, 2)
    assert not dcn.conv_offset.weight.any() and not dcn.conv_offset.bias.any()
    assert dcn.weight.shape == conv.weight.shape == (12, 2, 3, 3) and dcn.bias is None


def test_an_offset_of_one_pixel_in_x_samples_the_shifted_input():
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, bias=False)
    dcn = deformable_from_conv(conv, modulated=False)
    with torch.no_grad():
        dcn.conv_offset.bias[1::2] = 1.0  # channel 2i is the y offset of kernel point i, 2i+1 its x offset
    x = torch.randn(1, 3, 6, 7)
    padded = F.pad(x, (1, 1, 1, 1))  # the conv's zero padding, then every sample moves one column right
    shifted = F.pad(padded[..., 1:], (0, 1))  # shifted[..., w] = padded[..., w + 1], zeros beyond the border
    torch.testing.assert_close(dcn(x), F.conv2d(shifted, conv.weight), rtol=1e-5, atol=1e-5)


def test_backward_reaches_weights_offsets_and_masks():
    dcn = DeformableConv2dPack(4, 6, 3, padding=1, modulated=True)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    dcn(x).square().sum().backward()
    assert x.grad.abs().sum() > 0 and dcn.weight.grad.abs().sum() > 0
    offset_grad, mask_grad = dcn.conv_offset.bias.grad[:18], dcn.conv_offset.bias.grad[18:]
    assert offset_grad.abs().sum() > 0 and mask_grad.abs().sum() > 0


def test_dcn_backbone_replaces_bottleneck_conv2_of_c3_to_c5_and_keeps_pretrained_weights(tmp_path):
    weights = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    plain = ResNetBackbone(name="resnet50", pretrained=str(weights)).eval()
    dcn = ResNetBackbone(name="resnet50", pretrained=str(weights), dcn_stages=["c3", "c4", "c5"],
                         dcn_modulated=False).eval()
    per_stage = [sum(isinstance(m, DeformableConv2dPack) for m in stage.modules())
                 for stage in (dcn.layer1, dcn.layer2, dcn.layer3, dcn.layer4)]
    assert per_stage == [0, 4, 6, 3]
    assert dcn.layer2[0].conv2.stride == (2, 2) and dcn.layer2[0].conv2.conv_offset.stride == (2, 2)
    torch.testing.assert_close(dcn.layer3[2].conv2.weight, plain.layer3[2].conv2.weight)
    extra = sum(p.numel() for p in dcn.parameters()) - sum(p.numel() for p in plain.parameters())
    widths = [128] * 4 + [256] * 6 + [512] * 3  # conv2 input channels of each replaced block
    assert extra == sum(w * 18 * 9 + 18 for w in widths)
    x = torch.randn(1, 3, 64, 96, dtype=torch.float64)  # float64: 50 random-init layers amplify rounding
    with torch.no_grad():
        a, b = plain.double()(x), dcn.double()(x)
    for key in ("c3", "c4", "c5"):
        torch.testing.assert_close(b[key], a[key], rtol=1e-9, atol=1e-9)


def test_dcn_detector_trains_one_step_on_cpu():
    cfg = ModelConfig(backbone={"name": "resnet50", "norm": "frozen_bn", "dcn_stages": ["c5"]},
                      fpn={"channels": 32}, head={"channels": 32, "num_convs": 1})
    model = build_detector(cfg, num_classes=2).train()
    out = model(torch.randn(1, 3, 64, 64))
    (out["cls_logits"].sum() + out["box_deltas"].sum()).backward()
    offsets = model.backbone.layer4[0].conv2.conv_offset
    assert offsets.weight.grad is not None and offsets.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs,match", [
    ({"dcn_stages": ["c6"]}, "backbone.dcn_stages"),
    ({"dcn_stages": ["c3", "c3"]}, "twice"),
    ({"name": "resnet18", "dcn_stages": ["c5"]}, "bottleneck"),
])
def test_dcn_config_errors_name_the_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BackboneConfig(**kwargs)
