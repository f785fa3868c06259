"""train.py's command-line errors: one clear line and an exit code, never a traceback."""
import train


def test_missing_pretrained_weights_is_a_config_error(coco_mini_root, tmp_path, capfd):
    code = train.main(["--config", "configs/alrp_r50_500.yaml", "--no-progress", "--output-dir", str(tmp_path),
                       "--set", f"data.root={coco_mini_root}", "model.backbone.pretrained=/nope/r50.pth",
                       "model.backbone.name=resnet18", "train.eval_interval=0", "data.num_workers=0"])
    assert code == 2
    err = capfd.readouterr().err
    assert "config error: backbone.pretrained: /nope/r50.pth does not exist" in err
    assert "Traceback" not in err


def test_unknown_config_key_names_the_key(capsys):
    code = train.main(["--config", "configs/alrp_r50_500.yaml", "--set", "train.lrr=0.1"])
    assert code == 2
    assert "train.lrr: unknown key" in capsys.readouterr().err
