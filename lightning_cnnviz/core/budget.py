"""A monitor's cost budget: its share of training time, measured, and the schedule stretched to fit.

A monitor measures two things with ``time.perf_counter`` (no device sync): how long
a training step takes without it (validation left out), and what its own work costs
(events, any work between them such as a hook window, and its drawing and writing on
the sink's thread, which competes with training wherever cores are busy). After each
event it tells its automatic ``Schedule`` how many training steps one event costs,
and the schedule spaces its steady events so that the monitor's share of training
time stays within ``share``. The first event is not counted: it carries one-time
work (tracing call sites, drawing the probe) that later events do not repeat.

Example::

    >>> from lightning_cnnviz.core.schedule import Schedule
    >>> schedule, budget = Schedule(), Budget(share=0.002)
    >>> schedule.fit_to(10_000)
    >>> budget.step_seconds = 0.1  # measured by step_ended(); set here for the example
    >>> for event in range(3):
    ...     budget.add(0.3)  # each event costs 0.3 s: three training steps
    ...     budget.event_ended(schedule)
    >>> schedule.interval  # 3 steps / 0.2% = 1,500 steps between steady events
    1500
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from lightning_cnnviz.core.schedule import Schedule

__all__ = ["DEFAULT_SHARE", "SAID_SECONDS", "SAID_SHARE", "Budget", "cost_text"]

DEFAULT_SHARE = 0.0025  # of training time, per monitor; a preset shares 1% among its monitors
_SMOOTHING = 0.1  # weight of the newest step time in its running mean
SAID_SHARE = 0.5  # the monitors' cost, over the fit's own time, that the summary tells...
SAID_SECONDS = 5.0  # ...once it is this many seconds too
_TOLD_APART = 0.05  # training's own share of the fit below which no ratio is told


class Budget:
    """What a monitor spends on the training thread, against what a training step costs.

    Attributes:
        share: the share of training time the monitor may spend.
        spent: seconds the monitor spent on the training thread, in total.
        background: CPU seconds its jobs spent on the sink's thread, in total.
        step_seconds: running mean of a training step's time without the monitor's work.
        event_seconds: running mean of one event's cost (with the work since the last one).
    """

    def __init__(self, share: float = DEFAULT_SHARE) -> None:
        self.share = share
        self.spent = 0.0
        self.background = 0.0
        self.step_seconds: float | None = None
        self.event_seconds: float | None = None
        self.events = 0
        self._last_tick: float | None = None
        self._spent_at_tick = 0.0
        self._spent_at_event = 0.0
        self._background_at_event = 0.0
        self._fit_mark: tuple[float, float, float, int] | None = None

    def start_fit(self) -> None:
        """Call when training starts: ``this_fit`` counts from here."""
        self._fit_mark = (time.perf_counter(), self.spent, self.background, self.events)

    def this_fit(self) -> tuple[float, float, float, int]:
        """Since ``start_fit``: wall seconds, seconds spent, sink-thread seconds, events."""
        if self._fit_mark is None:  # no training started
            return 0.0, self.spent, self.background, self.events
        start, spent, background, events = self._fit_mark
        return (time.perf_counter() - start, self.spent - spent, self.background - background,
                self.events - events)  # fmt: skip

    def add(self, seconds: float) -> None:
        """Count ``seconds`` of the monitor's own work on the training thread."""
        self.spent += seconds

    def add_background(self, seconds: float) -> None:
        """Count ``seconds`` of the monitor's jobs on the sink's thread (called there)."""
        self.background += seconds

    def pause(self) -> None:
        """Call when something other than training steps runs (validation): not a step's time."""
        self._last_tick = None

    def step_ended(self) -> None:
        """Call at the end of every training batch: measures the step without our work."""
        now = time.perf_counter()
        if self._last_tick is not None:
            step = max(0.0, now - self._last_tick - (self.spent - self._spent_at_tick))
            old = self.step_seconds
            self.step_seconds = step if old is None else old + _SMOOTHING * (step - old)
        self._last_tick, self._spent_at_tick = now, self.spent

    def event_ended(self, schedule: Schedule) -> None:
        """Call after each event: stretch ``schedule`` so the monitor stays within its share."""
        background = self.background  # the sink's jobs of earlier events, finished by now
        cost = self.spent - self._spent_at_event + background - self._background_at_event
        self._spent_at_event, self._background_at_event = self.spent, background
        self.events += 1
        if self.events == 1:  # one-time work: not what later events cost
            return
        old = self.event_seconds
        self.event_seconds = cost if old is None else 0.5 * (old + cost)
        if self.step_seconds:
            schedule.stretch(self.event_seconds / self.step_seconds, self.share)

    @property
    def event_steps(self) -> float | None:
        """One event's cost in training steps, once both are measured."""
        if self.event_seconds is None or not self.step_seconds:
            return None
        return self.event_seconds / self.step_seconds


def cost_text(
    costs: Sequence[tuple[str, float, float, int]],
    wall: float,
    share: float,
    one_core: bool = False,
) -> str:
    """The monitors' cost in a fit, in words, where it is large ("" otherwise).

    ``costs``: per monitor, its name, the seconds it spent on the training thread, those
    its jobs took on the sink's thread and its events; ``wall``: the fit's seconds from
    the start of training; ``share``: the budgets of the monitors added up; ``one_core``:
    the process may run on one CPU core only, where the sink's drawing takes turns with
    training (held out, setups hunt 22: "1.3x" said of a run made 4.4x slower). Said where
    the training thread's cost is ``SAID_SHARE`` of the fit's own time and ``SAID_SECONDS``:
    in a short run the automatic schedule's first, dense events cost what they cost
    (the ``full`` preset made a 30-step run of the reference CNN 20x slower, unsaid).

    Example::

        >>> print(cost_text([("GradCAMMonitor", 11.1, 4.3, 9), ("KernelMonitor", 0.1, 1.5, 9)],
        ...                 wall=12.9, share=0.01))  # doctest: +NORMALIZE_WHITESPACE
          Cost: the monitors spent 11.2 s on the training thread in this fit, 6.6x its own
          1.7 s of training (their budget: 1% of it), and 5.8 s drawing on the sink's
          thread besides; GradCAMMonitor 11.1 s in 9 events. Their automatic schedules log
          early and at least a few times in every run, whatever it costs; in runs this
          short leave the costliest out, or give them a larger `every_n_steps`.
    """
    spent, background = sum(c[1] for c in costs), sum(c[2] for c in costs)
    own = wall - spent - (background if one_core else 0.0)
    if spent < SAID_SECONDS or spent < SAID_SHARE * own:
        return ""
    costly = sorted((c for c in costs if c[1] >= 0.1 * spent), key=lambda c: -c[1])
    named = ", ".join(f"{name} {sec:.1f} s in {n} event{'s' * (n != 1)}"
                      for name, sec, _, n in costly)  # fmt: skip
    drawing = f", and {background:.1f} s drawing on the sink's thread besides"
    if one_core:
        drawing = (
            f", and {background:.1f} s drawing on the sink's thread, which takes turns with "
            "training on this run's one CPU core"
        )
    if own < _TOLD_APART * wall:  # their times overlap (waits on the sink): no ratio to tell
        spent_text = f"{spent:.1f} s on the training thread in this fit of {wall:.1f} s"
        drawing += "" if background < 0.1 else " (the two overlap)"
    else:
        spent_text = (
            f"{spent:.1f} s on the training thread in this fit, {spent / own:.1f}x its own "
            f"{own:.1f} s of training (their budget: {share * 100:.2g}% of it)"
        )
        if one_core and background >= 0.1:
            drawing += f" ({(spent + background) / own:.1f}x in all)"
    return (
        f"  Cost: the monitors spent {spent_text}{drawing if background >= 0.1 else ''}; "
        f"{named}. Their automatic schedules log early and at least a few times in every "
        "run, whatever it costs; in runs this short leave the costliest out, or give them a "
        "larger `every_n_steps`."
    )
