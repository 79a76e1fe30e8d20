"""What the learning rates read at the logs say about a loss spike: a part of ``SpikeReadings``.

Nothing here knows about Lightning. ``RateReadings`` reads, from the rate at each log and
the highest of a step between two logs, whether the rate rose or jumped around a spike
(named as its cause), or was one the model had trained at (not named: held, lowered, or
moved too little for a loss that changed in one step), and the rate of a blow-up of the
first steps that left the network at its chance loss (``_hot_start``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

from lightning_cnnviz.activations.early_spike import jumped_at_start
from lightning_cnnviz.activations.loss_trace import SMOOTH, LossTrace
from lightning_cnnviz.activations.rate_taken import STEADY, blow_up_onset, held_rate

__all__ = ["LOWERED", "RAISED", "STEADY", "RateReadings", "lowered_since", "rate_rise"]

RAISED = 3.0  # the rate at the divergence this many times its first: a schedule raised it
LOWERED = 1.2  # the rate at a spike this many times below rates used before: not raised
# STEADY (``rate_taken``): under that many times the rates of the 2 logs before: a slope


def rate_rise(
    jump: tuple[int, float, int, float] | None, rates: tuple[float, float] | None
) -> float | None:
    """How many times the rate jumped (``jump``) or rose (``rates``) before it, else ``None``.

    A cause of the divergence's own, which no standing problem made (``core.root_causes``).

    Example::

        >>> rate_rise((140, 0.01, 160, 3.0), None), rate_rise(None, (0.1, 0.2))
        (300.0, None)
    """
    if jump is not None:
        return jump[3] / jump[1]
    if rates is not None and rates[0] > 0 and rates[1] >= RAISED * rates[0]:
        return rates[1] / rates[0]
    return None


def lowered_since(
    at: int | None, then: float | None, rates: tuple[float | None, float | None]
) -> tuple[int, float, float] | None:
    """``(the spike's step, the rate of the steps before it, the rate now)``: a hot spell.

    Where that rate was ``RAISED`` x or more both the first log's and the rate now (else
    ``None``): a rate no log saw and the schedule lowered since, the one to name (held-out
    hunt 123: 9.0 at steps 0-1, then a warm-up from 0.00525 at the first log, told "lower
    the learning rate (10x) ... add a learning-rate warmup" from 0.00525). A rate cut
    after a spike at the rate of the first log (a decay, a plateau scheduler) is not one.

    Example::

        >>> lowered_since(2, 9.0, (0.00525, 0.00525)), lowered_since(40, 0.1, (0.1, 0.01))
        ((2, 9.0, 0.00525), None)
    """
    first, now = rates
    if at is None or then is None or first is None or now is None or not now > 0:
        return None
    return (at, then, now) if then >= RAISED * max(first, now) else None


class RateReadings:
    """The learning rates around a spike (a part of ``SpikeReadings``)."""

    rates: tuple[float | None, float | None]  # the learning rate at the first log, and now
    log_rates: list[tuple[int, float]]  # (step, learning rate) of the latest logs
    peak_rates: list[tuple[int, float]]  # (step, rate) of steps above the rate at a log
    spike_rate: float | None  # the highest rate of a step before the told spike
    loss: LossTrace  # the run's loss series (``diagnose.TrainingDiagnosis``)
    _probe_unlearnt: Callable[[tuple[int, float, float, float]], bool]  # ``SpikeReadings``

    def _rate_figures(
        self,
        jump: tuple[int, float, int, float] | None,
        rates: tuple[float, float] | None,
        hot: tuple[int, float, float | None, bool] | None,
    ) -> dict[str, float]:
        """A divergence's rate figures: at the first log and now, and what they say of it.

        The rise that caused it (a cause of its own, which no standing problem made:
        ``core.root_causes``); the rate of the steps up to its spike where that is the cause.
        """
        known = None not in self.rates
        figures = dict(zip(("lr_first", "lr"), self.rates, strict=True)) if known else {}
        figures |= {"rate_rise": rise} if (rise := rate_rise(jump, rates)) else {}
        return figures | ({"lr_spike": hot[1]} if hot else {})

    def _jump(self, at: int | None) -> tuple[int, float, int, float] | None:
        """The rate at the last log before step ``at`` and the next, where it rose ``RAISED`` x.

        The next: the highest of a step between the two logs, where that was higher (a
        rate raised for a few steps and put back; hunt 46: x300 for steps 100-104, logs at
        90 and 120, told as one bad batch).
        """
        if at is None:
            return None
        before = [(s, lr) for s, lr in self.log_rates if s < at]
        after = [(s, lr) for s, lr in self.log_rates if s >= at]
        if not before or not after or not before[-1][1] > 0:
            return None
        (a, lr_a), (b, lr_b) = before[-1], after[0]
        between = [(s, lr) for s, lr in self.peak_rates if a <= s < b and lr > lr_b]
        b, lr_b = max(between, key=lambda r: r[1], default=(b, lr_b))
        if lr_b < RAISED * lr_a or not self._rose_into(at, lr_b):
            return None
        return a, lr_a, b, lr_b

    def _rose_into(self, at: int | None, rate: float | None = None) -> bool:
        """Whether the blow-up at ``at`` came at a rate above all the run took before it.

        ``rate``: the rate it came at (a jump's), else the highest of a step before it.
        Taken: the loss fell or held at it for ``HELD`` steps before the blow-up
        (``rate_taken.held_rate``); under ``STEADY`` x that rate is about it. The one
        answer to "the rate rose into it": the cause named, its figure
        (``core.root_causes``), the recovery's words. Held-out hunt 126: a warm-up's loss
        falling at 0.032-0.038, one batch of inputs x30 at step 50 (0.41 -> 16.1), and an
        SGDR restart to 0.05 trained at for 6 steps before it, told as the rate's rise.
        """
        now = self.rates[1]
        if at is None or now is None or now <= 0:  # a negative rate is a setting's cause
            return True
        rated = [*self.log_rates, *self.peak_rates]
        since = min([at, *(s for s, _ in rated)]) - 2 * SMOOTH  # the steps read: no more
        series = self.loss.series[bisect_left(self.loss.series, since, key=lambda r: r[0]) :]
        onset = blow_up_onset(series, at)
        known = [(s, lr) for s, lr in rated if s < onset]
        taken = held_rate(series, known, onset)
        came = rate if rate is not None else max((lr for _, lr in known), default=now)
        return taken is None or came >= STEADY * taken

    def _rate_at(self, at: int) -> float | None:
        """The highest learning rate of a step before ``at``: of a log, or one between logs.

        Where no log came before ``at``, the first log's rate stands in for the steps
        before it; a step's rate above it is in ``peak_rates`` (a first step at 40x of a
        rate then warmed up from 0.1x: 0.8 there, 0.005 at the first log).
        """
        used = [lr for s, lr in [*self.log_rates, *self.peak_rates] if s < at]
        first = self.rates[0]
        return max(used) if used else first

    def _hot_start(
        self,
        series: Sequence[tuple[int, float]],
        spike: tuple[int, float, float, float] | None = None,
    ) -> tuple[int, float, float | None] | None:
        """``(the step, the rate up to it, the rate now)`` of a blow-up in a run that never learnt.

        ``early_spike.jumped_at_start`` finds one, ``spike`` (else that one) is named; not
        where the model's probe learns (``_probe_unlearnt``). That rate is the cause, not one
        a warm-up reached after it (held-out hunt 123: SGD's first two steps at 150x, 4.5,
        told "the learning rate rose from 0.00525 to 0.0292"; Adam 1e-2's units silenced by
        step 10 told as a `.detach()`).
        """
        found = jumped_at_start(series)
        spike = spike or found
        if found is None or spike is None or not self._probe_unlearnt(spike):
            return None
        then = self._rate_at(spike[0])
        return (spike[0], then, self.rates[1]) if then else None

    def _blow_up_rates(self) -> tuple[float, float] | None:
        """``(the rate at the told spike, the rate now)``, where both are known.

        The rate at it is kept when the spike is told (``spike_rate``): the latest logs'
        readings no longer reach it once the run is back (``early_spike.crawling``).
        """
        then, now = self.spike_rate, self.rates[1]
        return None if then is None or now is None else (then, now)

    def _jumped_now(self, spike: tuple[int, float, float, float]) -> tuple[float, float] | None:
        """``(the rate before, the rate now)`` where it jumped around the spike and still is.

        Held out (hunt 23): Adam 1e-3 -> 0.05 at step 80, kept to the end (87% val against
        94% healthy), was told "recovered ... a brief overshoot" without the jump. Not where
        the rate jumped to is ``RAISED`` x the rate now: a hot step put back (``_hot_then``),
        whatever a warm-up rose to since.
        """
        jump, now = self._jump(spike[0]), self.rates[1]
        if jump is None or now is None or now < RAISED * jump[1] or jump[3] >= RAISED * now:
            return None
        return jump[1], now

    def _hot_then(self, spike: tuple[int, float, float, float]) -> tuple[float, float] | None:
        """``(the rate the spike came at, the rate now)``: ``lowered_since`` the hot step.

        A step between the logs around it (``_jump``): the rate to name, not the one a
        warm-up reached since (held-out hunt 124: Adam warming up to 1e-3, step 13 alone at
        0.035, told "the learning rate jumped 4x (from 0.00025 to 0.001), which is still in
        force ... lower the rate"; SGD's 0.93 at step 13 told as "jumped 6x ... to 0.02").
        """
        jump = self._jump(spike[0])  # its peak is the rate of a hot step between logs
        hot = None if jump is None else lowered_since(spike[0], jump[3], (jump[1], self.rates[1]))
        return None if hot is None else (hot[1], hot[2])  # type: ignore[return-value]

    def _before(self, at: int | None) -> tuple[float, list[float]]:
        """The rate now and those of the logs before ``at`` (none where either is unknown)."""
        now = self.rates[1]
        if at is None or now is None or now <= 0:  # a negative rate is a setting's cause
            return 0.0, []
        return now, [lr for s, lr in self.log_rates if s < at]

    def _rate_held(self, at: int | None) -> bool:
        """Whether the rate now was in force at two logs or more before ``at``.

        A loss that changed in one step at ``at`` is then not the doing of a rise to it long
        before (hunt 51: labels random from step 300, a warm-up ended at 100, told "the
        learning rate rose ... too high"); a slow climb still is (hunt 52: SGD warmed up to
        0.15 and held, diverging 480 steps on, had been told as the batches).
        """
        now, before = self._before(at)
        return sum(lr >= now for lr in before) >= 2

    def _rate_steady(self, at: int | None) -> bool:
        """Whether the rate now is under ``STEADY`` x the rate at each of the 2 logs before ``at``.

        A warm-up's slope moves it that little between logs: a loss that stepped up in one
        step and holds is then the batches' (hunt 53: labels random from step 250 of an
        Adam warm-up, 0.15 -> 7.2 in one step, told as "the rate it reached is too high").
        """
        now, before = self._before(at)
        return len(before) >= 2 and all(lr * STEADY > now for lr in before[-2:])

    def _rate_lowered(self, at: int | None) -> bool:
        """Whether the rate now is ``LOWERED`` x below one in force at two logs before ``at``.

        Past a one-cycle's peak or down a cosine it is not raised, whatever the first log's
        (hunt 51: labels random at step 300 of a one-cycle, told as the rate's rise).
        """
        now, before = self._before(at)
        return sum(lr >= LOWERED * now for lr in before) >= 2

    def _raised(self, at: int) -> bool | None:
        """Whether the rate rose since the first log or jumped around ``at`` (None: unknown)."""
        if self._jump(at) is not None:
            return True
        if self._rate_lowered(at):
            return False
        first, now = self.rates
        return None if first is None or now is None else now > first and self._rose_into(at)
