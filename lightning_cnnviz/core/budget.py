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

from lightning_cnnviz.core.schedule import Schedule

__all__ = ["DEFAULT_SHARE", "Budget"]

DEFAULT_SHARE = 0.0025  # of training time, per monitor; a preset shares 1% among its monitors
_SMOOTHING = 0.1  # weight of the newest step time in its running mean


class Budget:
    """What a monitor spends on the training thread, against what a training step costs.

    Attributes:
        share: the share of training time the monitor may spend.
        spent: seconds the monitor spent on the training thread, in total.
        background: seconds its jobs spent on the sink's thread, in total.
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
