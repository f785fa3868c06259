"""DDP on CPU (gloo): 2 processes x batch 2 == 1 process x batch 4 (losses, weights, SB weight, gathered eval)."""
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from training import distributed as du
from training.inference import predict_coco_results
from training.loop import TrainStep
from training.optim import build_optimizer, build_scheduler
from tests.fixtures.gloo_ranks import run_two_ranks
from tests.fixtures.train_fakes import FakeCriterion, FakeDataset, FakeDetector, collate

pytestmark = pytest.mark.slow  # spawns a second process

TOTAL_BATCH, EPOCHS = 4, 2


def _run(world_size: int) -> dict:
    """Two epochs of SGD on 8 fake images, SB update per epoch, then evaluation of 5 images."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    net = FakeDetector()
    model = torch.nn.parallel.DistributedDataParallel(net) if world_size > 1 else net
    train_set, val_set = FakeDataset(8), FakeDataset(5)
    sampler = DistributedSampler(train_set, shuffle=False) if world_size > 1 else None
    loader = DataLoader(train_set, batch_size=TOTAL_BATCH // world_size, sampler=sampler, collate_fn=collate)
    val_sampler = DistributedSampler(val_set, shuffle=False) if world_size > 1 else None
    val_loader = DataLoader(val_set, batch_size=2, sampler=val_sampler, collate_fn=collate)
    opt = build_optimizer(net, name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4)
    sched = build_scheduler(opt, schedule="step", iters_per_epoch=len(loader), total_iters=EPOCHS * len(loader),
                            lr_steps=[1], warmup_iters=1)
    criterion = FakeCriterion()
    step = TrainStep(model, criterion, opt, sched, device)
    losses, iteration = [], 0
    for epoch in range(EPOCHS):
        if sampler is not None:
            sampler.set_epoch(epoch)
        for images, targets in loader:
            values = step(images, targets, iteration)
            iteration += 1
            losses.append([values["total"], values["cls"], values["loc"]])
        criterion.end_epoch(distributed=world_size > 1)
    results = predict_coco_results(model, val_loader, device, show_progress=False)
    return {"losses": torch.tensor(losses, dtype=torch.float64), "sb": criterion.self_balance.weight,
            "weights": {k: v.detach().clone() for k, v in net.state_dict().items()}, "results": results,
            "iteration": iteration}


def _rank(rank: int, world_size: int) -> dict:
    """One rank's run inside the joined process group."""
    assert (du.get_rank(), du.get_world_size()) == (rank, world_size)
    result = _run(world_size)
    assert du.all_reduce_sum(torch.tensor([float(rank)])).item() == sum(range(world_size))
    return result


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="gloo backend not built")
def test_two_gloo_processes_match_one_process(monkeypatch, one_thread):
    """Rank 0 runs in this process, rank 1 in a spawned one (one interpreter start instead of two)."""
    ddp = run_two_ranks(monkeypatch, _rank)
    single = _run(1)
    assert ddp["iteration"] == single["iteration"] == EPOCHS * 2
    torch.testing.assert_close(ddp["losses"], single["losses"], rtol=1e-5, atol=1e-6)
    assert ddp["sb"] == pytest.approx(single["sb"], rel=1e-5) and single["sb"] != 2.0
    for k, v in single["weights"].items():
        torch.testing.assert_close(ddp["weights"][k], v, rtol=1e-5, atol=1e-6)
    assert not torch.equal(single["weights"]["out.weight"], FakeDetector().out.weight)  # training happened
    # evaluation: every image once (sampler padding de-duplicated), same detections
    assert [r["image_id"] for r in ddp["results"]] == [r["image_id"] for r in single["results"]]
    for a, b in zip(ddp["results"], single["results"]):
        assert a["category_id"] == b["category_id"]
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-4) and a["score"] == pytest.approx(b["score"], abs=1e-5)
    assert {r["image_id"] for r in single["results"]} == set(range(100, 105))


def test_single_process_helpers_are_identities(monkeypatch):
    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    info = du.init_distributed(torch.device("cpu"))
    assert (info.rank, info.world_size, info.distributed) == (0, 1, False)
    assert du.get_rank() == 0 and du.get_world_size() == 1 and du.is_main_process()
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(du.all_reduce_sum(t), t) and torch.equal(du.all_reduce_mean(t), t)
    assert du.reduce_dict({"b": torch.tensor(2.0), "a": 1}, torch.device("cpu")) == {"a": 1.0, "b": 2.0}
    assert du.all_gather_object({"x": 1}) == [{"x": 1}] and du.broadcast_object(5) == 5
    net = torch.nn.Linear(2, 2)
    assert du.model_without_ddp(net) is net
