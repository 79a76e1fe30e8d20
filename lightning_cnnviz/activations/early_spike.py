"""After a blow-up of the first steps, before the loss had learnt anything.

Nothing here knows about Lightning. Beside ``recovery.py`` (the level before a late
spike, whether the run came back), from the same loss series, where the spike left
nothing to come back to but the start:

* ``coming_back``: on the way back below the start, not there yet;
* ``crawling``: back below the start from a one-step blow-up, but not by ``RELEARNT``
  (no recovery: the run has learnt little since), at a rate not ``cooled`` since the
  blow-up; where it has, ``past_chance`` says the run is back;
* ``left_at_start``: back at the start and sitting there, level: a network the spike
  left at its chance loss;
* ``jumped_at_start``: a one-step jump in a run that never learnt, under the bars
  ``loss_spike`` and ``divergence.jump_to_chance`` read (a hot first step).

Example::

    >>> blown = [(0, 2.32), (1, 179.0)] + [(i, 2.3) for i in range(2, 12)]
    >>> coming_back(blown), crawling(blown, (1, 179.0, 2.32, 2.32))
    (False, True)
    >>> left_at_start(blown, (1, 179.0, 2.32, 2.32))
    True
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import torch

from lightning_cnnviz.activations.divergence import SPIKE_OVER_START, UNLEARNT, is_jump, medians
from lightning_cnnviz.activations.loss_trace import SMOOTH
from lightning_cnnviz.activations.recovery import level_before, loss_now

__all__ = [
    "COOLED",
    "FALLING_BACK",
    "LEVEL",
    "RELEARNT",
    "SAT",
    "blown_from_start",
    "coming_back",
    "cooled",
    "crawling",
    "jumped_at_start",
    "left_at_start",
    "past_chance",
]

# a blow-up of the first steps recovered: the loss a quarter below its start at least.
# Held out (held-out hunt 118): mobilenet_v2 under Adam 0.3 went 2.32 -> 179 at step 1
# and crawled back to 0.83-0.90x its start (val 13-20%, 76% at Adam 2e-3), told
# "recovered"; a Conv1d BN net under RMSprop 0.3 sat at 0.92-1.05x for 100 steps (27-52%
# val). Healthy runs were at 0.21-0.48x (Conv1d BN nets under Adam 0.5), 0.38x (resnet18,
# SGD 0.05) and 0.72x (hunt 67: Adagrad 0.02, falling fast, 96% val later) when told back
RELEARNT = 0.75

# a rate in force this many times below the one that blew the loss up: not the rate it
# crawls at (held-out hunt 121: SGD's first step at 40x and 80x its rate, then a warm-up
# to 0.02, on MNIST with half the labels noise: 54 at step 1, back to 0.83x its start by
# step 120 and to 87% clean val, its noise floor 0.73x the start; told "0.02 is too high
# to learn at", the rate the same run learns at without the hot step)
COOLED = 3.0

# the loss falling back from an early spike: its latest median at most half the median
# before it (a network the spike left dead sits at its chance loss, level; medians of 5
# of a loss with +-30% batch noise falling 15% per 5 steps read down to 0.7x)
FALLING_BACK = 0.5

# a network a spike left at its chance loss: its latest SAT losses past the spike all about
# the start, never below UNLEARNT x it, the median of the later half at least LEVEL x
# the earlier's (still coming down to the start, 5.7 -> 4.7 over 10 steps, is no level)
SAT, LEVEL = 10, 0.97


def blown_from_start(
    series: Sequence[tuple[int, float]], spike: tuple[int, float, float, float]
) -> bool:
    """Whether ``spike`` is a one-step blow-up (``is_jump``) before the loss had learnt.

    Nothing learnt: no ``level_before`` it, so the start is all there is to come back to.

    Example::

        >>> blown_from_start([(0, 2.32), (1, 179.0), (2, 2.3)], (1, 179.0, 2.32, 2.32))
        True
    """
    return is_jump(spike) and level_before(series, spike) is None


def cooled(rates: tuple[float, float] | None) -> bool:
    """Whether the rate now is ``COOLED`` x below the rate at a blow-up, ``(then, now)``.

    Example::

        >>> cooled((0.8, 0.02)), cooled((0.3, 0.3)), cooled(None)
        (True, False, False)
    """
    return rates is not None and 0 < rates[1] * COOLED <= rates[0]


def crawling(
    series: Sequence[tuple[int, float]],
    spike: tuple[int, float, float, float],
    rates: tuple[float, float] | None = None,
) -> bool:
    """Whether the loss crawls after a blow-up of the first steps, at the rate that blew it up.

    Crawls: not ``RELEARNT`` x the start. A one-step blow-up (``is_jump``) before the
    loss had learnt anything (no ``level_before``) leaves nothing to come back to but the
    start, and an untrained model sits about there: back below it by a few percent (the
    ``UNLEARNT`` margin ``recovered`` asks is 10%) is no sign of learning at a normal pace
    again. The caller may accept a probe accuracy clearly above chance instead.

    ``rates``: ``(the rate at the blow-up, the rate now)``. A rate now ``COOLED`` x below
    the one that blew the loss up (a hot first step, a warm-up restarted) is not the rate
    that keeps it from learning, and how far below its start a loss learns to says
    nothing on a hard task (label noise puts its floor near the start): no crawl there.
    Where the rate is unchanged the loss cannot tell: a mobilenet_v2 at Adam 0.3 went
    2.32 -> 179 and was falling again (2.26 -> 1.98 over steps 90-120) at 20% val against
    76% at 2e-3 (held-out hunt 118).

    Example::

        >>> series = [(0, 2.32), (1, 179.0)] + [(i, 2.3) for i in range(2, 110)]
        >>> series += [(i, 2.05) for i in range(110, 121)]
        >>> spike = (1, 179.0, 2.32, 2.32)
        >>> crawling(series, spike), crawling(series, spike, (0.3, 0.3))  # the rate held
        (True, True)
        >>> crawling(series[:-11] + [(i, 0.3) for i in range(110, 121)], spike)
        False
        >>> crawling(series, spike, (0.8, 0.02))  # a hot first step, cooled since
        False
    """
    now = loss_now(series)
    if now is None or not blown_from_start(series, spike) or cooled(rates):
        return False
    return now > RELEARNT * spike[3]


def past_chance(
    series: Sequence[tuple[int, float]], spike: tuple[int, float, float, float], k: int | None
) -> bool:
    """Whether the loss now is ``UNLEARNT`` x below the start and ``ln K``, whichever is lower.

    What says a blow-up's network learns again where ``crawling`` cannot (the rate that
    blew it up ``cooled`` since): a BN CNN whose first step ran at 40x started at 2.61,
    sat at 2.30 = ln 10 after it (0.88x the start) with 78% of a layer dead. ``k``: the
    number of classes, where known (else the start alone).

    Example::

        >>> blown = [(0, 2.61), (1, 87.5)] + [(i, 2.3) for i in range(2, 40)]
        >>> spike = (1, 87.5, 2.61, 2.61)
        >>> learns = blown + [(i, 2.0) for i in range(40, 45)]
        >>> past_chance(blown, spike, 10), past_chance(learns, spike, 10)
        (False, True)
    """
    now, start = loss_now(series), spike[3]
    bar = min(start, math.log(k)) if k is not None and k >= 2 else start
    return now is not None and now < UNLEARNT * bar


def coming_back(series: Sequence[tuple[int, float]], since: int | None = None) -> bool:
    """Whether the loss is on its way back from an early spike, not yet ``recovered``.

    The median of the latest ``SMOOTH`` finite losses below the start and the latest one
    below ``UNLEARNT`` x the start: a network that the spike left dead sits at its chance
    loss, about the start, batch after batch. Held out: a 5-class CNN on 64x64 images
    under Adam 1e-2 went 1.59 -> 59.6 at step 1, was back at 1.59 by step 3 and at 0.98
    by step 9 (median 1.44, 0.91x the start); it got a `divergence` problem at step 10,
    recovered by step 20.

    Or, after a spike at step ``since``, still well above the start but falling fast: the
    latest median at most ``FALLING_BACK`` x the one before it, both after the spike,
    and each of the latest losses below each before them
    (hunt 67: Adagrad at 0.02 went 2.32 -> 70.3 at step 1 and was at 3.1 by step 11,
    below its start by step 14 and at 96% val later; a network left dead sits level).

    Example::

        >>> back = [(1, 1.59), (2, 59.6), (3, 10.9), (4, 1.59), (5, 1.6), (6, 1.57)]
        >>> back += [(7, 1.55), (8, 1.44), (9, 1.27), (10, 0.98)]
        >>> coming_back(back), coming_back(back[:-1] + [(10, 1.6)])
        (True, False)
        >>> down = [(0, 2.3), (1, 70.0), (2, 17.0), (3, 15.0), (4, 18.0), (5, 11.0)]
        >>> down += [(6, 15.0), (7, 6.6), (8, 5.3), (9, 4.3), (10, 4.9), (11, 3.1)]
        >>> coming_back(down, since=1), coming_back(down[:7] + [(i, 2.3) for i in range(7, 12)], 1)
        (True, False)
    """
    finite = [v for _, v in series if math.isfinite(v)]
    if len(finite) < 2 * SMOOTH:
        return False
    start, now = finite[0], statistics.median(finite[-SMOOTH:])
    if now < start and finite[-1] < UNLEARNT * start:
        return True
    after = [v for s, v in series if since is not None and s > since and math.isfinite(v)]
    if len(after) < 2 * SMOOTH or now <= start / UNLEARNT:
        return False  # (back about its start: at chance, or learning it again)
    latest, before = after[-SMOOTH:], after[-2 * SMOOTH : -SMOOTH]
    # every latest loss below every one before them: a fall, not a bouncing loss (Adam at
    # 0.1 read 67, 87, 66, 57, 8 then 3.6, 13, 71, 22, 36: its medians fell as much)
    return now <= FALLING_BACK * statistics.median(before) and max(latest) < min(before)


def left_at_start(
    series: Sequence[tuple[int, float]], spike: tuple[int, float, float, float]
) -> bool:
    """Whether the loss sits at its start after an early spike, level, for ``SAT`` steps.

    Each of the latest ``SAT`` finite losses after the spike's step over ``UNLEARNT`` x
    the start (no batch learnt) and under the spike's bar, their median within
    ``1 / UNLEARNT`` of the start, the later half's median at least ``LEVEL`` x the
    earlier's. Neither back below the start nor still spiked, so a spike waited for would
    wait for ever: held out (held-out hunt 120), a no-norm CNN on 100 classes whose rate
    was 20x for its first step went 4.6 -> 14-33, came back to 4.6 by step 20 and sat
    there for 360 steps, 50-58% of two layers dead, with no divergence told.

    Example::

        >>> blown = [(0, 4.6), (1, 22.0), (2, 21.4), (3, 19.3), (4, 15.0), (5, 15.1)]
        >>> down = [(i, 4.6 + 0.1 * (16 - i)) for i in range(6, 16)]  # still coming down
        >>> flat = [(i, 4.61) for i in range(16, 26)]
        >>> spike = (5, 15.1, 4.6, 4.6)
        >>> left_at_start(blown + down, spike), left_at_start(blown + down + flat, spike)
        (False, True)
    """
    at, _, _, start = spike
    after = [v for s, v in series if s > at and math.isfinite(v)][-SAT:]
    if len(after) < SAT or start <= 0:
        return False
    earlier, later = statistics.median(after[: SAT // 2]), statistics.median(after[SAT // 2 :])
    about = UNLEARNT * start < min(after) and max(after) < SPIKE_OVER_START * start
    return about and statistics.median(after) <= start / UNLEARNT and later >= LEVEL * earlier


def jumped_at_start(
    series: Sequence[tuple[int, float]], since: int = -1
) -> tuple[int, float, float, float] | None:
    """A one-step jump over ``SPIKE_OVER_START`` x the start in a run that never learnt.

    ``(step, that loss, the lowest loss before it, start)`` of the first such step after
    ``since``, else None. Never learnt: no median of ``SMOOTH`` finite losses ever below
    ``UNLEARNT`` x the start.
    ``divergence.jump_to_chance`` reads a jump after the lowest median; a hot first step
    comes before it, the loss then a little above or about its start for good (held-out
    hunt 123: SGD's first two steps at 150x, 2.29 -> 13.07 at step 1 and 2.45-2.9 since,
    a conv layer 100% dead by step 20, told "learning goes on (the loss fell 20%)"; Adam
    1e-2 on 100 classes, 4.64 -> 9.24 at step 1, at ln 100 since, two layers silenced).
    Read with units dying (``TrainingDiagnosis``) and confirmed a log later
    (``left_at_start``): Adam 1e-2 on noisy MNIST jumped 2.28 -> 3.78 at step 1, lost 97%
    of a layer by step 20 at 0.97x its start, then learnt (85% val).

    Example::

        >>> hot = [2.29, 13.07, 2.88, 3.35, 3.29, 3.27, 3.17, 2.94, 2.71, 2.8] + [2.5] * 10
        >>> jumped_at_start(list(enumerate(hot)))
        (1, 13.07, 2.29, 2.29)
        >>> jumped_at_start(list(enumerate(hot[:10] + [1.9] * 10)))  # learning since
        >>> jumped_at_start(list(enumerate([2.3] * 20)))  # at chance, no jump: the data's
    """
    finite = [(s, v) for s, v in series if math.isfinite(v)]
    if len(finite) < 2 * SMOOTH or finite[0][1] <= 0:
        return None
    start = finite[0][1]
    smooth = medians(torch.tensor([v for _, v in finite], dtype=torch.float64), SMOOTH)
    if float(smooth[SMOOTH - 1 :].min()) < UNLEARNT * start:
        return None  # learnt at some point: ``jump_to_chance``'s, or no blow-up at all
    at = next(
        (i for i, (s, v) in enumerate(finite) if s > since and v > SPIKE_OVER_START * start), None
    )
    if at is None:
        return None
    return finite[at][0], finite[at][1], min(v for _, v in finite[: at or 1]), start
