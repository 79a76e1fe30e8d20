"""When a monitor logs: automatically, or exactly every ``n`` optimizer steps or epochs.

Steps are ``trainer.global_step`` (never ``batch_idx``, which restarts every epoch).

**Automatic** (neither ``every_n_steps`` nor ``every_n_epochs``): failures start early,
so the first event comes within the first 3% of the run (at most 50 steps in); the
gaps then double until they reach a steady interval fitted to the run's length (about
``EVENTS`` events per run, rounded to 1, 2 or 5 x 10^k steps, so that monitors log at
the same steps). A run of unknown length (an infinite ``estimated_stepping_batches``,
or -1, Lightning's answer for an iterable loader stopped by ``max_epochs``; a long one under
a time limit, ``monitor_events.run_length``, whose length is only a bound) is planned
as ``UNKNOWN_LENGTH`` steps with its first event at step ``UNKNOWN_FIRST`` (it may be
short), and keeps its steady interval afterwards.
The cost budget may then stretch the steady interval (``stretch``): a monitor whose
events are expensive logs less often, on the same grid, but keeps at least
``MIN_STEADY`` steady events over the run.

**Explicit** ``every_n_steps=n``: at every multiple of ``n`` (or at the first chance
after it, for a monitor that can only log at certain moments, like the overfitting
check at validation ends); ``every_n_epochs=n``: at the end of every ``n``-th epoch.

Example::

    >>> auto = Schedule()
    >>> auto.fit_to(10_000)
    >>> [s for s in range(1, 2001) if auto.due_on_step(s, last=-1)]
    [50, 100, 200, 500, 1000, 1500, 2000]
    >>> Schedule(every_n_steps=100).due_on_step(150, last=-1)
    False
    >>> Schedule(every_n_steps=100).due_on_step(150, last=-1, first_chance=True)
    True
    >>> Schedule(every_n_epochs=2).due_on_epoch(epoch=1, step=60, last=-1)
    True
"""

from __future__ import annotations

import math
from typing import Any

from lightning_cnnviz.core.checks import check_int

__all__ = [
    "EVENTS",
    "FIRST_SHARE",
    "FIRST_STEP_MAX",
    "MIN_STEADY",
    "UNKNOWN_FIRST",
    "UNKNOWN_LENGTH",
    "Schedule",
    "batches_to_log",
    "plan",
]

EVENTS = 20  # steady events an automatic schedule aims at over the run
FIRST_SHARE = 0.03  # the first event within this share of the run...
FIRST_STEP_MAX = 50  # ...and at most this many steps in
UNKNOWN_LENGTH = 10_000  # steps planned for when the run's length is unknown...
UNKNOWN_FIRST = 10  # ...with its first event this early: the run may be short
MIN_STEADY = 6  # steady events the budget leaves a monitor at least, over the planned run
_SHRINK = 0.8  # the interval shrinks only when the cost fits this share of a shorter one


def _nice(x: float) -> int:
    """The smallest 1, 2 or 5 x 10^k at or above ``x`` (at least 1)."""
    if x <= 1:
        return 1
    base = 10 ** math.floor(math.log10(x))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= x)


def _known(total_steps: float | None) -> bool:
    # unknown: None, infinite, or Lightning's -1 (an iterable loader stopped by max_epochs)
    return total_steps is not None and math.isfinite(total_steps) and total_steps >= 1


def _planned(total_steps: float | None) -> int:
    return int(total_steps) if _known(total_steps) else UNKNOWN_LENGTH


def _as_planned(total_steps: float | None, bound: bool) -> float | None:
    """``total_steps``, or None where it is a bound past ``UNKNOWN_LENGTH`` (``plan``)."""
    if bound and _known(total_steps) and total_steps > UNKNOWN_LENGTH:  # type: ignore[operator]
        return None
    return total_steps


def plan(total_steps: float | None, bound: bool = False) -> tuple[int, int]:
    """``(first, steady)`` steps of the automatic schedule for a run of ``total_steps``.

    ``bound``: ``total_steps`` is only a bound (a time limit may stop the run first): the
    first event at most ``UNKNOWN_FIRST`` steps in, and past ``UNKNOWN_LENGTH`` steps the
    plan of a run of unknown length (setups hunts 46-47: runs the clock stopped at
    100-277 steps logged 1 to 3 times).

    Example::

        >>> [plan(n) for n in (100, 1_000, 10_000, 1_000_000, None, -1)]
        [(3, 5), (30, 50), (50, 500), (50, 50000), (10, 500), (10, 500)]
        >>> [plan(n, bound=True) for n in (100, 1_000, 1_000_000)]
        [(3, 5), (10, 50), (10, 500)]
    """
    total_steps = _as_planned(total_steps, bound)
    total = _planned(total_steps)
    first = max(1, min(FIRST_STEP_MAX, math.ceil(FIRST_SHARE * total)))
    if not _known(total_steps) or bound:
        first = min(first, UNKNOWN_FIRST) if _known(total_steps) else UNKNOWN_FIRST
    return first, max(_nice(total / EVENTS), first)


class Schedule:
    """Every ``every_n_steps`` steps, every ``every_n_epochs`` epochs, or automatic (neither).

    An automatic schedule is fitted to the run by ``fit_to(total_steps)`` (at the start
    of fit) and stretched by the cost budget through ``stretch``; before ``fit_to`` it
    plans for a run of unknown length.
    """

    def __init__(self, every_n_steps: int | None = None, every_n_epochs: int | None = None):
        self.every_n_steps = every_n_steps
        self.every_n_epochs = every_n_epochs
        self.fit_to(None)
        self.factor = 1  # the budget's stretch of the steady interval

    @classmethod
    def chosen(cls, every_n_steps: int | None, every_n_epochs: int | None) -> Schedule:
        """The user's schedule, checked (at most one of the two; neither = automatic).

        Example::

            >>> Schedule.chosen(None, 2).every_n_epochs, Schedule.chosen(None, None).automatic
            (2, True)
        """
        check_int("every_n_steps", every_n_steps, allow_none=True)
        check_int("every_n_epochs", every_n_epochs, allow_none=True)
        if every_n_steps is not None and every_n_epochs is not None:
            raise ValueError(
                "Set only one of `every_n_steps` and `every_n_epochs`, got "
                f"every_n_steps={every_n_steps!r} and every_n_epochs={every_n_epochs!r}"
            )
        return cls(every_n_steps, every_n_epochs)

    @property
    def automatic(self) -> bool:
        """Whether the schedule is the automatic one (no explicit interval)."""
        return self.every_n_steps is None and self.every_n_epochs is None

    def fit_to(self, total_steps: float | None, bound: bool = False) -> None:
        """Fit the automatic schedule to a run of ``total_steps`` optimizer steps (``plan``)."""
        self.first, self.steady = plan(total_steps, bound)
        # a long bound is planned as an unknown length, and stretched as one (setups hunt
        # 48: `max_time` with `max_epochs=1000` stretched to 5,500 steps, not 1,500)
        total = _planned(_as_planned(total_steps, bound))
        self.max_factor = max(1, total // (MIN_STEADY * self.steady))

    def stretch(self, event_steps: float, budget: float) -> None:
        """Space the steady events so that each event's cost stays within ``budget``.

        ``event_steps`` is what one event costs, in training steps; ``budget`` a share of
        training time. The steady interval becomes a multiple of the planned one (the
        same grid), never shorter, and never so long that fewer than ``MIN_STEADY``
        steady events remain in the run: a monitor never goes silent. It shrinks back
        only when the cost has clearly fallen (by a fifth), so that event-to-event noise
        in the cost does not make the interval jump back and forth.

        Example::

            >>> auto = Schedule()
            >>> auto.fit_to(10_000)
            >>> auto.stretch(event_steps=3.0, budget=0.002)  # needs 1,500 steps between events
            >>> auto.interval
            1500
            >>> auto.stretch(event_steps=30.0, budget=0.002)  # would leave too few events
            >>> auto.interval
            1500
            >>> auto.stretch(event_steps=0.5, budget=0.002)  # clearly cheaper now
            >>> auto.interval
            500
        """
        if self.automatic:
            needed = min(event_steps / budget if budget > 0 else math.inf, 1e12) / self.steady
            factor = min(self.max_factor, max(1, math.ceil(needed * (1 - 1e-9))))
            if factor < self.factor and needed > _SHRINK * (self.factor - 1):
                factor = self.factor  # not clearly cheaper than before: keep the spacing
            self.factor = factor

    @property
    def interval(self) -> int | None:
        """The steady interval in steps (``None`` for an epoch schedule)."""
        if self.automatic:
            return self.steady * self.factor
        return self.every_n_steps

    def _early(self) -> list[int]:
        """The automatic schedule's dense early steps (doubling gaps up to the planned interval).

        The budget's stretch does not thin them: they are few and failures start early.
        """
        steps, step = [], self.first
        while step * 1.5 <= self.steady:
            steps.append(step)
            step *= 2
        return steps or [self.first]

    def due_on_step(self, step: int, last: int, first_chance: bool = False) -> bool:
        """Whether to log at ``step``, given the step of the last log (``-1``: none yet).

        With ``first_chance`` (a monitor that can only log at certain moments), the
        first chance of the run counts, and so does a due step passed since ``last``.
        """
        if step <= 0 or step == last or self.every_n_epochs is not None:
            return False
        if first_chance:
            return last < 0 or self.next_step(max(last, 0)) <= step
        if self.automatic and step < self.interval:
            return step in self._early()
        return step % self.interval == 0

    def next_step(self, step: int) -> int | None:
        """The first step after ``step`` at which a step schedule logs; ``None`` for an epoch one.

        For a monitor that prepares ahead of a log (hooks the batches before it).

        Example::

            >>> auto = Schedule()
            >>> auto.fit_to(1_000)
            >>> [auto.next_step(s) for s in (0, 30, 50, 120)]
            [30, 50, 100, 150]
        """
        if self.every_n_epochs is not None:
            return None
        if self.automatic:
            early = [s for s in self._early() if s > step]
            if early and early[0] < self.interval:
                return early[0]
        interval = self.interval
        return (step // interval + 1) * interval

    def due_on_epoch(self, epoch: int, step: int, last: int) -> bool:
        """Whether to log at the end of ``epoch`` (0-based), never twice at one step."""
        return self.due_after_epoch(epoch) and step != last

    def due_after_epoch(self, epoch: int) -> bool:
        """Whether an epoch schedule logs at the end of ``epoch`` (0-based), whatever the step.

        Known from the epoch's first batch on, for a monitor that prepares ahead of a log.

        Example::

            >>> [Schedule(every_n_epochs=2).due_after_epoch(e) for e in range(4)]
            [False, True, False, True]
        """
        n = self.every_n_epochs
        return n is not None and (epoch + 1) % n == 0

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue the same series (the budget's stretch)."""
        return {"factor": self.factor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.factor = int(state.get("factor", 1))


def batches_to_log(
    global_step: int,
    batch_idx: int,
    accumulate: int,
    num_batches: float,
    next_step: int | None = None,
    epoch_due: bool = False,
) -> tuple[int, int] | None:
    """How many training batches, this one included, until the next logging event.

    Returns ``(to_log, in_accumulation)``: batches until the batch that completes
    the logging step ``next_step`` (``Schedule.next_step``; or that ends the epoch,
    for an epoch schedule, where ``next_step`` is ``None``), and batches until the
    end of this batch's accumulation (when both are equal, the optimizer step that
    follows this batch is the logging step). ``None``
    when no log is ahead (epoch schedule, epoch not due or of unknown length). Epoch
    ends shorten an accumulation, so across one the count is an upper bound (never
    too early).

    Example::

        >>> # every 3 steps, 2 batches per step: batch 4 starts the accumulation of step 3
        >>> batches_to_log(2, 4, accumulate=2, num_batches=8, next_step=3)
        (2, 2)
        >>> batches_to_log(1, 3, accumulate=2, num_batches=8, next_step=3)
        (3, 1)
    """
    finite = num_batches != float("inf")
    target = next_step
    if target is None:
        if not (epoch_due and finite):
            return None
        left = int(num_batches) - batch_idx
        return left, 1 if left == 1 else 0
    in_accumulation = accumulate - batch_idx % accumulate
    if finite:
        in_accumulation = min(in_accumulation, int(num_batches) - batch_idx)
    return in_accumulation + (target - global_step - 1) * accumulate, in_accumulation
