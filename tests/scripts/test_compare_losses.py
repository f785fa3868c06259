"""scripts/compare_losses.py (lr grid, seeds, resume/skip, dry run), its report (compare_report.py) and the
torchvision reference row (train_torchvision.py)."""
import json
import math
from pathlib import Path

import pytest
import torch

from tests.fixtures.locks import count_table_locks, lock_is_free
from tests.fixtures.synthetic import write_synthetic_coco
from tests.fixtures.script_loader import load_script

report = load_script("scripts/compare_report.py")

TINY = ["data.train_size=128", "data.eval_short_side=96", "data.eval_max_size=128", "model.head.num_convs=1",
        "train.log_interval=1", "train.warmup_iters=1", "eval.batch_size=4"]


def _summary(setup, lr, seed, ap, tuning=True, curve=((5, 0.1, 0.9), (10, 0.2, 0.8))):
    return {"setup": setup, "lr": lr, "seed": seed, "tuning": tuning, "iterations": 10, "train_seconds": 60.0,
            "s_per_iter": 6.0, "wall_seconds": 90.0, "per_class_AP": {"a": ap / 2},
            "metrics": {"AP": ap, "AP50": 2 * ap, "AP75": ap, "AP90": 0.0, "oLRP": 1 - ap, "oLRP_loc": None,
                        "oLRP_FP": 0.5, "oLRP_FN": 0.5}, "curve": [list(p) for p in curve]}


def test_train_time_and_curve_from_metrics_lines():
    records = [{"type": "iter", "iteration": 5}, {"type": "epoch", "iteration": 8, "train_seconds": 16.0, "AP": 0.1,
               "oLRP": 0.9}, {"type": "stop", "iteration": 10, "train_seconds": 4.0},
               {"type": "eval", "iteration": 10, "AP": 0.2, "oLRP": 0.8}]
    assert report.train_time(records) == (10, 20.0)
    assert report.curve(records) == [[8, 0.1, 0.9], [10, 0.2, 0.8]]


def test_class_curves_from_metrics_lines():
    records = [{"type": "iter", "iteration": 5, "AP/x": 0.9},  # not an evaluation
               {"type": "epoch", "iteration": 8, "AP": 0.1, "AP/RBC": 0.2, "AP/Platelets": 0.0},
               {"type": "eval", "iteration": 10, "AP": 0.2, "AP/RBC": 0.3, "AP/Platelets": 0.05},
               {"type": "eval", "iteration": 10, "AP": 0.2, "AP/RBC": 0.4}]  # a later evaluation replaces it whole
    assert report.class_curves(records) == {"Platelets": [[8, 0.0]], "RBC": [[8, 0.2], [10, 0.4]]}
    assert report.class_curves([{"type": "eval", "iteration": 10, "AP": 0.2}]) == {}


def test_class_curves_plot_only_when_logged_and_filled_in_for_older_finished_runs(tmp_path):
    compare = load_script("scripts/compare_losses.py")
    setup, grid = "focal_sl1", {"focal_sl1": 0.001}
    old = _summary(setup, 0.001, 0, 0.3)  # summarised before class curves existed
    (tmp_path / "a.png").write_bytes(b"an earlier figure")
    assert report.plot_class_curves(report.aggregate([old], [setup], grid), tmp_path / "a.png") is False
    assert not (tmp_path / "a.png").exists()  # a stale figure is not left beside the new results
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    args = compare.parse_args(["--data", str(tmp_path / "d"), "--setups", setup, "--seeds", "0", "--lrs", "0.001",
                               "--iters", "10", "--out", str(tmp_path / "out")])
    run_dir = tmp_path / "out" / "runs" / setup / "lr0.001_seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "compare_result.json").write_text(json.dumps(old))
    (run_dir / "metrics.jsonl").write_text(json.dumps({"type": "eval", "iteration": 10, "AP": 0.3, "AP/a": 0.15}))
    summary = compare.execute(args, compare.Run(setup, 0.001, 0, 10, tuning=True))
    assert summary["class_curves"] == {"a": [[10, 0.15]]} and summary["metrics"]["AP"] == 0.3
    assert report.plot_class_curves(report.aggregate([summary], [setup], grid), tmp_path / "b.png") is True
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mean_std_is_the_sample_std_and_skips_undefined():
    mean, std = report.mean_std([0.297, 0.385, None, math.nan])
    assert mean == pytest.approx(0.341) and std == pytest.approx(0.0622254, abs=1e-6)  # |a - b| / sqrt(2)
    assert report.mean_std([0.5]) == (0.5, None)


def test_best_lr_and_table_use_the_best_lr_runs_only():
    compare = load_script("scripts/compare_losses.py")
    summaries = [_summary("x", 0.001, 0, 0.30), _summary("x", 0.002, 0, 0.40),
                 _summary("x", 0.002, 1, 0.20, tuning=False)]
    assert compare.best_lr(summaries, "x", [0.001, 0.002]) == 0.002 and compare.best_lr(summaries, "y", [0.001]) is None
    assert compare.best_lr(summaries, "x", [0.001, 0.002, 0.004]) is None  # the grid has not finished
    table = report.aggregate(summaries, ["x"], {"x": 0.002})
    row = table["x"]
    assert row["seeds"] == [0, 1] and row["mean"]["AP"] == pytest.approx(0.30)
    assert row["grid_AP"] == {"0.001": 0.30, "0.002": 0.40} and row["per_class_AP"]["a"] == pytest.approx(0.15)
    settings = {"data": "d", "seeds": [0, 1], "lrs": [0.001, 0.002], "device": "cpu", "budget": "10 iterations",
                "command": "c"}
    md = report.markdown(table, settings)
    assert "| x | 0.002 | 2 | 10 | 1.0 ± 0.0 | 1.5 ± 0.0 | 6.000 ± 0.000 | 0.300 ± 0.141 |" in md
    assert "| x | 0.300 | 0.400 |" in md and "ONE seed" not in md
    one = report.markdown(report.aggregate(summaries[:2], ["x"], {"x": 0.002}), {**settings, "seeds": [0]})
    assert "ONE seed" in one and "| 0.400 |" in one  # no ± without a spread


def test_dry_run_prints_grid_then_waits_for_the_best_lr(tmp_path, capsys):
    compare = load_script("scripts/compare_losses.py")
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    out = tmp_path / "out"
    done = out / "runs" / "focal_giou" / "lr0.001_seed0"
    done.mkdir(parents=True)
    (done / "compare_result.json").write_text(json.dumps(_summary("focal_giou", 0.001, 0, 0.3)))
    argv = ["--data", str(tmp_path / "d"), "--setups", "alrp_giou_sb,focal_giou,torchvision_retinanet",
            "--seeds", "0,1", "--lrs", "0.001,0.002", "--iters", "40", "--out", str(out), "--dry-run"]
    assert compare.main(argv) == 0
    text = capsys.readouterr().out
    assert text.count("python train.py") == 3 and text.count("python eval.py") == 3  # 2 + 1 not yet done
    assert text.count("scripts/train_torchvision.py") == 2
    assert "train.max_iters=40" in text and "train.eval_interval=3" in text  # 2 it/epoch: 20 epochs / 6 evals
    assert "# alrp_giou_sb: seeds [1] after its lr grid" in text and "# focal_giou: seeds [1] after" in text
    assert "focal_giou lr 0.001 seed 0" not in text  # finished: skipped
    argv[argv.index("--iters"):argv.index("--iters") + 2] = ["--minutes", "5"]
    assert compare.main(argv) == 0
    text = capsys.readouterr().out
    assert text.count("# calibration of") == 3 and "train.max_iters=10" in text and "train.eval_interval=0" in text


def test_iters_per_setup_gives_each_setup_its_own_budget(tmp_path, capsys):
    compare = load_script("scripts/compare_losses.py")
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    argv = ["--data", str(tmp_path / "d"), "--setups", "alrp_giou_sb,focal_sl1", "--seeds", "0", "--lrs", "0.001",
            "--iters", "focal_sl1=30,alrp_giou_sb=20", "--out", str(tmp_path / "out"), "--dry-run"]
    assert compare.parse_args(argv).iters == {"alrp_giou_sb": 20, "focal_sl1": 30}
    assert compare.main(argv) == 0
    commands = [line for line in capsys.readouterr().out.splitlines() if "python train.py" in line]
    assert len(commands) == 2
    assert "bccd_alrp_giou_sb.yaml" in commands[0] and "train.max_iters=20" in commands[0]
    assert "bccd_focal_sl1.yaml" in commands[1] and "train.max_iters=30" in commands[1]
    assert compare.parse_iters("7", ["a", "b"]) == {"a": 7, "b": 7}
    for bad in ("alrp_giou_sb=20", "alrp_giou_sb=20,focal_sl1=30,focal_giou=5", "alrp_giou_sb=20,focal_sl1=x",
                "alrp_giou_sb=20,alrp_giou_sb=21", "0", "alrp_giou_sb=0,focal_sl1=3"):
        argv[argv.index("--iters") + 1] = bad
        with pytest.raises(SystemExit):
            compare.parse_args(argv)
        assert "--iters" in capsys.readouterr().err, bad


def test_report_tabulates_the_finished_runs_and_starts_none(tmp_path, monkeypatch, capsys):
    compare = load_script("scripts/compare_losses.py")
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    out = tmp_path / "out"
    for seed, ap in ((0, 0.30), (1, 0.34)):
        done = out / "runs" / "focal_giou" / f"lr0.001_seed{seed}"
        done.mkdir(parents=True)
        (done / "compare_result.json").write_text(json.dumps(_summary("focal_giou", 0.001, seed, ap, seed == 0)))
    (out / "calibration.json").write_text(json.dumps({"focal_giou": {"s_per_iter": 2.0, "iters": 10}}))

    def no_run(cmd):
        raise AssertionError(f"--report started {cmd}")

    monkeypatch.setattr(compare, "_execute", no_run)
    argv = ["--data", str(tmp_path / "d"), "--setups", "focal_giou,alrp_giou_sb", "--seeds", "0,1,2",
            "--lrs", "0.001", "--out", str(out), "--report"]  # no budget needed
    assert compare.main(argv) == 0
    printed = capsys.readouterr().out
    assert "# not finished: focal_giou lr 0.001 seed 2" in printed
    assert "# not finished: alrp_giou_sb lr 0.001 seed 0" in printed

    def strict(text):
        raise AssertionError(f"results.json holds {text}")

    results = json.loads((out / "results.json").read_text(), parse_constant=strict)  # no NaN for the empty row
    assert results["setups"]["focal_giou"]["seeds"] == [0, 1]
    assert results["setups"]["focal_giou"]["mean"]["AP"] == pytest.approx(0.32)
    assert results["setups"]["alrp_giou_sb"]["runs"] == [] and results["setups"]["alrp_giou_sb"]["mean"]["AP"] is None
    assert results["settings"]["budget"] == ("the finished runs (--report), iterations per run: focal_giou 10, "
                                             "alrp_giou_sb –")  # from the runs (_summary: 10 iterations)
    assert "| focal_giou | 0.001 | 2 |" in (out / "results.md").read_text()
    with pytest.raises(SystemExit):
        compare.parse_args(argv[:-1])  # without --report a budget is required
    assert "--iters --minutes is required" in capsys.readouterr().err


def _finished(out, setup, lr, seed, ap):
    run = out / "runs" / setup / f"lr{lr:g}_seed{seed}"
    run.mkdir(parents=True, exist_ok=True)
    (run / "compare_result.json").write_text(json.dumps(_summary(setup, lr, seed, ap, seed == 0)))
    return run


def test_a_sitting_with_other_setups_adds_to_the_table_instead_of_replacing_it(tmp_path, monkeypatch, capsys):
    """Sittings with other --setups into one --out: each table keeps the earlier table's rows, tabulated again from
    their runs on disk (so never staler than them), in the earlier order, with the command that made them."""
    compare = load_script("scripts/compare_losses.py")
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    out = tmp_path / "out"
    monkeypatch.setattr(compare, "_execute", lambda cmd: 1)
    for seed, ap in ((0, 0.30), (1, 0.34)):
        _finished(out, "focal_giou", 0.001, seed, ap)
        _finished(out, "alrp_giou_sb", 0.001, seed, ap + 0.1)
    base = ["--data", str(tmp_path / "d"), "--seeds", "0,1", "--lrs", "0.001", "--out", str(out), "--iters", "10"]

    def table():
        return json.loads((out / "results.json").read_text())

    assert compare.main(["--setups", "focal_giou", *base]) == 0
    first_command = table()["settings"]["command"]
    assert compare.main(["--setups", "alrp_giou_sb", *base]) == 0
    assert list(table()["setups"]) == ["focal_giou", "alrp_giou_sb"]
    assert table()["setups"]["focal_giou"]["mean"]["AP"] == pytest.approx(0.32)
    assert table()["settings"]["iterations"] == {"focal_giou": 10, "alrp_giou_sb": 10}
    assert table()["settings"]["commands"]["focal_giou"] == first_command
    md = (out / "results.md").read_text()
    assert "| focal_giou | 0.001 | 2 |" in md and "| alrp_giou_sb | 0.001 | 2 |" in md
    assert f"- focal_giou: `{first_command}`" in md

    _finished(out, "focal_giou", 0.001, 1, 0.50)  # seed 1 redone since: the kept row follows its runs
    assert compare.main(["--setups", "alrp_giou_sb", *base]) == 0
    assert table()["setups"]["focal_giou"]["mean"]["AP"] == pytest.approx(0.40)
    assert table()["settings"]["commands"]["focal_giou"] == first_command  # kept over two later sittings
    (out / "runs" / "focal_giou" / "lr0.001_seed1" / "compare_result.json").unlink()  # a run removed
    assert compare.main(["--setups", "alrp_giou_sb", *base]) == 0
    assert table()["setups"]["focal_giou"]["seeds"] == [0]
    assert compare.main(["--setups", "focal_giou", *base, "--report"]) == 0  # the first row again: same place
    assert list(table()["setups"]) == ["focal_giou", "alrp_giou_sb"] and table()["settings"]["left_out"] == []


@pytest.mark.parametrize("other, key", [(["--seeds", "0"], "seeds"), (["--lrs", "0.001,0.002"], "lrs"),
                                        (["--device", "cuda:1"], "device"), (["--batch-size", "8"], "batch_size"),
                                        (["--set", "train.warmup_iters=0"], "overrides"), (["--data", "d2"], "data"),
                                        (["--minutes", "5"], "minutes")])
def test_rows_of_a_sitting_with_other_settings_are_left_out_by_name(tmp_path, monkeypatch, capsys, other, key):
    compare = load_script("scripts/compare_losses.py")
    for name in ("d", "d2"):
        write_synthetic_coco(tmp_path / name, "train", num_images=8)
    out = tmp_path / "out"
    (out / "calibration.json").parent.mkdir(parents=True)
    (out / "calibration.json").write_text(json.dumps({"alrp_giou_sb": {"s_per_iter": 2.0, "iters": 10}}))
    monkeypatch.setattr(compare, "_execute", lambda cmd: 1)
    for seed in (0, 1):
        _finished(out, "focal_giou", 0.001, seed, 0.3)
        _finished(out, "alrp_giou_sb", 0.001, seed, 0.4)
    _finished(out, "alrp_giou_sb", 0.002, 0, 0.35)  # the other grid's lr
    argv = {"--data": str(tmp_path / "d"), "--seeds": "0,1", "--lrs": "0.001", "--out": str(out), "--iters": "10"}
    assert compare.main(["--setups", "focal_giou", *[x for kv in argv.items() for x in kv]]) == 0
    flag, value = other
    argv = {**{k: v for k, v in argv.items() if not (flag == "--minutes" and k == "--iters")},
            flag: str(tmp_path / value) if flag == "--data" else value}
    assert compare.main(["--setups", "alrp_giou_sb", *[x for kv in argv.items() for x in kv]]) == 0  # finished runs
    results = json.loads((out / "results.json").read_text())
    assert list(results["setups"]) == ["alrp_giou_sb"]
    assert results["settings"]["left_out"][0].startswith(f"focal_giou (its sitting had other {key} (")
    assert f"left out of the table, from the earlier {out / 'results.json'}: focal_giou" in capsys.readouterr().out


def test_a_report_without_minutes_keeps_a_minutes_table_and_its_budget_kind(tmp_path, monkeypatch):
    compare = load_script("scripts/compare_losses.py")
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    out = tmp_path / "out"
    (out / "calibration.json").parent.mkdir(parents=True)
    (out / "calibration.json").write_text(json.dumps({s: {"s_per_iter": 2.0, "iters": 10}
                                                      for s in ("focal_giou", "alrp_giou_sb", "focal_sl1")}))
    monkeypatch.setattr(compare, "_execute", lambda cmd: 1)
    for setup in ("focal_giou", "alrp_giou_sb", "focal_sl1"):
        _finished(out, setup, 0.001, 0, 0.3)
    base = ["--data", str(tmp_path / "d"), "--seeds", "0", "--lrs", "0.001", "--out", str(out)]
    assert compare.main(["--setups", "focal_giou", *base, "--minutes", "5"]) == 0
    assert compare.main(["--setups", "alrp_giou_sb", *base, "--report"]) == 0
    assert json.loads((out / "results.json").read_text())["settings"]["minutes"] == 5
    assert compare.main(["--setups", "focal_sl1", *base, "--minutes", "5"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["setups"]) == ["focal_giou", "alrp_giou_sb", "focal_sl1"]
    assert results["settings"]["budget"].startswith("5 training minutes")


def test_a_table_from_before_the_sitting_record_is_left_out_with_that_reason(tmp_path, monkeypatch, capsys):
    compare = load_script("scripts/compare_losses.py")
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    out = tmp_path / "out"
    for setup in ("focal_giou", "alrp_giou_sb"):
        _finished(out, setup, 0.001, 0, 0.3)
    (out / "results.json").write_text(json.dumps({"settings": {"data": str(tmp_path / "d"), "seeds": [0],
                                                               "lrs": [0.001], "device": "cpu", "command": "old"},
                                                  "setups": {"focal_giou": {}}}))
    assert compare.main(["--data", str(tmp_path / "d"), "--setups", "alrp_giou_sb", "--seeds", "0", "--lrs",
                         "0.001", "--out", str(out), "--report"]) == 0
    printed = capsys.readouterr().out
    assert "focal_giou (its table predates the record of train_split, val_split, config_dir, prefix, minutes, " \
           "batch_size, overrides; rewrite that table once with --report and its own settings)" in printed


def test_the_lr_grid_in_another_order_is_the_same_sitting():
    sittings = load_script("scripts/compare_sittings.py")
    sitting = {k: None for k in sittings.SITTING_KEYS} | {"lrs": [0.001, 0.002], "seeds": [0, 1]}
    assert sittings.differing_keys({**sitting, "lrs": [0.002, 0.001]}, sitting) == []
    assert sittings.differing_keys({**sitting, "seeds": [1, 0]}, sitting) == ["seeds ([1, 0] vs [0, 1])"]
    assert sittings.differing_keys({**sitting, "lrs": [None, 0.001]}, sitting) == ["lrs ([None, 0.001] vs "
                                                                                   "[0.001, 0.002])"]
    assert sittings.differing_keys({**sitting, "lrs": 0.001}, sitting) == ["lrs (0.001 vs [0.001, 0.002])"]


def test_an_unreadable_earlier_table_is_named_not_silently_replaced(tmp_path, monkeypatch, capsys):
    compare = load_script("scripts/compare_losses.py")
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    out = tmp_path / "out"
    _finished(out, "alrp_giou_sb", 0.001, 0, 0.4)
    (out / "results.json").write_text('{"settings": {"data": ')  # half a file
    argv = ["--data", str(tmp_path / "d"), "--setups", "alrp_giou_sb", "--seeds", "0", "--lrs", "0.001", "--out",
            str(out), "--report"]
    assert compare.main(argv) == 0
    assert f"from the earlier {out / 'results.json'}: {out / 'results.json'} unreadable" in capsys.readouterr().out
    assert list(json.loads((out / "results.json").read_text())["setups"]) == ["alrp_giou_sb"]


def test_calibration_keeps_entries_a_concurrent_sitting_wrote(tmp_path, monkeypatch):
    """Two sittings with different --setups and one --out: neither may overwrite the other's calibration."""
    compare = load_script("scripts/compare_losses.py")
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    out = tmp_path / "out"
    other = {"focal_giou": {"s_per_iter": 2.0, "iters": 150}}

    def fake_execute(cmd):  # the calibration run: 10 iterations in 20 s; meanwhile the other sitting writes
        run_dir = Path(cmd[cmd.index("--output-dir") + 1]) / cmd[cmd.index("--name") + 1]
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").write_text(json.dumps({"type": "stop", "iteration": 10, "train_seconds": 20.0}))
        (out / "calibration.json").write_text(json.dumps(other))
        return 0

    monkeypatch.setattr(compare, "_execute", fake_execute)
    args = compare.parse_args(["--data", str(tmp_path / "d"), "--setups", "alrp_giou_sb", "--seeds", "0",
                               "--lrs", "0.001", "--minutes", "5", "--out", str(out)])
    assert compare.budget(args) == {"alrp_giou_sb": 150}  # 300 s at 2 s/iter
    calibration = json.loads((out / "calibration.json").read_text())
    assert set(calibration) == {"alrp_giou_sb", "focal_giou"}
    assert calibration["alrp_giou_sb"]["data"] == str((tmp_path / "d").resolve())
    assert calibration["alrp_giou_sb"]["device"] == "cpu"


def test_a_calibration_is_reused_only_on_its_own_data_and_device(tmp_path, monkeypatch, capsys):
    compare = load_script("scripts/compare_losses.py")
    for name in ("d", "e"):
        write_synthetic_coco(tmp_path / name, "train", num_images=8)
    out = tmp_path / "out"
    out.mkdir()
    (out / "calibration.json").write_text(json.dumps({
        "alrp_giou_sb": {"s_per_iter": 2.0, "iters": 150, "data": str((tmp_path / "d").resolve()), "device": "cpu"},
        "focal_giou": {"s_per_iter": 2.0, "iters": 140}}))  # written before data and device were recorded

    def no_run(cmd):
        raise AssertionError(f"started {cmd}")

    monkeypatch.setattr(compare, "_execute", no_run)
    argv = ["--setups", "alrp_giou_sb,focal_giou", "--seeds", "0", "--lrs", "0.001", "--minutes", "5", "--out",
            str(out), "--dry-run"]
    assert compare.budget(compare.parse_args(["--data", str(tmp_path / "d"), *argv])) == {"alrp_giou_sb": 150,
                                                                                           "focal_giou": 140}
    with pytest.raises(RuntimeError, match="calibrated with device cpu, not cuda"):
        compare.budget(compare.parse_args(["--data", str(tmp_path / "d"), "--device", "cuda", *argv]))
    assert compare.main(["--data", str(tmp_path / "e"), *argv]) == 1
    assert f"alrp_giou_sb was calibrated with data {(tmp_path / 'd').resolve()}, not" in capsys.readouterr().err


def test_torchvision_row_inputs_and_model(tmp_path):
    tv = load_script("scripts/train_torchvision.py")
    from training.config import load_config

    cfg = load_config("configs/small/bccd_torchvision_retinanet.yaml", TINY)
    net = tv.build_tv_retinanet(cfg, num_classes=3)
    assert net.anchor_generator.sizes[0] == (24.0, 24.0 * 2 ** 0.5)  # our base_scale 3 at stride 8
    images = torch.randn(2, 3, 128, 128)
    targets = [{"size": (96, 128), "boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0]]), "labels": torch.tensor([0])},
               {"size": (128, 64), "boxes": torch.tensor([[5.0, 5.0, 20.0, 60.0]]), "labels": torch.tensor([2])}]
    crops, tv_targets = tv.tv_inputs(images, targets, torch.device("cpu"))
    assert [tuple(c.shape) for c in crops] == [(3, 96, 128), (3, 128, 64)]
    assert torch.equal(crops[1], images[1, :, :128, :64]) and tv_targets[1]["labels"].tolist() == [2]
    losses = net.train()(crops, tv_targets)
    assert set(losses) == {"classification", "bbox_regression"} and all(torch.isfinite(v) for v in losses.values())


@pytest.mark.slow
def test_smoke_two_setups_two_seeds_table_and_curves(tmp_path, capsys):
    compare = load_script("scripts/compare_losses.py")
    write_synthetic_coco(tmp_path / "d", "train", num_images=8, size=(96, 128))
    write_synthetic_coco(tmp_path / "d", "val", num_images=4, size=(96, 128), seed=1)
    out = tmp_path / "out"
    argv = ["--data", str(tmp_path / "d"), "--setups", "alrp_giou_sb,torchvision_retinanet", "--seeds", "0,1",
            "--lrs", "0.001", "--iters", "2", "--batch-size", "2", "--evals", "2", "--out", str(out), "--set", *TINY]
    assert compare.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    for setup in ("alrp_giou_sb", "torchvision_retinanet"):
        row = results["setups"][setup]
        assert row["seeds"] == [0, 1] and row["best_lr"] == 0.001
        for run in row["runs"]:
            assert run["iterations"] == 2 and run["train_seconds"] > 0 and run["wall_seconds"] > 0
            assert 0.0 <= run["metrics"]["AP"] <= 1.0 and run["curve"][-1][0] == 2
            assert run["class_curves"] and all(points[-1][0] == 2 for points in run["class_curves"].values())
    md = (out / "results.md").read_text()
    assert "| alrp_giou_sb | 0.001 | 2 | 2 |" in md and "| torchvision_retinanet | 0.001 | 2 | 2 |" in md
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "class_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for seed in (0, 1):  # the torchvision row keeps no checkpoint: its final val detections are saved by name
        detections = json.loads((out / f"runs/torchvision_retinanet/lr0.001_seed{seed}/eval/final_val_results.json")
                                .read_text())
        assert isinstance(detections, list)  # empty here: 2 iterations leave every score below the threshold
    lines = [json.loads(x) for x in (out / "runs/alrp_giou_sb/lr0.001_seed0/metrics.jsonl").read_text().splitlines()]
    assert [x["train_seconds"] > 0 for x in lines if x["type"] == "stop"] == [True]  # max_iters inside the epoch
    capsys.readouterr()
    assert compare.main(argv) == 0  # a second sitting: every run is finished, nothing is trained again
    assert "+ " not in capsys.readouterr().out


def test_the_lr_grid_shows_this_sittings_tuning_seed_not_a_run_that_tuned_in_another_sitting(tmp_path, monkeypatch):
    """Seeds run one sitting each (`--seeds 0`, then `--seeds 1`) each record themselves as their sitting's tuning
    run; a sitting over `--seeds 0,1` tunes on seed 0 only, so its lr grid shows seed 0's AP."""
    compare = load_script("scripts/compare_losses.py")
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    out = tmp_path / "out"
    monkeypatch.setattr(compare, "_execute", lambda cmd: 1)
    for seed, ap in ((0, 0.30), (1, 0.25)):
        run = _finished(out, "focal_giou", 0.001, seed, ap)
        summary = json.loads((run / "compare_result.json").read_text())
        (run / "compare_result.json").write_text(json.dumps({**summary, "tuning": True}))
    assert compare.main(["--data", str(tmp_path / "d"), "--setups", "focal_giou", "--seeds", "0,1", "--lrs", "0.001",
                         "--out", str(out), "--report"]) == 0
    row = json.loads((out / "results.json").read_text())["setups"]["focal_giou"]
    assert row["grid_AP"] == {"0.001": pytest.approx(0.30)}
    assert row["seeds"] == [0, 1] and row["mean"]["AP"] == pytest.approx(0.275)


def test_a_sitting_holds_the_table_lock_once_from_reading_the_earlier_table_to_writing_its_own(tmp_path,
                                                                                           monkeypatch):
    """Two sittings into one --out that finish together: without the lock, both read the table before either
    writes, and the later write drops the other's new rows."""
    compare = load_script("scripts/compare_losses.py")
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    out = tmp_path / "out"
    _finished(out, "alrp_giou_sb", 0.001, 0, 0.4)
    held = []  # at the read and at each write: is the lock taken?
    read, write = compare.sittings.earlier_setups, compare.sittings.write_atomically
    monkeypatch.setattr(compare.sittings, "earlier_setups",
                        lambda *a: held.append(not lock_is_free(out / ".table.lock")) or read(*a))
    monkeypatch.setattr(compare.sittings, "write_atomically",
                        lambda *a: held.append(not lock_is_free(out / ".table.lock")) or write(*a))
    holds = count_table_locks(monkeypatch, compare.sittings)
    argv = ["--data", str(tmp_path / "d"), "--setups", "alrp_giou_sb", "--seeds", "0", "--lrs", "0.001", "--out",
            str(out), "--report"]
    assert compare.main(argv) == 0
    assert held == [True, True, True]  # the read, results.json and results.md
    assert holds == [out]  # one hold around all three, not released in between
    assert lock_is_free(out / ".table.lock")


def test_the_calibration_is_read_again_and_written_under_the_table_lock(tmp_path, monkeypatch):
    compare = load_script("scripts/compare_losses.py")
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    out = tmp_path / "out"
    held = []

    def fake_execute(cmd):
        run_dir = Path(cmd[cmd.index("--output-dir") + 1]) / cmd[cmd.index("--name") + 1]
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").write_text(json.dumps({"type": "stop", "iteration": 10, "train_seconds": 20.0}))
        return 0

    write = compare.sittings.write_atomically
    monkeypatch.setattr(compare, "_execute", fake_execute)
    monkeypatch.setattr(compare.sittings, "write_atomically",
                        lambda *a: held.append(not lock_is_free(out / ".table.lock")) or write(*a))
    holds = count_table_locks(monkeypatch, compare.sittings)
    args = compare.parse_args(["--data", str(tmp_path / "d"), "--setups", "alrp_giou_sb", "--seeds", "0",
                               "--lrs", "0.001", "--minutes", "5", "--out", str(out)])
    assert compare.budget(args) == {"alrp_giou_sb": 150}
    assert held == [True] and holds == [out]
