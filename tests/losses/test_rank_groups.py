"""`loss.rank_group`: splitting LossTargets by images, the group-mean criterion, and 1 process x 16 images in
groups of 8 == 2 gloo processes x 8 images (losses, gradients, weights, SB weight); the `loss.rank_per_class`
diagnostic: splitting by classes and the P_c / P-weighted criterion."""
import pytest
import torch
from torch.utils.data import DataLoader

from alrp.losses.config import LossConfig
from alrp.losses.criterion import build_criterion
from alrp.losses.groups import group_bounds, split_classes, split_images
from alrp.losses.targets import LossTargets
from models import ModelConfig, build_detector
from training.loop import TrainStep
from training.optim import build_optimizer, build_scheduler
from tests.fixtures.class_pairs import class_pair_targets
from tests.fixtures.gloo_ranks import run_two_ranks
from tests.fixtures.train_fakes import FakeDataset, FakeDetector, collate

FIELDS = ("logits", "targets", "pos_pred_boxes", "pos_gt_boxes", "pos_pred_deltas", "pos_gt_deltas")


def test_group_bounds():
    assert group_bounds(16, 8) == [(0, 8), (8, 16)]
    assert group_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]  # a short last batch: the last group is smaller
    assert group_bounds(4, None) == group_bounds(4, 4) == group_bounds(4, 9) == [(0, 4)]
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="group size"):
            group_bounds(4, bad)


@pytest.fixture(scope="module")
def batch():
    """A small RetinaNet's LossTargets of 4 images (different numbers of boxes), plus its inputs."""
    torch.manual_seed(0)
    cfg = ModelConfig(backbone={"name": "resnet18", "norm": "gn", "frozen_stages": 0}, fpn={"channels": 32},
                      head={"channels": 32, "num_convs": 1, "norm": "gn"})
    model = build_detector(cfg, num_classes=3)
    images = torch.randn(4, 3, 64, 64)
    boxes = [[[4.0, 4, 40, 40]], [[10.0, 8, 60, 30], [30, 30, 62, 62]], [], [[0.0, 20, 24, 60]]]
    targets = [{"boxes": torch.tensor(b).reshape(-1, 4), "labels": torch.arange(len(b)) % 3} for b in boxes]
    outputs = model(images)
    anchors = model.anchors(images)
    return model, outputs, anchors, targets, model.loss_targets(outputs, anchors, targets)


def test_split_equals_loss_targets_built_per_group(batch):
    model, outputs, anchors, targets, lt = batch
    groups = split_images(lt, 2)
    assert [g.num_images for g in groups] == [2, 2] and split_images(lt, None) == [lt]
    for g, (a, b) in zip(groups, [(0, 2), (2, 4)]):
        direct = model.loss_targets({k: v[a:b] for k, v in outputs.items()}, anchors, targets[a:b])
        for field in FIELDS:
            assert torch.equal(getattr(g, field), getattr(direct, field)), field
    assert sum(g.num_pos for g in groups) == lt.num_pos > 0
    ragged = split_images(lt, 3)
    last = model.loss_targets({k: v[3:] for k, v in outputs.items()}, anchors, targets[3:])
    assert [g.num_images for g in ragged] == [3, 1] and torch.equal(ragged[1].pos_gt_boxes, last.pos_gt_boxes)


@pytest.mark.parametrize("name,box", [("alrp", "giou"), ("ap", "smooth_l1"), ("focal", "smooth_l1")])
def test_grouped_criterion_is_the_mean_of_the_groups(batch, name, box):
    model, outputs, anchors, targets, _ = batch
    logits = outputs["cls_logits"].detach().requires_grad_()
    fresh = {"cls_logits": logits, "box_deltas": outputs["box_deltas"].detach()}
    grouped = build_criterion(LossConfig(name=name, box_loss=box, rank_group=2))
    out = grouped(model.loss_targets(fresh, anchors, targets))
    (grad,) = torch.autograd.grad(out["cls"], logits)
    plain = build_criterion(LossConfig(name=name, box_loss=box))
    halves = [plain(model.loss_targets({k: v[a:b] for k, v in fresh.items()}, anchors, targets[a:b]))
              for a, b in ((0, 2), (2, 4))]
    for key in ("cls", "loc", "grad_pos_sum", "grad_neg_sum"):
        expected = (halves[0][key].double() + halves[1][key].double()) / 2
        torch.testing.assert_close(out[key].double(), expected, rtol=1e-6, atol=1e-9)
    (grad_ref,) = torch.autograd.grad((halves[0]["cls"] + halves[1]["cls"]) / 2, logits)
    torch.testing.assert_close(grad, grad_ref)
    assert int(out["num_pos"]) == int(halves[0]["num_pos"]) + int(halves[1]["num_pos"])
    ungrouped = build_criterion(LossConfig(name=name, box_loss=box))(model.loss_targets(fresh, anchors, targets))
    assert not torch.allclose(ungrouped["cls"], out["cls"])  # the grouping matters


def test_config_and_missing_num_images():
    with pytest.raises(ValueError, match="loss.rank_group"):
        LossConfig(rank_group=0)
    assert LossConfig(rank_group=8).rank_group == 8

    unknown = LossTargets(logits=torch.zeros(4), targets=torch.zeros(4, dtype=torch.int64),
                          pos_pred_boxes=torch.zeros(0, 4), pos_gt_boxes=torch.zeros(0, 4),
                          pos_pred_deltas=torch.zeros(0, 4), pos_gt_deltas=torch.zeros(0, 4))
    with pytest.raises(ValueError, match="LossTargets has no num_images"):
        split_images(unknown, 2)
    assert split_images(unknown, None) == [unknown]


def test_split_classes_keeps_each_class_with_positives_and_its_share(batch):
    model, outputs, anchors, targets, lt = batch
    parts = split_classes(lt)
    assert len(parts) == 2  # boxes of classes 0 and 1 only: class 2 gets no part
    assert sum(part.num_pos for part, _ in parts) == lt.num_pos
    for (part, weight), c in zip(parts, (0, 1)):
        class_boxes = torch.cat([t["boxes"][t["labels"] == c] for t in targets])
        assert all((class_boxes == row).all(1).any() for row in part.pos_gt_boxes)  # matched to class-c boxes only
        assert weight == part.num_pos / lt.num_pos and part.num_classes == 1
        assert part.logits.numel() == lt.logits.numel() // 3 and part.num_pos == int(part.targets.eq(1).sum())


@pytest.mark.parametrize("name,box", [("alrp", "giou"), ("ap", "smooth_l1")])
def test_per_class_criterion_is_the_share_weighted_sum_of_the_classes(batch, name, box):
    model, outputs, anchors, targets, lt = batch
    logits = outputs["cls_logits"].detach().requires_grad_()
    fresh = model.loss_targets({"cls_logits": logits, "box_deltas": outputs["box_deltas"].detach()}, anchors, targets)
    per_class = build_criterion(LossConfig(name=name, box_loss=box, rank_per_class=True))
    plain = build_criterion(LossConfig(name=name, box_loss=box))
    out = per_class(fresh)
    parts = [(plain(part), weight) for part, weight in split_classes(fresh)]
    for key in ("cls", "loc", "grad_pos_sum", "grad_neg_sum"):
        expected = sum(weight * values[key].double() for values, weight in parts)
        torch.testing.assert_close(out[key].double(), expected, rtol=1e-6, atol=1e-9)
    for part, _ in split_classes(fresh):  # one class: ranking it apart is the plain loss
        torch.testing.assert_close(per_class(part)["cls"], plain(part)["cls"])
    (grad,) = torch.autograd.grad(out["cls"], logits)
    (joint_grad,) = torch.autograd.grad(plain(fresh)["cls"], logits)
    assert grad[..., 2].abs().sum() == 0 < joint_grad[..., 2].abs().sum()  # no class-2 box: untouched apart
    assert grad[..., :2].abs().sum() > 0


def test_per_class_ranking_within_image_groups_is_the_mean_over_the_groups(batch):
    model, outputs, anchors, targets, _ = batch
    both = build_criterion(LossConfig(rank_group=2, rank_per_class=True))
    per_class = build_criterion(LossConfig(rank_per_class=True))
    out = both(model.loss_targets(outputs, anchors, targets))
    halves = [per_class(model.loss_targets({k: v[a:b] for k, v in outputs.items()}, anchors, targets[a:b]))
              for a, b in ((0, 2), (2, 4))]
    for key in ("cls", "loc", "grad_pos_sum", "grad_neg_sum"):
        torch.testing.assert_close(out[key].double(), (halves[0][key].double() + halves[1][key].double()) / 2)


def test_per_class_ranking_pushes_each_class_by_its_own_positives_only():
    """Counterpart of tests/losses/test_alrp.py's joint ranking at tied scores: down / up = 1 for every class.
    (This holds whatever the class weights are; the weighting is checked against the per-class sum above.)"""
    anchors, positives = 500, (2, 40, 6)
    targets = class_pair_targets(anchors, positives)
    num_pos = sum(positives)
    boxes = torch.tensor([[0.0, 0, 10, 10]]).repeat(num_pos, 1)
    logits = torch.zeros(anchors * 3, requires_grad=True)
    lt = LossTargets(logits=logits, targets=targets.flatten(), pos_pred_boxes=boxes + 1, pos_gt_boxes=boxes,
                     pos_pred_deltas=torch.zeros(num_pos, 4), pos_gt_deltas=torch.zeros(num_pos, 4),
                     num_images=1, num_classes=3)
    out = build_criterion(LossConfig(rank_per_class=True))(lt)
    (grad,) = torch.autograd.grad(out["cls"], logits)
    grad, pos = grad.view(anchors, 3), targets == 1
    for c in range(3):
        down, up = grad[~pos[:, c], c].abs().sum(), grad[pos[:, c], c].abs().sum()
        assert down.item() == pytest.approx(up.item(), rel=1e-4) and up > 0


def test_rank_per_class_config_and_missing_num_classes():
    assert LossConfig(name="ap", box_loss="smooth_l1", rank_per_class=True).rank_per_class
    with pytest.raises(ValueError, match="loss.rank_per_class"):
        LossConfig(name="focal", box_loss="smooth_l1", rank_per_class=True)
    with pytest.raises(ValueError, match="loss.rank_per_class"):
        LossConfig(rank_per_class=1)
    unknown = LossTargets(logits=torch.zeros(6), targets=torch.tensor([1, 0, 0, 0, 0, 0]),
                          pos_pred_boxes=torch.zeros(1, 4), pos_gt_boxes=torch.zeros(1, 4),
                          pos_pred_deltas=torch.zeros(1, 4), pos_gt_deltas=torch.zeros(1, 4))
    with pytest.raises(ValueError, match="LossTargets has no num_classes"):
        split_classes(unknown)


# ------------------------------------------------------------------------ 1 process x 16 == 2 processes x 8
TOTAL, GROUP, ITERS = 16, 8, 2


def _train(world_size: int, rank: int, rank_group: int | None) -> dict:
    """Two SGD steps of the real aLRP criterion (GIoU, SB) on fake images; rank r holds images [8r, 8r + 8)."""
    torch.manual_seed(0)
    net = FakeDetector()
    model = torch.nn.parallel.DistributedDataParallel(net) if world_size > 1 else net
    per_process = TOTAL // world_size
    order = [TOTAL * b + per_process * rank + i for b in range(ITERS) for i in range(per_process)]
    loader = DataLoader(FakeDataset(TOTAL * ITERS), batch_size=per_process, sampler=order, collate_fn=collate)
    opt = build_optimizer(net, name="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4)
    sched = build_scheduler(opt, schedule="step", iters_per_epoch=ITERS, total_iters=ITERS, lr_steps=[],
                            warmup_iters=0)
    criterion = build_criterion(LossConfig(rank_group=rank_group))
    step = TrainStep(model, criterion, opt, sched, torch.device("cpu"))
    losses = []
    for iteration, (images, targets) in enumerate(loader):
        values = step(images, targets, iteration)
        losses.append([values["total"], values["cls"], values["loc"]])
    sb = criterion.end_epoch(distributed=world_size > 1)
    return {"losses": torch.tensor(losses, dtype=torch.float64), "sb": sb,
            "grads": {k: p.grad.clone() for k, p in net.named_parameters()},
            "weights": {k: v.detach().clone() for k, v in net.state_dict().items()}}


def _rank(rank: int, world_size: int) -> dict:
    return _train(world_size, rank, GROUP)


@pytest.mark.slow  # spawns a second process
@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="gloo backend not built")
def test_one_process_in_groups_equals_two_gloo_processes(monkeypatch, one_thread):
    ddp = run_two_ranks(monkeypatch, _rank)
    single = _train(1, 0, GROUP)
    whole = _train(1, 0, None)  # 16 images ranked together: a different loss
    assert single["losses"].shape == (ITERS, 3)
    torch.testing.assert_close(ddp["losses"], single["losses"], rtol=1e-5, atol=1e-7)
    for k, g in single["grads"].items():
        torch.testing.assert_close(ddp["grads"][k], g, rtol=1e-5, atol=1e-7)
    for k, w in single["weights"].items():
        torch.testing.assert_close(ddp["weights"][k], w, rtol=1e-5, atol=1e-7)
    assert ddp["sb"] == pytest.approx(single["sb"], rel=1e-6) and single["sb"] != 50.0
    assert not torch.allclose(whole["losses"][0], single["losses"][0], rtol=1e-3)
