"""Config loading: inheritance, overrides, strict errors naming key and file, round trip."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from training.config import (Config, ConfigError, EvalConfig, TrainConfig, config_to_dict, load_config,
                         save_resolved_config)


# ------------------------------------------------------------------ small stand-in schema (generic loader tests)
@dataclass
class Inner:
    ratio: float = 0.5
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    pair: tuple[float, float] = (0.1, 0.2)
    mode: Literal["a", "b"] = "a"

    def __post_init__(self):
        if not 0 < self.ratio < 1:
            raise ValueError(f"ratio: {self.ratio} must be in (0, 1)")


@dataclass
class Section:
    root: str  # required
    flag: bool = False
    count: int = 3
    clip: float | None = None
    inner: Inner = field(default_factory=Inner)


@dataclass
class Top:
    section: Section
    name: str = ""
    seed: int = 0


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def files(tmp_path):
    write(tmp_path / "base.yaml", "section:\n  root: /data\n  count: 5\n  inner:\n    ratio: 0.25\n    sizes: [3, 4]\n")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "mid.yaml", "_base_: ../base.yaml\nseed: 7\nsection:\n  flag: true\n")
    write(tmp_path / "child.yaml", "_base_: sub/mid.yaml\nsection:\n  inner:\n    mode: b\n")
    return tmp_path


def test_inheritance_is_recursive_deep_merge(files):
    cfg = load_config(files / "child.yaml", schema=Top)
    assert cfg.name == "child" and cfg.seed == 7
    s = cfg.section
    assert (s.root, s.flag, s.count, s.clip) == ("/data", True, 5, None)
    assert (s.inner.ratio, s.inner.sizes, s.inner.mode, s.inner.pair) == (0.25, [3, 4], "b", (0.1, 0.2))
    assert isinstance(s.inner.pair, tuple)


def test_overrides(files):
    cfg = load_config(files / "child.yaml", ["section.count=9", "section.inner.sizes=[7, 8, 9]", "section.clip=1e-3",
                                             "section.inner.ratio=0.75", "name=exp1", "section.inner.pair=[1, 2]"],
                      schema=Top)
    assert cfg.section.count == 9 and cfg.section.inner.sizes == [7, 8, 9] and cfg.name == "exp1"
    assert cfg.section.clip == pytest.approx(1e-3) and isinstance(cfg.section.clip, float)  # '1e-3' is a YAML string
    assert cfg.section.inner.pair == (1.0, 2.0)
    clip = load_config(files / "child.yaml", ["section.clip=2"], schema=Top).section.clip
    assert clip == 2.0 and isinstance(clip, float)  # int -> float is fine


def _error(path, overrides=(), schema=Top):
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides, schema=schema)
    return info.value


def test_unknown_key_names_key_and_file(files):
    write(files / "bad.yaml", "_base_: base.yaml\nsection:\n  inner:\n    ratoi: 0.3\n")
    err = _error(files / "bad.yaml")
    assert err.key == "section.inner.ratoi" and err.file.endswith("bad.yaml")
    assert "section.inner.ratoi" in str(err) and "bad.yaml" in str(err) and "ratio" in str(err)  # suggestion


def test_unknown_key_in_base_names_the_base(files):
    write(files / "base2.yaml", "section:\n  root: x\n  colour: red\n")
    write(files / "c2.yaml", "_base_: base2.yaml\nseed: 1\n")
    err = _error(files / "c2.yaml")
    assert err.key == "section.colour" and err.file.endswith("base2.yaml")


@pytest.mark.parametrize("line, key", [
    ("section:\n  root: /d\n  flag: yes_please\n", "section.flag"),
    ("section:\n  root: /d\n  flag: 1\n", "section.flag"),
    ("section:\n  root: /d\n  count: 2.5\n", "section.count"),
    ("section:\n  root: /d\n  count: true\n", "section.count"),
    ("section:\n  root: 5\n", "section.root"),
    ("section:\n  root: /d\n  inner:\n    sizes: [1, x]\n", "section.inner.sizes[1]"),
    ("section:\n  root: /d\n  inner:\n    sizes: 3\n", "section.inner.sizes"),
    ("section:\n  root: /d\n  inner:\n    pair: [1, 2, 3]\n", "section.inner.pair"),
    ("section:\n  root: /d\n  inner:\n    mode: c\n", "section.inner.mode"),
    ("section:\n  root: /d\n  clip: abc\n", "section.clip"),
    ("section: 3\n", "section"),
])
def test_wrong_types_name_key_and_file(tmp_path, line, key):
    err = _error(write(tmp_path / "typed.yaml", line))
    assert err.key == key and err.file.endswith("typed.yaml"), str(err)


def test_yaml_bool_words_are_not_silently_accepted(tmp_path):
    # YAML 1.1 reads "yes" as True: we still accept real booleans only; a quoted "yes" is a string -> error
    err = _error(write(tmp_path / "q.yaml", "section:\n  root: /d\n  flag: 'yes'\n"))
    assert err.key == "section.flag"


def test_missing_required_value(tmp_path):
    err = _error(write(tmp_path / "m.yaml", "section:\n  count: 1\n"))
    assert err.key == "section.root" and "missing" in str(err) and "m.yaml" in str(err)
    err = _error(write(tmp_path / "m2.yaml", "seed: 1\n"))
    assert err.key == "section"


def test_post_init_error_names_section_and_file(tmp_path):
    err = _error(write(tmp_path / "v.yaml", "section:\n  root: /d\n  inner:\n    ratio: 1.5\n"))
    assert err.key == "section.inner.ratio" and "must be in (0, 1)" in str(err) and "v.yaml" in str(err)


def test_override_errors_name_the_override(files):
    err = _error(files / "child.yaml", ["section.count=many"])
    assert err.key == "section.count" and "--set section.count=many" in err.file
    err = _error(files / "child.yaml", ["section.nope=1"])
    assert err.key == "section.nope" and "--set" in err.file
    err = _error(files / "child.yaml", ["novalue"])
    assert "section.key=value" in str(err)
    err = _error(files / "child.yaml", ["section.count.x=1"])
    assert err.key == "section.count"


def test_file_problems(tmp_path):
    err = _error(tmp_path / "none.yaml")
    assert "none.yaml" in str(err) and "not found" in str(err)
    err = _error(write(tmp_path / "syn.yaml", "section: [1,\n"))
    assert "syn.yaml" in str(err) and "invalid YAML" in str(err)
    err = _error(write(tmp_path / "list.yaml", "- 1\n"))
    assert "mapping" in str(err)
    err = _error(write(tmp_path / "nobase.yaml", "_base_: missing.yaml\n"))
    assert err.key == "_base_" and "missing.yaml" in str(err)
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    err = _error(tmp_path / "a.yaml")
    assert "circular" in str(err)


# ------------------------------------------------------------------ the real Config
def test_real_config_defaults_and_validation(tmp_path):
    cfg = load_config(write(tmp_path / "exp_a.yaml", "train:\n  lr: 0.004\n  lr_steps: [8, 11]\n"))
    assert isinstance(cfg, Config) and cfg.name == "exp_a" and cfg.device == "auto"
    assert cfg.train.lr == 0.004 and cfg.train.lr_steps == [8, 11] and cfg.train.optimizer == "sgd"
    assert cfg.eval == EvalConfig() and str(cfg.run_dir) == "runs/exp_a"
    assert TrainConfig().warmup_iters == 500 and TrainConfig().batch_size == 32
    for override, key in [("train.optimizer=adam", "train.optimizer"), ("device=gpu", "device"),
                          ("eval.split=test", "eval.split"), ("train.lr_steps=[80, 60]", "train.lr_steps"),
                          ("train.max_iters=0", "train.max_iters"), ("train.grad_clip=-1", "train.grad_clip"),
                          ("train.amp=1", "train.amp")]:
        err = _error(tmp_path / "exp_a.yaml", [override], schema=Config)
        assert err.key == key and str(err).startswith(f"--set {override}: {key}: "), (override, str(err))
    assert load_config(tmp_path / "exp_a.yaml", ["device=cuda:1", "train.grad_clip=10"]).train.grad_clip == 10.0


def test_round_trip_and_resolved_files(tmp_path):
    cfg = load_config(write(tmp_path / "rt.yaml", "seed: 3\ntrain:\n  epochs: 2\n  max_iters: 5\n"),
                      ["eval.plots=true"])
    run_dir = tmp_path / "run"
    env = save_resolved_config(cfg, run_dir)
    again = load_config(run_dir / "config.yaml")
    assert again == cfg
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == config_to_dict(cfg)
    saved = json.loads((run_dir / "environment.json").read_text())
    assert saved == env and saved["torch"] and saved["numpy"] and saved["pycocotools"] and "git_commit" in saved


# ------------------------------------------------------------------ bad input found by trying
@pytest.mark.parametrize("override", ["train.lr=1e400", "train.lr=.inf", "train.lr=-.inf", "train.lr=.nan",
                                      "train.grad_clip=.inf", "train.warmup_factor=.nan"])
def test_every_non_finite_number_is_rejected(tmp_path, override):
    key = override.split("=")[0]
    err = _error(write(tmp_path / "f.yaml", "seed: 1\n"), [override], schema=Config)
    assert err.key == key and "must be a finite number" in str(err) and f"--set {override}" in err.file


def test_non_finite_number_in_a_file_names_the_file(tmp_path):
    err = _error(write(tmp_path / "f.yaml", "section:\n  root: /d\n  inner:\n    pair: [1, .inf]\n"))
    assert err.key == "section.inner.pair[1]" and err.file.endswith("f.yaml") and "finite" in str(err)


def test_range_error_names_the_one_source_that_set_the_value(files):
    write(files / "r.yaml", "_base_: base.yaml\nsection:\n  inner:\n    sizes: [9]\n")
    err = _error(files / "r.yaml", ["section.inner.ratio=1.5"])
    assert err.key == "section.inner.ratio" and err.file == "--set section.inner.ratio=1.5", str(err)
    assert str(err) == "--set section.inner.ratio=1.5: section.inner.ratio: 1.5 must be in (0, 1)"
    write(files / "r2.yaml", "_base_: base.yaml\nsection:\n  inner:\n    ratio: 2.0\n")
    err = _error(files / "r2.yaml", ["section.count=4"])
    assert err.key == "section.inner.ratio" and err.file == str((files / "r2.yaml").resolve())


def test_range_error_of_a_list_names_its_override(tmp_path):
    err = _error(write(tmp_path / "d.yaml", "train:\n  epochs: 2\n"), ["train.lr_steps=[9, 3]"], schema=Config)
    assert err.key == "train.lr_steps" and err.file == "--set train.lr_steps=[9, 3]"


def test_unknown_set_key_is_blamed_on_the_override_not_the_yaml(files):
    for override, key in [("sectoin.count=1", "sectoin"), ("section.inner.x.y=1", "section.inner.x"),
                          ("bogus=1", "bogus")]:
        err = _error(files / "child.yaml", [override])
        assert err.key == key and err.file == f"--set {override}", (override, str(err))


def test_empty_config_file_is_an_error(tmp_path):
    err = _error(write(tmp_path / "empty.yaml", ""), schema=Config)
    assert err.file.endswith("empty.yaml") and "empty" in str(err)
    err = _error(write(tmp_path / "comments.yaml", "# nothing but a comment\n"), schema=Config)
    assert "empty" in str(err)
    write(tmp_path / "blank_base.yaml", "\n")
    err = _error(write(tmp_path / "child.yaml", "_base_: blank_base.yaml\nseed: 1\n"), schema=Config)
    assert err.file.endswith("blank_base.yaml") and "empty" in str(err)


@pytest.mark.parametrize("text, key, lines", [
    ("train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n", "train.lr", "lines 2 and 4"),
    ("train:\n  lr: 0.1\ntrain:\n  epochs: 3\n", "train", "lines 1 and 3"),
    ("data: {root: a, root: b}\n", "data.root", "line 1"),
])
def test_duplicate_yaml_keys_are_errors(tmp_path, text, key, lines):
    err = _error(write(tmp_path / "dup.yaml", text), schema=Config)
    assert err.key == key and err.file.endswith("dup.yaml") and "duplicate key" in str(err) and lines in str(err)
