"""ResNet / ResNeXt body from `torchvision.models` returning C3, C4, C5.

Normalisation: 'frozen_bn' (torchvision's FrozenBatchNorm2d: fixed statistics and affine, or trainable affine
with `freeze_affine=False`), 'bn' (ordinary BatchNorm2d) or 'gn' (GroupNorm, 32 groups, for training from scratch).
Frozen stages (0 = none, 1 = stem + layer1, ... 4 = everything) get `requires_grad=False` and stay in eval mode.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Sequence

import torch
import torchvision
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from .config import DCN_STAGES
from .dcn import add_deformable_convs
from .weights import PretrainedWeightsError, resolve_pretrained

log = logging.getLogger(__name__)

STAGES = ("layer1", "layer2", "layer3", "layer4")


class FrozenStatsBatchNorm2d(nn.Module):
    """BatchNorm with fixed running statistics and a trainable scale/shift (state-dict compatible with BN)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001 (torch signature)
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


def norm_layer(norm: str, freeze_affine: bool = True) -> Callable[[int], nn.Module]:
    """Constructor `channels -> module` for a backbone normalisation name."""
    if norm == "frozen_bn":
        return FrozenBatchNorm2d if freeze_affine else FrozenStatsBatchNorm2d
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "gn":
        return lambda channels: nn.GroupNorm(32, channels)
    raise ValueError(f"backbone: unknown norm {norm!r} (use 'frozen_bn', 'bn' or 'gn')")


def load_pretrained(model: nn.Module, path: str) -> None:
    """Loads a local torchvision-format ResNet state dict into `model`, failing with the key differences."""
    file = Path(path)
    if not file.is_file():
        raise PretrainedWeightsError(f"backbone.pretrained: {file} does not exist")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt or truncated file, pickled objects other than tensors, ...
        reason = (str(err).splitlines() or [""])[0]
        raise PretrainedWeightsError(f"backbone.pretrained: {file} cannot be read as a torch state dict "
                                     f"({type(err).__name__}: {reason})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"backbone.pretrained: {file} is not a flat state dict of tensors "
                                     "(torchvision format)")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise PretrainedWeightsError(f"backbone.pretrained: {file} does not fit the backbone: {err}") from None
    if result.missing_keys or result.unexpected_keys:
        raise PretrainedWeightsError(f"backbone.pretrained: {file} does not fit the backbone; missing keys "
                         f"{result.missing_keys[:20]} ({len(result.missing_keys)}), unexpected keys "
                         f"{result.unexpected_keys[:20]} ({len(result.unexpected_keys)})")
    log.info("backbone: loaded pretrained weights from %s", file)


class ResNetBackbone(nn.Module):
    """C3-C5 feature extractor.

    Args:
        name: torchvision constructor ('resnet50', 'resnext101_32x8d', ...). norm / freeze_affine: see module doc.
        frozen_stages: 0..4. pretrained: local state dict path, `imagenet` / a torchvision weights enum name
        (resolved through the torch hub cache by `models.weights`), or None (random init, logged).
        dcn_stages: outputs ('c3', 'c4', 'c5'; 'c2' too) whose stage gets deformable 3x3 convs (see `models.dcn`;
            replaced after loading the pretrained weights, which they keep). dcn_modulated: DCNv2 (masks) or v1.
    Attributes:
        out_channels: channels of C3, C4, C5 (e.g. [512, 1024, 2048]).
    """

    def __init__(self, *, name: str = "resnet50", norm: str = "frozen_bn", freeze_affine: bool = True,
                 frozen_stages: int = 1, pretrained: str | None = None, dcn_stages: Sequence[str] = (),
                 dcn_modulated: bool = True) -> None:
        super().__init__()
        constructor = getattr(torchvision.models, name, None)
        if constructor is None or not name.startswith(("resnet", "resnext")):
            raise ValueError(f"backbone: unknown ResNet/ResNeXt {name!r}")
        net = constructor(weights=None, norm_layer=norm_layer(norm, freeze_affine))
        if pretrained is not None:
            load_pretrained(net, resolve_pretrained(name, pretrained))
        else:
            log.info("backbone: %s randomly initialised (no backbone.pretrained given)", name)
        for stage in dcn_stages:
            add_deformable_convs(getattr(net, STAGES[DCN_STAGES.index(stage)]), modulated=dcn_modulated)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        expansion = type(net.layer1[0]).expansion
        self.out_channels: list[int] = [128 * expansion, 256 * expansion, 512 * expansion]
        self.frozen_stages = frozen_stages
        for module in self._frozen_modules():
            module.requires_grad_(False)
        self.train()

    def _frozen_modules(self) -> list[nn.Module]:
        return ([self.stem] + [getattr(self, s) for s in STAGES])[:self.frozen_stages + 1] if self.frozen_stages else []

    def train(self, mode: bool = True) -> "ResNetBackbone":
        """Sets training mode; frozen stages always stay in eval mode (fixed BatchNorm statistics)."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """(N, 3, H, W) -> {"c3": (N, C3, H/8, W/8), "c4": (.., H/16, ..), "c5": (.., H/32, ..)} (ceil sizes)."""
        c2 = self.layer1(self.stem(images))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return {"c3": c3, "c4": c4, "c5": self.layer4(c4)}
