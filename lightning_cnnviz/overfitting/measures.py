"""One evaluation of ``OverfittingMonitor``: its probe passes and figures, on the host.

``Measures`` is the part of the monitor that runs at a validation's end (on the
training thread, in probe mode): the val probe's eval-mode logits (read from the
validation loop, ``loop_logits.py``, or a pass of its own), the passes
``passes.plan`` picks (train probe, BatchNorm on batch statistics; both got by
``ProbeLogits``, ``probe_logits.py``), the logged
metrics (``logged_reads.py``), and the ``Evaluation`` the rules read. The monitor itself
(``overfitting/callback.py``) schedules and writes; ``Telling`` (``telling.py``) tells
the findings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor

from lightning_cnnviz.core.inputs import norm_stats, to_image01
from lightning_cnnviz.core.monitor_events import run_length
from lightning_cnnviz.core.run_datasets import dropped_items, val_images
from lightning_cnnviz.core.selection import unwrap_model
from lightning_cnnviz.core.settings import settings_of
from lightning_cnnviz.core.update_size import update_ratio, weight_norm
from lightning_cnnviz.overfitting import bn_ranks, class_figures, class_gap, imbalance, passes
from lightning_cnnviz.overfitting.batch_stats import (
    batch_norms,
    no_batch_norm_why,
)
from lightning_cnnviz.overfitting.bn_lag import norm_states
from lightning_cnnviz.overfitting.confusion import confused_pairs, pairs_image
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.metrics import (
    confusion_counts,
    figures,
)
from lightning_cnnviz.overfitting.probe_logits import ProbeLogits
from lightning_cnnviz.overfitting.same_output import output_spread
from lightning_cnnviz.overfitting.train_items import TrainItems
from lightning_cnnviz.overfitting.val_reach import averaged_in
from lightning_cnnviz.overfitting.val_source import loop_check
from lightning_cnnviz.overfitting.validation_ends import before_validation

__all__ = ["Measures"]


class Measures(ProbeLogits, TrainItems):
    """Runs one evaluation's passes and figures (a part of ``OverfittingMonitor``).

    Reads the monitor's keys, probes, detector, loop tap and phases; sets ``plan``
    (the passes of the latest evaluation), ``val_from_loop`` and ``_bn_why``.
    """

    _lr_start: float | None  # the learning rate when training started
    _update_read: float | None  # ``update_ratio`` at the last step before a validation
    disabled: bool
    plan: Any
    val_from_loop: bool
    _loop_check: dict[str, float] | None
    val_reached: bool | None  # a validation's first batch reached a trained layer

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: Any, optimizer: Any) -> None:
        """Read the update of a step a validation follows (``update_size``; one host read).

        At the step, where its gradient is: by an epoch's end Lightning has set them to
        None, and plain SGD's update is its gradient's (hunt 44: unknown at every
        evaluation, a small rate named on its bar alone).
        """
        super().on_before_optimizer_step(trainer, pl_module, optimizer)  # type: ignore[misc]
        optimizers = trainer.optimizers
        if self.disabled or not optimizers or optimizer is not optimizers[0]:
            return
        if before_validation(trainer):
            self._update_read = update_ratio([optimizer])

    def _taken_update(self, trainer: Trainer) -> float | None:
        """The update read at the step before this validation, else read now (once)."""
        read, self._update_read = self._update_read, None
        return read if read is not None else update_ratio(trainer.optimizers)

    def _validated_major(self, trainer: Trainer) -> float | None:
        """The commonest class's share among the labels the last validation read (one read).

        What a model answering one class scores there: the logged accuracy's chance
        (``chance_levels.logged_past_chance``). Of the batches validated, not the whole val
        set (hunt 100: `limit_val_batches=10` read a 60/40 head of a balanced set).
        ``None`` under several processes (each validates a shard) or without labels.
        """
        labels, self._validated_labels = getattr(self, "_validated_labels", []), []
        if trainer.world_size > 1 or not labels:
            return None
        seen = torch.cat([t.reshape(-1) for t in labels])
        if seen.numel() == 0 or bool(seen.min() < 0):
            return None
        counts = torch.bincount(seen)
        return float(counts.max()) / seen.numel()

    def _measure(self, trainer: Trainer, pl_module: LightningModule) -> tuple[Any, ...]:
        """Logged metrics and probe figures on the host; the passes ``passes.plan`` picks."""
        logged, found, seen = self._read_logged(trainer)
        self._reread_train(trainer)  # training items changed since the train probe read them
        loop = val = self._loop_logits(trainer)
        check = None
        # a pass of its own too at the first evaluation, and at each one after the loop
        # parted from it: an average of the weights that lags (an EMA) catches up
        if loop is not None and self._loop_check != {}:
            own = self._logits(trainer, pl_module, "val")
            self._loop_check = check = loop_check(loop, own, self.probe(trainer, "val").labels)
            if check:  # the loop scores other images or weights: the model's own reading
                val = own
        self.val_from_loop = loop is not None and val is loop
        if val is None:
            val = self._logits(trainer, pl_module, "val")
        labels = {s: self.probe(trainer, s).labels for s in ("val", "train")}
        with self.phase("compute"):  # one transfer to the host
            host, per_class, counts = figures({**found, **seen}, {"val": val}, labels)
        if val is not None and "probe_spread_val" not in self.prior:  # the loop's logits
            with self.phase("compute"):
                host.update(output_spread(val, None))
        host.update(self.prior)  # read by the val pass (``label_prior.prior_figures``)
        self.prior, ranked_val, self.ranked_val = {}, self.ranked_val, None
        ranked = ranked_val is not None and host.get("prior_rank") is not None  # multi-hot
        # the extra passes see the probes' first images only (the training batch sets how many)
        sizes = {s: self._images(trainer, s) for s in labels}
        cut = {s: None if v is None else v[: sizes[s]] for s, v in labels.items()}
        val_cut = None if val is None else val[: sizes["val"]]
        acc = [host.pop(k) for k in seen if k.startswith("seen") and k in host]
        norms = bool(batch_norms(unwrap_model(pl_module)))
        if not norms:
            self._bn_why = no_batch_norm_why(unwrap_model(pl_module))
        ignored = [] if counts is None else class_figures.ignored_classes(counts)  # val left-outs
        self.plan = passes.plan(
            self.detector.history,
            train_acc=max(acc) if acc else None,
            eval_acc=host.get("probe_acc_val"),
            probe_size=float(sizes["val"]),
            batch_norm=norms,
            left_out=bool(ignored),
            ranked=ranked,
            train_moved=self._train_moved_at is not None,
        )
        more = {"train": None}
        if self.plan.train:
            more["train"] = self._logits(trainer, pl_module, "train", sizes["train"])
        if self.plan.batch_stats:
            more["bn"] = self._batch_stats(trainer, pl_module, sizes["val"])
        host.update(self._host(more, cut, val_cut, ignored))
        if more.get("bn") is not None:
            host["bn_size"] = float(sizes["val"])
            if ranked:  # the labels' AUC in both modes, on the pass's images (hunt 110)
                with self.phase("compute"):
                    eval_out, truth = ranked_val  # type: ignore[misc]
                    host.update(bn_ranks.rank_figures(eval_out, more["bn"], truth))
        if self.plan.screen is not None and not self.plan.batch_stats:
            host["bn_screen"] = self.plan.screen
        probes = val is not None and (more["train"] is not None or not self.plan.train)
        self._say_missing(trainer, logged, found, probes)
        probe = self.probe(trainer, "val")
        size = float(len(probe))
        settings = settings_of(trainer, unwrap_model(pl_module), self._lr_start)
        left_out = {}
        if counts is not None:  # the training labels' shares, at each evaluation: a class
            # made rare from a step on was common when last predicted (``made_rare``)
            shares = self._train_shares(trainer, len(counts))
            left_out = class_figures.probe_figures(counts, shares)
            if left_out.get("ignored"):  # unread, as a loader cutting its end drops them?
                left_out["dropped_items"] = float(dropped_items(trainer))
            bn = more.get("bn")
            if ignored and bn is not None and bn.shape[1] == len(counts):  # BatchNorm's doing?
                rows = confusion_counts(bn, cut["val"]).tolist()  # type: ignore[arg-type]
                left_out["recognised_bn"] = class_figures.recognised(rows, ignored)
            train = more["train"]
            if train is not None and cut["train"] is not None and train.shape[1] == len(counts):
                with self.phase("compute"):  # per class: learnt on training images, not on val
                    seen = confusion_counts(train, cut["train"]).tolist()
                left_out |= class_gap.split_classes(seen, counts)
                left_out["val_only"] = class_gap.val_only(seen, counts)
        total, bound = run_length(trainer)  # -1 or inf: an unknown length
        share = trainer.global_step / total if 0 < total < float("inf") and not bound else None
        left_out["input_shift"] = self._input_shift(trainer)
        left_out["mild_shift"] = None if self._steps_undo_shift() else self._mild_shift
        if self._mild_shift and val_cut is not None and cut["val"] is not None:
            host.update(self._restandardised(trainer, pl_module, val_cut, cut["val"]))
            host.update(self._noised(trainer, pl_module, cut["train"]))
        left_out["loop_check"] = check
        left_out["val_labels_changed"] = self._labels_changed()
        left_out["train_moved_at"] = self._train_moved_at
        nonfinite, initial = norm_states(unwrap_model(pl_module))
        counted = {
            "update_ratio": self._taken_update(trainer),
            "weight_norm": weight_norm(trainer.optimizers),
            "train_acc_images": self._acc_images(trainer, found),
            "train_batch_images": self._batch_images and float(self._batch_images),
            "val_images": val_images(trainer),
            "val_major": self._validated_major(trainer),
            "bn_nonfinite": nonfinite,
            "bn_initial": initial,
            # `validation_step` scores another module: an average swapped in, or a copy
            "val_elsewhere": averaged_in(trainer) or self.val_reached is False,
            "resumed_at": getattr(self, "_resumed_at", None),
        }
        ev = Evaluation(trainer.global_step, trainer.current_epoch, probe_size=size,
                        run_share=share, **host, **dataclasses.asdict(settings),
                        **left_out, **counted)  # fmt: skip
        # a finding that cites the train probe, or a common class left out (is it taught?)
        cites = imbalance.wants_train_loss(ev) or passes.cites_train(self.detector.dry_run(ev))
        if not self.plan.train and cites:
            train = self._logits(trainer, pl_module, "train", sizes["train"])
            ev = dataclasses.replace(ev, **self._host({"train": train}, cut, left=ignored))
            self.plan = dataclasses.replace(self.plan, train=True)
        pairs = []
        if counts is not None and host.get("probe_acc_val", 1.0) < 1.0 and probe.labels is not None:
            with self.phase("compute"):  # which images: a second transfer
                predicted = val.argmax(dim=1).tolist()  # type: ignore[union-attr]
                pairs = confused_pairs(counts, predicted, probe.labels.tolist(), probe.indices)  # type: ignore[arg-type]
        return ev, per_class, counts, pairs

    def _pairs_image(self, trainer: Trainer, pairs: list[Any], epoch: int) -> Tensor | None:
        """The most confused pairs with their example val probe images (2-D images only)."""
        probe = self.probe(trainer, "val")
        if probe.images.dim() != 4:
            return None
        where = {index: i for i, index in enumerate(probe.indices)}
        norm = norm_stats(trainer)
        examples = [to_image01(probe.images[[where[i] for i in p.examples]], norm) for p in pairs]
        return pairs_image(pairs, examples, epoch)
