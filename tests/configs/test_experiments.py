"""Every experiment YAML in configs/ loads with the real loader and encodes the paper's settings.

The paper settings checked here come from ../shared/docs/reference-settings.md (Sec. 5, Table 2/4/6, App. G).
A last test builds every distinct (model, loss) of the experiments at smoke size and runs one training step.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from training.config import load_config
from tests.fixtures.script_loader import load_script

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.relative_to(REPO) for p in (REPO / "configs").rglob("*.yaml"))
EXPERIMENTS = [p for p in CONFIGS if p.parent.name != "_base_" and p.parent.name != "demo"]
MAIN_EXPERIMENTS = ("table2/alrp_giou_sb", "table2/alrp_giou_sb_atss", "table2/aploss", "fig4/focal",
                    "table6/alrp800_r101")
SQRT2 = 2 ** 0.5


def _load(name: str, overrides=()):
    return load_config(REPO / "configs" / f"{name}.yaml", overrides)


def _as_dict_without_name(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    d.pop("name")
    return d


@pytest.mark.parametrize("path", CONFIGS, ids=str)
def test_every_config_loads(path):
    cfg = load_config(REPO / path)
    assert cfg.name == path.stem


def test_main_experiment_configs_exist():
    for name in MAIN_EXPERIMENTS:
        assert (REPO / "configs" / f"{name}.yaml").is_file(), name


@pytest.mark.parametrize("path", EXPERIMENTS, ids=str)
def test_experiments_are_small_diffs_on_a_base(path):
    text = (REPO / path).read_text()
    assert "_base_:" in text
    settings = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(settings) <= 16, f"{path} should be a small diff on a base ({len(settings)} lines)"


def test_ablation_base_is_the_paper_setting():
    cfg = _load("table2/alrp_giou_sb")
    t, m, d, loss = cfg.train, cfg.model, cfg.data, cfg.loss
    assert (t.epochs, t.batch_size, t.ref_batch_size, t.optimizer, t.lr) == (100, 32, 32, "sgd", 0.008)
    assert (t.momentum, t.weight_decay, t.lr_steps, t.lr_gamma, t.warmup_iters) == (0.9, 1e-4, [60, 80], 0.1, 500)
    assert t.warmup_mode == "ablation" and t.grad_clip is None
    assert (loss.name, loss.box_loss, loss.self_balance, loss.sb_init, loss.delta) == ("alrp", "giou", True, 50, 1)
    assert (d.train_size, d.eval_short_side, d.eval_max_size, d.train_preset) == (512, 500, 833, "ssd")
    assert (m.backbone.name, m.backbone.norm, m.backbone.frozen_stages) == ("resnet50", "frozen_bn", 1)
    assert (m.fpn.channels, m.head.channels, m.head.num_convs) == (256, 256, 4)
    assert m.anchors.scales == pytest.approx([1.0, SQRT2]) and m.anchors.ratios == [0.5, 1.0, 2.0]
    assert (m.assigner.name, m.assigner.pos_iou, m.assigner.neg_iou) == ("max_iou", 0.5, 0.4)
    assert m.postprocess.nms_iou == 0.5 and m.postprocess.max_detections == 100


def test_one_file_per_experiment():
    """No two experiment files resolve to the same settings (a shared row is listed by each sweep, not copied)."""
    resolved = {}
    for path in EXPERIMENTS:
        key = repr(_as_dict_without_name(load_config(REPO / path)))
        assert key not in resolved, f"{path} duplicates {resolved.get(key)}"
        resolved[key] = path


def test_config_stems_are_unique():
    """Run folders and the results table are keyed by the config's stem."""
    stems = [p.stem for p in EXPERIMENTS]
    assert len(stems) == len(set(stems))


def test_table2_rows_differ_only_where_the_paper_says():
    base = _as_dict_without_name(_load("table2/alrp_giou_sb"))
    expected = {
        "table2/alrp_iou_nosb": {"loss": {"box_loss": "iou", "self_balance": False}},
        "table2/alrp_iou_sb": {"loss": {"box_loss": "iou"}},
        "table2/alrp_giou_sb_atss": {"model": {"anchors": {"ratios": [1.0]}, "assigner": {"name": "atss"}}},
        "table2/aploss": {"loss": {"name": "ap", "box_loss": "smooth_l1", "self_balance": False,
                                   "smooth_l1_beta": 1.0, "box_loss_reduction": "per_coordinate"},
                          "train": {"lr": 0.002}},
    }
    for name, diff in expected.items():
        cfg = _as_dict_without_name(_load(name))
        assert _diff(base, cfg) == _flatten(diff), name


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _diff(a: dict, b: dict) -> dict:
    fa, fb = _flatten(a), _flatten(b)
    return {k: fb[k] for k in fb if fa.get(k) != fb[k]}


def test_table4_weights_and_sb_init():
    for box in ("iou", "giou"):
        for w in (1, 5, 10, 15, 20):
            loss = _load("table2/alrp_iou_nosb" if (box, w) == ("iou", 1) else f"table4/{box}_w{w}").loss
            assert (loss.name, loss.box_loss, loss.self_balance, loss.loc_weight) == ("alrp", box, False, w)
    for init, name in ((1, "table4/sbinit_1"), (10, "table4/sbinit_10"), (50, "table2/alrp_giou_sb"),
                       (100, "table4/sbinit_100")):
        loss = _load(name).loss
        assert (loss.box_loss, loss.self_balance, loss.sb_init) == ("giou", True, init)


def test_appendix_g1_ap_loss_variants():
    for box, plain_name, sb_name in (("smooth_l1", "table2/aploss", "g1/ap_sl1_sb"), ("iou", "g1/ap_iou", "g1/ap_iou_sb"),
                                     ("giou", "g1/ap_giou", "g1/ap_giou_sb")):
        plain, sb = _load(plain_name).loss, _load(sb_name).loss
        assert (plain.name, plain.box_loss, plain.self_balance, plain.loc_weight) == ("ap", box, False, 1.0)
        assert (sb.name, sb.box_loss, sb.self_balance) == ("ap", box, True)
        assert _load(plain_name).train.lr == 0.002


def test_table6_rows():
    backbones = {"r50": "resnet50", "r101": "resnet101", "x101": "resnext101_32x8d"}
    for scale, steps, size, batch, lr, scales in (
            (500, [75, 95], 512, 32, 0.008, [1.0, SQRT2]),
            (800, [60, 80], 800, 16, 0.004, [1.0, 2 ** (1 / 3), 2 ** (2 / 3)])):
        for key in (("r50", "r101", "x101") if scale == 500 else ("r101", "x101")):
            cfg = _load(f"table6/alrp{scale}_{key}")
            assert cfg.model.backbone.name == backbones[key]
            assert (cfg.train.lr_steps, cfg.train.batch_size, cfg.train.lr) == (steps, batch, lr)
            assert cfg.data.train_size == size and cfg.data.eval_short_side == (500 if scale == 500 else 800)
            assert cfg.model.assigner.name == "atss" and cfg.model.anchors.ratios == [1.0]
            assert cfg.model.anchors.scales == pytest.approx(scales)
            assert (cfg.loss.name, cfg.loss.box_loss, cfg.loss.self_balance) == ("alrp", "giou", True)
    assert _load("table6/alrp800_r101").data.eval_max_size == 1333
    dcn, x101 = _load("table6/alrp800_x101_dcn"), _load("table6/alrp800_x101")
    assert (dcn.model.backbone.name, dcn.model.backbone.dcn_stages) == ("resnext101_64x4d", ["c3", "c4", "c5"])
    assert dcn.model.backbone.dcn_modulated and x101.model.backbone.dcn_stages == []
    same = ("train", "data", "loss")
    assert all(getattr(dcn, key) == getattr(x101, key) for key in same)


def test_rank_groups_are_one_gpus_images_of_the_releases():
    """Both releases: 8 images per GPU at 500 (4 GPUs x 8 = 32), 4 at 800 (16); mmdet RetinaNet (focal): 2.

    The small-data configs (configs/small) are not the paper's and rank their whole batch."""
    for path in EXPERIMENTS:
        if path.parent.name == "small":
            assert load_config(REPO / path).loss.rank_group is None, path
            continue
        cfg = load_config(REPO / path)
        expected = {"focal": 2}.get(cfg.loss.name, 4 if cfg.data.train_size == 800 else 8)
        assert cfg.loss.rank_group == expected, path
        assert cfg.train.batch_size % expected == 0


def test_baselines_and_wrong_target():
    focal = _load("fig4/focal")
    assert (focal.loss.name, focal.loss.focal_alpha, focal.loss.focal_gamma, focal.loss.box_loss) == \
        ("focal", 0.25, 2.0, "l1")
    assert focal.train.lr / focal.train.ref_batch_size == pytest.approx(0.01 / 16)
    assert focal.model.anchors == _load("table2/alrp_giou_sb").model.anchors, "same anchors as the aLRP runs"
    ce = _load("fig4/ce")
    assert (ce.loss.name, ce.loss.focal_gamma, ce.loss.focal_alpha) == ("focal", 0.0, 0.75)
    assert _diff(_as_dict_without_name(focal), _as_dict_without_name(ce)) == {"loss.focal_gamma": 0.0,
                                                                             "loss.focal_alpha": 0.75}
    wrong = _load("g3/wrong_target")
    assert wrong.loss.wrong_target is True and _load("table2/alrp_giou_sb").loss.wrong_target is False


def test_smoke_overrides_apply_to_every_experiment():
    sweep = _load_sweep()
    for path in EXPERIMENTS:
        cfg = load_config(REPO / path, [*sweep.SMOKE_OVERRIDES, "data.root=datasets/trees"])
        assert (cfg.model.backbone.name, cfg.model.fpn.channels, cfg.data.train_size) == ("resnet18", 64, 128)
        assert cfg.train.max_iters == 2 and cfg.device == "cpu"


def _load_sweep():
    return load_script("scripts/sweep.py")


@pytest.mark.slow
def test_every_distinct_experiment_trains_one_smoke_step():
    """Forward, loss, backward of each distinct (model, loss code path) of the experiments at smoke size.

    Loss constants (loc_weight, sb_init) do not change the code path, so runs differing only there share a check.
    """
    criterion_mod = pytest.importorskip("alrp.losses.criterion")
    from models import build_detector

    sweep = _load_sweep()
    models, seen = {}, set()
    images = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 70.0, 90.0], [60.0, 30.0, 120.0, 80.0]]),
                "labels": torch.tensor([0, 1]), "image_id": 0}]
    for path in EXPERIMENTS:
        cfg = load_config(REPO / path, sweep.SMOKE_OVERRIDES)
        model_key = repr(dataclasses.asdict(cfg.model))
        loss = cfg.loss
        key = (model_key, loss.name, loss.box_loss, loss.self_balance, loss.wrong_target)
        if key in seen:
            continue
        seen.add(key)
        if model_key not in models:
            torch.manual_seed(0)
            models[model_key] = build_detector(cfg.model, num_classes=2).train()
        model = models[model_key]
        model.zero_grad(set_to_none=True)
        outputs = model(images)
        losses = criterion_mod.build_criterion(loss)(model.loss_targets(outputs, model.anchors(images), targets))
        assert math.isfinite(float(losses["total"].detach())), path
        losses["total"].backward()
        grads = [p.grad for p in model.head.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(gr).all() for gr in grads), path
    paper_models = {k for k in models if "'base_scale': 4.0" in k and "'weights': [0.1, 0.1, 0.2, 0.2]" in k}
    assert len(paper_models) == 5, ("max-IoU with 6 anchors, ATSS at 500 and ATSS at 800; the mmdet release's "
                                    "max-IoU and ATSS models")
    assert len(models) == 8, ("+ configs/small: anchors from 24 px; RetinaNet's unit box coder (small focal_sl1 and "
                              "fig4/focal)")
    assert len(seen) >= 12


def test_tree_setups_are_the_demo_with_the_bccd_setups_losses():
    """configs/small/trees_<setup>: the demo's recipe with only the loss (and RetinaNet's coder) changed, and the
    same loss section as the BCCD setup of that name, so both datasets compare the same losses."""
    demo = _as_dict_without_name(_load("demo/trees"))
    trees = sorted((REPO / "configs" / "small").glob("trees_*.yaml"))
    setups = {p.stem.removeprefix("trees_") for p in trees}
    assert {"alrp_giou_sb", "alrp_iou_sb", "alrp_iou_nosb", "aploss_sl1", "focal_sl1", "focal_giou",
            "torchvision_retinanet"} <= setups
    for path in trees:
        setup = path.stem.removeprefix("trees_")
        cfg = _load(f"small/trees_{setup}")
        changed = {k.split(".")[0] if k.startswith("loss.") else k for k in _diff(demo, _as_dict_without_name(cfg))}
        assert changed <= {"loss", "model.box_coder.weights"}, (setup, changed)
        if setup.endswith("_period50"):  # a lever on the demo's SB period: tree tiles only
            assert dataclasses.replace(cfg.loss, sb_period_iters=None) == _load("demo/trees").loss
            continue
        bccd = _load(f"small/bccd_{setup}")
        assert (cfg.loss, cfg.model.box_coder) == (bccd.loss, bccd.model.box_coder), setup


def test_bccd_uniform_loc_weight_diagnostic_changes_only_the_loss_name():
    """configs/small/bccd_aploss_iou_sb: aLRP IoU + SB with L_loc as a plain mean over positives (AP Loss + IoU +
    SB), so a difference from bccd_alrp_iou_sb belongs to how aLRP couples localisation to the ranking (its
    rank-weighted L_loc and the localisation errors in its classification gradient), not to the recipe."""
    ranked, uniform = _load("small/bccd_alrp_iou_sb"), _load("small/bccd_aploss_iou_sb")
    assert _diff(_as_dict_without_name(ranked), _as_dict_without_name(uniform)) == {"loss.name": "ap"}
    assert (uniform.loss.box_loss, uniform.loss.box_loss_reduction, uniform.loss.self_balance) == \
        ("iou", "per_box", True)
