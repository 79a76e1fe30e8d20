"""Divergence: spikes of the training loss, and non-finite values.

Nothing here knows about Lightning. From the loss series ``loss_trace.LossTrace``
keeps (one value per step, on the host at a log):

* ``loss_spike``: the loss (median of 5 steps, so one odd batch is not a spike)
  rose above 1.5x where it started, or lost more than half the progress made to
  its best, while at least 3x its best: the optimiser is overshooting;
* ``jump_to_chance``: one step's jump after which the loss sits back at its start,
  read with units dying at the same log;
* ``sudden``: a learnt, steady loss that blew up in one step (a batch, not the rate);
* ``nonfinite_parameters``: where non-finite weights sit.

After a spike (the level before it, whether the run came back): ``recovery.py``. Their
words: the finding (``divergence_words.py``), a transient, a recovery (``recovery_words.py``).

Example::

    >>> steps = list(range(1, 31))
    >>> losses = [2.3] * 5 + [1.0] * 10 + [0.5] * 5 + [4.0] * 10
    >>> loss_spike(list(zip(steps, losses)))
    (23, 4.0, 1.0, 2.3)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_cnnviz.activations.loss_trace import SMOOTH

__all__ = [
    "EVERY_PARAMETER",
    "is_jump",
    "jump_to_chance",
    "loss_spike",
    "medians",
    "nonfinite_parameters",
    "scatter",
    "sudden",
]

EVERY_PARAMETER = "*"  # ``nonfinite_parameters`` where all of them are
# steps per median of the level a spike is measured against (the best, the level before a
# late spike): with mixup, whose batch loss follows the mixing weight drawn, medians of 5
# wander 0.16-0.69 all run and their lowest (0.10-0.14) made 3x of it a "spike"
BASELINE = 3 * SMOOTH
# ...and beyond the loss's own scatter: a rise over the best (a return to the level before
# a late spike) must be NOISE x the median absolute deviation of the SPREAD finite losses
# before it; mixup's batch losses (the mixed targets' entropy) scatter 0.2-0.3 about a level
# of 0.15-0.3, a BN CNN's under Adam 0.02-0.05 about 0.13
NOISE, SPREAD = 4.0, 4 * BASELINE
SPIKE_OVER_START = 1.5  # smoothed loss above 1.5x its start: diverged
SPIKE_OVER_BEST = 3.0  # ... or 3x its best while having lost half the progress made
LOST_SHARE = 0.5
# ... or back above its start having fallen to LEARNT x it: all that was learnt is lost, which
# near chance no 3x of the best can show (hunt 94: a 100x rate jump took a slow learner from
# 1.43 to 2.5, ln 10 = 2.30, val 47% -> 11%, and nothing was said for three events)
LEARNT = 0.7
JUMP = 10.0  # one step's loss 10x where it started: no batch is that much harder
LATE = 0.5  # the smoothed loss before a spike at most half its start: a late spike
RISEN = 1.25  # the smoothed loss this far over its best: on its way up to a divergence
# the smoothed loss before a NaN at most this share of its start, steady: learning, and one
# batch turned it (held out: a NaN pixel in the batch at step 15, the loss falling, was told
# as updates too large); a model at chance under a rate far too high never gets there
FALLEN = 0.8
STEPPED_UP = 5.0  # the loss just before a blow-up this many times its level: it grew first
UNLEARNT = 0.9  # a smoothed loss never below 0.9x its start: nothing learnt (``recovered``'s)


def scatter(series: Sequence[tuple[int, float]], step: int) -> float:
    """Median absolute deviation of the (up to) ``SPREAD`` finite losses before ``step``.

    Example::

        >>> scatter([(i, 0.1 if i % 2 else 0.5) for i in range(1, 80)], 70)
        0.2
    """
    before = [v for s, v in series if s < step and math.isfinite(v)][-SPREAD:]
    if not before:
        return 0.0
    middle = statistics.median(before)
    return statistics.median(abs(v - middle) for v in before)


def sudden(series: Sequence[tuple[int, float]], at: int) -> tuple[int, float] | None:
    """``(step, the loss just before)`` where a learnt, steady loss blew up at once.

    At step ``at`` the loss turned non-finite, or jumped past ``JUMP`` x the start
    (``is_jump``). Learnt: the median of the last ``SMOOTH`` finite losses before it at
    most ``LATE`` x the start (``FALLEN`` x before a NaN or Inf, which no update of a
    learning model brings in one step); steady: that median not above the level of the ``SPREAD``
    losses before them by both ``RISEN`` x and ``NOISE`` x their ``scatter`` (no rise
    to it: a batch's loss under SGD wanders 0.03-0.26 about 0.12, so the lowest median
    of 5 is no level to rise from). A model stuck at chance under a rate far too high
    that overflows later is no such case (an Adam 0.1 run: NaN at step 132), nor a
    warmup lifting the loss for dozens of steps before it.

    Example::

        >>> calm = [(i, 2.3) for i in range(1, 6)] + [(i, 0.9) for i in range(6, 60)]
        >>> sudden(calm + [(60, math.nan)], 60), sudden([(i, 2.3) for i in range(1, 60)], 60)
        ((60, 0.9), None)
        >>> rising = calm + [(i, 0.9 + 0.05 * (i - 59)) for i in range(60, 80)]
        >>> sudden(rising + [(80, math.nan)], 80)  # a rise to it: the updates, not a batch
        >>> sudden(calm + [(60, 27.0), (61, math.nan)], 61)  # a loss weighted 30x first
    """
    finite = [(s, v) for s, v in series if s < at and math.isfinite(v)]
    if len(finite) < 2 * SMOOTH:
        return None
    values = [v for _, v in finite]
    before = statistics.median(values[-SMOOTH:])
    blown = next((v for s, v in series if s == at), math.nan)
    if before > (LATE if math.isfinite(blown) else FALLEN) * values[0]:
        return None
    earlier = values[-SPREAD - SMOOTH : -SMOOTH]
    if len(earlier) >= SMOOTH:
        level = statistics.median(earlier)
        rise = before - level
        if before > RISEN * level and rise > NOISE * scatter(finite, finite[-SMOOTH][0]):
            return None
    if spiked_before(values):
        return None  # it jumped before: an unsteady run, whose updates are the cause
    # the loss stepped up in the step before: its scale grew and the updates with it (hunt
    # 47: a loss weight x30 under SGD, 0.095 -> 2.85 -> 240, told as one batch)
    return None if values[-1] > STEPPED_UP * before else (at, before)


def spiked_before(values: Sequence[float]) -> bool:
    """Whether a loss after the first ``SMOOTH`` rose past the start and 2x its last median.

    Held out: a Conv1d net under SGD 0.3 jumped 0.97 -> 3.33 at step 14, settled, then
    blew up at step 33; told as "one batch or one operation" with the data remedies first.

    Example::

        >>> spiked_before([2.3, 2.0, 1.5, 1.2, 1.0, 0.97, 3.33, 1.0, 0.6])
        True
        >>> spiked_before([2.3, 2.0, 1.5, 1.2, 1.0, 0.97, 1.3, 1.0, 0.6])  # a noisy batch
        False
    """
    return any(
        v > values[0] and v > 2 * statistics.median(values[i - SMOOTH : i])
        for i, v in enumerate(values)
        if i >= SMOOTH
    )


def medians(values: Tensor, width: int) -> Tensor:
    """Running medians: entry ``i`` is that of ``values[i - width + 1 : i + 1]`` (NaN before)."""
    out = torch.full_like(values, math.nan)
    if len(values) >= width:
        out[width - 1 :] = values.unfold(0, width, 1).median(1).values
    return out


def jump_to_chance(
    series: Sequence[tuple[int, float]], since: int = -1
) -> tuple[int, float, float, float] | None:
    """One step's loss over ``SPIKE_OVER_START`` x the start, the loss back at its start now.

    ``(step, that loss, the lowest loss before it, start)``, as ``loss_spike`` gives, or
    None: the first such step after step ``since`` and after the lowest median of
    ``SMOOTH`` losses, where the latest median is at least ``UNLEARNT`` x the start (the
    model back at its chance level, or never off it). Read only with units dying at the
    same log (``TrainingDiagnosis``), the second signal: too large an update kills the
    units and leaves the loss at chance, its smoothed level never over the bar. SGD at lr
    1.0 with momentum: 2.29 -> 3.65 at step 7, back to 2.3 by step 16, 97% of a layer
    dead by step 30; a CyclicLR climbing to 1.0: 2.29 -> 1.42 by step 9, 3.86 and 4.08,
    then 2.3 for good, 81% of a layer dead by step 30. A loss kept at chance by wrong
    labels does not jump so.

    Example::

        >>> losses = [2.29, 2.23, 2.56, 2.18, 2.44, 2.32, 2.35, 3.65, 2.54] + [2.33] * 8
        >>> jump_to_chance(list(enumerate(losses)))
        (7, 3.65, 2.18, 2.29)
        >>> cyclic = [2.29, 2.27, 2.24, 2.17, 2.01, 1.84, 1.42, 3.86, 4.08] + [2.31] * 8
        >>> jump_to_chance(list(enumerate(cyclic)))
        (7, 3.86, 1.42, 2.29)
        >>> jump_to_chance(list(enumerate([2.3, 3.6, 1.2, 1.0, 0.9, 0.8, 0.7])))  # learning
    """
    finite = [(s, v) for s, v in series if math.isfinite(v)]
    if len(finite) < SMOOTH or finite[0][1] <= 0:
        return None
    values = torch.tensor([v for _, v in finite], dtype=torch.float64)
    steps = torch.tensor([s for s, _ in finite])
    start = finite[0][1]
    if float(values[-SMOOTH:].median()) < UNLEARNT * start:
        return None  # learning, or back from it: a transient at most
    lowest = int(medians(values, SMOOTH).nan_to_num(math.inf).argmin())
    after = (torch.arange(len(values)) > lowest - SMOOTH) & (steps > since)
    over = (after & (values > SPIKE_OVER_START * start)).nonzero().flatten()
    if not len(over):
        return None
    at = int(over[0])
    best = float(values[:at].min()) if at else start
    return finite[at][0], float(values[at]), best, start


def is_jump(spike: tuple[int, float, float, float]) -> bool:
    """Whether a spike is one step's blow-up (``JUMP`` x the start), not a smoothed rise."""
    _, value, _, start = spike
    return value > JUMP * start > 0


def loss_spike(
    series: Sequence[tuple[int, float]], since: int = -1
) -> tuple[int, float, float, float] | None:
    """The first spike after step ``since``: ``(step, smoothed loss, best, start)``, else None.

    ``start`` is the first step's loss (the untrained model's; a median of the first
    steps would hide a blow-up at step 2 that never comes back), ``best`` the lowest
    smoothed loss before the step (medians of ``BASELINE`` steps once there are that
    many: the lowest median of 5 of a noisy loss is a lucky run of batches). A spike:
    smoothed loss above ``SPIKE_OVER_START`` x start, or
    above ``SPIKE_OVER_BEST`` x best having lost over ``LOST_SHARE`` of the progress
    (start - best), or above the start from a best of ``LEARNT`` x it or less, and risen
    ``NOISE`` x the losses' ``scatter`` above the best; or one step's
    loss above ``JUMP`` x start (a blow-up the optimiser may hide at once by killing the
    network: the loss then sits at chance). Only finite losses count (``first_nonfinite``
    tells the rest). None for a loss that starts at or below 0.

    Example::

        >>> loss_spike([(1, 2.3), (2, 584.0), (3, 48.9)] + [(i, 2.3) for i in range(4, 9)])
        (2, 584.0, 2.3, 2.3)
        >>> loss_spike([(i, -2.3 - i) for i in range(9)]) is None
        True
        >>> loss_spike([(0, 2.3), (1, 273.0), (2, 2.3)])  # too few for a median: jumps only
        (1, 273.0, 2.3, 2.3)
    """
    finite = [(s, v) for s, v in series if math.isfinite(v)]
    if len(finite) < 2 or finite[0][1] <= 0:
        # the bars are multiples of the start: a loss that starts at or below 0 (a negated
        # cross-entropy at -2.29 falling to -46) has no spike they could measure
        return None
    steps = torch.tensor([s for s, _ in finite])
    values = torch.tensor([v for _, v in finite], dtype=torch.float64)
    start = finite[0][1]  # the untrained model's loss: later blow-ups cannot move it
    jumps = ((steps > since) & (values > JUMP * start)).nonzero().flatten()
    end = int(jumps[0]) if len(jumps) else len(finite)  # a jump ends the search there
    # too few losses for a median: one step's blow-up only (hunt 46: the loss 100x at step
    # 1 under NAdam 0.3 went unseen at the first log, at step 4)
    first = _smoothed_spike(finite, values, since, end) if len(finite) >= SMOOTH else end
    if first < end:
        smooth, best = medians(values, SMOOTH), _best(values)
        return finite[first][0], float(smooth[first]), float(best[first]), start
    if end < len(finite):
        return finite[end][0], finite[end][1], float(values[:end].min()) if end else start, start
    return None


def _best(values: Tensor) -> Tensor:
    """The lowest base before each step: medians of ``BASELINE`` (of ``SMOOTH`` until then)."""
    smooth, long = medians(values, SMOOTH), medians(values, BASELINE)
    base = torch.where(long.isnan(), smooth, long)  # medians of 5 until there are enough steps
    best = torch.full_like(values, math.inf)
    best[SMOOTH:] = base[SMOOTH - 1 : -1].cummin(0).values
    return best


def _smoothed_spike(
    finite: Sequence[tuple[int, float]], values: Tensor, since: int, end: int
) -> int:
    """The index of the first smoothed spike before ``end`` (``loss_spike``'s bars), else end."""
    steps = torch.tensor([s for s, _ in finite])
    start = finite[0][1]
    smooth, best = medians(values, SMOOTH)[:end], _best(values)[:end]
    later = (steps[:end] > since) & best.isfinite()  # from the second median on
    lost = smooth - best > LOST_SHARE * (start - best).clamp_min(0.0)
    over_start = (later & (smooth > SPIKE_OVER_START * start)).nonzero().flatten()
    first = int(over_start[0]) if len(over_start) else end
    unlearnt = (smooth > start) & (best <= LEARNT * start)
    for i in (
        (later & ((smooth > SPIKE_OVER_BEST * best) & lost | unlearnt)).nonzero().flatten().tolist()
    ):
        if i >= first:
            break
        if smooth[i] - best[i] > NOISE * scatter(finite, finite[i][0]):
            return i
    return first


def nonfinite_parameters(named: Sequence[tuple[str, Tensor]]) -> list[str]:
    """Names of the parameters holding a NaN or Inf, in order (one host transfer).

    ``[EVERY_PARAMETER]`` where all of several are: one step on a NaN gradient writes NaN
    into every weight, so the first in order says nothing of where it began (hunt 35: NaN
    written into conv2 by a callback was told "first parameter: `body.0.weight`").

    Example::

        >>> w = torch.ones(2)
        >>> nonfinite_parameters([("a", w), ("b", w / 0 * 0)]), nonfinite_parameters([("a", w)])
        (['b'], [])
        >>> nonfinite_parameters([("a", w / 0 * 0), ("b", w / 0 * 0)])
        ['*']
    """
    if not named:
        return []
    flags = torch.stack([torch.isfinite(p.detach()).all() for _, p in named]).cpu().tolist()
    bad = [name for (name, _), ok in zip(named, flags, strict=True) if not ok]
    return [EVERY_PARAMETER] if len(bad) == len(named) > 1 else bad
