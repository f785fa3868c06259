"""`model` config section: typed dataclasses with defaults (RetinaNet as in the AP-Loss ablation code).

Only `models.build.build_detector` reads these objects; every class in `models/` takes explicit keyword arguments.
Field names map one-to-one to YAML keys, e.g. `model.anchors.base_scale` or `model.assigner.name`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnext101_32x8d", "resnext101_64x4d")
BACKBONE_NORMS = ("frozen_bn", "bn", "gn")
HEAD_NORMS = (None, "gn")
P6_SOURCES = ("c5", "p5")
ASSIGNERS = ("max_iou", "atss")
FPN_STRIDES = (8, 16, 32, 64, 128)  # P3..P7: fixed by the FPN
GN_GROUPS = 32


def _fail(key: str, message: str) -> None:
    raise ValueError(f"model config: {key}: {message}")


def _check_choice(key: str, value: object, choices: tuple) -> None:
    if value not in choices:
        _fail(key, f"{value!r} is not one of {list(choices)}")


def _check_range(key: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        _fail(key, f"{value!r} must be in {'(' if low_open else '['}{low}, {high}]")


@dataclass
class BackboneConfig:
    """ResNet/ResNeXt body giving C3-C5.

    Attributes:
        name: torchvision constructor name, one of `BACKBONES`.
        norm: 'frozen_bn' (statistics frozen), 'bn' (trainable BatchNorm) or 'gn' (GroupNorm, 32 groups, for
            training from scratch).
        freeze_affine: with 'frozen_bn', also freeze the BatchNorm scale and shift (ablation code: True).
        frozen_stages: 0 = nothing frozen, 1 = stem + stage 1 (default), ..., 4 = the whole body.
        pretrained: path of a local torchvision-format state dict, or None for random init.
    """

    name: str = "resnet50"
    norm: str = "frozen_bn"
    freeze_affine: bool = True
    frozen_stages: int = 1
    pretrained: str | None = None

    def __post_init__(self) -> None:
        _check_choice("backbone.name", self.name, BACKBONES)
        _check_choice("backbone.norm", self.norm, BACKBONE_NORMS)
        _check_range("backbone.frozen_stages", self.frozen_stages, 0, 4)
        if self.pretrained is not None and not str(self.pretrained).strip():
            _fail("backbone.pretrained", "empty path (use null for random init)")


@dataclass
class FPNConfig:
    """Feature pyramid P3-P7.

    Attributes:
        channels: output channels of every level (256 in the paper; 64 for the CPU demo).
        p6_from: 'c5' (ablation code, RetinaNet paper) or 'p5' (torchvision).
        relu_before_p7: P7 = conv(ReLU(P6)) (ablation code) instead of conv(P6).
    """

    channels: int = 256
    p6_from: str = "c5"
    relu_before_p7: bool = True

    def __post_init__(self) -> None:
        _check_range("fpn.channels", self.channels, 1, 1 << 16)
        _check_choice("fpn.p6_from", self.p6_from, P6_SOURCES)


@dataclass
class HeadConfig:
    """Classification and box towers shared over levels.

    Attributes:
        channels: tower width. num_convs: 3x3 convs (+ReLU) per tower.
        norm: None or 'gn' (GroupNorm after each tower conv; helps from-scratch CPU training).
        prior_prob: initial foreground probability (cls output bias = -log((1 - p) / p)).
        box_init_std: std of the box output conv init (0.001 ablation code, 0.01 mmdet).
    """

    channels: int = 256
    num_convs: int = 4
    norm: str | None = None
    prior_prob: float = 0.01
    box_init_std: float = 0.001

    def __post_init__(self) -> None:
        _check_range("head.channels", self.channels, 1, 1 << 16)
        _check_range("head.num_convs", self.num_convs, 0, 16)
        _check_choice("head.norm", self.norm, HEAD_NORMS)
        if self.norm == "gn" and self.channels % GN_GROUPS:
            _fail("head.channels", f"{self.channels} must be a multiple of {GN_GROUPS} with head.norm='gn'")
        _check_range("head.prior_prob", self.prior_prob, 0.0, 1.0 - 1e-12, low_open=True)
        _check_range("head.box_init_std", self.box_init_std, 0.0, 1.0, low_open=True)


@dataclass
class AnchorConfig:
    """Anchors per FPN level: base size `base_scale * stride`, times each scale, at each ratio (h / w, area kept).

    A = len(scales) * len(ratios) anchors per location (6 by default). ATSS uses ratios [1.0]. The strides are
    the FPN levels' (`FPN_STRIDES`, P3-P7).
    """

    base_scale: float = 4.0
    scales: list[float] = field(default_factory=lambda: [1.0, 2 ** 0.5])
    ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])

    def __post_init__(self) -> None:
        _check_range("anchors.base_scale", self.base_scale, 0.0, 1e4, low_open=True)
        for key, values in (("anchors.scales", self.scales), ("anchors.ratios", self.ratios)):
            if not values or any(not v > 0 for v in values):
                _fail(key, f"{values!r} must be a non-empty list of positive numbers")


@dataclass
class AssignerConfig:
    """Anchor labelling.

    Attributes:
        name: 'max_iou' or 'atss'.
        pos_iou / neg_iou: max-IoU thresholds (positive if IoU >= pos_iou, background if IoU < neg_iou).
        low_quality_matches: max-IoU keeps each ground truth's (tied) best anchors as positives.
        atss_topk: ATSS candidates per level per ground truth (by centre distance).
        crowd_ignore_iof: background anchors whose intersection with a crowd box exceeds this fraction of the
            anchor's area become ignored.
    """

    name: str = "max_iou"
    pos_iou: float = 0.5
    neg_iou: float = 0.4
    low_quality_matches: bool = True
    atss_topk: int = 9
    crowd_ignore_iof: float = 0.5

    def __post_init__(self) -> None:
        _check_choice("assigner.name", self.name, ASSIGNERS)
        _check_range("assigner.pos_iou", self.pos_iou, 0.0, 1.0, low_open=True)
        _check_range("assigner.neg_iou", self.neg_iou, 0.0, self.pos_iou)
        _check_range("assigner.atss_topk", self.atss_topk, 1, 1 << 20)
        _check_range("assigner.crowd_ignore_iof", self.crowd_ignore_iof, 0.0, 1.0)


@dataclass
class BoxCoderConfig:
    """(dx, dy, log dw, log dh) divided by `weights`; decode clamps log-ratios at `clamp`."""

    weights: list[float] = field(default_factory=lambda: [0.1, 0.1, 0.2, 0.2])
    clamp: float = math.log(1000.0 / 16)

    def __post_init__(self) -> None:
        if len(self.weights) != 4 or any(not w > 0 for w in self.weights):
            _fail("box_coder.weights", f"{self.weights!r} must be 4 positive numbers")
        _check_range("box_coder.clamp", self.clamp, 0.0, 20.0, low_open=True)


@dataclass
class PostprocessConfig:
    """Detections: per level top `pre_nms_topk` over `score_threshold`, per-class NMS, `max_detections` kept."""

    score_threshold: float = 0.05
    pre_nms_topk: int = 1000
    nms_iou: float = 0.5
    max_detections: int = 100

    def __post_init__(self) -> None:
        _check_range("postprocess.score_threshold", self.score_threshold, 0.0, 1.0)
        _check_range("postprocess.pre_nms_topk", self.pre_nms_topk, 1, 1 << 30)
        _check_range("postprocess.nms_iou", self.nms_iou, 0.0, 1.0)
        _check_range("postprocess.max_detections", self.max_detections, 1, 1 << 30)


@dataclass
class ModelConfig:
    """The `model` section: a RetinaNet (ResNet-FPN, A = 6 anchors) as trained in the aLRP Loss paper."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    fpn: FPNConfig = field(default_factory=FPNConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    assigner: AssignerConfig = field(default_factory=AssignerConfig)
    box_coder: BoxCoderConfig = field(default_factory=BoxCoderConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)

    def __post_init__(self) -> None:
        sections = {
            "backbone": BackboneConfig, "fpn": FPNConfig, "head": HeadConfig, "anchors": AnchorConfig,
            "assigner": AssignerConfig, "box_coder": BoxCoderConfig, "postprocess": PostprocessConfig,
        }
        for name, cls in sections.items():
            value = getattr(self, name)
            if isinstance(value, dict):  # convenience for code building configs from plain dicts
                try:
                    value = cls(**value)
                except TypeError as err:
                    _fail(name, str(err))
                setattr(self, name, value)
            if not isinstance(value, cls):
                _fail(name, f"expected a {cls.__name__}, got {type(value).__name__}")
