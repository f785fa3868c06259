"""`model` config section: typed dataclasses with defaults (RetinaNet as in the AP-Loss ablation code).

Only `models.build.build_detector` reads these objects; every class in `models/` takes explicit keyword arguments.
Field names map one-to-one to YAML keys, e.g. `model.anchors.base_scale` or `model.assigner.name`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from alrp.validation import ConfigValueError, check, check_choice, check_range

from .weights import name_problem

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnext101_32x8d", "resnext101_64x4d")
BASIC_BLOCK_BACKBONES = ("resnet18", "resnet34")
DCN_STAGES = ("c2", "c3", "c4", "c5")  # outputs of layer1..layer4 (models.dcn)
BACKBONE_NORMS = ("frozen_bn", "bn", "gn")
HEAD_NORMS = (None, "gn")
P6_SOURCES = ("c5", "p5")
FPN_INITS = ("kaiming_uniform", "normal", "xavier_uniform")
TOPK_UNITS = ("pair", "anchor")
ASSIGNERS = ("max_iou", "atss")
CROWD_ANCHORS = ("negative", "ignore")
FPN_STRIDES = (8, 16, 32, 64, 128)  # P3..P7: fixed by the FPN
GN_GROUPS = 32


@dataclass
class BackboneConfig:
    """ResNet/ResNeXt body giving C3-C5.

    Attributes:
        name: torchvision constructor name, one of `BACKBONES`.
        norm: 'frozen_bn' (statistics frozen), 'bn' (trainable BatchNorm) or 'gn' (GroupNorm, 32 groups, for
            training from scratch).
        freeze_affine: with 'frozen_bn', also freeze the BatchNorm scale and shift (ablation code: True).
        frozen_stages: 0 = nothing frozen, 1 = stem + stage 1 (default), ..., 4 = the whole body.
        pretrained: `imagenet` (torchvision's `<Body>_Weights.IMAGENET1K_V1`, from the torch hub cache, downloaded
            when missing), a torchvision enum name such as `ResNet50_Weights.IMAGENET1K_V2`, the path of a local
            torchvision-format state dict, or None for random init.
        dcn_stages: outputs whose stage gets deformable 3x3 convs, e.g. ['c3', 'c4', 'c5'] (mmdet release's
            X-101-DCN: `stage_with_dcn=(False, True, True, True)`); [] = none. Bottleneck backbones only.
        dcn_modulated: DCNv2 with masks (mmdet release) or DCNv1 (offsets only).
    """

    name: str = "resnet50"
    norm: str = "frozen_bn"
    freeze_affine: bool = True
    frozen_stages: int = 1
    pretrained: str | None = None
    dcn_stages: list[str] = field(default_factory=list)
    dcn_modulated: bool = True

    def __post_init__(self) -> None:
        check_choice("model.backbone.name", self.name, BACKBONES)
        for stage in self.dcn_stages:
            check_choice("model.backbone.dcn_stages", stage, DCN_STAGES)
        check(len(set(self.dcn_stages)) == len(self.dcn_stages), "model.backbone.dcn_stages",
              f"{self.dcn_stages!r} names a stage twice")
        check(not self.dcn_stages or self.name not in BASIC_BLOCK_BACKBONES, "model.backbone.dcn_stages",
              f"deformable convs need a bottleneck backbone, not {self.name!r}")
        check_choice("model.backbone.norm", self.norm, BACKBONE_NORMS)
        check_range("model.backbone.frozen_stages", self.frozen_stages, 0, 4)
        if self.pretrained is not None and not str(self.pretrained).strip():
            raise ConfigValueError("model.backbone.pretrained", "empty path (use null for random init)")
        problem = name_problem(self.name, str(self.pretrained)) if self.pretrained is not None else None
        if problem:
            raise ConfigValueError("model.backbone.pretrained", problem)


@dataclass
class FPNConfig:
    """Feature pyramid P3-P7.

    Attributes:
        channels: output channels of every level (256 in the paper; 64 for the CPU demo).
        p6_from: 'c5' (ablation code, RetinaNet paper) or 'p5' (torchvision).
        relu_before_p7: P7 = conv(ReLU(P6)) (ablation code) instead of conv(P6) (mmdet).
        init: weight init of the new FPN convs, bias 0: 'kaiming_uniform' (torchvision's FPN), 'normal'
            (N(0, 0.01), ablation code) or 'xavier_uniform' (mmdet).
    """

    channels: int = 256
    p6_from: str = "c5"
    relu_before_p7: bool = True
    init: str = "kaiming_uniform"

    def __post_init__(self) -> None:
        check_range("model.fpn.channels", self.channels, 1, 1 << 16)
        check_choice("model.fpn.p6_from", self.p6_from, P6_SOURCES)
        check_choice("model.fpn.init", self.init, FPN_INITS)


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
        check_range("model.head.channels", self.channels, 1, 1 << 16)
        check_range("model.head.num_convs", self.num_convs, 0, 16)
        check_choice("model.head.norm", self.norm, HEAD_NORMS)
        if self.norm == "gn" and self.channels % GN_GROUPS:
            raise ConfigValueError("model.head.channels",
                                   f"{self.channels} must be a multiple of {GN_GROUPS} with head.norm='gn'")
        check_range("model.head.prior_prob", self.prior_prob, 0.0, 1.0 - 1e-12, low_open=True)
        check_range("model.head.box_init_std", self.box_init_std, 0.0, 1.0, low_open=True)


@dataclass
class AnchorConfig:
    """Anchors per FPN level: base size `base_scale * stride`, times each scale, at each ratio (h / w, area kept).

    A = len(scales) * len(ratios) anchors per location (6 by default). ATSS uses ratios [1.0]. The strides are
    the FPN levels' (`FPN_STRIDES`, P3-P7). `center_offset`: anchor centres at ((x + offset) * stride,
    (y + offset) * stride) pixels; 0.5 is the cell centre (the ablation code's, up to its -0.5 px "+1"
    convention), 0 the cell corner (mmdetection 2.x).
    """

    base_scale: float = 4.0
    center_offset: float = 0.5
    scales: list[float] = field(default_factory=lambda: [1.0, 2 ** 0.5])
    ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])

    def __post_init__(self) -> None:
        check_range("model.anchors.base_scale", self.base_scale, 0.0, 1e4, low_open=True)
        check_range("model.anchors.center_offset", self.center_offset, 0.0, 1.0)
        for key, values in (("anchors.scales", self.scales), ("anchors.ratios", self.ratios)):
            if not values or any(not v > 0 for v in values):
                raise ConfigValueError(f"model.{key}", f"{values!r} must be a non-empty list of positive numbers")


@dataclass
class AssignerConfig:
    """Anchor labelling.

    Attributes:
        name: 'max_iou' or 'atss'.
        pos_iou / neg_iou: max-IoU thresholds (positive if IoU >= pos_iou, background if IoU < neg_iou).
        low_quality_matches: max-IoU keeps each ground truth's (tied) best anchors as positives.
        atss_topk: ATSS candidates per level per ground truth (by centre distance).
        crowd_anchors: what background anchors on crowd regions become: 'negative' (crowd boxes dropped, as in
            both authors' releases) or 'ignore' (our option, see `crowd_ignore_iof`).
        crowd_ignore_iof: with crowd_anchors 'ignore', background anchors whose intersection with a crowd box
            exceeds this fraction of the anchor's area become ignored.
    """

    name: str = "max_iou"
    pos_iou: float = 0.5
    neg_iou: float = 0.4
    low_quality_matches: bool = True
    atss_topk: int = 9
    crowd_anchors: str = "ignore"
    crowd_ignore_iof: float = 0.5

    @property
    def crowd_iof_threshold(self) -> float | None:
        """`crowd_ignore_iof` when crowd regions are ignored, None when crowd boxes are dropped."""
        return self.crowd_ignore_iof if self.crowd_anchors == "ignore" else None

    def __post_init__(self) -> None:
        check_choice("model.assigner.name", self.name, ASSIGNERS)
        check_range("model.assigner.pos_iou", self.pos_iou, 0.0, 1.0, low_open=True)
        check_range("model.assigner.neg_iou", self.neg_iou, 0.0, self.pos_iou)
        check_range("model.assigner.atss_topk", self.atss_topk, 1, 1 << 20)
        check_range("model.assigner.crowd_ignore_iof", self.crowd_ignore_iof, 0.0, 1.0)
        check_choice("model.assigner.crowd_anchors", self.crowd_anchors, CROWD_ANCHORS)


@dataclass
class BoxCoderConfig:
    """(dx, dy, log dw, log dh) divided by `weights`; decode clamps log-ratios at `clamp`."""

    weights: list[float] = field(default_factory=lambda: [0.1, 0.1, 0.2, 0.2])
    clamp: float = math.log(1000.0 / 16)

    def __post_init__(self) -> None:
        if len(self.weights) != 4 or any(not w > 0 for w in self.weights):
            raise ConfigValueError("model.box_coder.weights", f"{self.weights!r} must be 4 positive numbers")
        check_range("model.box_coder.clamp", self.clamp, 0.0, 20.0, low_open=True)


@dataclass
class PostprocessConfig:
    """Detections: per level top `pre_nms_topk` over `score_threshold`, per-class NMS, `max_detections` kept.

    Attributes:
        level_score_thresholds: per-level thresholds P3..P7 replacing `score_threshold` (ablation code:
            [0.01, 0.01, 0.01, 0.01, 0.0]), or None.
        topk_unit: 'pair' (top (anchor, class) pairs, AP-Loss-based codes) or 'anchor' (top anchors by their best
            class, all classes kept, mmdetection).
    """

    score_threshold: float = 0.05
    pre_nms_topk: int = 1000
    nms_iou: float = 0.5
    max_detections: int = 100
    level_score_thresholds: list[float] | None = None
    topk_unit: str = "pair"

    def __post_init__(self) -> None:
        check_range("model.postprocess.score_threshold", self.score_threshold, 0.0, 1.0)
        if self.level_score_thresholds is not None:
            check(len(self.level_score_thresholds) == len(FPN_STRIDES), "model.postprocess.level_score_thresholds",
                  f"{self.level_score_thresholds!r} must have {len(FPN_STRIDES)} entries (P3-P7)")
            for value in self.level_score_thresholds:
                check_range("model.postprocess.level_score_thresholds", value, 0.0, 1.0)
        check_choice("model.postprocess.topk_unit", self.topk_unit, TOPK_UNITS)
        check_range("model.postprocess.pre_nms_topk", self.pre_nms_topk, 1, 1 << 30)
        check_range("model.postprocess.nms_iou", self.nms_iou, 0.0, 1.0)
        check_range("model.postprocess.max_detections", self.max_detections, 1, 1 << 30)


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
                    raise ConfigValueError(f"model.{name}", str(err))
                setattr(self, name, value)
            if not isinstance(value, cls):
                raise ConfigValueError(f"model.{name}", f"expected a {cls.__name__}, got {type(value).__name__}")
