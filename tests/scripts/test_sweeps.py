"""Sweep scripts, results collection and the balance plot (scripts/sweep.py, collect_results.py, plot_balance.py).

Fabricated run folders stand in for real runs where only the file formats matter; one smoke sweep runs the real
train.py / eval.py on a tiny dataset when they exist.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.fixtures.script_loader import load_script

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"


def _load_script(name: str):
    return load_script(f"scripts/{name}.py")


collect = _load_script("collect_results")
sweep = _load_script("sweep")
plot_balance = _load_script("plot_balance")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    # A guard against a hang, not a speed check: a smoke sweep on a 2-core machine busy with training took over 120 s.
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=900, **kw)


def _fake_run(root: Path, name: str, loss: dict, metrics: dict | None, model: dict | None = None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    config = {"name": name, "loss": loss, "model": model or {"backbone": {"name": "resnet50"},
                                                              "assigner": {"name": "max_iou"}},
              "data": {"train_size": 512}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics is not None:
        (run / "eval_metrics.json").write_text(json.dumps(metrics))
    return run


METRICS = {"AP": 0.389, "AP50": 0.581, "AP75": 0.405, "AP90": 0.174, "oLRP": 0.684, "oLRP_loc": 0.166,
           "oLRP_FP": 0.3, "oLRP_FN": 0.47, "rho": 0.4812, "APs": -1.0, "per_class": {"1": {"AP": 0.3}}}


# ------------------------------------------------------------------------------------------- collect_results
@pytest.mark.parametrize("loss, expected", [
    ({"name": "alrp", "box_loss": "giou", "self_balance": True}, 1),          # delta
    ({"name": "alrp", "box_loss": "iou", "self_balance": False}, 2),          # + constant weight
    ({"name": "ap", "box_loss": "smooth_l1", "self_balance": False}, 3),      # delta, beta, weight (Table 1)
    ({"name": "ap", "box_loss": "giou", "self_balance": True}, 1),
    ({"name": "focal", "box_loss": "smooth_l1", "self_balance": False}, 4),   # alpha, gamma, beta, weight
    ({"name": "focal", "focal_gamma": 0.0, "box_loss": "smooth_l1", "self_balance": False}, 3),  # CE: no gamma
])
def test_hyperparameter_count_matches_paper_table1(loss, expected):
    assert collect.loss_hyperparameters(loss) == expected


def test_collect_results_table(tmp_path):
    alrp = _fake_run(tmp_path, "alrp_giou_sb", {"name": "alrp", "box_loss": "giou", "self_balance": True,
                                                "sb_init": 50.0}, METRICS)
    ap = _fake_run(tmp_path, "aploss", {"name": "ap", "box_loss": "smooth_l1", "self_balance": False,
                                        "loc_weight": 1.0}, {**METRICS, "AP": 0.1234, "rho": None})
    pending = _fake_run(tmp_path, "iou_w5", {"name": "alrp", "box_loss": "iou", "self_balance": False,
                                             "loc_weight": 5.0}, None)
    out = tmp_path / "results.md"
    out.write_text("old table\n")  # a glob like runs/table2/* also matches files: they are ignored
    res = _run([sys.executable, "scripts/collect_results.py", str(alrp), str(ap), str(pending), str(out),
                "--out", str(out)])
    assert res.returncode == 0, res.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("| run | method | #hp | AP | AP50 | AP75 | AP90 | oLRP | oLRP_loc")
    rows = {line.split(" | ")[0].lstrip("| "): [c.strip() for c in line.strip("|").split("|")]
            for line in lines[2:5]}
    # ours x100 with one decimal, then the paper's AP / oLRP / rho for that Table 2 row
    assert rows["alrp_giou_sb"] == ["alrp_giou_sb", "aLRP (w GIoU, SB 50), resnet50, 512", "1", "38.9",
                                    "58.1", "40.5", "17.4", "68.4", "16.6", "30.0", "47.0", "0.48", "38.9",
                                    "68.4", "0.48", "Table 2 (minival); rho App. G.1"]
    assert rows["aploss"][1:5] == ["AP Loss (+ Smooth-L1, w=1), resnet50, 512", "3", "12.3", "58.1"]
    assert rows["aploss"][11:14] == ["–", "35.5", "71.0"]
    assert rows["iou_w5"][2:4] == ["2", "pending"] and rows["iou_w5"][-4:] == ["–", "–", "–", ""]
    assert "iou_w5: no eval_metrics.json yet" in res.stderr
    assert res.stdout == out.read_text()


def test_collect_results_bad_metrics_names_file(tmp_path):
    run = _fake_run(tmp_path, "broken", {"name": "alrp"}, None)
    (run / "eval_metrics.json").write_text("{not json")
    res = _run([sys.executable, "scripts/collect_results.py", str(run)])
    assert res.returncode == 2
    assert str(run / "eval_metrics.json") in res.stderr and "Traceback" not in res.stderr


def test_collect_results_bad_config_is_one_line_naming_file(tmp_path):
    run = _fake_run(tmp_path, "bogus", {"name": "bogus"}, METRICS)
    res = _run([sys.executable, "scripts/collect_results.py", str(run)])
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == f"[collect] error: {run / 'config.yaml'}: unknown loss.name 'bogus'"
    (run / "config.yaml").write_text("loss: [unclosed\n")
    res = _run([sys.executable, "scripts/collect_results.py", str(run)])
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert f"{run / 'config.yaml'}: not valid YAML" in res.stderr


def test_collect_results_per_class_rho(tmp_path):
    a = _fake_run(tmp_path, "a", {"name": "alrp"}, {**METRICS, "rho": 0.5, "per_class": {
        "10": {"rho": 0.25}, "2": {"rho": 0.75}, "3": None}})
    b = _fake_run(tmp_path, "b", {"name": "alrp"}, {**METRICS, "rho": None, "per_class": {"2": {"rho": None}}})
    _fake_run(tmp_path, "c", {"name": "alrp"}, None)  # pending: no column
    table = collect.per_class_rho_table([a, b, tmp_path / "c"])
    assert table.splitlines()[:6] == ["| category id | a | b |", "|---|---|---|", "| 2 | 0.75 | – |",
                                      "| 3 | – | – |", "| 10 | 0.25 | – |", "| mean | 0.50 | – |"]
    res = _run([sys.executable, "scripts/collect_results.py", str(a), "--per-class"])
    assert res.returncode == 0 and "| 10 | 0.25 |" in res.stdout and res.stdout.index("| run |") < \
        res.stdout.index("| category id |")
    (a / "eval_metrics.json").write_text(json.dumps({**METRICS, "per_class": [1, 2]}))
    with pytest.raises(collect.ResultsError, match="per_class must be an object"):
        collect.per_class_rho_table([a])


def test_method_description_cross_entropy():
    cfg = {"loss": {"name": "focal", "focal_gamma": 0.0, "box_loss": "smooth_l1", "self_balance": False,
                    "loc_weight": 1.0}}
    assert collect.describe_method(cfg) == "CE (alpha-balanced) (+ Smooth-L1, w=1)"


def test_method_description_atss_and_wrong_target():
    cfg = {"loss": {"name": "alrp", "box_loss": "giou", "self_balance": True, "sb_init": 50, "wrong_target": True},
           "model": {"backbone": {"name": "resnet101"}, "assigner": {"name": "atss"}}, "data": {"train_size": 800}}
    assert collect.describe_method(cfg) == "aLRP (w GIoU, SB 50) wrong target + ATSS, resnet101, 800"


# ---------------------------------------------------------------------------------------------- plot_balance
def _fake_log(run: Path, ratio: float, n: int = 30) -> None:
    run.mkdir(parents=True)
    lines = [json.dumps({"type": "epoch", "epoch": 0})]
    for it in range(1, n + 1):
        neg = 1.0 + 0.1 * it
        lines.append(json.dumps({"type": "iter", "epoch": 0, "iteration": it, "grad_pos_sum": ratio * neg,
                                 "grad_neg_sum": neg}))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_plot_balance_png(tmp_path):
    _fake_log(tmp_path / "alrp", 1.0)
    _fake_log(tmp_path / "focal", 3.0)
    out = tmp_path / "fig" / "fig4.png"
    res = _run([sys.executable, "scripts/plot_balance.py", str(tmp_path / "alrp"), str(tmp_path / "focal"),
                "--out", str(out)])
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert "alrp: 30 points, median pos/neg ratio 1.000" in res.stdout
    assert "focal: 30 points, median pos/neg ratio 3.000" in res.stdout


def test_plot_balance_reads_jsonl_in_order(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    rows = [{"type": "iter", "iteration": 3, "grad_pos_sum": 3.0, "grad_neg_sum": 6.0},
            {"type": "iter", "iteration": 1, "grad_pos_sum": 1.0, "grad_neg_sum": 2.0},
            {"type": "iter", "iteration": 2, "cls": 0.5},  # no gradient statistics: skipped
            {"type": "epoch", "iteration": 3, "grad_pos_sum": 9.0, "grad_neg_sum": 9.0}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    it, pos, neg = plot_balance.load_balance(run)
    assert it.tolist() == [1, 3] and pos.tolist() == [1.0, 3.0] and neg.tolist() == [2.0, 6.0]


def test_plot_balance_skips_files_and_names_missing_folders(tmp_path):
    _fake_log(tmp_path / "runs" / "alrp", 1.0, n=5)
    (tmp_path / "runs" / "results.md").write_text("| table |\n")  # what a glob runs/table2/* also matches
    out = tmp_path / "fig4.png"
    res = _run([sys.executable, "scripts/plot_balance.py", *sorted(map(str, (tmp_path / "runs").iterdir())),
                "--out", str(out)])
    assert res.returncode == 0, res.stderr
    assert "alrp: 5 points" in res.stdout and out.is_file()
    res = _run([sys.executable, "scripts/plot_balance.py", str(tmp_path / "gone"), "--out", str(out)])
    assert res.returncode == 2 and f"run folder(s) not found: {tmp_path / 'gone'}" in res.stderr
    assert "Traceback" not in res.stderr


def test_plot_balance_without_statistics_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    res = _run([sys.executable, "scripts/plot_balance.py", str(tmp_path / "empty"), "--out",
                str(tmp_path / "x.png")])
    assert res.returncode == 2 and "empty: no grad_pos_sum/grad_neg_sum" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------------------------------------- sweeps
SWEEPS = {
    "ablation_table2.sh": ["table2/aploss", "table2/alrp_iou_nosb", "table2/alrp_iou_sb", "table2/alrp_giou_sb",
                           "table2/alrp_giou_sb_atss"],
    "ablation_table4.sh": ["table2/alrp_iou_nosb"] + [f"table4/iou_w{w}" for w in (5, 10, 15, 20)]
                          + [f"table4/giou_w{w}" for w in (1, 5, 10, 15, 20)]
                          + ["table4/sbinit_1", "table4/sbinit_10", "table2/alrp_giou_sb", "table4/sbinit_100"],
    "ablation_g1.sh": ["table2/aploss", "g1/ap_sl1_sb", "g1/ap_iou", "g1/ap_iou_sb", "g1/ap_giou", "g1/ap_giou_sb"],
    "table6.sh": ["table6/alrp500_r50", "table6/alrp500_r101", "table6/alrp500_x101", "table6/alrp800_r101",
                  "table6/alrp800_x101", "table6/alrp800_x101_dcn"],
}


BALANCE_RUNS = ["table2/alrp_giou_sb", "fig4/focal", "fig4/ce"]


@pytest.fixture(scope="module")
def echo_python(tmp_path_factory) -> Path:
    """A stand-in for $PYTHON that prints its arguments: shows what a wrapper script passes to sweep.py."""
    fake = tmp_path_factory.mktemp("bin") / "echo_python.sh"
    fake.write_text('#!/usr/bin/env bash\necho "$@"\n')
    fake.chmod(0o755)
    return fake


def _sweep_argv(script: str, fake: Path) -> list[str]:
    """The arguments a wrapper script passes to sweep.py (without the script path)."""
    return _wrapper_output(script, fake).split()[1:]


def _wrapper_output(script: str, fake: Path) -> str:
    res = subprocess.run(["bash", f"scripts/{script}", "--dry-run"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHON": str(fake)}, timeout=30)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("script", sorted(SWEEPS))
def test_wrapper_scripts_pass_their_configs_to_sweep(script, echo_python):
    argv = _wrapper_output(script, echo_python).split()
    assert argv[0] == "scripts/sweep.py" and argv[1] == "--sweep" and argv[-1] == "--dry-run"
    configs = [a for a in argv if a.endswith(".yaml")]
    assert configs == [f"configs/{n}.yaml" for n in SWEEPS[script]]
    assert all((REPO / c).is_file() for c in configs)


@pytest.mark.parametrize("script", sorted(SWEEPS))
def test_sweep_dry_run_prints_torchrun_and_eval(script, tmp_path, capsys, monkeypatch, echo_python):
    monkeypatch.chdir(REPO)
    rc = sweep.main([*_sweep_argv(script, echo_python), "--gpus", "4", "--output-dir", str(tmp_path),
                     "--set", "data.root=/data/coco"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    configs = SWEEPS[script]
    assert lines[0::3] == [f"# {Path(c).name} (new)" for c in configs]
    for config, train, evaluate in zip(configs, lines[1::3], lines[2::3]):
        run_dir = tmp_path / Path(config).name
        assert train == (f"torchrun --nproc_per_node=4 train.py --config configs/{config}.yaml --output-dir "
                         f"{tmp_path} --set data.root=/data/coco")
        assert evaluate == (f"python eval.py --config configs/{config}.yaml --checkpoint {run_dir}/checkpoints/"
                            f"\"$(cat {run_dir}/checkpoints/latest)\" --json-out {run_dir}/eval_metrics.json "
                            f"--set data.root=/data/coco output_dir={tmp_path}")
    assert not any(tmp_path.iterdir()), "a dry run must not create run folders"


def test_sweep_skips_finished_and_resumes_started(tmp_path, capsys, monkeypatch, echo_python):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("GPUS", raising=False)
    (tmp_path / "aploss").mkdir()
    (tmp_path / "aploss" / "eval_metrics.json").write_text("{}")
    ckpt = tmp_path / "alrp_iou_nosb" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "latest").write_text("ckpt_e0001_i00000010.pth")
    assert sweep.main([*_sweep_argv("ablation_table2.sh", echo_python), "--output-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"# aploss: done ({tmp_path}/aploss/eval_metrics.json exists), skipped"
    assert lines[1] == "# alrp_iou_nosb (resume)"
    assert lines[2].endswith(f"--output-dir {tmp_path} --resume")
    assert lines[2].startswith("torchrun --nproc_per_node=1 train.py")  # default: $GPUS or 1
    assert lines[4] == "# alrp_iou_sb (new)"


def test_sweep_smoke_dry_run_uses_tiny_cpu_settings(tmp_path, capsys, monkeypatch, echo_python):
    monkeypatch.chdir(REPO)
    assert sweep.main([*_sweep_argv("ablation_table2.sh", echo_python), "--smoke", "--output-dir", str(tmp_path),
                       "--set", "train.max_iters=1"]) == 0
    train = capsys.readouterr().out.splitlines()[1]
    assert train.startswith("python train.py --config configs/table2/aploss.yaml")
    for override in ("device=cpu", "model.backbone.name=resnet18", "model.backbone.norm=gn",
                     "model.fpn.channels=64", "data.train_size=128", "train.max_iters=2",
                     "data.root=datasets/trees"):
        assert f" {override}" in train
    assert train.endswith(" train.max_iters=1"), "user overrides come last so they win"


def test_sweep_config_errors_stop_before_any_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    rc = sweep.main(["configs/table2/aploss.yaml", "--output-dir", str(tmp_path), "--set", "train.lr_typo=1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "config error" in err and "train.lr_typo" in err
    assert not any(tmp_path.iterdir())


def test_balance_sweep_logs_every_iteration(tmp_path, capsys, monkeypatch, echo_python):
    argv = _sweep_argv("balance_fig4.sh", echo_python)
    assert [a for a in argv if a.endswith(".yaml")] == [f"configs/{n}.yaml" for n in BALANCE_RUNS]
    monkeypatch.chdir(REPO)
    assert sweep.main([*argv, "--output-dir", str(tmp_path), "--set", "data.root=/data/coco"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0::3] == [f"# {Path(c).name} (new)" for c in BALANCE_RUNS]
    assert all(t.endswith("--set train.log_interval=1 data.root=/data/coco") for t in lines[1::3])


def test_sweep_repeated_set_keeps_every_override(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    rc = sweep.main(["configs/table2/aploss.yaml", "--dry-run", "--output-dir", str(tmp_path),
                     "--set", "data.root=/data/coco", "--set", "train.lr=0.1", "train.epochs=3"])
    assert rc == 0
    train = capsys.readouterr().out.splitlines()[1]
    assert train.endswith("--set data.root=/data/coco train.lr=0.1 train.epochs=3")


def test_sweep_rejects_missing_config():
    res = _run([sys.executable, "scripts/sweep.py", "configs/nope.yaml", "--dry-run"])
    assert res.returncode == 2 and "configs/nope.yaml" in res.stderr


# ------------------------------------------------------------------------------------- smoke sweep (real)
@pytest.mark.slow
def test_table2_smoke_sweep_end_to_end(tmp_path):
    """The real table-2 sweep with --smoke on a tiny synthetic dataset: four runs are marked finished beforehand
    (skipped), the fifth (aLRP, GIoU, SB) trains its one-iteration epoch and is evaluated; then the results table and
    the balance figure are made from its folder."""
    pytest.importorskip("training.trainer")
    if not (REPO / "train.py").is_file() or not (REPO / "eval.py").is_file():
        pytest.skip("train.py / eval.py not present")
    from tests.fixtures.synthetic import write_synthetic_coco

    data_root = tmp_path / "data"
    write_synthetic_coco(data_root, "train", 2, size=(96, 128))
    write_synthetic_coco(data_root, "val", 2, size=(96, 128), seed=1)
    runs = tmp_path / "runs"
    done = [Path(c).name for c in SWEEPS["ablation_table2.sh"] if c != "table2/alrp_giou_sb"]
    for name in done:
        (runs / name).mkdir(parents=True)
        (runs / name / "eval_metrics.json").write_text(json.dumps(METRICS))
    res = _run(["bash", "scripts/ablation_table2.sh", "--smoke", "--smoke-data", str(data_root),
                "--output-dir", str(runs)])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for name in done:
        assert f"# {name}: done" in res.stdout
    run = runs / "alrp_giou_sb"
    metrics = json.loads((run / "eval_metrics.json").read_text())
    assert {"AP", "AP50", "AP75", "AP90", "oLRP", "oLRP_loc", "oLRP_FP", "oLRP_FN", "rho"} <= set(metrics)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["backbone"]["name"] == "resnet18" and config["train"]["max_iters"] == 2
    assert list((run / "eval").glob("*_results.json")), "eval.py wrote its detections into the sweep's run folder"

    table = collect.results_table(sorted(p for p in runs.iterdir()))
    row = next(line for line in table.splitlines() if line.startswith("| alrp_giou_sb |"))
    assert "| aLRP (w GIoU, SB 50), resnet18, 128 | 1 |" in row and row.endswith("| 38.9 | 68.4 | 0.48 | "
                                                                                 "Table 2 (minival); rho App. G.1 |")
    it, pos, neg = plot_balance.load_balance(run)
    assert it.tolist() == [1]  # 2 training images, batch 2, 1 epoch
    assert pos == pytest.approx(neg, rel=1e-4), "Theorem 2: aLRP's positive and negative gradient sums are equal"
    out = tmp_path / "fig4.png"
    plot_balance.plot([("alrp", (it, pos, neg))], out)
    assert out.stat().st_size > 0

    again = _run(["bash", "scripts/ablation_table2.sh", "--smoke", "--smoke-data", str(data_root),
                  "--output-dir", str(runs), "--dry-run"])
    assert again.stdout.count(": done (") == 5, again.stdout
