"""Assigners: exact thresholds, low-quality matches, crowd ignore, empty images, ATSS hand-built cases, and both
assigners against plain-Python reference implementations on random boxes."""
import statistics

import pytest
import torch

from models.assigners import BACKGROUND, IGNORE, NO_MATCH, ATSSAssigner, MaxIoUAssigner

GT = torch.tensor([[0.0, 0, 10, 10]])
LABEL = torch.tensor([4])


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_max_iou_exact_thresholds():
    anchors = torch.tensor([
        [0.0, 0, 10, 10],  # IoU 1
        [0, 0, 10, 20],  # IoU exactly 0.5 -> positive
        [0, 0, 10, 20.001],  # IoU just under 0.5 -> ignored
        [0, 0, 10, 25],  # IoU exactly 0.4 -> ignored (negative is < 0.4)
        [0, 0, 10, 25.01],  # IoU just under 0.4 -> background
        [50, 50, 60, 60],  # IoU 0 -> background
    ])
    out = MaxIoUAssigner()(anchors, GT, LABEL)
    assert out.labels.tolist() == [5, 5, IGNORE, IGNORE, BACKGROUND, BACKGROUND]
    assert out.matched_gt.tolist() == [0, 0, NO_MATCH, NO_MATCH, NO_MATCH, NO_MATCH]


def test_low_quality_matches_keep_tied_best_anchors():
    gts = torch.tensor([[0.0, 0, 10, 10], [100, 100, 110, 110]])
    anchors = torch.tensor([
        [0.0, 0, 10, 30],  # IoU 1/3 with gt 0: its best (tied)
        [0, -20, 10, 10],  # IoU 1/3 with gt 0: its best (tied)
        [0, 0, 10, 40],  # IoU 0.25 with gt 0
        [100, 100, 130, 110],  # IoU 1/3 with gt 1: its best
    ])
    labels = torch.tensor([1, 2])
    out = MaxIoUAssigner()(anchors, gts, labels)
    assert out.labels.tolist() == [2, 2, BACKGROUND, 3]
    assert out.matched_gt.tolist() == [0, 0, NO_MATCH, 1]
    plain = MaxIoUAssigner(low_quality_matches=False)(anchors, gts, labels)
    assert plain.labels.tolist() == [BACKGROUND] * 4


def test_low_quality_anchor_best_for_two_gts_takes_the_larger_iou():
    gts = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 14]])
    anchors = torch.tensor([[0.0, 0, 10, 30], [50, 50, 60, 60]])  # IoU 1/3 and 14/30
    out = MaxIoUAssigner()(anchors, gts, torch.tensor([0, 1]))
    assert out.labels.tolist() == [2, BACKGROUND] and out.matched_gt.tolist() == [1, NO_MATCH]


def test_a_gt_with_no_overlap_claims_nothing():
    anchors = torch.tensor([[50.0, 50, 60, 60], [70, 70, 80, 80]])
    out = MaxIoUAssigner()(anchors, GT, LABEL)
    assert out.labels.tolist() == [BACKGROUND, BACKGROUND]


def test_crowd_boxes_make_covered_background_anchors_ignored():
    crowd = torch.tensor([[100.0, 100, 200, 200]])
    anchors = torch.tensor([
        [0.0, 0, 10, 10],  # positive, far from the crowd
        [120, 120, 140, 140],  # inside the crowd: IoF 1 -> ignore
        [90, 100, 110, 120],  # IoF exactly 0.5: not above the threshold -> background
        [89, 100, 109, 120],  # IoF 0.45 -> background
        [92, 100, 112, 120],  # IoF 0.6 -> ignore
    ])
    for assigner in (MaxIoUAssigner(crowd_ignore_iof=0.5), ATSSAssigner(topk=9, crowd_ignore_iof=0.5)):
        out = assigner(anchors, GT, LABEL, crowd, [5])
        assert out.labels.tolist() == [5, IGNORE, BACKGROUND, BACKGROUND, IGNORE], type(assigner)


def test_crowd_does_not_remove_positives():
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    out = MaxIoUAssigner()(anchors, GT, LABEL, torch.tensor([[0.0, 0, 40, 40]]))
    assert out.labels.tolist() == [5, IGNORE]


def test_crowd_anchors_negative_drops_crowd_boxes_as_the_releases_do():
    crowd = torch.tensor([[100.0, 100, 200, 200]])
    anchors = torch.tensor([[0.0, 0, 10, 10], [120, 120, 140, 140], [92, 100, 112, 120]])
    for assigner in (MaxIoUAssigner(crowd_ignore_iof=None), ATSSAssigner(topk=9, crowd_ignore_iof=None)):
        out = assigner(anchors, GT, LABEL, crowd, [3])
        assert out.labels.tolist() == [5, BACKGROUND, BACKGROUND], type(assigner)
        empty = assigner(anchors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), crowd, [3])
        assert empty.labels.tolist() == [BACKGROUND] * 3


@pytest.mark.parametrize("mode, expected", [("negative", BACKGROUND), ("ignore", IGNORE)])
def test_crowd_anchors_config_reaches_both_assigners(mode, expected):
    from models.build import build_assigner
    from models.config import ModelConfig

    anchors = torch.tensor([[0.0, 0, 10, 10], [120, 120, 140, 140]])
    for name in ("max_iou", "atss"):
        cfg = ModelConfig(assigner={"name": name, "crowd_anchors": mode})
        out = build_assigner(cfg)(anchors, GT, LABEL, torch.tensor([[100.0, 100, 200, 200]]), [2])
        assert out.labels[1].item() == expected, name  # the anchor inside the crowd box
    with pytest.raises(ValueError, match="crowd_anchors"):
        ModelConfig(assigner={"crowd_anchors": "drop"})


@pytest.mark.parametrize("assigner", [MaxIoUAssigner(), ATSSAssigner()])
def test_image_without_boxes(assigner):
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]])
    out = assigner(anchors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), None, [3])
    assert out.labels.tolist() == [BACKGROUND] * 3 and out.matched_gt.tolist() == [NO_MATCH] * 3
    out = assigner(anchors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), torch.tensor([[15.0, 15, 35, 35]]),
                   [3])
    assert out.labels.tolist() == [BACKGROUND, IGNORE, BACKGROUND]


def test_atss_two_level_hand_built_case():
    gt = torch.tensor([[0.0, 0, 16, 10]])  # centre (8, 5)
    anchors = torch.tensor([
        [0.0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10], [30, 0, 40, 10],  # level 0, centre distances 3 7 17 27
        [0, 0, 20, 20], [20, 0, 40, 20],  # level 1
    ])
    # top-2 per level: anchors 0, 1 (IoU 0.625, 0.3) and 4, 5 (IoU 0.4, 0)
    ious = [0.625, 0.3, 0.4, 0.0]
    threshold = statistics.mean(ious) + statistics.stdev(ious)  # 0.5906
    assert 0.5 < threshold < 0.625
    out = ATSSAssigner(topk=2)(anchors, gt, torch.tensor([0]), None, [4, 2])
    assert out.labels.tolist() == [1, 0, 0, 0, 0, 0]
    assert out.matched_gt.tolist() == [0, NO_MATCH, NO_MATCH, NO_MATCH, NO_MATCH, NO_MATCH]


@pytest.mark.parametrize("y0,positive", [(5.5, False), (4.5, True)])
def test_atss_requires_the_anchor_centre_inside_the_box(y0, positive):
    # candidate 0 has IoU above mean + std in both cases; its centre is at y = y0 + 5 (outside the box for 5.5)
    anchors = torch.tensor([[0.0, y0, 10, y0 + 10], [-20, -20, -10, -10], [20, 20, 30, 30]])
    out = ATSSAssigner(topk=3)(anchors, GT, LABEL, None, [3])
    assert out.labels.tolist() == ([5] if positive else [0]) + [0, 0]


def test_atss_requires_level_counts():
    with pytest.raises(ValueError, match="level_counts"):
        ATSSAssigner()(GT, GT, LABEL)


def random_case(seed, n_anchors=60, n_gt=4):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n_anchors, 2, generator=g) * 80  # real-valued: no distance ties
    anchors = torch.cat([xy, xy + 4 + torch.rand(n_anchors, 2, generator=g) * 36], 1)
    gxy = torch.rand(n_gt, 2, generator=g) * 80
    gts = torch.cat([gxy, gxy + 4 + torch.rand(n_gt, 2, generator=g) * 36], 1)
    return anchors, gts, torch.randint(0, 5, (n_gt,), generator=g)


def reference_max_iou(anchors, gts, labels, pos=0.5, neg=0.4):
    a, g = anchors.tolist(), gts.tolist()
    m = [[iou(x, y) for x in a] for y in g]
    best = [max(row) for row in m]
    out_labels, out_match = [], []
    for j in range(len(a)):
        col = [m[i][j] for i in range(len(g))]
        top = max(col)
        claim = [i for i in range(len(g)) if best[i] > 0 and abs(m[i][j] - best[i]) < 1e-6]
        if top >= pos:
            i = col.index(top)
        elif claim:
            i = max(claim, key=lambda k: m[k][j])
        else:
            out_labels.append(BACKGROUND if top < neg else IGNORE)
            out_match.append(NO_MATCH)
            continue
        out_labels.append(int(labels[i]) + 1)
        out_match.append(i)
    return out_labels, out_match


def reference_atss(anchors, gts, labels, counts, k):
    a, g = anchors.tolist(), gts.tolist()
    ctr = [((x[0] + x[2]) / 2, (x[1] + x[3]) / 2) for x in a]
    best = [(-1.0, NO_MATCH)] * len(a)
    for i, box in enumerate(g):
        gc = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        cands, start = [], 0
        for count in counts:
            idx = sorted(range(start, start + count),
                         key=lambda j: ((ctr[j][0] - gc[0]) ** 2 + (ctr[j][1] - gc[1]) ** 2, j))
            cands += idx[:k]
            start += count
        vals = [iou(a[j], box) for j in cands]
        thr = statistics.mean(vals) + statistics.stdev(vals)
        for j, v in zip(cands, vals):
            inside = box[0] < ctr[j][0] < box[2] and box[1] < ctr[j][1] < box[3]
            if v >= thr - 1e-6 and inside and v > best[j][0]:
                best[j] = (v, i)
    return [int(labels[i]) + 1 if i != NO_MATCH else BACKGROUND for _, i in best], [i for _, i in best]


@pytest.mark.parametrize("seed", range(8))
def test_max_iou_matches_reference(seed):
    anchors, gts, labels = random_case(seed)
    out = MaxIoUAssigner()(anchors, gts, labels)
    best_anchor = torch.tensor([[iou(a, g) for a in anchors.tolist()] for g in gts.tolist()]).argmax(dim=1)
    assert (out.labels[best_anchor] > 0).all()  # low-quality matches: every gt's best anchor is positive
    assert (out.labels.tolist(), out.matched_gt.tolist()) == reference_max_iou(anchors, gts, labels)


@pytest.mark.parametrize("seed", range(8))
def test_atss_matches_reference(seed):
    anchors, gts, labels = random_case(seed)
    counts = [30, 20, 10]
    out = ATSSAssigner(topk=4)(anchors, gts, labels, None, counts)
    assert (out.labels > 0).any()
    assert (out.labels.tolist(), out.matched_gt.tolist()) == reference_atss(anchors, gts, labels, counts, 4)
