"""scripts/compare_levers.py: one compare_losses.py run per lever (which setups, lr, budget, overrides) and the
levers table."""
import json
import math
from pathlib import Path

import pytest
import yaml

from training.config import load_config, save_resolved_config

from tests.fixtures.locks import count_table_locks, lock_is_free
from tests.fixtures.script_loader import load_script
from tests.fixtures.synthetic import write_synthetic_coco

levers = load_script("scripts/compare_levers.py")
report = load_script("scripts/compare_report.py")


def _results(path, aps_by_setup):
    """A lever's results.json as compare_losses.py writes it (its aggregation over per-seed run summaries)."""
    summaries = [{"setup": setup, "lr": 0.001, "seed": i, "tuning": i == 0,
                  "metrics": {"AP": ap, "AP75": ap / 2, "oLRP": 1 - ap}}
                 for setup, aps in aps_by_setup.items() for i, ap in enumerate(aps)]
    setups = list(aps_by_setup)
    table = report.aggregate(summaries, setups, {s: 0.001 for s in setups})
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"settings": {}, "setups": table}))


def test_each_lever_changes_one_thing_and_skips_setups_it_does_not_apply_to(tmp_path):
    args = levers.parse_args(["--data", "datasets/bccd", "--lr", "0.0005", "--iters", "800",
                              "--setups", "alrp_giou_sb,alrp_iou_nosb,focal_sl1", "--out", str(tmp_path)])

    def value(argv, flag):
        return argv[argv.index(flag) + 1]

    base = levers.lever_argv(args, "baseline")
    assert value(base, "--lrs") == "0.0005" and value(base, "--iters") == "800" and "--set" not in base
    assert value(levers.lever_argv(args, "lr_x2"), "--lrs") == "0.001"
    assert value(levers.lever_argv(args, "schedule_x2"), "--iters") == "1600"
    delta = levers.lever_argv(args, "delta_0.5")
    assert value(delta, "--setups") == "alrp_giou_sb,alrp_iou_nosb" and delta[-1] == "loss.delta=0.5"  # no focal
    assert value(levers.lever_argv(args, "sb_period_100"), "--setups") == "alrp_giou_sb"  # only the SB setup
    sgd = levers.lever_argv(args, "sgd")
    assert value(sgd, "--lrs") == "0.0025" and "train.optimizer=sgd" in sgd
    assert value(sgd, "--out").endswith("/sgd")
    for lever, override in (("warmup_0", "train.warmup_iters=0"), ("warmup_200", "train.warmup_iters=200"),
                            ("rank_group_1", "loss.rank_group=1"), ("prior_0.1", "model.head.prior_prob=0.1")):
        argv = levers.lever_argv(args, lever)
        assert argv[argv.index("--set") + 1:] == [override], lever
    assert value(levers.lever_argv(args, "rank_group_1"), "--setups") == "alrp_giou_sb,alrp_iou_nosb"
    args.setups = ["focal_sl1"]
    assert levers.lever_argv(args, "delta_2") is None


def test_per_setup_budgets_from_a_calibration_scale_with_the_schedule_lever(tmp_path, capsys):
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"alrp_giou_sb": {"s_per_iter": 2.42, "iters": 792},
                                       "focal_sl1": {"s_per_iter": 2.40, "iters": 799}}))
    args = levers.parse_args(["--data", "datasets/bccd", "--lr", "0.0005", "--iters-from", str(calibration),
                              "--out", str(tmp_path / "levers")])
    assert args.iters == {"alrp_giou_sb": 792, "focal_sl1": 799}

    def iters_of(lever):
        argv = levers.lever_argv(args, lever)
        return argv[argv.index("--iters") + 1]

    assert iters_of("baseline") == "alrp_giou_sb=792,focal_sl1=799"
    assert iters_of("schedule_x2") == "alrp_giou_sb=1584,focal_sl1=1598"
    assert iters_of("delta_2") == "792"  # only the aLRP setup applies: one number
    inline = levers.parse_args(["--data", "d", "--lr", "0.001", "--iters", "focal_sl1=5,alrp_giou_sb=4"])
    assert inline.iters == {"alrp_giou_sb": 4, "focal_sl1": 5}
    for budget, message in (
            (["--iters-from", str(calibration), "--setups", "alrp_giou_sb,aploss_sl1"], "no calibration for aploss_sl1"),
            (["--iters-from", str(tmp_path / "missing.json")], "not a readable calibration.json"),
            (["--iters", "alrp_giou_sb=4"], "--iters: name each setup once"),
            (["--iters", "4", "--iters-from", str(calibration)], "not allowed with argument")):
        with pytest.raises(SystemExit):
            levers.parse_args(["--data", "d", "--lr", "0.001", *budget])
        assert message in capsys.readouterr().err, budget


def test_a_calibration_from_other_data_or_another_device_is_refused(tmp_path, capsys):
    data = tmp_path / "bccd"
    calibration = tmp_path / "calibration.json"
    calibration.write_text(json.dumps({"alrp_giou_sb": {"s_per_iter": 2.4, "iters": 792, "data": str(data.resolve()),
                                                        "device": "cpu"}}))
    argv = ["--lr", "0.0005", "--setups", "alrp_giou_sb", "--iters-from", str(calibration)]
    assert levers.parse_args(["--data", str(data), *argv]).iters == {"alrp_giou_sb": 792}
    for other, message in ((["--data", str(tmp_path / "trees")], f"calibrated with data {data.resolve()}, not"),
                           (["--data", str(data), "--device", "cuda"], "calibrated with device cpu, not cuda")):
        with pytest.raises(SystemExit):
            levers.parse_args([*other, *argv])
        assert message in capsys.readouterr().err, other


def test_dry_run_prints_every_levers_runs(tmp_path, capsys):
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    argv = ["--data", str(tmp_path / "d"), "--lr", "0.001", "--iters", "40", "--seeds", "0", "--out",
            str(tmp_path / "out"), "--levers", "baseline,delta_2,prior_0.1", "--dry-run"]
    assert levers.main(argv) == 0
    text = capsys.readouterr().out
    assert text.count("python train.py") == 5  # baseline 2 setups + δ (aLRP only) + prior 2 setups
    assert "loss.delta=2.0" in text and "model.head.prior_prob=0.1" in text
    with pytest.raises(SystemExit):
        levers.parse_args(["--data", "d", "--lr", "0.001", "--iters", "4", "--levers", "nope"])


def test_table_gives_mean_std_and_the_change_against_the_baseline(tmp_path):
    _results(tmp_path / "baseline", {"alrp_giou_sb": [0.50, 0.52], "focal_sl1": [0.51, 0.51]})
    _results(tmp_path / "delta_2", {"alrp_giou_sb": [0.54, 0.56]})
    table = levers.collect(tmp_path, ["baseline", "delta_2", "warmup_0"], ["alrp_giou_sb", "focal_sl1"])
    assert set(table) == {"baseline", "delta_2"}  # warmup_0 has not run
    ap, std = table["delta_2"]["alrp_giou_sb"]["AP"]
    assert ap == pytest.approx(0.55) and std == pytest.approx(0.01 * math.sqrt(2))
    md = levers.markdown(table, ["alrp_giou_sb", "focal_sl1"], "header")
    assert "| delta_2 | loss.delta=2.0 | 0.550 ± 0.014 | +0.040 | 0.275 ± 0.007 | 0.450 ± 0.014 | n/a |" in md
    assert "| baseline | – | 0.510 ± 0.014 | – |" in md
    _results(tmp_path / "warmup_0", {"alrp_giou_sb": [0.50, 0.5199998]})  # 0.2 ppm below the baseline: no "-0.000"
    table = levers.collect(tmp_path, ["baseline", "warmup_0"], ["alrp_giou_sb"])
    md = levers.markdown(table, ["alrp_giou_sb"], "")
    assert "| warmup_0 | train.warmup_iters=0 | 0.510 ± 0.014 | +0.000 |" in md


@pytest.mark.parametrize("name", sorted(levers.LEVERS))
def test_every_lever_override_is_a_valid_setting_of_the_configs_it_applies_to(name):
    lever = levers.LEVERS[name]
    configs = sorted((Path(__file__).resolve().parents[2] / "configs" / "small").glob("*.yaml"))
    assert configs
    for path in configs:
        setup = path.stem.split("_", 1)[1]
        if lever.applies_to(setup):
            cfg = load_config(path, list(lever.overrides))  # a misspelt key or bad value raises here
            for override in lever.overrides:
                key, value = override.split("=")
                node = cfg
                for part in key.split("."):
                    node = getattr(node, part)
                expected = yaml.safe_load(value)  # as the override parser reads it
                assert node == expected and type(node) is type(expected), (path, override)


def test_the_prior_lever_skips_the_torchvision_row_which_ignores_it():
    assert not levers.LEVERS["prior_0.1"].applies_to("torchvision_retinanet")
    assert levers.LEVERS["prior_0.1"].applies_to("focal_sl1")
    assert levers.LEVERS["warmup_0"].applies_to("torchvision_retinanet")


def _finished_run(run_dir, setup, seed, ap, iterations, data, edit_config=None):
    """A finished compare_losses.py run on `data` (cpu) at lr 0.001: its compare_result.json and the config.yaml
    train.py saves for the train command compare_losses.py gives for it (its --output-dir and --name included),
    after `edit_config(config)`."""
    sub = levers.compare_losses.parse_args(["--data", str(data), "--setups", setup, "--seeds", str(seed), "--lrs",
                                            "0.001", "--iters", str(iterations)])
    train = levers.compare_losses.commands(sub, levers.compare_losses.Run(setup, 0.001, seed, iterations, False),
                                           run_dir)[0]
    where = [f"output_dir={train[train.index('--output-dir') + 1]}", f"name={train[train.index('--name') + 1]}"]
    sets = [*train[train.index("--set") + 1:], *where]
    cfg = load_config(levers.REPO_ROOT / train[train.index("--config") + 1], sets)
    save_resolved_config(cfg, run_dir)
    if edit_config is not None:
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        edit_config(config)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    summary = {"setup": setup, "lr": 0.001, "seed": seed, "tuning": seed == 0, "iterations": iterations,
               "train_seconds": 60.0, "s_per_iter": 6.0, "wall_seconds": 90.0, "per_class_AP": {"a": ap},
               "metrics": {"AP": ap, "AP50": ap, "AP75": ap / 2, "AP90": 0.0, "oLRP": 1 - ap, "oLRP_loc": None,
                           "oLRP_FP": 0.5, "oLRP_FN": 0.5}, "curve": [[5, ap / 2, 0.9], [10, ap, 1 - ap]]}
    (run_dir / "compare_result.json").write_text(json.dumps(summary))


@pytest.mark.parametrize("setup", ["alrp_giou_sb", "torchvision_retinanet"])
def test_baseline_from_links_a_tables_runs_and_trains_none(tmp_path, monkeypatch, capsys, setup):
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    table = tmp_path / "table"
    def denser_curve(config):  # how often a run evaluated does not change its training
        config["train"]["eval_interval"] += 1

    for seed, ap, edit in ((0, 0.50, None), (1, 0.54, denser_curve)):
        _finished_run(table / "runs" / setup / f"lr0.001_seed{seed}", setup, seed, ap, 10, tmp_path / "d", edit)

    def no_run(cmd):
        raise AssertionError(f"the linked baseline started {cmd}")

    monkeypatch.setattr(levers.compare_losses, "_execute", no_run)
    out = tmp_path / "out"
    argv = ["--data", str(tmp_path / "d"), "--setups", setup, "--levers", "delta_2", "--seeds", "0,1",
            "--lr", "0.001", "--iters", "10", "--out", str(out), "--baseline-from", str(table), "--dry-run"]
    assert levers.main(argv) == 0  # checked, not linked
    assert "# baseline: 2 finished run(s) of" in capsys.readouterr().out and not (out / "baseline").exists()
    argv[argv.index("delta_2")] = "baseline"  # also added when --levers omits it (checked above by the dry run)
    for _ in range(2):  # a second sitting keeps the links
        assert levers.main(argv[:-1]) == 0
    linked = out / "baseline" / "runs" / setup / "lr0.001_seed1"
    assert linked.is_symlink() and linked.resolve() == (table / "runs" / setup / "lr0.001_seed1").resolve()
    assert json.loads((out / "levers.json").read_text())["baseline"][setup]["AP"][0] == pytest.approx(0.52)
    assert f"Baseline: the runs of {table}" in (out / "levers.md").read_text()
    with pytest.raises(SystemExit):  # the linked runs were trained without any extra override
        levers.parse_args([*argv, "--set", "loss.delta=0.5"])


def test_baseline_from_refuses_a_run_of_another_budget_data_or_lr_in_one_line(tmp_path, capsys):
    for name in ("d", "e"):
        write_synthetic_coco(tmp_path / name, "train", num_images=8)
    table = tmp_path / "table"
    runs = table / "runs" / "alrp_giou_sb"
    _finished_run(runs / "lr0.001_seed0", "alrp_giou_sb", 0, 0.5, 10, tmp_path / "d")
    _finished_run(runs / "lr0.001_seed2", "alrp_giou_sb", 2, 0.5, 12, tmp_path / "d")

    def refused(data, seeds, lr="0.001", dry_run=()):
        out = tmp_path / "out"
        argv = ["--data", str(tmp_path / data), "--setups", "alrp_giou_sb", "--seeds", seeds, "--lr", lr,
                "--iters", "10", "--out", str(out), "--baseline-from", str(table), *dry_run]
        assert levers.main(argv) == 2
        assert not (out / "baseline").exists()  # refused before anything is linked or trained
        return capsys.readouterr().err

    assert "ran lr 0.001, seed 2, 12 iterations on" in refused("d", "2", dry_run=["--dry-run"])
    assert f"on {(tmp_path / 'd').resolve()} (cpu); the levers use lr 0.001, seed 0, 10 iterations on " \
        f"{(tmp_path / 'e').resolve()} (cpu)" in refused("e", "0")
    assert "no finished run of alrp_giou_sb at lr 0.0005, seed 0" in refused("d", "0", lr="0.0005")
    taken = tmp_path / "out" / "baseline" / "runs" / "alrp_giou_sb" / "lr0.001_seed0"
    taken.mkdir(parents=True)  # e.g. a baseline trained earlier in this folder
    argv = ["--data", str(tmp_path / "d"), "--setups", "alrp_giou_sb", "--seeds", "0", "--lr", "0.001", "--iters",
            "10", "--out", str(tmp_path / "out"), "--baseline-from", str(table)]
    assert levers.main(argv) == 2
    assert f"{taken} exists and is not a link to" in capsys.readouterr().err


def test_baseline_from_refuses_a_run_trained_from_another_config_and_checks_keys_added_since(tmp_path, capsys):
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    runs = tmp_path / "table" / "runs" / "alrp_giou_sb"

    def other_loss(config):  # e.g. a table of another --prefix whose alrp_giou_sb is another loss
        config["loss"]["name"] = "focal"

    def older_run(config):  # trained before rank_per_class existed; the baseline leaves it at its default
        del config["loss"]["rank_per_class"]

    def older_run_without_anchor_scale(config):  # trained before base_scale existed; the baseline changes it
        del config["model"]["anchors"]["base_scale"]

    def removed_option(config):  # trained with an option the code no longer has
        config["loss"]["gamma_old"] = 2.0

    edits = (other_loss, older_run, older_run_without_anchor_scale, removed_option)
    for seed, edit in enumerate(edits):
        _finished_run(runs / f"lr0.001_seed{seed}", "alrp_giou_sb", seed, 0.5, 10, tmp_path / "d", edit)
    argv = ["--data", str(tmp_path / "d"), "--setups", "alrp_giou_sb", "--levers", "baseline", "--lr", "0.001",
            "--iters", "10", "--out", str(tmp_path / "out"), "--baseline-from", str(tmp_path / "table"), "--dry-run"]

    def error(seed):
        assert levers.main([*argv, "--seeds", str(seed)]) == 2
        return capsys.readouterr().err

    assert f"{runs / 'lr0.001_seed0'} was trained with loss.name: 'focal' (the baseline has 'alrp'); the baseline " \
        "trains configs/small/bccd_alrp_giou_sb.yaml with compare_losses.py's default batch size and splits and no " \
        "--set" in error(0)
    assert levers.main([*argv, "--seeds", "1"]) == 0
    assert "model.anchors.base_scale: not set, the run predates the option (the baseline has 3.0, not its " \
        "default 4.0)" in error(2)
    assert "loss.gamma_old: 2.0 (an option that no longer exists)" in error(3)


def test_a_missing_setup_config_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit):
        levers.parse_args(["--data", "d", "--prefix", "nosuch_", "--setups", "alrp_giou_sb", "--lr", "0.001",
                           "--iters", "10"])
    err = capsys.readouterr().err
    assert "setup config(s) not found: configs/small/nosuch_alrp_giou_sb.yaml" in err
    assert "--baseline-from" in err and "--lrs" not in err  # compare_levers' own usage, not the sub-script's


def test_report_starts_no_run_and_a_sitting_with_other_setups_names_the_cells_it_drops(tmp_path, monkeypatch,
                                                                                     capsys):
    """Sittings of one lever with other --setups: the lever's results.json keeps both; levers.md holds one
    sitting's cells and says which of the earlier levers.md it dropped; --report then tabulates all, training none."""
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    out = tmp_path / "out"
    for setup, ap, seeds in (("alrp_giou_sb", 0.56, (0, 1)), ("focal_sl1", 0.55, (0,))):  # focal seed 1 unfinished
        for seed in seeds:
            _finished_run(out / "schedule_x2" / "runs" / setup / f"lr0.001_seed{seed}", setup, seed, ap + seed / 100,
                          20, tmp_path / "d")

    def no_run(cmd):
        raise AssertionError(f"--report started {cmd}")

    monkeypatch.setattr(levers.compare_losses, "_execute", no_run)
    base = ["--data", str(tmp_path / "d"), "--levers", "schedule_x2", "--seeds", "0,1", "--lr", "0.001",
            "--iters", "10", "--out", str(out), "--report"]
    assert levers.main(["--setups", "alrp_giou_sb", *base]) == 0
    assert levers.main(["--setups", "focal_sl1", *base]) == 0
    assert set(json.loads((out / "schedule_x2" / "results.json").read_text())["setups"]) == {"alrp_giou_sb",
                                                                                           "focal_sl1"}
    assert list(json.loads((out / "levers.json").read_text())["schedule_x2"]) == ["focal_sl1"]
    assert "no longer in it: schedule_x2/alrp_giou_sb (" in capsys.readouterr().out

    assert levers.main(["--setups", "alrp_giou_sb,focal_sl1", *base]) == 0
    cells = json.loads((out / "levers.json").read_text())["schedule_x2"]
    assert cells["alrp_giou_sb"]["AP"][0] == pytest.approx(0.565) and cells["focal_sl1"]["n"] == 1
    assert "no longer in it" not in capsys.readouterr().out


def test_levers_table_is_read_and_written_under_the_lock_of_its_out(tmp_path, monkeypatch):
    write_synthetic_coco(tmp_path / "d", "train", num_images=8)
    out = tmp_path / "out"
    _finished_run(out / "schedule_x2" / "runs" / "alrp_giou_sb" / "lr0.001_seed0", "alrp_giou_sb", 0, 0.5, 20,
                  tmp_path / "d")
    held = {}  # at the read and at each write of levers.*: is the lock of out taken?
    sittings = levers.sittings  # the module compare_losses writes through too
    read, write = levers.cells_left_out, sittings.write_atomically

    def recording_read(*args):
        held["read"] = not lock_is_free(out / ".table.lock")
        return read(*args)

    def recording_write(path, text):
        if path.parent == out:  # levers.md / levers.json, not the lever's own results
            held[path.name] = not lock_is_free(out / ".table.lock")
        write(path, text)

    monkeypatch.setattr(levers, "cells_left_out", recording_read)
    monkeypatch.setattr(sittings, "write_atomically", recording_write)
    holds = count_table_locks(monkeypatch, sittings)
    assert levers.main(["--data", str(tmp_path / "d"), "--setups", "alrp_giou_sb", "--levers", "schedule_x2",
                        "--seeds", "0", "--lr", "0.001", "--iters", "10", "--out", str(out), "--report"]) == 0
    assert held == {"read": True, "levers.md": True, "levers.json": True}
    assert holds == [out / "schedule_x2", out]  # the lever's own table, then one hold for levers.md and .json
