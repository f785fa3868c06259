"""Self-balancing: update math, no-update cases, state round trip, averaging across processes."""
import pytest
import torch
import torch.distributed as dist

from alrp.losses.balance import SelfBalance


def test_starts_at_init_and_updates_to_mean_ratio():
    sb = SelfBalance()
    assert sb.weight == 50.0
    for cls, loc in [(0.9, 0.1), (0.8, 0.3), (torch.tensor(0.7), torch.tensor(0.2))]:
        sb.accumulate(cls, loc)
    # mean(cls + loc) / mean(loc) = (2.4 + 0.6) / 0.6 = 5
    assert sb.update() == pytest.approx(5.0)
    assert sb.weight == pytest.approx(5.0)
    sb.accumulate(0.5, 0.5)  # statistics were reset: the next period stands alone
    assert sb.update() == pytest.approx(2.0)


def test_no_update_without_statistics():
    sb = SelfBalance(init=10.0)
    assert sb.update() == 10.0
    sb.accumulate(0.5, 0.0)  # L_loc of zero cannot define a ratio: keep the weight
    assert sb.update() == 10.0


def test_state_round_trip_mid_period():
    sb = SelfBalance(init=20.0)
    sb.accumulate(0.6, 0.2)
    restored = SelfBalance()
    restored.load_state_dict(sb.state_dict())
    assert restored.weight == 20.0
    restored.accumulate(0.4, 0.2)
    assert restored.update() == pytest.approx((1.0 + 0.4) / 0.4)
    with pytest.raises(KeyError, match="weight"):
        SelfBalance().load_state_dict({"sum_cls": 0.0})


def test_bad_init():
    with pytest.raises(ValueError, match="init"):
        SelfBalance(init=0.0)


def test_distributed_update_single_process(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        sb = SelfBalance()
        sb.accumulate(0.3, 0.1)
        assert sb.update(distributed=True) == pytest.approx(4.0)
        assert SelfBalance(init=7.0).update(distributed=True) == 7.0  # nothing anywhere: no update
    finally:
        dist.destroy_process_group()


def test_iteration_period_updates_every_n_iterations_as_mmdet():
    sb = SelfBalance(50.0, period_iters=3)
    assert not sb.updates_at_epoch_end
    for cls, loc in ((1.0, 1.0), (2.0, 1.0)):
        sb.accumulate(cls, loc)
        assert not sb.end_iteration()
    assert sb.end_iteration()  # third iteration (no positives: nothing accumulated) closes the period
    assert sb.weight == pytest.approx((3.0 + 2.0) / 2.0)
    sb.accumulate(1.0, 4.0)
    state = sb.state_dict()
    assert not sb.end_iteration() and sb.state_dict()["iters"] == 1
    restored = SelfBalance(50.0, period_iters=3)
    restored.load_state_dict(state)
    assert not restored.end_iteration() and not restored.end_iteration() and restored.end_iteration()
    assert restored.weight == pytest.approx(5.0 / 4.0)


def test_epoch_period_ignores_end_iteration():
    sb = SelfBalance(50.0)
    sb.accumulate(1.0, 1.0)
    assert sb.updates_at_epoch_end and not any(sb.end_iteration() for _ in range(10)) and sb.weight == 50.0
    assert sb.end_epoch() == 2.0
    periodic = SelfBalance(50.0, period_iters=100)
    periodic.accumulate(1.0, 1.0)
    assert periodic.end_epoch() == 50.0 and periodic.state_dict()["count"] == 1  # the period runs on
    with pytest.raises(ValueError, match="period_iters"):
        SelfBalance(50.0, period_iters=0)
