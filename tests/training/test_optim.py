"""Learning-rate schedule and optimiser construction (training/optim.py), against hand-computed values."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.optim import LRFactor, build_optimizer, build_scheduler, current_lr, scaled_lr


def test_scaled_lr_linear_rule():
    assert scaled_lr(0.008, 32, 32) == pytest.approx(0.008)
    assert scaled_lr(0.008, 16, 32) == pytest.approx(0.004)
    assert scaled_lr(0.004, 4, 16) == pytest.approx(0.001)
    with pytest.raises(ValueError, match="batch"):
        scaled_lr(0.01, 0, 32)


def test_ablation_warmup_values():
    f = LRFactor(schedule="step", total_iters=1000, milestones=[600, 800], warmup_iters=500, warmup_mode="ablation")
    assert f(0) == pytest.approx(1 / 3)
    assert f(250) == pytest.approx(1 / 3 + 2 / 3 * 0.5)
    assert f(499) == pytest.approx(1 / 3 + 2 / 3 * 499 / 500)
    assert f(500) == 1.0
    assert f(599) == 1.0
    assert f(600) == pytest.approx(0.1)
    assert f(799) == pytest.approx(0.1)
    assert f(800) == pytest.approx(0.01)


def test_linear_warmup_and_cosine():
    f = LRFactor(schedule="cosine", total_iters=100, warmup_iters=10, warmup_mode="linear", warmup_factor=0.001)
    assert f(0) == pytest.approx(0.001 * 1.0)
    assert f(5) == pytest.approx((0.001 + 0.999 * 0.5) * 0.5 * (1 + math.cos(math.pi * 0.05)))
    assert f(50) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0, abs=1e-12)
    assert f(150) == pytest.approx(0.0, abs=1e-12)  # clamped past the end


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2000), st.integers(1, 600), st.sampled_from(["ablation", "linear"]))
def test_warmup_monotone_and_bounded(t, warmup, mode):
    f = LRFactor(schedule="step", total_iters=5000, milestones=[], warmup_iters=warmup, warmup_mode=mode)
    assert 0 < f(t) <= 1.0
    assert f(t) <= f(t + 1) + 1e-12


def test_bad_names_raise():
    with pytest.raises(ValueError, match="lr_schedule"):
        LRFactor(schedule="poly", total_iters=10)
    with pytest.raises(ValueError, match="warmup_mode"):
        LRFactor(schedule="step", total_iters=10, warmup_mode="exp")
    with pytest.raises(ValueError, match="optimizer"):
        build_optimizer(torch.nn.Linear(2, 2), name="lamb", lr=0.1)


def test_scheduler_steps_per_iteration_with_epoch_milestones():
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    sched = build_scheduler(opt, schedule="step", iters_per_epoch=10, total_iters=50, lr_steps=[2, 4], gamma=0.1,
                            warmup_iters=4, warmup_mode="ablation")
    seen = []
    for _ in range(45):
        seen.append(current_lr(opt))
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(0.1 / 3)
    assert seen[2] == pytest.approx(0.1 * (1 / 3 + 2 / 3 * 0.5))
    assert seen[4] == pytest.approx(0.1)
    assert seen[19] == pytest.approx(0.1) and seen[20] == pytest.approx(0.01)
    assert seen[40] == pytest.approx(0.001)


def test_scheduler_state_roundtrip():
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, name="adamw", lr=1e-3, weight_decay=0.05)
    assert isinstance(opt, torch.optim.AdamW)
    kwargs = dict(schedule="cosine", iters_per_epoch=5, total_iters=20, warmup_iters=3, warmup_mode="linear")
    sched = build_scheduler(opt, **kwargs)
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = build_optimizer(model, name="adamw", lr=1e-3, weight_decay=0.05)
    sched2 = build_scheduler(opt2, **kwargs)
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = sched2.get_last_lr()[0]
    for _ in range(3):
        opt.step(), sched.step(), opt2.step(), sched2.step()
    assert current_lr(opt) == pytest.approx(current_lr(opt2))


def test_frozen_parameters_are_excluded():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)
    opt = build_optimizer(model, name="sgd", lr=0.1)
    assert sum(len(g["params"]) for g in opt.param_groups) == 2
