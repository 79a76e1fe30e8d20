"""When ``OverfittingMonitor`` evaluates: at a validation's end, once training metrics are current.

A validation's end marks an evaluation due (the monitor's schedule, the same on every
rank); it runs at the next training batch's start, or at the epoch's end, where what the
module logged in training since is current (``_flush``). ``before_validation`` tells
the optimizer step a validation follows (``measures.py`` reads the update there).

Example::

    >>> from types import SimpleNamespace as Run
    >>> loop = Run(epoch_loop=Run(batch_idx=9))
    >>> before_validation(Run(fit_loop=loop, is_last_batch=False, num_training_batches=40,
    ...                       val_check_batch=10))
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_cnnviz.core.schedule import Schedule

__all__ = ["ValidationEnds", "before_validation"]


def before_validation(trainer: Trainer) -> bool:
    """Whether the training batch now is the last before a validation (Lightning's rule).

    The loader's last batch (``is_last_batch``: a loader of unknown length too, where
    ``num_training_batches`` is inf), or every ``val_check_batch`` batches where that is
    a count.
    """
    done = trainer.fit_loop.epoch_loop.batch_idx + 1
    every = trainer.val_check_batch
    if trainer.is_last_batch or done >= trainer.num_training_batches:
        return True
    return isinstance(every, int) and done % every == 0


class ValidationEnds:
    """Evaluations at validation ends only (a part of ``OverfittingMonitor``).

    Uses the monitor's ``schedule``, ``last_logged_step``, ``_loop`` (the validation
    loop's tap), ``_fire`` and ``_due_on_epoch`` (``core.monitor_events``); sets
    ``_pending``, ``_epoch_end`` and ``_validated``.
    """

    schedule: Schedule
    last_logged_step: int
    _loop: Any
    _pending: bool
    _epoch_end: bool
    _validated: bool
    _fire: Callable[[Trainer, LightningModule], None]  # the monitor's
    _due_on_epoch: Callable[[Trainer], bool]

    def _event_due(self, trainer: Trainer) -> bool:
        """Whether this validation's end brings an evaluation (the same all through it).

        Not ``disabled``: a step-aside in rank zero's probe pass is that rank's alone, and
        every rank must reach ``_fire`` (its broadcast) on the same validations.
        """
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return False
        step, last = trainer.global_step, self.last_logged_step
        # automatic: every validation (which costs far more than this check)
        due = self.schedule.automatic or self.schedule.due_on_step(step, last, first_chance=True)
        return due or self._due_on_epoch(trainer)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._loop.stop()  # no tap outlives the validation
        self._validated = self._validated or not trainer.sanity_checking
        # evaluated once the train metrics are current (the next batch or the epoch end)
        self._pending = self._pending or self._event_due(trainer)

    def _flush(self, trainer: Trainer, pl_module: LightningModule, epoch_end: bool) -> None:
        if self._pending:
            self._pending, self._epoch_end = False, epoch_end
            self._fire(trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer, pl_module, epoch_end=True)
