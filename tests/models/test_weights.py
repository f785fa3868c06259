"""`backbone.pretrained: imagenet`: torchvision enum -> torch hub cache file; offline error names file and URL."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from models import weights
from models.backbone import PretrainedWeightsError, ResNetBackbone
from models.config import BackboneConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME; any download attempt fails as it would offline (no network in tests)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, dst):
        raise OSError(f"<urlopen error [Errno -3] Temporary failure in name resolution> ({url})")

    monkeypatch.setattr(weights, "_download", offline)
    return tmp_path / "torch"


@pytest.mark.parametrize("body,enum,file_name", [
    ("resnet50", "ResNet50_Weights", "resnet50-0676ba61.pth"),
    ("resnet101", "ResNet101_Weights", "resnet101-63fe2227.pth"),
    ("resnext101_32x8d", "ResNeXt101_32X8D_Weights", "resnext101_32x8d-8ba56ff5.pth"),
    ("resnext101_64x4d", "ResNeXt101_64X4D_Weights", "resnext101_64x4d-173b62eb.pth"),
])
def test_imagenet_resolves_to_the_v1_enum_and_its_cache_file(torch_home, body, enum, file_name):
    w = weights.weights_enum(body, "imagenet")
    assert type(w).__name__ == enum and w.name == "IMAGENET1K_V1"
    assert weights.cache_file(w.url) == torch_home / "hub" / "checkpoints" / file_name


def test_cached_state_dict_is_found_and_loaded(torch_home):
    state = torchvision.models.resnet18(weights=None).state_dict()
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    cached = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(state, cached)
    body = ResNetBackbone(name="resnet18", pretrained="imagenet")
    torch.testing.assert_close(body.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    torch.testing.assert_close(body.stem[1].running_var, state["bn1.running_var"])
    # the explicit enum name resolves to the same file
    assert weights.resolve_pretrained("resnet18", "ResNet18_Weights.IMAGENET1K_V1") == str(cached)


def test_offline_and_not_cached_is_one_line_naming_file_and_url(torch_home):
    with pytest.raises(weights.WeightsUnavailableError) as info:
        ResNetBackbone(name="resnet50", pretrained="imagenet")
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, PretrainedWeightsError)
    assert str(torch_home / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in message
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message


def test_local_path_is_unchanged_and_wrong_enum_is_a_config_error(tmp_path):
    assert weights.resolve_pretrained("resnet50", str(tmp_path / "r50.pth")) == str(tmp_path / "r50.pth")
    assert BackboneConfig(name="resnet50", pretrained="ResNet50_Weights.IMAGENET1K_V2").pretrained
    with pytest.raises(ValueError, match="backbone.pretrained: ResNet101_Weights.IMAGENET1K_V1 are weights for "
                                         "another body than resnet50"):
        BackboneConfig(name="resnet50", pretrained="ResNet101_Weights.IMAGENET1K_V1")
    with pytest.raises(PretrainedWeightsError, match="backbone.pretrained: unknown torchvision weights"):
        weights.resolve_pretrained("resnet50", "ResNet50_Weights.IMAGENET9K")  # member names: checked at build


def test_config_check_table_matches_torchvision():
    from torchvision.models import get_model_weights

    from models.config import BACKBONES

    assert set(weights.WEIGHTS_ENUMS) == set(BACKBONES)
    for body, enum in weights.WEIGHTS_ENUMS.items():
        assert get_model_weights(body).__name__ == enum


@pytest.mark.slow  # spawns train.py
def test_train_cli_offline_error_is_one_line(tmp_path):
    """The whole path through train.py: exit 2, one line, no traceback, no network touched."""
    # a dead local proxy: the download attempt fails at once without leaving the machine
    env = {"TORCH_HOME": str(tmp_path / "torch"), "PATH": "/usr/bin:/bin",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"output_dir: {tmp_path / 'runs'}\ndevice: cpu\n"
                   "data: {root: ../shared/data/coco-mini, num_workers: 0}\n"
                   "model: {backbone: {name: resnet18, pretrained: imagenet}}\n")
    if not (REPO / "../shared/data/coco-mini").is_dir():
        pytest.skip("needs ../shared/data/coco-mini")
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), "--config", str(cfg)], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "resnet18-f37072fd.pth" in last and "https://download.pytorch.org/models/resnet18-f37072fd.pth" in last


def test_paper_configs_start_from_imagenet_weights():
    from training.config import load_config

    paper = [p for p in sorted((REPO / "configs").rglob("*.yaml")) if not {"_base_", "demo", "small"} & set(p.parts)]
    assert len(paper) >= 20
    for path in paper:
        backbone = load_config(path).model.backbone
        assert backbone.pretrained == "imagenet", path
        assert weights.weights_enum(backbone.name, "imagenet").name == "IMAGENET1K_V1"
