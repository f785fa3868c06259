"""train.py's command-line errors: one clear line and an exit code, never a traceback."""
import pytest

import train


def test_missing_pretrained_weights_is_a_config_error(coco_mini_root, tmp_path, capfd):
    code = train.main(["--config", "configs/table2/alrp_giou_sb.yaml", "--no-progress", "--output-dir", str(tmp_path),
                       "--set", f"data.root={coco_mini_root}", "model.backbone.pretrained=/nope/r50.pth",
                       "model.backbone.name=resnet18", "train.eval_interval=0", "data.num_workers=0"])
    assert code == 2
    err = capfd.readouterr().err
    assert "config error: backbone.pretrained: /nope/r50.pth does not exist" in err
    assert "Traceback" not in err


def test_unknown_config_key_names_the_key(capsys):
    code = train.main(["--config", "configs/table2/alrp_giou_sb.yaml", "--set", "train.lrr=0.1"])
    assert code == 2
    assert "train.lrr: unknown key" in capsys.readouterr().err


@pytest.mark.slow
def test_max_iters_stop_inside_an_epoch_records_the_final_evaluation(tmp_path):
    import json

    from tests.fixtures.synthetic import write_synthetic_coco

    root = tmp_path / "data"
    write_synthetic_coco(root, "train", num_images=4, size=(96, 128), seed=1)
    write_synthetic_coco(root, "val", num_images=2, size=(96, 128), seed=2)
    code = train.main(["--config", "configs/demo/trees.yaml", "--no-progress", "--output-dir", str(tmp_path / "runs"),
                       "--name", "stop", "--set", f"data.root={root}", "data.train_size=128",
                       "data.eval_short_side=128", "data.eval_max_size=128", "train.batch_size=2",
                       "train.ref_batch_size=2", "eval.batch_size=2", "train.max_iters=1", "train.eval_interval=1"])
    assert code == 0
    records = [json.loads(line) for line in (tmp_path / "runs" / "stop" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["type"] == "eval"]
    assert len(evals) == 1 and evals[0]["iteration"] == 1 and "AP" in evals[0] and "oLRP" in evals[0]


def test_rank_group_that_does_not_divide_the_process_batch_is_a_setup_error(tmp_path, capfd):
    code = train.main(["--config", "configs/table2/alrp_giou_sb.yaml", "--no-progress", "--output-dir", str(tmp_path),
                       "--set", "train.batch_size=4", "train.ref_batch_size=4", "device=cpu"])
    assert code == 2
    err = capfd.readouterr().err
    assert "loss.rank_group=8 does not divide the 4 images per process" in err and "Traceback" not in err
