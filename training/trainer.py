"""Builds a run from a `Config` and drives it: epochs, self-balance updates, evaluation, checkpoints, resume.

This is the only training module that reads the config; everything below it takes explicit arguments.
Run folder (``cfg.run_dir`` = ``output_dir/name``): ``config.yaml``, ``environment.json``, ``log.txt``,
``metrics.jsonl``, ``tensorboard/``, ``checkpoints/``.

Order at the end of an epoch (fixed so that a resumed run repeats an uninterrupted one exactly): self-balance
update -> checkpoint marked ``eval_pending`` (so a failing evaluation loses no epoch) -> evaluation (if due) ->
the checkpoint again, with the evaluation and the RNG states after it -> best-by-AP copy -> logs. A run resumed
from a checkpoint whose evaluation is pending runs that evaluation first.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from alrp.metrics.report import class_ap_scalars
from data.categories import category_table, check_same_categories, class_names
from training import checkpoint as ck
from training import distributed as dist_utils
from training.config import Config, config_to_dict, environment_info, save_resolved_config
from training.build import Parts, SetupError, build_parts, seed_everything
from training.inference import coco_metrics, predict_coco_results
from training.loop import IterationLog, NonFiniteLossError, TrainStep
from training.logging import JsonlWriter, TensorBoardWriter, get_logger, progress, setup_logging
from training.predictions import checkpoint_extras
from training.optim import build_optimizer, build_scheduler, scaled_lr
from training.resume_check import ResumeConfigError, config_changes
from training.run_folder import check_run_folder, set_aside_stale_logs

log = get_logger("trainer")
# a checkpoint without one of these cannot be resumed from (it counts as unreadable)
RESUME_ENTRIES = ("model", "optimizer", "scheduler", "epoch", "iteration", "rng")


def _set_epoch(loader: Any, epoch: int) -> None:
    """Reseeds shuffling/augmentation for ``epoch``: the loader's and its (distributed) sampler's ``set_epoch``."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    for obj in (loader, getattr(loader, "sampler", None), getattr(batch_sampler, "sampler", None)):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)


def _resumed_batches(loader: Iterable, skip: int, rng_after: dict | None) -> Iterator:
    """Iterates ``loader`` after discarding ``skip`` batches (mid-epoch resume), then restores ``rng_after``."""
    it = iter(loader)
    for _ in range(skip):
        next(it)
    if rng_after is not None:
        ck.restore_rng_state(rng_after)
    yield from it


class Trainer:
    """One training run. ``Trainer(cfg, resume=True).fit()`` continues from the run folder's latest checkpoint.

    Args:
        parts_builder: ``(cfg, device, dist_info) -> Parts`` (default `build_parts`; tests pass small fakes).
        metrics_fn: ``(val_dataset, coco_results) -> dict`` with at least ``AP`` (default `coco_metrics`).
    """

    def __init__(self, cfg: Config, *, resume: bool = False,
                 parts_builder: Callable[[Config, torch.device, dist_utils.DistInfo], Parts] = build_parts,
                 metrics_fn: Callable[[Any, list[dict]], dict] = coco_metrics, show_progress: bool = True) -> None:
        self.cfg, self.metrics_fn, self.show_progress = cfg, metrics_fn, show_progress
        tc = cfg.train
        self.info = dist_utils.init_distributed(dist_utils.resolve_device(cfg.device))
        self.device, self.rank0 = self.info.device, self.info.rank == 0
        self.run_dir = Path(cfg.run_dir)
        check_run_folder(self.run_dir)
        self.ckpt = ck.CheckpointManager(self.run_dir, keep=tc.keep_checkpoints)
        latest = self.ckpt.latest()
        if latest is not None and not resume:
            raise FileExistsError(f"{self.run_dir} already holds checkpoints ({latest.name}): pass --resume to "
                                  "continue it, or choose another name / output_dir")
        stale = set_aside_stale_logs(self.run_dir) if latest is None and self.rank0 else None
        orphans = self.ckpt.remove_orphans() if self.rank0 else []
        setup_logging(self.info.rank, self.run_dir / "log.txt" if self.rank0 else None)
        if stale is not None:
            log.warning("%s held the logs of an earlier run without checkpoints: moved to %s", self.run_dir, stale)
        if orphans:
            log.warning("removed %d temporary file(s) left by an interrupted write: %s", len(orphans),
                        ", ".join(p.name for p in orphans))
        if tc.batch_size % self.info.world_size:
            raise SetupError(f"train.batch_size={tc.batch_size} is not divisible by the {self.info.world_size} "
                             "processes")
        group, per_process = cfg.loss.rank_group, tc.batch_size // self.info.world_size
        if group is not None and per_process % group:
            raise SetupError(f"loss.rank_group={group} does not divide the {per_process} images per process "
                             f"(train.batch_size={tc.batch_size} over {self.info.world_size} processes): groups "
                             "cannot span processes")
        self.amp = tc.amp and self.device.type == "cuda"
        if tc.amp and not self.amp:
            log.warning("train.amp is only supported on CUDA: training in float32 on %s", self.device)
        seed_everything(cfg.seed)
        parts = parts_builder(cfg, self.device, self.info)
        self.net, self.criterion = parts.model, parts.criterion
        self.train_loader, self.val_loader, self.val_dataset = parts.train_loader, parts.val_loader, parts.val_dataset
        self.val_class_names = class_names(self.val_dataset)
        train_set = getattr(self.train_loader, "dataset", None)
        self.categories = category_table(train_set)  # stored in checkpoints, compared on resume
        self.train_ann_file = str(getattr(train_set, "ann_file", "the training split"))
        self.model = self.net
        if self.info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        self._build_optimization()
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.step = TrainStep(self.model, self.criterion, self.optimizer, self.scheduler, self.device,
                              scaler=self.scaler, amp=self.amp, grad_clip=tc.grad_clip)
        self.env = environment_info()
        self.epoch = self.iteration = self.epoch_step = 0  # completed epochs / steps / steps in the current epoch
        self.best_ap, self.best_epoch, self.last_metrics = -math.inf, -1, None
        self._evaluated_at = -1
        self.epoch_rng: dict | None = None
        self.last_checkpoint: Path | None = None
        self._resume_rng: dict | None = None
        self._thresholds: dict[int, float] | None = None  # LRP thresholds of the checkpoint resumed from
        self._eval_pending = False
        self._pending_record: dict[str, Any] | None = None  # the epoch's metrics.jsonl line, until its eval ends
        if resume:
            self._resume_from(latest)
        self.jsonl = JsonlWriter(self.run_dir / "metrics.jsonl" if self.rank0 else None)
        self.tb = TensorBoardWriter(self.run_dir / "tensorboard" if self.rank0 else None,
                                    purge_step=self.iteration + 1 if self.last_checkpoint else None)
        if self.last_checkpoint is not None:  # lines after the checkpoint are replayed: drop them, mark the resume
            self.jsonl.drop_after(self.iteration)
            self.jsonl.write({"type": "resume", "epoch": self.epoch, "iteration": self.iteration,
                              "checkpoint": self.last_checkpoint.name})
        if self.rank0:
            save_resolved_config(cfg, self.run_dir)
        log.info("run %s: %d process(es) on %s, %d it/epoch, lr %.3g (batch %d, ref %d), amp %s", self.run_dir,
                 self.info.world_size, self.device, self.iters_per_epoch, self.lr, tc.batch_size, tc.ref_batch_size,
                 self.amp)

    def _build_optimization(self) -> None:
        """Optimiser (lr scaled to the total batch) and the per-iteration schedule over the whole run."""
        tc = self.cfg.train
        self.iters_per_epoch = len(self.train_loader)
        if self.iters_per_epoch == 0:
            raise SetupError(f"the training split ({self.cfg.data.train_split}) gives no batch of "
                             f"{tc.batch_size // self.info.world_size} images")
        total = tc.epochs * self.iters_per_epoch
        if tc.max_iters is not None:
            total = min(total, tc.max_iters)
        self.lr = scaled_lr(tc.lr, tc.batch_size, tc.ref_batch_size)
        self.optimizer = build_optimizer(self.net, name=tc.optimizer, lr=self.lr, momentum=tc.momentum,
                                         weight_decay=tc.weight_decay)
        self.scheduler = build_scheduler(self.optimizer, schedule=tc.lr_schedule,
                                         iters_per_epoch=self.iters_per_epoch, total_iters=total,
                                         lr_steps=tc.lr_steps, gamma=tc.lr_gamma, warmup_iters=tc.warmup_iters,
                                         warmup_mode=tc.warmup_mode, warmup_factor=tc.warmup_factor)

    # ------------------------------------------------------------------------------------------- checkpoints
    def _resume_from(self, latest: Path | None) -> None:
        if latest is None:
            log.warning("--resume: no checkpoint in %s, starting from scratch", self.run_dir / ck.CKPT_DIR)
            return
        path, state, skipped = self.ckpt.load_newest_readable(required=RESUME_ENTRIES)
        for _, why in skipped:
            log.warning("skipping unreadable checkpoint %s", why.removeprefix("cannot read checkpoint "))
        self._check_resumable(path, state)
        self._load(path, state)

    def _check_resumable(self, path: Path, state: dict[str, Any]) -> None:
        """Refuses a checkpoint of another category table or config (the load would fail with a shape error or,
        worse, continue a different run); logs the safe config changes."""
        check_same_categories(state.get("categories"), f"checkpoint {path}", self.categories, self.train_ann_file)
        unsafe, safe = config_changes(state.get("config") or {}, config_to_dict(self.cfg))
        if unsafe:
            raise ResumeConfigError(f"cannot resume {self.run_dir}: the config differs from the checkpoint's: "
                                    f"{', '.join(unsafe)} (resume with the checkpoint's config, or start a new run "
                                    "with another --name)")
        if safe:
            log.info("resuming with changed settings (safe): %s", ", ".join(safe))

    def _state(self, eval_pending: bool = False) -> dict[str, Any]:
        return {
            "model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "criterion": dist_utils.all_gather_object(self.criterion.state_dict()),
            "rng": dist_utils.all_gather_object(ck.capture_rng_state()),
            "epoch_rng": dist_utils.all_gather_object(self.epoch_rng),
            "epoch": self.epoch, "iteration": self.iteration, "epoch_step": self.epoch_step,
            "best_ap": self.best_ap, "best_epoch": self.best_epoch, "world_size": self.info.world_size,
            "config": config_to_dict(self.cfg), "environment": self.env, "eval_pending": eval_pending,
            # the epoch's metrics.jsonl line, written after the evaluation: a resume that runs it writes the line
            "pending_epoch_record": self._pending_record if eval_pending else None,
            # class table + LRP-optimal thresholds of the latest evaluation, for `eval.py --images` (and the
            # category table compared on resume)
            **checkpoint_extras(getattr(self.train_loader, "dataset", None), self.last_metrics, self._thresholds),
        }

    def _save(self, eval_pending: bool = False) -> Path | None:
        state = self._state(eval_pending)  # collective (all ranks gather RNG/SB states)
        path = None
        if self.rank0:
            path = self.ckpt.save(state, epoch=self.epoch, iteration=self.iteration)
        self.last_checkpoint = path
        dist_utils.barrier()
        return path

    def _load(self, path: Path, state: dict[str, Any]) -> None:
        try:
            self.net.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as err:  # e.g. a checkpoint of older code without its config
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ck.CheckpointError(f"checkpoint {path} does not fit this run: {first_line}") from None
        # keep the schedule of the current config (e.g. more epochs); restore only the position in it
        no_lambdas = [None] * len(self.scheduler.lr_lambdas)
        self.scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": no_lambdas})
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        rank = self.info.rank if state.get("world_size") == self.info.world_size else 0
        if state.get("criterion"):
            self.criterion.load_state_dict(state["criterion"][rank])
        self.epoch, self.iteration, self.epoch_step = state["epoch"], state["iteration"], state["epoch_step"]
        self.best_ap, self.best_epoch = state["best_ap"], state["best_epoch"]
        self._thresholds = state.get("lrp_thresholds")
        self.epoch_rng = state["epoch_rng"][rank]
        self._eval_pending = bool(state.get("eval_pending", False))
        self._pending_record = state.get("pending_epoch_record") if self._eval_pending else None
        ck.restore_rng_state(state["rng"][rank])
        self._resume_rng = state["rng"][rank] if self.epoch_step else None
        self.last_checkpoint = path
        log.info("resumed from %s (epoch %d, iteration %d%s)", path, self.epoch, self.iteration,
                 f", step {self.epoch_step} of the epoch" if self.epoch_step else "")

    def _checkpoint_due(self) -> bool:
        """A mid-epoch checkpoint every ``train.checkpoint_interval_iters`` steps (the epoch end saves anyway)."""
        n = self.cfg.train.checkpoint_interval_iters
        return bool(n) and self.iteration % n == 0 and self.epoch_step < self.iters_per_epoch

    def _max_iters_reached(self) -> bool:
        return self.cfg.train.max_iters is not None and self.iteration >= self.cfg.train.max_iters

    # ------------------------------------------------------------------------------------------- loop
    def _batches(self) -> Iterator:
        if self.epoch_step:  # mid-epoch resume: replay the epoch's data order from its starting RNG state
            ck.restore_rng_state(self.epoch_rng)
            _set_epoch(self.train_loader, self.epoch)
            return _resumed_batches(self.train_loader, self.epoch_step, self._resume_rng)
        self.epoch_rng = ck.capture_rng_state()
        _set_epoch(self.train_loader, self.epoch)
        return iter(self.train_loader)

    def _validation_metrics(self) -> dict[str, float]:
        """COCO AP / oLRP of the current weights on the validation split (every rank gets them); logs them."""
        results = predict_coco_results(self.model, self.val_loader, self.device, amp=self.amp,
                                       show_progress=self.show_progress, desc=f"eval after epoch {self.epoch}")
        metrics = self.metrics_fn(self.val_dataset, results) if self.rank0 else None
        metrics = dist_utils.broadcast_object(metrics)
        scalars = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        log.info("eval after epoch %d: %s", self.epoch, "  ".join(f"{k} {v:.4f}" for k, v in scalars.items()))
        scalars.update(class_ap_scalars(metrics, self.val_class_names))  # learning curves per class
        self.tb.scalars(scalars, self.iteration, prefix="eval/")
        self.last_metrics, self._evaluated_at = metrics, self.iteration
        return scalars

    def _report_bad_images(self) -> dict[str, int]:
        """Logs (and resets) the training images skipped under ``data.on_bad_image: skip``, over all processes.

        Returns ``{"bad_images_skipped": count}``, or ``{}`` when the training dataset keeps no such count.
        """
        report = getattr(getattr(self.train_loader, "dataset", None), "bad_image_report", None)
        if report is None:
            return {}
        parts = dist_utils.all_gather_object(report(reset=True))  # each process counts its own shard
        skipped = sum(int(p["skipped"]) for p in parts)
        if skipped:
            files = sorted({f for p in parts for f in p["files"]})
            log.warning("epoch %d: %d unreadable image(s) skipped (data.on_bad_image=skip): %s%s", self.epoch + 1,
                        skipped, ", ".join(files[:10]), f" ... and {len(files) - 10} more" if len(files) > 10 else "")
        return {"bad_images_skipped": skipped}

    def _eval_due(self, final: bool = False) -> bool:
        interval = self.cfg.train.eval_interval
        if interval <= 0 or self.val_loader is None:
            return False
        if final:
            return self._evaluated_at != self.iteration
        return self.epoch % interval == 0 or self.epoch == self.cfg.train.epochs

    def _record_best(self, scalars: dict[str, float]) -> bool:
        """Takes ``scalars["AP"]`` as the best so far when it beats it; returns whether it did."""
        if scalars.get("AP", -math.inf) <= self.best_ap:
            return False
        self.best_ap, self.best_epoch = scalars["AP"], self.epoch
        return True

    def _copy_best(self, path: Path | None) -> None:
        if self.rank0 and path is not None:
            self.ckpt.save_best(path)

    def _finish_epoch_eval(self) -> dict[str, float]:
        """Evaluates, then saves the epoch's checkpoint again with the result (and the RNG states after it, so a
        resumed run continues exactly) and copies it to ``best.pth`` when it is the best so far."""
        scalars = self._validation_metrics()
        improved = self._record_best(scalars)
        self._eval_pending = False
        path = self._save()
        if improved:
            self._copy_best(path)
        return scalars

    def _run_pending_eval(self) -> None:
        """Runs the evaluation the checkpoint was saved before, unless evaluation is now off (then says so), and
        writes that epoch's metrics.jsonl line (training time and losses included) with its result."""
        record = self._pending_record or {"type": "eval", "epoch": self.epoch, "iteration": self.iteration}
        self._pending_record = None
        if self.cfg.train.eval_interval <= 0 or self.val_loader is None:
            log.warning("epoch %d's evaluation did not finish before the stop, and evaluation is now off "
                        "(train.eval_interval=%d): not run", self.epoch, self.cfg.train.eval_interval)
            self._eval_pending = False
            self._save()  # no longer pending: a second resume must not write the line again
            if record["type"] == "epoch":
                self.jsonl.write(record)
            return
        tic = time.perf_counter()
        scalars = self._finish_epoch_eval()
        if "seconds" in record:  # the epoch's time, as in a line written without the stop: evaluation included
            record["seconds"] += time.perf_counter() - tic
        self.jsonl.write({**record, **scalars})

    def fit(self) -> dict[str, Any]:
        """Trains until ``train.epochs`` (or ``train.max_iters``); returns a summary of the run."""
        tc = self.cfg.train
        try:
            if self._eval_pending:  # resumed from a checkpoint saved just before an evaluation that did not finish
                self._run_pending_eval()
            while self.epoch < tc.epochs and (tc.max_iters is None or self.iteration < tc.max_iters):
                self._run_epoch()
            if self._eval_due(final=True):  # e.g. a max_iters stop inside an epoch
                scalars = self._validation_metrics()
                if self._record_best(scalars):
                    self._copy_best(self.last_checkpoint)
                self.jsonl.write({"type": "eval", "epoch": self.epoch, "iteration": self.iteration, **scalars})
        finally:
            self.tb.close()
        return {"run_dir": str(self.run_dir), "epoch": self.epoch, "iteration": self.iteration,
                "best_ap": self.best_ap, "best_epoch": self.best_epoch, "metrics": self.last_metrics,
                "checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None}

    def _run_epoch(self) -> None:
        """Trains one epoch (or its remainder after a resume), then: SB update -> checkpoint -> evaluation ->
        checkpoint with its result -> logs."""
        tc, tic = self.cfg.train, time.perf_counter()
        stats = self.train_one_epoch()
        bad_images = self._report_bad_images()
        if self.epoch_step < self.iters_per_epoch:  # stopped by max_iters inside the epoch
            self._save()
            self.jsonl.write({"type": "stop", "epoch": self.epoch + 1, "iteration": self.iteration,
                              "train_seconds": stats["seconds"]})
            return
        loc_weight_next = self.criterion.end_epoch(distributed=self.info.distributed)
        self.epoch, self.epoch_step = self.epoch + 1, 0
        due = self._eval_due()
        self._pending_record = {"type": "epoch", "epoch": self.epoch, "iteration": self.iteration,
                                "seconds": time.perf_counter() - tic, "loc_weight_next": loc_weight_next,
                                **bad_images, **{f"train_{k}": v for k, v in stats.items()}}
        self._save(eval_pending=due)  # the epoch is safe before the evaluation (which may fail) runs
        scalars = self._finish_epoch_eval() if due else {}
        record, self._pending_record = self._pending_record, None
        self.jsonl.write({**record, "seconds": time.perf_counter() - tic, **scalars})
        log.info("epoch %d/%d done in %.0f s: loss %.4f (cls %.4f, loc %.4f)", self.epoch, tc.epochs,
                 time.perf_counter() - tic, stats.get("total", math.nan), stats.get("cls", math.nan),
                 stats.get("loc", math.nan))

    def train_one_epoch(self) -> dict[str, float]:
        """The epoch loop: steps until the loader ends or ``train.max_iters``; mid-epoch checkpoints when due.

        Returns ``seconds`` and the epoch means of the logged values. Epochs are counted from 1 in every log.
        """
        epoch = self.epoch + 1
        self.model.train()
        iter_log = IterationLog(epoch, self.cfg.train.log_interval, self.jsonl, self.tb)
        bar = progress(self._batches(), total=self.iters_per_epoch - self.epoch_step,
                       desc=f"epoch {epoch}/{self.cfg.train.epochs}", enabled=self.show_progress and self.rank0)
        try:
            for images, targets in bar:
                values = self.step(images, targets, self.iteration)
                self.iteration, self.epoch_step = self.iteration + 1, self.epoch_step + 1
                postfix = iter_log.update(self.iteration, values)
                if self.show_progress and self.rank0:
                    bar.set_postfix_str(postfix, refresh=False)
                if self._checkpoint_due():
                    self._save()
                if self._max_iters_reached():
                    break
        except NonFiniteLossError as err:
            kept = self.ckpt.latest() if self.rank0 else None
            log.error("%s; training stopped. Last good checkpoint: %s", err,
                      kept if kept is not None else "none (no checkpoint written yet)")
            raise
        return iter_log.summary()
