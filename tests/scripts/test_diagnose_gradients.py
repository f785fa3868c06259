"""benchmarks/diagnose_gradients.py: the logit-gradient statistics and the self-balance replay."""
import json
import math

import pytest
import torch

from alrp.losses.criterion import build_criterion, focal_grad
from alrp.losses.config import LossConfig
from alrp.losses.targets import LossTargets
from tests.fixtures.script_loader import load_script

diag = load_script("benchmarks/diagnose_gradients.py")


def _targets():
    # 3 anchors x 2 classes, row-major (anchor, class): anchor 0 positive for class 1, anchor 2 ignored.
    logits = torch.tensor([-1.0, 0.5, -2.0, -0.2, 0.3, 0.1])
    targets = torch.tensor([0, 1, 0, 0, -1, -1])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    return LossTargets(logits=logits, targets=targets, pos_pred_boxes=boxes + 1, pos_gt_boxes=boxes,
                       pos_pred_deltas=torch.zeros(1, 4), pos_gt_deltas=torch.zeros(1, 4))


def test_alrp_negatives_get_as_much_gradient_as_positives():
    stats = diag.logit_gradients(build_criterion(LossConfig(name="alrp")), _targets(), num_classes=2)
    assert stats["P"] == 1 and stats["N"] == 3 and stats["sum_g_neg/sum_g_pos"] == pytest.approx(1.0, abs=1e-6)
    assert stats["P_class1"] == 1 and stats["P_class0"] == 0
    assert stats["mean_g_pos_class1"] == pytest.approx(stats["mean_g_pos"])


def test_focal_statistics_match_the_analytic_gradient():
    lt = _targets()
    stats = diag.logit_gradients(build_criterion(LossConfig(name="focal", box_loss="giou")), lt, num_classes=2)
    g = focal_grad(lt.logits, lt.targets.eq(1).float(), 0.25, 2.0).abs()  # / P = 1
    assert stats["mean_g_pos"] == pytest.approx(float(g[1]), rel=1e-5)
    assert stats["mean_g_neg"] == pytest.approx(float(g[[0, 2, 3]].mean()), rel=1e-5)
    assert stats["neg_nonzero"] == 3
    assert stats["neg_above_1pct"] == int((g[[0, 2, 3]] > 0.01 * g[1]).sum())


def test_sb_replay_windows(tmp_path):
    lines = [{"type": "iter", "iteration": i, "cls": 0.9, "loc": 0.1 if i <= 2 else 0.3, "loc_weight": 50.0}
             for i in range(1, 5)] + [{"type": "epoch", "iteration": 2}, {"type": "epoch", "iteration": 4}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = diag.sb_replay(path, [1])
    assert out["period 2"] == [(2, pytest.approx(10.0)), (4, pytest.approx(4.0))]  # (0.9 + 0.1) / 0.1, 1.2 / 0.3
    assert [w for _, w in out["period 1"]] == pytest.approx([10.0, 10.0, 4.0, 4.0])
    assert out["logged (run)"] == [(1, 50.0), (3, 50.0)]



def test_per_class_gradient_sums_partition_the_batch():
    """Pairs (anchor, class): 1 is the only positive (class 1); 3 is the only class-1 negative, 0 and 2 are class 0's.
    Focal's gradient is per pair (focal_grad), so each class's sums are known; aLRP's class sums add up to its
    balanced totals (Theorem 2: negatives' |g| = positives' |g|)."""
    lt = _targets()
    focal = diag.logit_gradients(build_criterion(LossConfig(name="focal", box_loss="giou")), lt, num_classes=2)
    g = focal_grad(lt.logits, lt.targets.eq(1).float(), 0.25, 2.0).abs()
    assert focal["sum_g_pos_class1"] == pytest.approx(float(g[1]), rel=1e-5) and focal["sum_g_pos_class0"] == 0
    assert focal["sum_g_neg_class1"] == pytest.approx(float(g[3]), rel=1e-5)
    assert focal["sum_g_neg_class0"] == pytest.approx(float(g[0] + g[2]), rel=1e-5)
    alrp = diag.logit_gradients(build_criterion(LossConfig(name="alrp")), lt, num_classes=2)
    assert alrp["sum_g_neg_class0"] + alrp["sum_g_neg_class1"] == pytest.approx(alrp["sum_g_pos_class1"], rel=1e-5)


def test_class_push_ratios_pool_the_batches():
    rows = [{"sum_g_pos_class0": 1.0, "sum_g_neg_class0": 3.0, "sum_g_pos_class1": 0.0, "sum_g_neg_class1": 2.0},
            {"sum_g_pos_class0": 3.0, "sum_g_neg_class0": 1.0, "sum_g_pos_class1": 0.0, "sum_g_neg_class1": 0.0}]
    ratios = diag.class_push_ratios(rows, 2)
    assert ratios[0] == pytest.approx(1.0)  # (3 + 1) / (1 + 3), not the mean of 3 and 1/3
    assert math.isnan(ratios[1])


def test_mean_over_batches_skips_only_missing_values():
    assert diag.mean_over_batches([1.0, math.nan, 3.0]) == (2.0, 2)
    mean, n = diag.mean_over_batches([math.inf, 1.0])
    assert mean == math.inf and n == 2
    mean, n = diag.mean_over_batches([math.nan])
    assert math.isnan(mean) and n == 0


def test_alrp_loc_weight_follows_the_positives_each_one_outranks():
    # Anchor 0 positive for class 0 (logit 2, rank 1), anchor 1 positive for class 1 (logit 1, rank 2), the negatives
    # below both. L_loc = (1/2) [E_0 / 1 + (E_1 + E_0) / 2]: weights 3/4 and 1/4, against 1/2 each if uniform.
    logits = torch.tensor([2.0, -3.0, -3.0, 1.0, -3.0, -3.0])
    targets = torch.tensor([1, 0, 0, 1, 0, 0])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 40.0]])
    lt = LossTargets(logits=logits, targets=targets, pos_pred_boxes=boxes + 1, pos_gt_boxes=boxes,
                     pos_pred_deltas=torch.zeros(2, 4), pos_gt_deltas=torch.zeros(2, 4))
    stats = diag.loc_weight_shares(build_criterion(LossConfig(name="alrp", box_loss="giou")), lt, num_classes=2)
    assert stats["loc_share_class0"] == pytest.approx(0.75) and stats["loc_share_class1"] == pytest.approx(0.25)
    assert stats["pos_share_class0"] == stats["pos_share_class1"] == 0.5
    other_batch = {"loc_share_class0": 0.2, "pos_share_class0": 0.1, "loc_share_class1": 0.8, "pos_share_class1": 0.9}
    # summed over batches: class 0 (0.75 + 0.2) / (0.5 + 0.1), class 1 (0.25 + 0.8) / (0.5 + 0.9)
    assert diag.loc_weight_ratios([stats, other_batch], 2) == pytest.approx([0.95 / 0.6, 1.05 / 1.4])
    focal = build_criterion(LossConfig(name="focal", box_loss="giou"))
    grouped = build_criterion(LossConfig(name="alrp", box_loss="giou", rank_group=1))
    assert diag.loc_weight_shares(focal, lt, 2) == {} and diag.loc_weight_shares(grouped, lt, 2) == {}
    assert math.isnan(diag.loc_weight_ratios([{}], 1)[0])


def test_json_out_is_strict_json(tmp_path, monkeypatch):
    """A statistic with no batches to average is NaN; --json-out writes it as null, never as a bare NaN."""
    monkeypatch.setattr(diag, "sb_replay", lambda path, periods: {"period 8": [(8, math.nan), (16, 2.0)]})
    out = tmp_path / "diag.json"
    assert diag.main(["--sb-from", str(tmp_path / "metrics.jsonl"), "--batches", "0", "--json-out", str(out)]) == 0

    def reject(constant):
        raise ValueError(f"not strict JSON: {constant}")

    assert json.loads(out.read_text(), parse_constant=reject) == {"sb": {"period 8": [[8, None], [16, 2.0]]}}
