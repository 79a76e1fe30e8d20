"""The loss series' readings the training-side rules take at each log: ``LossLevels``.

Nothing here knows about Lightning. Incremental (the losses since the last log only):
whether the loss never left its chance level, whether it is at a new low (and still near
its lowest), how far it fell since the previous log, and whether that fall is clear of
the plateau's noise. The series itself is ``loss_trace.LossTrace``'s.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from collections.abc import Sequence

from lightning_cnnviz.activations.loss_trace import SMOOTH
from lightning_cnnviz.core.chance import at_chance

__all__ = ["NEAR_LOW", "LossLevels"]

NEAR_LOW = 1.1  # a loss this close to a low set since the last log is still at its lows
START_ABOVE = 0.15  # the first median this far above ln K at most is still at chance (the start)
CLEAR_FALL = 3.0  # ``fell_clearly``: 3 standard errors (one-sided: 0.13% of plateau logs)


class LossLevels:
    """Readings of the loss series at each log, incremental: only new losses are read.

    Example::

        >>> levels = LossLevels()
        >>> series = [(s, 2.3) for s in range(20)]
        >>> levels.at_chance(series, classes=10), levels.at_new_low(series)
        (True, True)
        >>> series += [(20 + s, 1.0) for s in range(10)]
        >>> levels.at_chance(series, classes=10), round(LossLevels.fall(series, 20), 3)
        (False, 0.565)
    """

    def __init__(self) -> None:
        # ``at_chance``: left it yet, losses read, the ones short of a full median
        self._left_chance, self._chance_seen, self._chance_rest = False, 0, []
        self._chance_started = False  # the first median read (the start, ``START_ABOVE``)
        # ``at_new_low``: the latest window, the lowest median, the latest median
        self._low: tuple[list[float], float, float | None] = ([], math.inf, None)
        self._low_seen = 0  # losses read by ``at_new_low``

    def at_chance(self, series: Sequence[tuple[int, float]], classes: int | None) -> bool:
        """Whether the loss never left its chance level ``ln K`` since the first step.

        Every ``SMOOTH``-step median within ``core.chance.AT_CHANCE`` of it (and ``4 * SMOOTH``
        losses at least). Shuffled training labels keep a CNN at 2.29-2.31 (ln 10 =
        2.303) while Adam silences half its dense layer; units killed by too large an
        update move the loss first (SGD 0.7: 2.30 -> 2.10; SGD 1.0 wanders 2.07-2.67). The
        first median may sit up to ``START_ABOVE`` above it: an untrained net's logits are
        not all 0 (hunt 96: 2.380 on 10 classes, a net on data without signal read as
        having left chance, its silent units then blamed on the update size).
        """
        if classes is None or classes < 2 or self._left_chance:
            return False
        fresh = [v for _, v in series[self._chance_seen :] if math.isfinite(v)]
        finite = self._chance_rest + fresh
        full = len(finite) - len(finite) % SMOOTH
        for i in range(0, full, SMOOTH):
            median = statistics.median(finite[i : i + SMOOTH])
            above = median / math.log(classes) - 1
            start = not self._chance_started and 0 <= above < START_ABOVE
            self._chance_started = True
            self._left_chance |= not (at_chance(median, classes) or start)
        self._chance_rest, self._chance_seen = finite[full:], len(series)
        return not self._left_chance and len(series) >= 4 * SMOOTH

    def near_low(self) -> bool:
        """Whether the latest median ``at_new_low`` read is within ``NEAR_LOW`` of its lowest.

        A loss held up by a floor sits at its lows; one that fell and rose back does not.
        """
        _, best, last = self._low
        return last is not None and last <= NEAR_LOW * best

    def at_new_low(self, series: Sequence[tuple[int, float]]) -> bool:
        """Whether the loss is at or near a new low set since the last log.

        A ``SMOOTH``-step median since the last log was the lowest yet, and the latest is
        within ``NEAR_LOW`` of it (or is the lowest itself); before ``SMOOTH`` losses, yes.

        Since the last log, not at this log's step alone: a loss falling fast but noisily
        (2.30 -> 1.23 in 35 steps) is often just above its low at the step a log lands on;
        a loss turning up (more than 10% over its low) is not.
        """
        window, best, last = self._low
        lowered = False
        for _, value in series[self._low_seen :]:
            if math.isfinite(value):
                window = [*window, value][-SMOOTH:]
                if len(window) == SMOOTH:
                    last = statistics.median(window)
                    lowered, best = lowered or last < best, min(best, last)
        self._low, self._low_seen = (window, best, last), len(series)
        if last is None:
            # fewer than SMOOTH losses: no low to be above yet. A ConvNeXt's layer scales
            # (1e-6 at init) let its gradients grow 5577x from the first step to the second
            # under Adam, with the loss 2.30 -> 2.42 -> 0.96: an early log is no explosion
            return True
        return last <= best or (lowered and last <= NEAR_LOW * best)

    @staticmethod
    def fell_clearly(series: Sequence[tuple[int, float]], previous: int) -> bool:
        """Whether the ``SMOOTH``-step median fell since the ``previous`` log beyond its noise.

        By more than ``CLEAR_FALL`` standard errors of the difference of two such medians,
        the noise read from the per-step losses on each side of that log (the median
        difference of neighbouring steps: a trend does not pass for noise; a loss that
        starts to learn wobbles more). A 100-class net leaving its chance level, 4.597 ->
        4.471 (2.7%: under ``gradients.FALLING``'s 3%; 3.6 standard errors, its losses
        wobbling 0.01 before and 0.06 after), is learning.

        Example::

            >>> flat = [(i, 2.3 + 0.02 * (-1) ** i) for i in range(40)]
            >>> LossLevels.fell_clearly(flat, 20)
            False
            >>> down = flat[:20] + [(20 + i, 2.1 + 0.02 * (-1) ** i) for i in range(20)]
            >>> LossLevels.fell_clearly(down, 20)
            True
        """
        sides = _sides(series, previous)
        if sides is None:
            return False
        before, after = sides
        then, now = statistics.median(before[-SMOOTH:]), statistics.median(after[-SMOOTH:])
        # each side's per-step noise from neighbouring steps' differences, so a trend does
        # not count as noise (|a - b| of two N(0, s^2) has median 0.954 s); a median of
        # SMOOTH values has 1.25x the standard error of their mean
        spread = [
            statistics.median(abs(b - a) for a, b in itertools.pairwise(side)) / 0.954
            for side in (before, after)
        ]
        error = 1.25 * math.hypot(*spread) / math.sqrt(SMOOTH)
        return then - now > CLEAR_FALL * error

    @staticmethod
    def fall(series: Sequence[tuple[int, float]], previous: int) -> float | None:
        """``1 -`` the ``SMOOTH``-step median loss now over that at the ``previous`` log.

        None without ``SMOOTH`` finite losses on each side of the previous log.
        """
        sides = _sides(series, previous)
        if sides is None:
            return None
        then, now = (statistics.median(side[-SMOOTH:]) for side in sides)
        return 1.0 - now / then if then > 0 else None


def _sides(
    series: Sequence[tuple[int, float]], previous: int
) -> tuple[list[float], list[float]] | None:
    """The finite losses of up to ``4 * SMOOTH`` steps before the ``previous`` log and after it.

    A log at step ``L`` has the losses of the steps before ``L``. None without ``SMOOTH``
    of them on each side.
    """
    cut = bisect.bisect_left(series, previous, key=lambda item: item[0])
    before = [v for _, v in series[max(0, cut - 4 * SMOOTH) : cut] if math.isfinite(v)]
    after = [v for _, v in series[cut:][-4 * SMOOTH :] if math.isfinite(v)]
    return None if len(before) < SMOOTH or len(after) < SMOOTH else (before, after)
