"""After a loss spike: the level before it, whether the run came back, where the rise began.

Nothing here knows about Lightning. Beside ``divergence.py``'s detection, from the same
loss series:

* ``level_before``: the smoothed loss just before a late spike (the loss had halved
  before it);
* ``recovered``: the loss is back below its start by the time of a log (an early
  transient, as Adam's first steps or a too-warm start give, not a divergence); after a
  late spike, back within ``BACK`` x its level before the spike (and ``BACK_START`` of
  the first loss above it);
* ``still_spiked``: the latest losses still past the spike's bar;
* ``run_up``: the step where the rise to a spike began;
* ``spike_seen``: the spike as its words quote it, from the per-step losses.

Example::

    >>> series = [(i, 2.3) for i in range(5)] + [(5 + i, 0.9) for i in range(5)]
    >>> recovered(series)
    True
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

import torch

from lightning_cnnviz.activations.divergence import (
    BASELINE,
    LATE,
    LOST_SHARE,
    NOISE,
    RISEN,
    SPIKE_OVER_BEST,
    SPIKE_OVER_START,
    UNLEARNT,
    medians,
    scatter,
)
from lightning_cnnviz.activations.loss_trace import SMOOTH

__all__ = [
    "BACK",
    "BACK_START",
    "Seen",
    "level_and_now",
    "level_before",
    "recovered",
    "run_up",
    "spike_seen",
    "still_spiked",
]

BACK = 2.5  # a late spike recovered: the latest median within 2.5x its level before it
# (healthy batch noise: a median of 5 reads up to 1.9x the one 8 steps before on a BN CNN
# under Adam; an Adam rate x30 at step 140 read 7-19x its level at the next log, 3-9x at
# the one after, on 3 seeds)...
BACK_START = 0.25  # ...and, at a later log, no more than this share of the first loss above it
# (hunt 18: CyclicLR to 0.5 spiked at step 40 from 1.05 and sat at 2.0-2.4 for 190 steps,
# 2x its level but 0.4 of ln 10 above it, val accuracy 32%, told "recovered")


def level_and_now(
    series: Sequence[tuple[int, float]], spike: tuple[int, float, float, float]
) -> tuple[float, float] | None:
    """``(the loss's level before the spike, its median over the last steps)``, where known."""
    before, now = level_before(series, spike), loss_now(series)
    return (before, now) if before and now is not None else None


def loss_now(series: Sequence[tuple[int, float]]) -> float | None:
    """The median of the last ``SMOOTH`` finite losses, else ``None`` (none finite)."""
    finite = [v for _, v in series if math.isfinite(v)][-SMOOTH:]
    return statistics.median(finite) if finite else None


class Seen(NamedTuple):
    """A spike as the per-step losses show it (``spike_seen``)."""

    step: int  # its first step: where the loss went up to the level the spike was found at
    peak_step: int  # the step of the highest loss from there on
    peak: float  # that loss
    before: float | None  # the loss of the step before its first step (None: no such step)


def spike_seen(series: Sequence[tuple[int, float]], spike: tuple[int, float, float, float]) -> Seen:
    """The spike's first step, its per-step peak and the loss just before it, as logged.

    A spike is found on medians of ``SMOOTH`` steps (one odd batch is none), which cross
    the bar up to ``SMOOTH - 1`` steps after the loss went up and sit below its peak; the
    words quote the losses themselves (held-out hunt 126: 0.41, 16.1, 19.9, 2.65, 2.83 at
    steps 49-53 were told "spiked to 2.83 at step 52 ... from 1.12 just before it"). The
    first step is the first of the crossing median's window with a loss at least that
    median (a median is one of its window's losses); the peak, the highest finite loss
    from there on (hunt 96: the median that crossed read 0.677 where the medians rose to
    3.0 later); ``before``, the finite loss of the step before the first step.

    Example::

        >>> series = [(i, 0.4) for i in range(40, 50)] + [(50, 16.1), (51, 19.9), (52, 2.65)]
        >>> spike_seen(series + [(53, 2.83), (54, 2.4)], (52, 2.65, 0.4, 2.3))
        Seen(step=50, peak_step=51, peak=19.9, before=0.4)
        >>> spike_seen([(0, 2.3), (1, 273.0), (2, 2.3)], (1, 273.0, 2.3, 2.3))  # one step
        Seen(step=1, peak_step=1, peak=273.0, before=2.3)
    """
    at, value = spike[0], spike[1]
    finite = [(s, v) for s, v in series if math.isfinite(v)]
    if not finite:
        return Seen(at, at, value, None)
    end = next((i for i, (s, _) in enumerate(finite) if s >= at), len(finite) - 1)
    window = range(max(end - SMOOTH + 1, 0), end + 1)
    first = next((i for i in window if finite[i][1] >= value), end)
    top = max(range(first, len(finite)), key=lambda i: finite[i][1])  # the first highest
    before = finite[first - 1][1] if first else None
    return Seen(finite[first][0], finite[top][0], finite[top][1], before)


def level_before(
    series: Sequence[tuple[int, float]], spike: tuple[int, float, float, float]
) -> float | None:
    """The smoothed loss just before a late ``spike``, else None (an early spike).

    The median of the (up to) ``BASELINE`` finite losses that end ``SMOOTH - 1`` steps
    before the spike's step (the median of 5 that crossed the bar may hold the rise's
    first steps).
    Late: that level is at most ``LATE`` x the start (the loss had halved). None when the
    spike comes before ``2 * SMOOTH - 1`` steps (Adam's first steps, a too-warm start) or
    before the loss had halved.

    Example::

        >>> series = [(i, 2.3) for i in range(1, 11)] + [(i, 0.2) for i in range(11, 31)]
        >>> level_before(series + [(i, 3.0) for i in range(31, 41)], (33, 3.0, 0.2, 2.3))
        0.2
        >>> level_before(series[:3] + [(i, 6.9) for i in range(4, 9)], (6, 6.9, 2.3, 2.3))
    """
    at, _, _, start = spike
    before = [v for s, v in series if s < at and math.isfinite(v)][: -(SMOOTH - 1)]
    if len(before) < SMOOTH:
        return None
    level = statistics.median(before[-BASELINE:])
    return level if level <= LATE * start else None


def recovered(
    series: Sequence[tuple[int, float]],
    below: float = UNLEARNT,
    spike: tuple[int, float, float, float] | None = None,
) -> bool:
    """Whether the latest ``SMOOTH`` finite losses have a median below ``below`` x the start.

    The start is the first loss, as in ``loss_spike``. A spike the run already came back
    from by the time of a log is a transient; a blow-up that leaves the network dead sits
    at the chance-level loss, about its start, hence the margin. After a late ``spike``
    (``level_before``) the median must also be back within ``BACK`` x the level before
    the spike and ``BACK_START`` x the first loss above it (or within ``NOISE`` x the
    losses' ``scatter`` above it): a BatchNorm CNN
    whose Adam rate jumped 30x at step 140 went 0.14 -> 9.7 and sat at 1.54 (11x its
    level before) at the next log, far below its start (2.33) with its val accuracy
    down from 96% to 11%.

    Example::

        >>> recovered([(i, 2.3) for i in range(5)] + [(5 + i, 6.0) for i in range(5)])
        False
        >>> recovered([(i, 2.3) for i in range(5)] + [(5 + i, 0.9) for i in range(5)])
        True
        >>> late = [(i, 2.3) for i in range(1, 11)] + [(i, 0.15) for i in range(11, 31)]
        >>> late += [(31, 9.7), (32, 5.8), (33, 4.9)] + [(i, 1.5) for i in range(34, 44)]
        >>> recovered(late), recovered(late, spike=(33, 4.9, 0.15, 2.3))
        (True, False)
    """
    finite = [v for _, v in series if math.isfinite(v)]
    if len(finite) < 2 * SMOOTH:
        return False
    now = statistics.median(finite[-SMOOTH:])
    level = None if spike is None else level_before(series, spike)
    # judged at a later log (the spike's own log reads a rise, not a way back)
    later = spike is not None and series[-1][0] - spike[0] >= 2 * SMOOTH
    if later and level is not None and now - level > BACK_START * finite[0]:
        return False  # still far above where it was, however noisy the way back
    if level is None or now <= BACK * level:
        return now < below * finite[0]
    return now < below * finite[0] and now - level <= NOISE * scatter(series, spike[0])


def run_up(series: Sequence[tuple[int, float]], until: int, best: float | None = None) -> int:
    """The first step of the loss's rise to a divergence at step ``until``.

    From that step on, every median of ``SMOOTH`` finite losses before ``until`` stays
    above ``RISEN`` x ``best`` (by default the lowest such median); ``until`` itself
    where the last one does not (no rise before it). Units that die in this stretch die
    with the divergence: a warmup to a rate 10x too high lifted a BN CNN's loss from 0.47
    to 0.70 over 40 steps, and a dense layer lost 38% of its units, before the spike.

    Example::

        >>> series = [(i, 1.0) for i in range(1, 21)] + [(i, 2.0) for i in range(21, 31)]
        >>> run_up(series, 31), run_up(series[:20], 21)
        (23, 21)
    """
    finite = [(s, v) for s, v in series if s < until and math.isfinite(v)]
    if len(finite) < SMOOTH:
        return until
    smooth = medians(torch.tensor([v for _, v in finite], dtype=torch.float64), SMOOTH)
    low = float(smooth[SMOOTH - 1 :].min()) if best is None else best
    first = until
    for i in range(len(finite) - 1, SMOOTH - 2, -1):
        if not smooth[i] > RISEN * low:
            break
        first = finite[i][0]
    return first


def still_spiked(
    series: Sequence[tuple[int, float]], spike: tuple[int, float, float, float]
) -> bool:
    """Whether the latest ``SMOOTH`` finite losses are still past ``spike``'s bar.

    Example::

        >>> still_spiked([(i, 5.0) for i in range(5)], (2, 5.0, 2.3, 2.3))
        True
        >>> still_spiked([(i, 3.0) for i in range(5)], (2, 5.0, 2.3, 2.3))  # coming down
        False
    """
    finite = [v for _, v in series if math.isfinite(v)]
    if not finite:
        return False
    now, (_, _, best, start) = statistics.median(finite[-SMOOTH:]), spike
    lost = now - best > LOST_SHARE * max(start - best, 0.0)
    return now > SPIKE_OVER_START * start or (now > SPIKE_OVER_BEST * best and lost)
