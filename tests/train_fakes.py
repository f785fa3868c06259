"""Tiny stand-ins with the detector / criterion / dataset surface of docs/architecture.md, for training tests.

16x16 images, one 4x4 feature map (stride 4, one 8x8 anchor per cell), K = 2 classes. The criterion is a
per-pair mean (no normalisation by the number of positives), so a batch split over processes gives exactly the
loss and gradient of the whole batch, which the DDP-equivalence test relies on.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from torchvision.ops import box_iou

from alrp import distributed as dist_utils
from models.targets import LossTargets

SIZE, STRIDE, K = 16, 4, 2


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster on a shared, busy CPU.

    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")`` after ``from train_fakes import one_thread``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FakeDetector(nn.Module):
    """conv 3x3/4 -> GroupNorm -> ReLU -> conv 1x1 giving (N, 16, K) logits and (N, 16, 4) deltas."""

    def __init__(self, num_classes: int = K) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=STRIDE, padding=1), nn.GroupNorm(2, 8), nn.ReLU())
        self.out = nn.Conv2d(8, num_classes + 4, 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.out(self.body(images)).flatten(2).transpose(1, 2)  # (N, HW, K + 4)
        return {"cls_logits": y[..., : self.num_classes], "box_deltas": y[..., self.num_classes:]}

    def anchors(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2] // STRIDE, images.shape[-1] // STRIDE
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        cx, cy = (xs.reshape(-1) + 0.5) * STRIDE, (ys.reshape(-1) + 0.5) * STRIDE
        return torch.stack([cx - 4, cy - 4, cx + 4, cy + 4], 1).float().to(images.device)  # (HW, 4)

    def loss_targets(self, outputs, anchors, targets) -> LossTargets:
        cls, deltas = outputs["cls_logits"], outputs["box_deltas"]
        pair_t, pred_d, gt_d, pred_b, gt_b = [], [], [], [], []
        for i, t in enumerate(targets):
            iou = box_iou(anchors, t["boxes"])  # (HW, G)
            best, idx = iou.max(1)
            pos = best >= 0.3
            tt = torch.zeros_like(cls[i], dtype=torch.int64)
            tt[pos, t["labels"][idx[pos]]] = 1
            pair_t.append(tt)
            gt = t["boxes"][idx[pos]]
            pred_d.append(deltas[i][pos])
            gt_d.append((gt - anchors[pos]) / 8.0)
            pred_b.append(anchors[pos] + deltas[i][pos] * 8.0)
            gt_b.append(gt)
        return LossTargets(logits=cls.reshape(-1), targets=torch.stack(pair_t).reshape(-1),
                           pos_pred_boxes=torch.cat(pred_b), pos_gt_boxes=torch.cat(gt_b),
                           pos_pred_deltas=torch.cat(pred_d), pos_gt_deltas=torch.cat(gt_d))

    def postprocess(self, outputs, anchors, targets) -> list[dict[str, torch.Tensor]]:
        scores, labels = outputs["cls_logits"].sigmoid().max(-1)  # (N, HW)
        result = []
        for i, t in enumerate(targets):
            keep = scores[i] > 0.05
            boxes = (anchors + outputs["box_deltas"][i] * 8.0)[keep] / float(t.get("scale", 1.0))
            result.append({"boxes": boxes, "scores": scores[i][keep], "labels": labels[i][keep]})
        return result


class FakeSelfBalance:
    """SB with the criterion's surface: weight = mean(cls + loc) / mean(loc) over the epoch, synced over ranks."""

    def __init__(self, init: float = 2.0) -> None:
        self.weight = init
        self.sums = torch.zeros(3, dtype=torch.float64)
        self.update_calls: list[bool] = []

    def accumulate(self, cls: torch.Tensor, loc: torch.Tensor) -> None:
        self.sums += torch.tensor([float(cls), float(loc), 1.0], dtype=torch.float64)

    def update(self, distributed: bool = False) -> None:
        self.update_calls.append(distributed)
        sums = dist_utils.all_reduce_sum(self.sums) if distributed else self.sums
        if sums[2] > 0 and sums[1] > 0:
            self.weight = float((sums[0] + sums[1]) / sums[1])
        self.sums = torch.zeros(3, dtype=torch.float64)

    def state_dict(self) -> dict:
        return {"weight": self.weight, "sums": self.sums.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.weight, self.sums = float(state["weight"]), state["sums"].clone()


class FakeCriterion:
    """cls = BCE summed over valid pairs / M; loc = L1 summed over positives / M; total = cls + w * loc."""

    def __init__(self, self_balance: bool = True, nan_at_call: int | None = None,
                 crash_at_call: int | None = None) -> None:
        self.self_balance = FakeSelfBalance() if self_balance else None
        self.calls = 0
        self.nan_at_call, self.crash_at_call = nan_at_call, crash_at_call

    def __call__(self, lt: LossTargets) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.calls == self.crash_at_call:
            raise KeyboardInterrupt("simulated kill")
        m = lt.logits.numel()
        valid = lt.targets >= 0
        cls = F.binary_cross_entropy_with_logits(lt.logits[valid], lt.targets[valid].float(), reduction="sum") / m
        loc = (lt.pos_pred_deltas - lt.pos_gt_deltas).abs().sum() / m
        if self.nan_at_call is not None and self.calls == self.nan_at_call:
            loc = loc * float("nan")
        w = self.self_balance.weight if self.self_balance is not None else 1.0
        grad = (lt.logits.detach().sigmoid() - lt.targets.clamp(min=0).float()).abs()
        return {"total": cls + w * loc, "cls": cls, "loc": loc, "loc_weight": torch.tensor(w),
                "grad_pos_sum": grad[lt.targets == 1].sum(), "grad_neg_sum": grad[lt.targets == 0].sum(),
                "num_pos": torch.tensor(float(lt.num_pos))}


class FakeDataset(Dataset):
    """``n`` images with one bright square each (deterministic); optional random flip from the global torch RNG."""

    num_classes = K

    def __init__(self, n: int = 8, flip: bool = False) -> None:
        self.n, self.flip = n, flip

    def __len__(self) -> int:
        return self.n

    def label_to_cat_id(self, label: int) -> int:
        return [3, 7][label]

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        x0, y0 = torch.randint(0, 8, (2,), generator=g).tolist()
        image = torch.rand(3, SIZE, SIZE, generator=g) * 0.1
        image[:, y0:y0 + 8, x0:x0 + 8] += 1.0
        box = torch.tensor([[x0, y0, x0 + 8, y0 + 8]], dtype=torch.float32)
        if self.flip and torch.rand(()) < 0.5:
            image = image.flip(-1)
            box = torch.stack([SIZE - box[:, 2], box[:, 1], SIZE - box[:, 0], box[:, 3]], 1)
        target = {"boxes": box, "labels": torch.tensor([i % K]), "image_id": 100 + i, "orig_size": (SIZE, SIZE),
                  "scale": 1.0}
        return image, target


def collate(batch):
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
