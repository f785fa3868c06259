"""Feature pyramid P3-P7 (RetinaNet): lateral 1x1 + nearest top-down + 3x3 outputs; P6, P7 by stride-2 convs."""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


_INITS = {
    "kaiming_uniform": lambda w: nn.init.kaiming_uniform_(w, a=1),
    "normal": lambda w: nn.init.normal_(w, std=0.01),
    "xavier_uniform": nn.init.xavier_uniform_,
}


class FPN(nn.Module):
    """P3-P7 pyramid.

    Args:
        in_channels: channels of C3, C4, C5. channels: output channels of every level (256).
        p6_from: 'c5' (P6 = conv(C5), ablation code) or 'p5' (P6 = conv(P5), torchvision).
        relu_before_p7: P7 = conv(ReLU(P6)) when True, conv(P6) otherwise.
        init: conv weight init, bias 0: 'kaiming_uniform' (a=1, torchvision), 'normal' (N(0, 0.01), ablation
            code) or 'xavier_uniform' (mmdet).
    """

    def __init__(self, *, in_channels: Sequence[int], channels: int = 256, p6_from: str = "c5",
                 relu_before_p7: bool = True, init: str = "kaiming_uniform") -> None:
        super().__init__()
        if p6_from not in ("c5", "p5"):
            raise ValueError(f"FPN: p6_from must be 'c5' or 'p5', got {p6_from!r}")
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)
        self.p6_from = p6_from
        self.p6 = nn.Conv2d(in_channels[-1] if p6_from == "c5" else channels, channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.relu_before_p7 = relu_before_p7
        if init not in _INITS:
            raise ValueError(f"FPN: init must be one of {sorted(_INITS)}, got {init!r}")
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _INITS[init](module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, feats: dict[str, Tensor]) -> list[Tensor]:
        """{"c3", "c4", "c5"} -> [P3, P4, P5, P6, P7], each (N, channels, ceil(H/s), ceil(W/s))."""
        c = [feats["c3"], feats["c4"], feats["c5"]]
        inner = self.lateral[-1](c[-1])
        outs = [self.output[-1](inner)]
        for i in range(len(c) - 2, -1, -1):
            lateral = self.lateral[i](c[i])
            inner = lateral + F.interpolate(inner, size=lateral.shape[-2:], mode="nearest")
            outs.insert(0, self.output[i](inner))
        p6 = self.p6(c[-1] if self.p6_from == "c5" else outs[-1])
        p7 = self.p7(F.relu(p6) if self.relu_before_p7 else p6)
        return outs + [p6, p7]
