"""Detector assembly: config validation, shapes, parameter count vs torchvision, backbone options, head init."""
import logging
import math

import pytest
import torch
import torchvision
from torchvision.models.detection import retinanet_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchors
from torchvision.ops import FrozenBatchNorm2d

from models import ModelConfig, build_detector
from models.backbone import FrozenStatsBatchNorm2d, PretrainedWeightsError, ResNetBackbone
from models.config import AnchorConfig, BackboneConfig, HeadConfig

SMALL = dict(backbone={"name": "resnet18", "norm": "gn", "frozen_stages": 0}, fpn={"channels": 64},
             head={"channels": 64, "num_convs": 2, "norm": "gn"})


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def small():
    return build_detector(ModelConfig(**SMALL), num_classes=5)


def test_forward_shapes_n2_at_512(small):
    images = torch.randn(2, 3, 512, 512)
    with torch.no_grad():
        out = small(images)
    assert out["cls_logits"].shape == (2, 32736, 5) and out["box_deltas"].shape == (2, 32736, 4)
    assert small.anchors(images).boxes.shape == (32736, 4)
    assert small.anchors(images) is small.anchors(images)  # cached


def test_forward_is_the_same_in_train_and_eval_and_matches_anchors_for_odd_sizes(small):
    images = torch.randn(1, 3, 100, 170)
    with torch.no_grad():
        small.train()
        a = small(images)
        small.eval()
        b = small(images)
    assert a.keys() == b.keys() == {"cls_logits", "box_deltas"}
    torch.testing.assert_close(a["cls_logits"], b["cls_logits"])
    assert a["box_deltas"].shape[1] == small.anchors(images).boxes.shape[0]


def test_r50_parameter_count_matches_torchvision_up_to_named_differences():
    six = TorchvisionAnchors(tuple((s, s * 2 ** 0.5) for s in (32, 64, 128, 256, 512)), ((0.5, 1.0, 2.0),) * 5)
    reference = count(retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=80,
                                             anchor_generator=six))
    # torchvision: P6 from P5 and (without pretrained weights) trainable BatchNorm -> identical count
    same = build_detector(ModelConfig(backbone={"norm": "bn"}, fpn={"p6_from": "p5"}), 80)
    assert count(same) == reference == 33_259_064
    # defaults: P6 = conv(C5) adds 3*3*(2048-256)*256 weights; frozen BN keeps scale/shift as buffers
    default = build_detector(ModelConfig(), 80)
    frozen_affine = sum(m.weight.numel() + m.bias.numel() for m in default.modules()
                        if isinstance(m, FrozenBatchNorm2d))
    assert frozen_affine == 53_120
    assert count(default) == reference + 3 * 3 * (2048 - 256) * 256 - frozen_affine
    assert count(default.head) == count(same.head)


def test_r50_default_forward_runs():
    model = build_detector(ModelConfig(), 80).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 128, 128))
    assert out["cls_logits"].shape == (1, 6 * (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2 + 1), 80)


def test_head_init_follows_the_prior_and_box_std():
    model = build_detector(ModelConfig(**{**SMALL, "head": {**SMALL["head"], "box_init_std": 0.01}}), 3)
    torch.testing.assert_close(model.head.cls_out.bias, torch.full((18,), -math.log(99.0)))
    assert abs(model.head.box_out.weight.std().item() - 0.01) < 0.002
    assert abs(model.head.cls_out.weight.std().item() - 0.01) < 0.002
    with torch.no_grad():
        probs = torch.sigmoid(model(torch.randn(1, 3, 128, 128))["cls_logits"])
    assert abs(probs.mean().item() - 0.01) < 0.005


def test_frozen_stages_and_norms():
    body = ResNetBackbone(name="resnet18", norm="frozen_bn", frozen_stages=2)
    assert not any(p.requires_grad for m in (body.stem, body.layer1, body.layer2) for p in m.parameters())
    assert all(p.requires_grad for p in body.layer3.parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    bn = ResNetBackbone(name="resnet18", norm="bn", frozen_stages=1).train()
    assert not bn.stem[1].training and not bn.layer1.training and bn.layer2.training
    affine = ResNetBackbone(name="resnet18", norm="frozen_bn", freeze_affine=False, frozen_stages=0)
    norms = [m for m in affine.modules() if isinstance(m, FrozenStatsBatchNorm2d)]
    assert norms and all(m.weight.requires_grad for m in norms)
    assert ResNetBackbone(name="resnext101_32x8d").out_channels == [512, 1024, 2048]


def test_frozen_stats_bn_equals_eval_batchnorm():
    bn = torch.nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.uniform_(), bn.bias.uniform_()
    frozen = FrozenStatsBatchNorm2d(4)
    frozen.load_state_dict(bn.state_dict())
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(frozen(x), bn(x))


def test_pretrained_weights_are_loaded_and_mismatches_reported(tmp_path, caplog):
    state = torchvision.models.resnet18(weights=None).state_dict()
    good = tmp_path / "r18.pth"
    torch.save(state, good)
    body = ResNetBackbone(name="resnet18", pretrained=str(good))
    torch.testing.assert_close(body.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    torch.testing.assert_close(body.stem[1].running_var, state["bn1.running_var"])
    bad = dict(state)
    del bad["layer4.1.conv2.weight"]
    bad["extra.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad.pth.*layer4\.1\.conv2\.weight.*extra\.weight"):
        ResNetBackbone(name="resnet18", pretrained=str(tmp_path / "bad.pth"))
    with pytest.raises(ValueError, match="does not fit"):
        ResNetBackbone(name="resnet34", pretrained=str(good))
    with pytest.raises(PretrainedWeightsError, match="missing.pth does not exist"):
        ResNetBackbone(name="resnet18", pretrained=str(tmp_path / "missing.pth"))
    (tmp_path / "corrupt.pth").write_bytes(b"truncated")
    with pytest.raises(PretrainedWeightsError, match="corrupt.pth.*cannot be read"):
        ResNetBackbone(name="resnet18", pretrained=str(tmp_path / "corrupt.pth"))
    torch.save({"model": state, "epoch": 3}, tmp_path / "checkpoint.pth")  # a training checkpoint, not a state dict
    with pytest.raises(PretrainedWeightsError, match="checkpoint.pth is not a flat state dict"):
        ResNetBackbone(name="resnet18", pretrained=str(tmp_path / "checkpoint.pth"))
    with caplog.at_level(logging.INFO, logger="models.backbone"):
        ResNetBackbone(name="resnet18")
    assert sum("randomly initialised" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("make,key", [
    (lambda: BackboneConfig(name="resnet999"), "backbone.name"),
    (lambda: BackboneConfig(norm="syncbn"), "backbone.norm"),
    (lambda: BackboneConfig(frozen_stages=5), "backbone.frozen_stages"),
    (lambda: HeadConfig(norm="gn", channels=48), "head.channels"),
    (lambda: AnchorConfig(ratios=[]), "anchors.ratios"),
    (lambda: ModelConfig(assigner={"name": "hungarian"}), "assigner.name"),
    (lambda: ModelConfig(assigner={"pos_iou": 0.3, "neg_iou": 0.4}), "assigner.neg_iou"),
    (lambda: ModelConfig(postprocess={"nms_iou": 1.5}), "postprocess.nms_iou"),
    (lambda: ModelConfig(fpn={"p6_from": "c4"}), "fpn.p6_from"),
    (lambda: ModelConfig(fpn={"init": "orthogonal"}), "fpn.init"),
    (lambda: ModelConfig(anchors={"center_offset": 2.0}), "anchors.center_offset"),
    (lambda: ModelConfig(postprocess={"topk_unit": "class"}), "postprocess.topk_unit"),
    (lambda: ModelConfig(postprocess={"level_score_thresholds": [0.01, 0.0]}), "postprocess.level_score_thresholds"),
    (lambda: ModelConfig(head={"widht": 3}), "head"),
])
def test_config_errors_name_the_key(make, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        make()


def test_build_detector_checks_its_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        build_detector(ModelConfig(**SMALL), 0)
    with pytest.raises(TypeError, match="ModelConfig"):
        build_detector({"backbone": {}}, 3)


def test_atss_config_builds_one_anchor_ratio(small):
    model = build_detector(ModelConfig(**SMALL, anchors={"ratios": [1.0]}, assigner={"name": "atss"}), 2)
    images = torch.randn(1, 3, 128, 128)
    out = model(images)
    lt = model.loss_targets(out, model.anchors(images), [{"boxes": torch.tensor([[20.0, 20, 70, 60]]),
                                                          "labels": torch.tensor([1])}])
    assert out["cls_logits"].shape[1] == 2 * (256 + 64 + 16 + 4 + 1) and lt.num_pos > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_everything_stays_on_the_input_device():
    device = torch.device("cuda")
    model = build_detector(ModelConfig(**SMALL), 3).to(device)
    images = torch.randn(2, 3, 256, 192, device=device)
    out = model(images)
    anchors = model.anchors(images)
    targets = [{"boxes": torch.tensor([[10.0, 10, 90, 120]], device=device), "labels": torch.tensor([2]),
                "crowd_boxes": torch.tensor([[100.0, 100, 180, 250]]), "orig_size": (256, 192), "scale": 1.0},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "orig_size": (512, 384),
                "scale": 0.5}]
    lt = model.loss_targets(out, anchors, targets)
    assert anchors.boxes.device.type == lt.targets.device.type == lt.pos_pred_boxes.device.type == "cuda"
    (lt.logits.sum() + lt.pos_pred_boxes.sum()).backward()
    out = {k: v.detach() + 5 for k, v in model(images).items()}
    dets = model.postprocess(out, anchors, targets)
    assert dets[0]["boxes"].device.type == "cuda" and len(dets[0]["scores"]) == 100
    assert dets[1]["boxes"][:, 2].max() <= 384 and dets[1]["boxes"][:, 3].max() <= 512


@pytest.mark.parametrize("init, check", [
    ("normal", lambda w: abs(w.std().item() - 0.01) < 0.002),  # ablation code: N(0, 0.01)
    ("xavier_uniform", lambda w: w.abs().max().item() <= (6 / (w.shape[0] * 9 + w.shape[1] * 9)) ** 0.5),
    ("kaiming_uniform", lambda w: w.std().item() > 0.012),
])
def test_fpn_init_options(init, check):
    from models.fpn import FPN
    from models.config import FPN_INITS

    assert init in FPN_INITS
    fpn = FPN(in_channels=[64, 128, 256], channels=64, init=init)
    for conv in list(fpn.output) + [fpn.p6, fpn.p7]:
        assert check(conv.weight) and conv.bias.abs().sum() == 0
