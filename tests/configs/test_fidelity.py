"""The paper's configs resolve to the values of the authors' releases (docs/fidelity.md gives the sources).

Ablation-code family: everything built on configs/_base_/coco_r50_500.yaml (Tables 2, 4, 6, Appendix G).
mmdet family: configs/mmdet/.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from training.config import load_config

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "configs"
ALL = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if p.parent.name != "_base_")
MMDET = [p for p in ALL if p.parent.name == "mmdet"]
SMALL = {"small", "demo"}  # CPU-sized configs with their own datasets, not paper configs
PAPER = [p for p in ALL if p not in MMDET and p.parent.name not in SMALL]


def _load(path: Path):
    return load_config(path)


def _find(name: str) -> Path:
    return CONFIG_DIR / f"{name}.yaml"


def test_the_families_are_not_empty():
    assert len(PAPER) >= 30 and len(MMDET) >= 3


@pytest.mark.parametrize("path", PAPER, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_paper_configs_use_the_ablation_code_pipeline(path):
    cfg = _load(path)
    d, m = cfg.data, cfg.model
    assert (d.pad_divisor, d.aspect_grouping, d.ssd.photometric_clip) == (32, True, False)
    assert (d.ssd.lighting, d.ssd.crop_require, d.ssd.crop_modes) == ("pca", "any", [None, 0.1, 0.3, 0.7, 0.9, 0.0])
    assert len(d.ssd.interpolations) == 5
    assert m.assigner.crowd_anchors == "negative"
    assert (m.backbone.norm, m.backbone.freeze_affine, m.backbone.frozen_stages) == ("frozen_bn", True, 1)
    assert (m.fpn.p6_from, m.fpn.relu_before_p7, m.fpn.init) == ("c5", True, "normal")
    assert (m.head.box_init_std, m.head.prior_prob, m.anchors.center_offset) == (0.001, 0.01, 0.5)
    assert m.postprocess.level_score_thresholds == [0.01, 0.01, 0.01, 0.01, 0.0]
    assert (m.postprocess.topk_unit, m.postprocess.pre_nms_topk, m.postprocess.nms_iou) == ("pair", 1000, 0.5)
    assert cfg.train.warmup_iters == 500
    if cfg.loss.name != "focal":
        assert cfg.train.warmup_mode == "ablation"
    if cfg.loss.self_balance:
        assert cfg.loss.sb_period_iters is None and cfg.loss.sb_init > 0


@pytest.mark.parametrize("name", ["table2/aploss", "g1/ap_sl1_sb"])
def test_ap_loss_baseline_box_loss_is_the_released_one(name):
    cfg = _load(_find(name))
    loss = cfg.loss
    assert (loss.name, loss.box_loss, loss.smooth_l1_beta, loss.box_loss_reduction) == \
        ("ap", "smooth_l1", 1.0, "per_coordinate")
    assert (loss.loc_weight, cfg.train.lr, cfg.train.batch_size) == (1.0, 0.002, 32)


@pytest.mark.parametrize("box", ["iou", "giou"])
def test_g1_iou_rows_divide_by_4p_as_the_ablation_code(box):
    for name, sb in ((f"g1/ap_{box}", False), (f"g1/ap_{box}_sb", True)):
        loss = _load(_find(name)).loss
        assert (loss.name, loss.box_loss, loss.box_loss_reduction, loss.self_balance) == \
            ("ap", box, "per_coordinate", sb)


def test_g1_sb_configs_say_there_is_no_released_code_path():
    for name in ("g1/ap_sl1_sb", "g1/ap_iou_sb", "g1/ap_giou_sb"):
        text = _find(name).read_text().lower()
        assert "no released code path" in text, name


def test_focal_baseline_is_mmdetection_retinanet():
    cfg = _load(_find("fig4/focal"))
    loss, t = cfg.loss, cfg.train
    assert (loss.focal_alpha, loss.focal_gamma, loss.box_loss, loss.box_loss_reduction) == \
        (0.25, 2.0, "l1", "per_box")
    assert cfg.model.box_coder.weights == [1.0, 1.0, 1.0, 1.0]
    assert (t.lr, t.ref_batch_size, t.warmup_mode, t.warmup_factor) == (0.01, 16, "linear", 0.001)


def test_800_configs_are_not_padded():
    cfg = _load(_find("table6/alrp800_r101"))
    assert cfg.data.train_size % cfg.data.pad_divisor == 0


def test_no_absolute_paths_in_configs():
    for path in CONFIG_DIR.rglob("*.yaml"):
        for line in path.read_text().splitlines():
            assert "/work/" not in line and "/home/" not in line, f"{path}: {line}"


@pytest.mark.parametrize("path", MMDET, ids=lambda p: p.stem)
def test_mmdet_configs_select_the_mmdet_pipeline(path):
    cfg = _load(path)
    d, m, t = cfg.data, cfg.model, cfg.train
    assert (d.ssd.lighting, d.ssd.crop_require, d.ssd.interpolations) == ("channel_swap", "all", ["linear"])
    assert 0.5 in d.ssd.crop_modes and d.ssd.photometric_clip is False and d.pad_divisor == 32
    assert d.normalize == "rgb_mean_std" and m.assigner.crowd_anchors == "negative"
    assert (m.backbone.norm, m.backbone.freeze_affine) == ("frozen_bn", False)
    assert (m.fpn.relu_before_p7, m.fpn.init, m.head.box_init_std) == (False, "xavier_uniform", 0.01)
    assert m.anchors.center_offset == 0.0
    assert (m.postprocess.topk_unit, m.postprocess.pre_nms_topk, m.postprocess.score_threshold) == \
        ("anchor", 1000, 0.05)
    assert m.postprocess.level_score_thresholds is None
    assert (t.warmup_mode, t.warmup_factor, t.warmup_iters) == ("linear", 0.001, 500)
    if cfg.loss.self_balance:
        assert cfg.loss.sb_period_iters == 3665
    if cfg.loss.name == "ap":
        loss = cfg.loss
        assert (loss.box_loss, loss.smooth_l1_beta, loss.box_loss_reduction, loss.self_balance) == \
            ("smooth_l1", 1.0, "per_coordinate", False)


def test_mmdet_rows_of_the_release():
    ap, alrp, atss = (_load(_find(f"mmdet/{s}")) for s in ("mmdet_aploss_r50_500", "mmdet_alrp_r50_500",
                                                           "mmdet_alrp_r50_atss_500"))
    assert (ap.train.lr, alrp.train.lr, atss.train.lr) == (0.002, 0.008, 0.008)
    assert (ap.train.lr_steps, alrp.train.lr_steps, atss.train.lr_steps) == ([60, 80], [60, 80], [75, 95])
    assert (alrp.loss.name, alrp.loss.box_loss, atss.model.assigner.name) == ("alrp", "giou", "atss")
    assert atss.model.anchors.ratios == [1.0] and len(atss.model.anchors.scales) == 2
