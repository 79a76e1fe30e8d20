"""What a monitor says of the run as a whole: fit only, whether it ran, the summary.

``RunSummary`` is a part of ``Monitor`` (a mixin), in a file of its own so that
``monitor.py`` keeps the schedule and the firing of events. Outside ``fit`` the
monitors log nothing, said once per stage (``say_fit_only``); at the end of fit each
records whether it ran (or why not), the run's last monitor prints the summary of
findings and checks once (and hands them back to a process that spawned the fit,
``hand_back``), and ``teardown`` says where the logs are.
The summary ends with the monitors' cost where it is large (``budget.cost_text``).
It reads the monitor's ``disabled``, ``aside_reason``, ``events``, ``tag_prefix``,
``budget`` and ``_sink``.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_cnnviz.core.budget import Budget, cost_text
from lightning_cnnviz.core.findings import (
    Finding,
    checks_of,
    findings_of,
    record_check,
    records_of,
    report,
    start_record,
)
from lightning_cnnviz.core.hand_back import HandBack, claim_failed, hand_back, launched_here
from lightning_cnnviz.core.logs import announce_logs
from lightning_cnnviz.core.say import say, tell
from lightning_cnnviz.core.summary import summary_text

__all__ = ["RunSummary", "batches_run", "run_prefix", "say_fit_only", "stepless_text"]

STEPLESS = 10  # training batches without an optimiser step that make a run stepless


class RunSummary:
    """The end of one monitor's fit (see the module docstring)."""

    disabled: bool
    aside_reason: str
    events: int
    fit_batches: int
    tag_prefix: str
    budget: Budget
    _sink: Any
    _warned: set[str]
    hand_back_to: HandBack
    _summarised: bool  # this fit's summary said (an instance given twice ends twice)
    # warnings that already said why the monitor stays silent (no second one at fit end)
    silence_said: ClassVar[tuple[str, ...]] = ("past_the_run",)

    def warn_once(self, key: str, message: str) -> None:
        """Warn once per key (the monitor's: ``voice.Voice``)."""
        raise NotImplementedError

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._sink is not None:
            self._sink.flush()  # waits for the sink's thread; its errors are raised or warned
        self._end_of_fit(trainer)

    def never_logged_reason(self, trainer: Trainer) -> str:
        """Why the monitor never logged in this run, for the end-of-fit summary."""
        batches = batches_run(trainer)
        if batches and not self.fit_batches:  # the loop's count came with a checkpoint
            return (
                "never logged: this fit ran no training batch (resumed from a checkpoint "
                "taken at the end of training: `max_epochs` or `max_steps` already reached)"
            )
        if trainer.global_step == 0 and batches >= STEPLESS:
            return f"never logged: the optimiser took no step in {batches} training batches"
        if batches == 0:
            limit = trainer.limit_train_batches
            if limit is not None and limit == 0:  # Lightning's own setting, named as given
                return f"never logged: no training batch ran (`limit_train_batches={limit}`)"
            return (
                "never logged: no training batch ran (the training loader yielded none, as "
                "with `drop_last=True` and fewer items than a batch, or `max_epochs=0`)"
            )
        return "never logged in this run (shorter than its first scheduled event)"

    def _end_of_fit(self, trainer: Trainer) -> None:
        """Record whether this monitor ran; the run's last monitor prints the summary, once."""
        _tell_stepless(trainer)
        why = self.aside_reason if self.disabled else ""
        if not why and self.events == 0 and trainer.is_global_zero:
            why = self.never_logged_reason(trainer)
            if not self._warned.intersection(self.silence_said):  # not said before
                self.warn_once("never_logged", why)  # e.g. an epoch schedule, endless data
        record_check(trainer, type(self).__name__, "", ran=not why, why=why)
        if _monitors(trainer)[-1] is not self or self._summarised:
            return  # setups hunt 76: `configure_callbacks` listing it twice said it twice
        self._summarised = True
        hand_back(trainer, records_of(trainer), self.hand_back_to)
        summary = summary_text(findings_of(trainer), checks_of(trainer).values())
        summary += _cost_line(trainer)
        tell(summary)
        if self._sink is not None and self._sink.active:  # in the Text tab too
            text = run_prefix(trainer) + "cnnviz/summary"
            self._sink.text(text, summary, trainer.global_step)
            self._sink.flush()

    def _end_of_failed_fit(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """What was found before an exception (an interrupt too) ended the fit, said once.

        A crashed run is where the diagnosis is wanted most, and ``on_fit_end`` never
        comes: the run's last monitor tells the findings so far and where the logs are.
        """
        fitting = getattr(trainer.state.fn, "value", trainer.state.fn) == "fit"
        if not fitting or not trainer.is_global_zero or _monitors(trainer)[-1] is not self:
            return
        if launched_here(trainer, self.hand_back_to):  # the fit ran in child processes
            if not claim_failed(trainer, self.hand_back_to, exception):  # for `findings_of`
                name = type(exception).__name__  # nothing: the record is an earlier fit's
                tell(f"lightning-cnnviz: the fit (in child processes) ended with {name} before "
                     "it handed any findings back.")  # fmt: skip
                return
            ended = f"the fit (in child processes) ended with {type(exception).__name__}; "
        else:  # a fit of another model that failed before any setup: its record is empty
            if pl_module is not None:  # (setups hunt 50: the last model's was listed)
                start_record(trainer, pl_module)
            hand_back(trainer, records_of(trainer), self.hand_back_to)
            ended = f"the fit ended at step {trainer.global_step} with {type(exception).__name__}; "
        tell(summary_text(findings_of(trainer), ended=ended + "before it, "))
        announce_logs(trainer)

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":  # after every callback's on_fit_end; not after an exception
            announce_logs(trainer)


def say_fit_only(trainer: Trainer, stage: str) -> None:
    """Say once per trainer and stage (naming every monitor) that monitors log in fit only."""
    stage = str(getattr(stage, "value", stage))  # a `TrainerFn` (a str enum) in Lightning
    said = trainer.__dict__.setdefault("_cnnviz_fit_only_said", set())
    if stage not in said:
        said.add(stage)
        names = ", ".join(type(c).__name__ for c in _monitors(trainer))
        say(
            f"lightning-cnnviz monitors log during `trainer.fit()` only: {names} "
            f"log nothing in `trainer.{stage}()`."
        )


def run_prefix(trainer: Trainer) -> str:
    """The ``tag_prefix`` of the run's own records (``cnnviz/summary``, ``cnnviz/layers``).

    They are the run's, no one monitor's: a prefix only where every monitor has it
    (setups hunt 63: a second KernelMonitor's `second/` took the summary along).
    """
    prefixes = {m.tag_prefix for m in _monitors(trainer)}
    return prefixes.pop() if len(prefixes) == 1 else ""


def _monitors(trainer: Trainer) -> list[RunSummary]:
    """The run's monitors in callback order (every ``Monitor`` is a ``RunSummary``)."""
    return [c for c in trainer.callbacks if isinstance(c, RunSummary)]


def _cost_line(trainer: Trainer) -> str:
    """The monitors' cost in this fit where it is large (``budget.cost_text``), as a line."""
    monitors = _monitors(trainer)
    fits = [m.budget.this_fit() for m in monitors]
    costs = [(type(m).__name__, spent, drawn, events)
             for m, (_, spent, drawn, events) in zip(monitors, fits, strict=True)]  # fmt: skip
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = sum(m.budget.share for m in monitors)
    text = cost_text(costs, max(f[0] for f in fits), share, one_core=cores == 1)
    return f"\n{text}" if text else ""


def batches_run(trainer: Trainer) -> int:
    """Training batches this fit has completed (Lightning's progress; 0 where unreadable)."""
    try:
        return int(trainer.fit_loop.epoch_loop.batch_progress.total.completed)
    except (AttributeError, TypeError, ValueError):  # Lightning's loops moved
        return 0


def stepless_text(batches: int) -> str:
    """The sentence for a fit whose training batches never stepped the optimiser.

    Example::

        >>> stepless_text(282)[:62]
        'No optimiser step in 282 training batches (`global_step` is st'
    """
    return (
        f"No optimiser step in {batches} training batches (`global_step` is still 0): "
        "nothing was trained. Under manual optimisation (`automatic_optimization = False`) "
        "`training_step` must call `opt.step()` after `self.manual_backward(loss)`; a "
        "`training_step` that returns None for every batch skips the step too."
    )


def _tell_stepless(trainer: Trainer) -> None:
    """Report a fit whose batches never stepped the optimiser, once per trainer (a problem)."""
    batches = batches_run(trainer)
    if trainer.global_step != 0 or batches < STEPLESS:
        return
    if any(f.kind == "no_optimizer_step" for f in findings_of(trainer)):
        return
    message = stepless_text(batches)
    figures = {"batches": float(batches)}
    report(trainer, Finding("cnnviz", "no_optimizer_step", 0, trainer.current_epoch, message,
                            figures))  # fmt: skip
    say(message)
