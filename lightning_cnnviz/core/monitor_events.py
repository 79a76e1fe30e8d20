"""When a monitor's events fire and what they cost: the schedule, the budget, the timings.

``EventFiring`` is a part of ``Monitor`` (a mixin), in a file of its own so that
``monitor.py`` keeps the arguments, ``setup()`` and the sink. Events fire on
``trainer.global_step`` (never ``batch_idx``) at the end of a training batch, or at the
end of an epoch for an epoch schedule; each runs the monitor's ``log_event`` on rank
zero (every rank for ``all_ranks``) with the model's state kept, and its time, with
the jobs it hands to the sink's thread, goes to the ``Budget`` that stretches an
automatic schedule. Under several ranks the stretch is rank zero's on every rank, so
schedules never part. It reads the monitor's ``schedule``, ``budget``, ``timings``,
``disabled``, ``last_logged_step``, ``events`` and ``_sink``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Timer
from typing_extensions import override

from lightning_cnnviz.core.budget import Budget
from lightning_cnnviz.core.model_state import kept_state
from lightning_cnnviz.core.schedule import Schedule
from lightning_cnnviz.core.selection import unwrap_model
from lightning_cnnviz.core.sinks import Sink

__all__ = ["EventFiring", "run_length"]


class EventFiring:
    """Firing a monitor's events on its schedule, timed and budgeted (a part of ``Monitor``)."""

    all_ranks: ClassVar[bool]
    schedule: Schedule
    budget: Budget
    timings: dict[str, float]
    disabled: bool
    last_logged_step: int
    events: int
    fit_batches: int
    _sink: Sink | None
    warn_once: Callable[[str, str], None]  # ``voice.Voice``'s
    _step_aside: Callable[[Exception], None]  # ``voice.Voice``'s
    log_event: Callable[[Trainer, LightningModule], None]  # the monitor's own
    follow_step_inputs: Callable[[Trainer, LightningModule], None]  # ``StepFollowing``'s
    _log_layers_once: Callable[[Trainer, LightningModule], None]  # ``monitor_layers``'

    @property
    def sink(self) -> Sink:
        """Where this run's records go."""
        assert self._sink is not None, "the sink exists from `setup()` on"
        return self._sink

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a phase of a logging event (capture, compute, render, write)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] += time.perf_counter() - start

    def in_background(self, job: Callable[[], None]) -> None:
        """Run ``job`` (rendering and writing, on host copies) on the sink's thread.

        Its time shows in ``sink.busy_seconds``, not in ``timings``, and counts in the budget.

        It must not touch the model or the trainer. A failure makes this monitor step
        aside (or raise, with ``strict``) at the next event or at the end of fit.
        """
        budget = self.budget

        def timed() -> None:
            # the thread's own CPU time: where it takes turns with training on one core,
            # the wall time would count training's turns as the monitor's
            start = time.thread_time()
            try:
                job()
            finally:
                budget.add_background(time.thread_time() - start)

        self.sink.later(timed, self._step_aside)

    def _due_on_step(self, trainer: Trainer) -> bool:
        return self.schedule.due_on_step(trainer.global_step, self.last_logged_step)

    def _due_on_epoch(self, trainer: Trainer) -> bool:
        return self.schedule.due_on_epoch(
            trainer.current_epoch, trainer.global_step, self.last_logged_step
        )

    def _fire(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        try:
            self._event(trainer, pl_module)
        finally:
            if trainer.world_size > 1:
                # every rank is here at this step; after it, rank zero's stretch (its own
                # measured cost: it alone does the work) is every rank's, before any rank
                # decides its next step: schedules that parted would leave one rank in a
                # collective the others never join. So is a step-aside: probe passes fail
                # on rank zero alone (they run there alone)
                shared = (self.schedule.factor, self.disabled)
                self.schedule.factor, disabled = trainer.strategy.broadcast(shared, src=0)
                self.disabled = self.disabled or disabled

    def _event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """One event: the monitor's work (rank zero's, or every rank's), timed and budgeted."""
        if self._sink is not None:
            self._sink.check()  # failures of earlier background jobs (any monitor's)
        if self.disabled or (not self.all_ranks and not trainer.is_global_zero):
            self.last_logged_step = trainer.global_step  # alike on every rank: one schedule
            return
        start = time.perf_counter()
        try:
            with kept_state(unwrap_model(pl_module)):
                self.follow_step_inputs(trainer, pl_module)  # once per fit, before any probe
                self._log_layers_once(trainer, pl_module)
                if self.disabled:  # stepped aside there: no selected layer is ever called
                    return
                with self.phase("total"):
                    self.log_event(trainer, pl_module)
            self.events += 1
        except Exception as err:
            self._step_aside(err)
        finally:
            self.last_logged_step = trainer.global_step
        self.budget.add(time.perf_counter() - start)
        self.budget.event_ended(self.schedule)

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.schedule.fit_to(*run_length(trainer))
        self.budget.start_fit()
        if why := _past_the_run(self.schedule, trainer):
            self.warn_once("past_the_run", why)

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.budget.step_ended()
        self.fit_batches += 1
        if self._due_on_step(trainer):
            self._fire(trainer, pl_module)

    @override
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.budget.pause()  # the next step's time would include the validation run

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._due_on_epoch(trainer):
            self._fire(trainer, pl_module)


def _past_the_run(schedule: Schedule, trainer: Trainer) -> str:
    """Why an explicit schedule logs nothing in this run, where its length says so ("")."""
    steps, epochs = trainer.estimated_stepping_batches, trainer.max_epochs
    n, e = schedule.every_n_steps, schedule.every_n_epochs
    if n and 0 < steps < float("inf") and n > steps:
        return (
            f"`every_n_steps={n}` is past this run's {int(steps)} steps: it logs nothing "
            "(leave it out for the automatic schedule, which fits the run's length)"
        )
    if e and epochs is not None and 0 <= epochs < e:
        return (
            f"`every_n_epochs={e}` is past this run's {epochs} epoch(s): it logs nothing "
            "(leave it out for the automatic schedule, which fits the run's length)"
        )
    return ""


def run_length(trainer: Trainer) -> tuple[float, bool]:
    """``(steps, bound)``: the optimizer steps the run is planned for, and whether only a bound.

    ``estimated_stepping_batches`` (inf or -1: unknown); under a time limit (``max_time``,
    a ``Timer``) only a bound, which Lightning reads from ``max_epochs`` alone.
    """
    timed = any(isinstance(c, Timer) and c.time_remaining() is not None for c in trainer.callbacks)
    return trainer.estimated_stepping_batches, timed
