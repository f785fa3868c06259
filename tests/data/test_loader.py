"""Batch collation, seeded per-epoch augmentation, sharding and aspect grouping."""
import pytest
import torch
from torch.utils.data import DistributedSampler

from data import DataConfig, build_dataset, build_loader, collate
from data.loader import KeyedBatchSampler
from tests.fixtures.synthetic import synthetic_coco_dict, write_coco


def test_collate_pads_to_multiple_of_divisor():
    a, b = torch.ones(3, 100, 130), torch.full((3, 120, 90), 2.0)
    ta, tb = {"image_id": 1}, {"image_id": 2}
    images, targets = collate([(a, ta), (b, tb)], pad_divisor=128)
    assert images.shape == (2, 3, 128, 256) and targets == [ta, tb]
    assert torch.equal(images[0, :, :100, :130], a) and images[0, :, 100:].abs().sum() == 0
    assert images[0, :, :, 130:].abs().sum() == 0
    assert torch.equal(images[1, :, :120, :90], b) and images[1, :, :, 90:].abs().sum() == 0
    images, _ = collate([(torch.ones(3, 64, 64), ta)], pad_divisor=32)
    assert images.shape == (1, 3, 64, 64)


def test_default_padding_is_32_as_released():
    # 800 x 800 training images stay 800 x 800 (a multiple of 128 would pad them to 896 x 896, +25 % area).
    assert DataConfig().pad_divisor == 32
    images, _ = collate([(torch.ones(3, 800, 800), {}), (torch.ones(3, 500, 750), {})])
    assert images.shape == (2, 3, 800, 800)
    images, _ = collate([(torch.ones(3, 500, 751), {})])
    assert images.shape == (1, 3, 512, 768)


@pytest.fixture
def synth_cfg(tmp_path):
    coco, images = synthetic_coco_dict(6, size=(48, 64), boxes_per_image=2)
    write_coco(tmp_path, "train", coco, images)
    coco, images = synthetic_coco_dict(5, size=(48, 64), seed=1)
    for i, info in enumerate(coco["images"]):  # mixed orientation for aspect grouping
        if i % 2:
            info["height"], info["width"] = 64, 48
            images[i] = images[i].transpose(1, 0, 2).copy()
            for a in coco["annotations"]:
                if a["image_id"] == info["id"]:
                    x, y, w, h = a["bbox"]
                    a["bbox"] = [y, x, h, w]
    write_coco(tmp_path, "val", coco, images)
    return DataConfig(root=str(tmp_path), train_split="train", val_split="val", train_size=32, num_workers=0,
                      eval_short_side=32, eval_max_size=64, pad_divisor=32)


def _epoch(loader, epoch):
    loader.set_epoch(epoch)
    return [(images, [t["image_id"] for t in targets], [t["boxes"] for t in targets]) for images, targets in loader]


def _same(run_a, run_b):
    return all(torch.equal(x[0], y[0]) and x[1] == y[1] and all(torch.equal(p, q) for p, q in zip(x[2], y[2]))
               for x, y in zip(run_a, run_b)) and len(run_a) == len(run_b)


def test_same_seed_and_epoch_same_augmented_batches(synth_cfg):
    ds = build_dataset(synth_cfg, "train", train=True)
    first = _epoch(build_loader(ds, synth_cfg, True, batch_size=4, seed=3), epoch=2)
    again = _epoch(build_loader(ds, synth_cfg, True, batch_size=4, seed=3), epoch=2)
    assert _same(first, again)
    assert not _same(first, _epoch(build_loader(ds, synth_cfg, True, batch_size=4, seed=3), epoch=3))
    assert not _same(first, _epoch(build_loader(ds, synth_cfg, True, batch_size=4, seed=4), epoch=2))


def test_worker_processes_reproduce_the_main_process(synth_cfg):
    ds = build_dataset(synth_cfg, "train", train=True)
    in_main = _epoch(build_loader(ds, synth_cfg, True, batch_size=3, seed=5), epoch=1)
    synth_cfg.num_workers = 2
    loader = build_loader(ds, synth_cfg, True, batch_size=3, seed=5)
    assert _same(in_main, _epoch(loader, epoch=1))
    assert loader.epoch == 1 and loader.batch_sampler.sampler.epoch == 1


def test_distributed_shards_are_disjoint_and_cover_the_dataset(synth_cfg):
    ds = build_dataset(synth_cfg, "train", train=True)
    seen = []
    for rank in range(2):
        sampler = KeyedBatchSampler(DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0), 2, seed=0)
        sampler.set_epoch(4)
        keys = [k for batch in sampler for k in batch]
        assert all(k[1:] == (0, 4) for k in keys)
        seen.append({k[0] for k in keys})
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(len(ds)))


def test_eval_loader_order_and_aspect_grouping(synth_cfg):
    assert synth_cfg.aspect_grouping  # the default
    ds = build_dataset(synth_cfg, "val", train=False)
    synth_cfg.aspect_grouping = False
    ids = [t["image_id"] for _, ts in build_loader(ds, synth_cfg, False, batch_size=2) for t in ts]
    assert ids == [r.image_id for r in ds.records]
    synth_cfg.aspect_grouping = True
    loader = build_loader(ds, synth_cfg, False, batch_size=2)
    batches = [[t["orig_size"] for t in ts] for _, ts in loader]
    assert sorted(s for b in batches for s in b) == sorted((r.height, r.width) for r in ds.records)
    for batch in batches:
        assert len({h > w for h, w in batch}) == 1
    assert len(loader) == len(batches)


def test_batch_size_is_validated(synth_cfg):
    ds = build_dataset(synth_cfg, "train", train=True)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        build_loader(ds, synth_cfg, True, False)
