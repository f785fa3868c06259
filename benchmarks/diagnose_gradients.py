#!/usr/bin/env python
"""Why does aLRP start slowly? Classification gradients of several losses on the same model and the same batches.

For every batch (training loader, seed-fixed) the detector runs once; each setup's criterion then scores the same
LossTargets, and the gradient of its L_cls with respect to the (anchor, class) logits is measured: mean |g| per
positive and per negative, the share of the negatives' gradient, how many negatives get a non-zero gradient (and
one above 1% of the mean positive |g|), and per class the mean |g| of its positives and, pooled over the batches,
the |g| its negatives get over the |g| its positives get (push down against push up on its logits). `--shared`
also measures the gradient norm that L_cls and w·L_loc each send into the shared backbone + FPN (one backward each).
Load trained weights with `--checkpoint` to look at a later point of a run.

For aLRP setups (one ranking over the batch) each positive's weight in L_loc, d L_loc / d E_loc, is measured too:
aLRP weights a positive's localisation error by the positives it outranks, so high-scoring positives get most of
it. Per class, its share of the total weight over its share of the positives (1: as a mean over positives, what
every other box loss here gives by construction), both summed over the batches, each batch counting equally
(`loc weight/uniform`).

`--sb-from RUN/metrics.jsonl` (a run logged with `train.log_interval=1`) replays the self-balance statistic
(mean(L_cls + L_loc) / mean(L_loc) over a window) with the per-epoch window and with fixed iteration periods, from
the run's logged losses. The replay does not feed back into training: it shows what the statistic would have been.

Example: python benchmarks/diagnose_gradients.py --data datasets/bccd --batches 4 \
             --setups alrp_giou_sb,focal_giou,aploss_sl1 [--checkpoint RUN/checkpoints/...pth] [--shared]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from alrp.losses.alrp import alrp_loss  # noqa: E402
from alrp.losses.box import loc_error  # noqa: E402
from alrp.losses.criterion import ALRPCriterion, build_criterion  # noqa: E402
from alrp.metrics.report import metrics_to_json  # noqa: E402
from training.config import load_config  # noqa: E402


def logit_gradients(criterion, lt, num_classes: int) -> dict[str, float]:
    """Statistics of d L_cls / d logits for one batch's LossTargets `lt` (logits (M,), pairs row-major by class)."""
    logits = lt.logits.detach().clone().requires_grad_(True)
    detached = dataclasses.replace(lt, logits=logits, pos_pred_boxes=lt.pos_pred_boxes.detach(),
                                   pos_pred_deltas=lt.pos_pred_deltas.detach())
    out = criterion(detached)
    (grad,) = torch.autograd.grad(out["cls"], logits)
    g = grad.abs()
    pos, neg = lt.targets.eq(1), lt.targets.eq(0)
    mean_pos = float(g[pos].mean()) if pos.any() else float("nan")
    cls_of_pair = torch.arange(g.numel(), device=g.device) % num_classes
    stats = {"P": int(pos.sum()), "N": int(neg.sum()), "L_cls": float(out["cls"].detach()),
             "L_loc": float(out["loc"].detach()),
             "w": float(out["loc_weight"]), "mean_g_pos": mean_pos, "mean_g_neg": float(g[neg].mean()),
             "sum_g_neg/sum_g_pos": float(g[neg].sum() / g[pos].sum()),
             "neg_nonzero": int((g[neg] > 0).sum()), "neg_above_1pct": int((g[neg] > 0.01 * mean_pos).sum())}
    for k in range(num_classes):
        sel = pos & cls_of_pair.eq(k)
        stats[f"mean_g_pos_class{k}"] = float(g[sel].mean()) if sel.any() else float("nan")
        stats[f"P_class{k}"] = int(sel.sum())
        stats[f"sum_g_pos_class{k}"] = float(g[sel].sum())
        stats[f"sum_g_neg_class{k}"] = float(g[neg & cls_of_pair.eq(k)].sum())
    return stats


def loc_weight_shares(criterion, lt, num_classes: int) -> dict[str, float]:
    """Per class: the share of aLRP's L_loc weight d L_loc / d E_loc that its positives get, and their share of the
    positives (`loc_share_class{k}`, `pos_share_class{k}`). Empty for other criteria than aLRP with one ranking over
    the batch (where the criterion's L_loc is `alrp_loss`'s), or a batch without positives."""
    if not isinstance(criterion, ALRPCriterion) or criterion.rank_group or criterion.rank_per_class or lt.num_pos == 0:
        return {}
    errors = loc_error(lt.pos_pred_boxes.detach().float(), lt.pos_gt_boxes.float(), kind=criterion.box_loss)
    errors.requires_grad_(True)  # E_loc as a leaf: autograd gives each positive's weight
    loc = alrp_loss(lt.logits.detach().float(), lt.targets, errors, criterion.delta,
                    wrong_target=criterion.wrong_target).loc
    (weights,) = torch.autograd.grad(loc, errors)  # (P,) in the order positives appear in the logits
    pos_class = torch.nonzero(lt.targets.eq(1)).flatten() % num_classes
    stats = {}
    for k in range(num_classes):
        sel = pos_class.eq(k)
        stats[f"loc_share_class{k}"] = float(weights[sel].sum() / weights.sum())
        stats[f"pos_share_class{k}"] = float(sel.float().mean())
    return stats


def loc_weight_ratios(rows: list[dict], num_classes: int) -> list[float]:
    """Per class: its loc-weight share over its positive share, each summed over the batches (so every batch counts
    equally, whatever its number of positives); NaN without data."""
    return pooled_class_ratios(rows, num_classes, "loc_share_class", "pos_share_class")


def class_push_ratios(rows: list[dict], num_classes: int) -> list[float]:
    """Per class: sum over `rows` (batches) of its negatives' |g| / the same sum of its positives' |g|.

    Above 1, the class's logits are pushed down (through its negatives) harder than up (through its positives).
    Pooled over batches, so a batch with one positive of the class weighs by its gradient, not as a whole batch.
    NaN when the class had no positive gradient in any batch.
    """
    return pooled_class_ratios(rows, num_classes, "sum_g_neg_class", "sum_g_pos_class")


def pooled_class_ratios(rows: list[dict], num_classes: int, top: str, bottom: str) -> list[float]:
    """Per class k: the sum over `rows` of `row[top + k]` over the same sum of `row[bottom + k]` (rows without the
    class's statistics are skipped; NaN when the bottom sum is not positive)."""
    ratios = []
    for k in range(num_classes):
        present = [r for r in rows if f"{top}{k}" in r]
        below = sum(r[f"{bottom}{k}"] for r in present)
        ratios.append(sum(r[f"{top}{k}"] for r in present) / below if below > 0 else math.nan)
    return ratios


def mean_over_batches(values: list[float]) -> tuple[float, int]:
    """(mean, count) over the batches where the statistic exists (NaN: e.g. a class without positives there)."""
    present = [v for v in values if not math.isnan(v)]
    return (statistics.fmean(present) if present else math.nan), len(present)


def shared_grad_norms(net, criterion, images, targets) -> dict[str, float]:
    """Norm of the gradient that L_cls and w * L_loc each send into the backbone + FPN parameters."""
    shared = [p for n, p in net.named_parameters() if n.startswith(("backbone", "fpn")) and p.requires_grad]
    outputs = net(images)
    out = criterion(net.loss_targets(outputs, net.anchors(images), targets))
    norms = {}
    for name, loss in (("cls", out["cls"]), ("w_loc", out["loc_weight"] * out["loc"])):
        grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        norms[f"shared_grad_{name}"] = float(torch.sqrt(sum((g.pow(2).sum() for g in grads if g is not None),
                                                            torch.tensor(0.0))))
    return norms


def diagnose(args: argparse.Namespace) -> tuple[dict[str, list[dict]], list[str]]:
    """Per setup, one `logit_gradients` row per batch (same weights, same batches); and the class names."""
    import data
    import models

    base = load_config(args.config_dir / f"{args.prefix}{args.setups[0]}.yaml", [f"data.root={args.data}", *args.set])
    torch.manual_seed(base.seed)
    train_set = data.build_dataset(base.data, base.data.split_folder("train"), train=True)
    loader = data.build_loader(train_set, base.data, train=True, batch_size=base.train.batch_size, seed=base.seed)
    loader.set_epoch(args.epoch)
    net = models.build_detector(base.model, train_set.num_classes)
    if args.checkpoint:
        net.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=False)["model"])
    net.train()
    criteria = {}
    for setup in args.setups:
        cfg = load_config(args.config_dir / f"{args.prefix}{setup}.yaml", [f"data.root={args.data}", *args.set])
        criteria[setup] = build_criterion(cfg.loss)
        if args.sb_weight is not None and criteria[setup].self_balance is not None:
            criteria[setup].self_balance.weight = args.sb_weight
    rows: dict[str, list[dict]] = {s: [] for s in args.setups}
    for b, (images, targets) in enumerate(loader):
        if b >= args.batches:
            break
        with torch.no_grad():
            outputs = net(images)
        lt = net.loss_targets(outputs, net.anchors(images), targets)
        for setup, criterion in criteria.items():
            stats = logit_gradients(criterion, lt, train_set.num_classes)
            stats.update(loc_weight_shares(criterion, lt, train_set.num_classes))
            if args.shared:
                stats.update(shared_grad_norms(net, criterion, images, targets))
            rows[setup].append(stats)
    return rows, train_set.class_names


def sb_replay(path: Path, periods: list[int]) -> dict[str, list[tuple[int, float]]]:
    """{window name: [(iteration at which the weight is set, weight)]} from a run's per-iteration cls/loc lines."""
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    iters = {int(r["iteration"]): r for r in lines if r.get("type") == "iter" and r.get("loc") is not None}
    logged = [(i, iters[i].get("loc_weight", iters[i].get("sb_weight"))) for i in sorted(iters)]  # older logs
    epoch_len = max((int(r["iteration"]) for r in lines if r.get("type") == "epoch"), default=0)
    epoch_len = min((int(r["iteration"]) for r in lines if r.get("type") == "epoch"), default=epoch_len)
    out = {"logged (run)": [(i, w) for i, w in logged if i == 1 or (epoch_len and (i - 1) % epoch_len == 0)]}
    for period in sorted({*periods, *([epoch_len] if epoch_len else [])}):
        path_p = []
        for end in range(period, max(iters) + 1, period):
            window = [iters[i] for i in range(end - period + 1, end + 1) if i in iters]
            cls, loc = statistics.fmean(r["cls"] for r in window), statistics.fmean(r["loc"] for r in window)
            path_p.append((end, (cls + loc) / loc if loc > 0 else float("inf")))
        out[f"period {period}"] = path_p
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="datasets/bccd")
    p.add_argument("--setups", default="alrp_giou_sb,focal_giou,aploss_sl1")
    p.add_argument("--config-dir", type=Path, default=Path("configs/small"))
    p.add_argument("--prefix", default="bccd_")
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--epoch", type=int, default=0, help="the loader epoch whose batches are used")
    p.add_argument("--checkpoint", help="model weights to load (a train.py checkpoint)")
    p.add_argument("--sb-weight", type=float, help="self-balance weight to use (default: the config's sb_init)")
    p.add_argument("--shared", action="store_true", help="also the cls vs w*loc gradient norm on backbone + FPN")
    p.add_argument("--sb-from", type=Path, help="a metrics.jsonl logged with train.log_interval=1: replay SB")
    p.add_argument("--sb-periods", default="8,26", help="iteration periods for --sb-from")
    p.add_argument("--set", nargs="*", default=[], help="config overrides for every setup")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    args.setups = args.setups.split(",")
    result: dict = {}
    if args.sb_from:
        result["sb"] = sb_replay(args.sb_from, [int(x) for x in args.sb_periods.split(",")])
        for name, path in result["sb"].items():
            print(f"SB {name}: " + ", ".join(f"{i}:{w:.1f}" for i, w in path[:40]))
    if args.batches > 0:
        rows, names = diagnose(args)
        keys = [k for k in next(iter(rows.values()))[0] if not k.startswith(("loc_share", "pos_share"))]
        print(f"per-batch means over {args.batches} batches ([n]: over the n batches where the statistic exists); "
              "classes:", ", ".join(f"{k}={n}" for k, n in enumerate(names)))
        print(f"{'statistic':<24}" + "".join(f"{s:>16}" for s in rows))
        for key in keys:
            means = [mean_over_batches([r[key] for r in rows[s]]) for s in rows]
            print(f"{key:<24}" + "".join(f"{v:>16.4g}" if n == len(rows[s]) else f"{f'{v:.4g} [{n}]':>16}"
                                         for (v, n), s in zip(means, rows)))
        ratios = {s: class_push_ratios(rows[s], len(names)) for s in rows}
        loc_ratios = {s: loc_weight_ratios(rows[s], len(names)) for s in rows
                      if any("loc_share_class0" in r for r in rows[s])}  # the aLRP setups
        for k, name in enumerate(names):
            print(f"{'push down/up ' + name:<24}" + "".join(f"{ratios[s][k]:>16.4g}" for s in rows))
        for k, name in enumerate(names):
            print(f"{'loc weight/uniform ' + name:<24}" + "".join(f"{loc_ratios[s][k]:>16.4g}" if s in loc_ratios
                                                                  else f"{'–':>16}" for s in rows))
        result["gradients"] = rows
        result["class_push_ratios"] = {s: dict(zip(names, r)) for s, r in ratios.items()}
        result["class_loc_weight_ratios"] = {s: dict(zip(names, r)) for s, r in loc_ratios.items()}
    if args.json_out:
        strict = metrics_to_json(result)  # a statistic without its batches (NaN) is written as null
        args.json_out.write_text(json.dumps(strict, indent=1, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
