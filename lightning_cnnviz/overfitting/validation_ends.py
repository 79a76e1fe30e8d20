"""When ``OverfittingMonitor`` evaluates: at a validation's end, once training metrics are current.

A validation's end marks an evaluation due (the monitor's schedule, the same on every
rank); it runs at the next training batch's start, or at the epoch's end, where what the
module logged in training since is current (``_flush``). ``before_validation`` tells
the optimizer step a validation follows (``measures.py`` reads the update there).

Example::

    >>> from types import SimpleNamespace as Run
    >>> loop = Run(epoch_loop=Run(batch_idx=9, total_batch_idx=49))
    >>> run = dict(enable_validation=True, current_epoch=0, limit_train_batches=1.0,
    ...            fit_loop=loop, is_last_batch=False, val_check_batch=10)
    >>> before_validation(Run(check_val_every_n_epoch=1, **run))
    True
    >>> before_validation(Run(check_val_every_n_epoch=2, **run))  # epoch 0 does not validate
    False
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_cnnviz.core.schedule import Schedule

__all__ = ["ValidationEnds", "before_validation"]


def before_validation(trainer: Trainer) -> bool:
    """Whether a validation follows the training batch now (Lightning's own rule).

    Lightning's ``_should_check_val_fx``: in an epoch that validates, every
    ``val_check_batch`` batches, counted over the run where ``check_val_every_n_epoch`` is
    None (setups hunt 47: counted within the epoch, step 12's update was read for the
    validation at step 20); a loader of unknown length at its last batch, or every
    ``limit_train_batches`` where that is a count. A time interval, or a stop asked for
    early, cannot be known ahead: the evaluation reads the update then.
    """
    loop, every = trainer.fit_loop.epoch_loop, trainer.check_val_every_n_epoch
    if not trainer.enable_validation or (every and (trainer.current_epoch + 1) % every):
        return False
    if getattr(trainer, "_val_check_time_interval", None) is not None:
        return False
    endless, batches = trainer.val_check_batch == float("inf"), trainer.limit_train_batches
    if endless and isinstance(batches, int):
        return (loop.batch_idx + 1) % batches == 0 or trainer.is_last_batch
    if endless:
        return trainer.is_last_batch
    done = (loop.total_batch_idx if every is None else loop.batch_idx) + 1
    return done % int(trainer.val_check_batch) == 0


class ValidationEnds:
    """Evaluations at validation ends only (a part of ``OverfittingMonitor``).

    Uses the monitor's ``schedule``, ``last_logged_step``, ``_loop`` (the validation
    loop's tap), ``_val_batches``, ``_fire`` and ``_due_on_epoch`` (``core.monitor_events``); sets
    ``_pending``, ``_epoch_end`` and ``_validated`` (a validation of at least one batch).
    """

    schedule: Schedule
    last_logged_step: int
    _loop: Any
    _pending: bool
    _epoch_end: bool
    _validated: bool
    _val_batches: int  # batches the validation under way ran (``loop_tap.py`` counts)
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
        ran = self._val_batches > 0 or trainer.sanity_checking
        due = self._event_due(trainer)
        if not ran and due and self._validated:
            # Lightning's logged val metrics still hold the last validation's: read as this
            # one's, they were a model that never moved (setups hunt 72: a healthy run told
            # `val_metrics_differ` after its val set emptied)
            self.warn_once(
                "empty_validation",
                f"the validation at step {trainer.global_step} ran no batch (its val loader "
                "yielded nothing): no evaluation there, nor at any later validation of no batch",
            )
        self._validated = self._validated or (ran and not trainer.sanity_checking)
        # evaluated once the train metrics are current (the next batch or the epoch end)
        self._pending = self._pending or (due and ran)

    def _flush(self, trainer: Trainer, pl_module: LightningModule, epoch_end: bool) -> None:
        if self._pending:
            self._pending, self._epoch_end = False, epoch_end
            self._fire(trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer, pl_module, epoch_end=True)
