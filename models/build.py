"""`build_detector`: the only place that reads a `ModelConfig`."""
from .anchors import AnchorGenerator
from .assigners import ATSSAssigner, MaxIoUAssigner
from .backbone import ResNetBackbone
from .box_coder import BoxCoder
from .config import FPN_STRIDES, ModelConfig
from .fpn import FPN
from .head import RetinaHead
from .postprocess import PostProcessor
from .retinanet import RetinaNet


def build_assigner(cfg: ModelConfig):
    """Max-IoU or ATSS assigner from `cfg.assigner`."""
    a = cfg.assigner
    if a.name == "atss":
        return ATSSAssigner(topk=a.atss_topk, crowd_ignore_iof=a.crowd_iof_threshold)
    return MaxIoUAssigner(pos_iou=a.pos_iou, neg_iou=a.neg_iou, low_quality_matches=a.low_quality_matches,
                          crowd_ignore_iof=a.crowd_iof_threshold)


def build_detector(model_cfg: ModelConfig, num_classes: int) -> RetinaNet:
    """RetinaNet for `num_classes` (K) sigmoid classes from the `model` config section."""
    if not isinstance(model_cfg, ModelConfig):
        raise TypeError(f"build_detector: expected a ModelConfig, got {type(model_cfg).__name__}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"build_detector: num_classes must be a positive int, got {num_classes!r}")
    b, f, h, an, bc, pp = (model_cfg.backbone, model_cfg.fpn, model_cfg.head, model_cfg.anchors,
                           model_cfg.box_coder, model_cfg.postprocess)
    backbone = ResNetBackbone(name=b.name, norm=b.norm, freeze_affine=b.freeze_affine,
                              frozen_stages=b.frozen_stages, pretrained=b.pretrained,
                              dcn_stages=b.dcn_stages, dcn_modulated=b.dcn_modulated)
    fpn = FPN(in_channels=backbone.out_channels, channels=f.channels, p6_from=f.p6_from,
              relu_before_p7=f.relu_before_p7, init=f.init)
    anchors = AnchorGenerator(strides=FPN_STRIDES, base_scale=an.base_scale, scales=an.scales, ratios=an.ratios,
                              center_offset=an.center_offset)
    head = RetinaHead(in_channels=f.channels, num_anchors=anchors.num_anchors_per_location, num_classes=num_classes,
                      channels=h.channels, num_convs=h.num_convs, norm=h.norm, prior_prob=h.prior_prob,
                      box_init_std=h.box_init_std)
    coder = BoxCoder(weights=bc.weights, clamp=bc.clamp)
    post = PostProcessor(coder=coder, score_threshold=pp.score_threshold, pre_nms_topk=pp.pre_nms_topk,
                         nms_iou=pp.nms_iou, max_detections=pp.max_detections,
                         level_score_thresholds=pp.level_score_thresholds, topk_unit=pp.topk_unit)
    return RetinaNet(backbone=backbone, fpn=fpn, head=head, anchor_generator=anchors, box_coder=coder,
                     assigner=build_assigner(model_cfg), postprocessor=post, num_classes=num_classes)
