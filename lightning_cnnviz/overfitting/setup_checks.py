"""The run's settings and data read once before the first step: a part of ``OverfittingMonitor``.

``SetupChecks`` reads, before the first step of each fit (those not told before a
resume): the order the training loader reads in (``train_order.py``), whether the val
data are the training data (``RunData._check_val_data``), a ``ReduceLROnPlateau`` set
against its metric (``plateau_mode.py``), a momentum of 1 or more
(``momentum_setting.py``), an optimiser climbing the loss (``ascent_setting.py``, also at
every evaluation), a class the val labels lack (``val_labels.py``) and a training set
holding few different images (``repeated_items.py``). Each is told once, with the global
random generators untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch import Trainer
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_cnnviz.core.findings import Finding, record_check
from lightning_cnnviz.core.image_keys import image_keys
from lightning_cnnviz.core.probe import draw_probe, generator_for, labels_in_order
from lightning_cnnviz.core.run_datasets import find_dataset, has_val_data
from lightning_cnnviz.core.samplers import first_loader, loader_order, loader_sampler
from lightning_cnnviz.core.settings import read_settings
from lightning_cnnviz.overfitting.ascent_setting import (
    ascent_checks,
    group_rates,
    highest,
    maximize_check,
)
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.momentum_setting import momentum_checks
from lightning_cnnviz.overfitting.plateau_mode import plateau_checks
from lightning_cnnviz.overfitting.repeated_items import (
    CONFIRM,
    loader_reach,
    reach_text,
    repeated_set,
    repeated_set_text,
)
from lightning_cnnviz.overfitting.run_data import LABEL_POOL
from lightning_cnnviz.overfitting.train_order import class_runs, order_text
from lightning_cnnviz.overfitting.val_labels import missing_val_classes, missing_val_text

__all__ = ["SetupChecks"]


class SetupChecks:
    """The checks read once before the first step (a part of ``OverfittingMonitor``).

    Uses the monitor's ``seed``, ``section``, probes, findings and ``RunData``'s
    ``_tell_data`` and ``_check_val_data``.
    """

    seed: int
    section: str
    _rates_start: dict[str, float]
    _tell_data: Callable[[Trainer, Finding], None]
    _check_val_data: Callable[[Trainer], None]
    _own_findings: Callable[[], list[Finding]]
    detector: Any
    probe: Callable[..., Any]
    probe_label_key: Callable[[Any], Any]

    def _check_setup(self, trainer: Trainer, told: set[str]) -> None:
        """The checks read once before the first step (those not told before a resume)."""
        if "unshuffled_batches" not in told:
            self._check_order(trainer)
        if "val_is_train" not in told:
            self._check_val_data(trainer)
        for text, figures in plateau_checks(trainer.lr_scheduler_configs):
            if "plateau_mode" not in told:
                finding = Finding(self.section, "plateau_mode", 0, 0, text, figures)
                self._tell_data(trainer, finding)
        for text, figures in momentum_checks(trainer.optimizers):
            if "momentum_at_one" not in told:
                finding = Finding(self.section, "momentum_at_one", 0, 0, text, figures)
                self._tell_data(trainer, finding)
        if "gradient_ascent" not in told:
            self._check_ascent(trainer)
        if "val_labels_differ" not in told:
            self._check_val_labels(trainer)
        if "repeated_items" not in told:
            self._check_repeats(trainer)

    def _check_repeats(self, trainer: Trainer) -> None:
        """Report a training set holding few different images (``repeated_items.repeated_set``).

        Once per fit, before the first step: a loader whose sampler (or a
        ``limit_train_batches`` on a sequential one) reaches few of the set's items
        (``loader_reach``), else the train probe's images (read from the set's positions,
        not the loader's batches).
        """
        try:
            size = len(find_dataset(trainer, "train"))
        except Exception:  # no set of known length: nothing to count
            return
        loader = first_loader(trainer.train_dataloader)
        try:  # the whole set: the probes see the sampler's part of it
            whole = len(loader.dataset) if isinstance(loader, DataLoader) else 0
        except TypeError:  # an iterable dataset: no length, no sampler over it
            whole = 0
        if (
            whole
            and _epochs_repeat(trainer)
            and (found := loader_reach(loader, max(whole, size), trainer.num_training_batches))
        ):
            # a note: a subset may be on purpose (hunt 37: a train/val split of one set by
            # two samplers, 20% for training, told as a debugging subset); the curves'
            # findings name it where the run then overfits
            finding = Finding(self.section, "repeated_items", 0, 0, reach_text(found), found,
                              severity="note")  # fmt: skip
            self._tell_data(trainer, finding)
            return
        try:
            images = self.probe(trainer, "train").images
        except Exception:  # no probe of its own: nothing to count
            return
        keys, labels = image_keys(images, plain=False), None
        if not repeated_set(keys, size):
            return
        # confirmed on more items read at random, their classes' repeats compared
        try:
            data = find_dataset(trainer, "train")
            drawn = draw_probe(
                data, min(CONFIRM, size), generator_for(self.seed, "repeats/train"),
                class_balanced=False, label_key=self.probe_label_key(data),
            )  # fmt: skip
        except Exception:  # items it cannot read together: the probe's reading stands
            drawn = None
        if drawn is not None:
            keys = image_keys(drawn.images, plain=False)
            labels = drawn.labels.tolist() if drawn.labels is not None else None
        if found := repeated_set(keys, size, labels):
            finding = Finding(self.section, "repeated_items", 0, 0, repeated_set_text(found), found)
            self._tell_data(trainer, finding)

    def _check_ascent(self, trainer: Trainer, ev: Evaluation | None = None) -> None:
        """An optimiser climbing the loss (``ascent_setting.py``): at setup, at evaluations.

        At an evaluation ``ev`` also an optimiser set to ``maximize=True`` on the model's
        layers where the loss is positive and validation got worse (``maximize_check``).
        """
        if any(f.kind == "gradient_ascent" for f in self._own_findings()):
            return
        if ev is not None:
            climbing = read_settings(trainer.optimizers, trainer.lightning_module).maximize
            # the loss the step returns, which the optimiser steps on: a logged +CE beside a
            # returned -CE under `maximize=True` is a correct descent (hunt 42, told ascent)
            losses = [(e.returned_loss if e.returned_loss is not None else e.train_loss,
                       e.val_loss, e.val_acc) for e in [*self.detector.history, ev]]  # fmt: skip
            if found := maximize_check(climbing, losses):
                step, epoch = trainer.global_step, trainer.current_epoch
                self._tell_data(trainer, Finding(self.section, "gradient_ascent", step, epoch,
                                                 *found))  # fmt: skip
                return
        # the highest rate each group has had: a warm-up from 0 (hunt 35) starts positive later
        started = highest(getattr(self, "_rates_start", {}), group_rates(trainer.optimizers))
        self._rates_start = started
        for text, figures in ascent_checks(trainer.optimizers, started)[:1]:
            step, epoch = trainer.global_step, trainer.current_epoch
            finding = Finding(self.section, "gradient_ascent", step, epoch, text, figures)
            self._tell_data(trainer, finding)

    def _check_val_labels(self, trainer: Trainer) -> None:
        """Report a class the val labels lack where the training labels' shares make many due.

        Once per fit, before the first step (``val_labels.py``); each split's labels read
        in a random order where the dataset exposes none.
        """
        if not has_val_data(trainer) or trainer.overfit_batches:
            return
        labels: list[Tensor | None] = []
        try:
            for split in ("train", "val"):
                data = find_dataset(trainer, split)
                drawn = generator_for(self.seed, f"probe/{split}")
                order = torch.randperm(len(data), generator=drawn)
                labels.append(
                    labels_in_order(data, order, LABEL_POOL, self.probe_label_key(data))[1]
                )
        except Exception:  # no items, no length, items it cannot read: nothing to count
            labels = [None]
        ran = all(t is not None and t.dim() == 1 for t in labels)
        why = "" if ran else "needs class labels in the items of both splits"
        record_check(trainer, type(self).__name__, "val labels of every class", ran, why)
        if ran and (found := missing_val_classes(*labels)):  # type: ignore[arg-type]
            text = missing_val_text(found)
            self._tell_data(trainer, Finding(self.section, "val_labels_differ", 0, 0, text, found))

    def _check_order(self, trainer: Trainer) -> None:
        """Report training batches in class order (``train_order.py``), before the first step.

        Read where the training loader reads its set in a fixed order (``loader_order``: a
        sequential sampler, an unshuffled ``DistributedSampler``, a list of indices): the
        set's labels in that order, else its first ``LABEL_POOL`` items' (the random
        generators untouched). Not run where a sampler of one's own hides its order.
        """
        loader = first_loader(trainer.train_dataloader)
        if not isinstance(loader, torch.utils.data.DataLoader):
            why = "needs a `DataLoader` to read the order of its items"
            record_check(trainer, type(self).__name__, "training order", False, why)
            return
        try:
            data = find_dataset(trainer, "train")
            order, known = loader_order(loader, len(data))
        except Exception:  # an iterable set (no length), none found: no order to read
            order, known = None, True
        if order is None:  # read at random: no order to tell, or none that can be read
            why = (
                f"cannot read the order its `{type(loader_sampler(loader)).__name__}` draws "
                "the items in"
            )
            record_check(trainer, type(self).__name__, "training order", known, why)
            return
        _, labels = labels_in_order(data, order, LABEL_POOL, self.probe_label_key(data))
        found = {} if labels is None else class_runs(labels)
        why = "" if labels is not None else "needs class labels in the training items"
        record_check(trainer, type(self).__name__, "training order", labels is not None, why)
        if found:
            message = order_text(found)
            self._tell_data(trainer, Finding(self.section, "unshuffled_batches", 0, 0,
                                                 message, found))  # fmt: skip


def _epochs_repeat(trainer: Trainer) -> bool:
    """Whether the fit reads its training loader more than once (no debugging run).

    A loader that reaches few items repeats them only where epochs do: a one-epoch smoke
    test under ``limit_train_batches`` is not told.
    """
    if trainer.overfit_batches or trainer.fast_dev_run:
        return False
    epochs, steps = trainer.max_epochs, trainer.max_steps
    more_epochs = epochs is None or epochs < 0 or epochs > 1
    batches = (steps or 0) * trainer.accumulate_grad_batches  # max_steps counts optimizer steps
    return more_epochs and (steps is None or steps < 0 or batches > trainer.num_training_batches)
