"""When a noisy validation curve has turned past its best: the onset checks the rules share.

Nothing here knows about Lightning or evaluations: each check reads one curve (lower is
better; the rules pass accuracies negated), oldest value first, and says where its best
was and how far the curve now is past it. ``prompt`` confirms a turn one validation
after it from the local noise and a step up; ``episode`` waits for the turn to stand out
of the whole run's noise or to show in its trend. Thresholds and why:
``docs/diagnosis.md``.

Example::

    >>> vals = [1.0, 0.6, 0.4, 0.32, 0.3, 0.301, 0.299, 0.3, 0.298, 0.33, 0.335]
    >>> best, rise, margin = prompt(vals, patience=2, floor=0.015)
    >>> best, round(rise, 4), round(margin, 4)
    (8, 0.0345, 0.015)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["LOCAL", "Z_AGREE", "Z_PROMPT", "Z", "episode", "held_above", "noise", "prompt"]


def noise(values: Sequence[float], window: int = 50) -> float:
    """Robust epoch-to-epoch noise (a standard deviation) of the last ``window`` values.

    Second differences ``a - 2b + c`` cancel a locally straight trend; their median
    ignores outliers and the few large ones a trend still bending adds (the fast early
    drop of a loss: early in a run this overestimates the noise, so a rise must be
    clearer to be reported). For white noise of std ``s``,
    ``median |d2| = 0.6745 * sqrt(6) * s``. The whole run is used: on simulated runs a
    short window (10) misjudged the noise often enough to triple the false alarms, and
    leaving the bending triples out (``a - b > b - c > 0``) made healthy runs fire.
    Fewer than four values: 0 (unknown: the rules' floors apply).

    Example::

        >>> round(noise([1.0, 0.9, 0.8, 0.7]), 6), round(noise([1.0, 1.1, 1.0, 1.1, 1.0]), 3)
        (0.0, 0.121)
    """
    v = list(values)[-window:]
    if len(v) < 4:
        return 0.0
    d2 = [abs(a - 2 * b + c) for a, b, c in zip(v, v[1:], v[2:], strict=False)]
    return 1.4826 * statistics.median(d2) / math.sqrt(6)


def _descent_end(values: Sequence[float]) -> int:
    """The index of the lowest value of the run's first descent (0 if it never fell first).

    A run's curve falls at each validation from its first until its steep start ends:
    the second differences there are its trend bending, not noise (held-out hunt 127: a
    val loss went 2.12, 1.69, 1.06, 0.72 at its best, and that bend alone put the noise
    of its last 8 values at 0.12).

    Example::

        >>> _descent_end([2.12, 1.69, 1.06, 0.72, 0.75, 0.82]), _descent_end([2.3, 2.31, 1.9])
        (3, 0)
    """
    end = 0
    while end + 1 < len(values) and values[end + 1] < values[end]:
        end += 1
    return end


# How far (in noise standard deviations) the smoothed curve must move past its best.
# Measured on simulated runs (docs/diagnosis.md): a trade-off between false alarms on
# long flat noisy plateaus and the delay on slow rises.
Z = 3.0
# The prompt confirmation (``prompt``): several signals agree, so a smaller multiple of
# the *local* noise suffices. Measured on the scenario runs and held-out healthy runs.
Z_PROMPT = 2.0
Z_AGREE = 1.0  # val accuracy's fall when val loss and train accuracy agree
STEP = 4  # values before the latest ones the step up is measured from
LOCAL = 8  # values the local noise is read from: the curve's wiggle now, not its early bend
LARGE = 0.25  # a rise this share above the best: no plateau wanders so far on few values


def _slope(values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against their index."""
    k = len(values)
    mean_x, mean_y = (k - 1) / 2, statistics.fmean(values)
    num = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(values))
    return num / sum((i - mean_x) ** 2 for i in range(k))


def prompt(
    values: Sequence[float],
    patience: int,
    floor: float,
    z: float | None = None,
    step_up: bool = True,
) -> tuple[int, float, float] | None:
    """A turn past the best confirmed one validation after it: several signals agree.

    With ``sigma`` the noise of the last ``LOCAL`` values only (the steep start of a run
    makes the whole-run estimate several times too large, and a curve's wiggle shrinks
    as the train loss nears zero), the smallest of the estimates with and without the
    last ``patience`` values (the turn at the best is itself a large second difference)
    and, where the curve climbed at each validation since the best and the last
    ``patience`` values stand ``LARGE`` above it, from the end of the run's first descent
    on (``_descent_end``: the steep start's bending is no noise):

    * every one of the last ``patience`` values (all after the best) exceeds the best by
      ``floor``, and their mean by ``margin = max(floor, z * sigma)``;
    * the curve is not falling back (the latest value within ``sigma`` of the one before);
    * a step up: their mean exceeds the mean of the up to ``STEP`` values before them
      (from the one before the best on, unless, on such a climb, the best ends the first
      descent and that one stands above them) by ``z`` standard errors, and each of them
      exceeds every one of those values; the slope from the best on is positive.

    ``step_up=False`` (the caller has other signals that agree) replaces the step test
    by: the latest value is the worst of that window. On stationary white-noise
    plateaus this check fires more often than ``episode`` (rates in
    ``docs/diagnosis.md``); a two-validation bump that falls back is turned into a note
    by the detector at the next new low. Returns ``(best index, rise, margin)`` like
    ``episode``.
    """
    v, n, z = list(values), len(values), Z_PROMPT if z is None else z
    if n < patience + 1 or patience < 1:
        return None
    best = min(range(n), key=v.__getitem__)
    if best > n - 1 - patience:
        return None
    recent, local = v[-patience:], min(noise(v, LOCAL), noise(v[:-patience], LOCAL) or math.inf)
    # a steady climb ``LARGE`` above the best: the noise is read past the run's first descent
    # too (its bending is no noise), and where the best ends it, the values before the best
    # are that descent, no level (held-out hunt 127: a rise soon after a steep start was told
    # 3 validations late). Read on so few values, it holds for no smaller rise
    steady = all(a < b for a, b in zip(v[best:], v[best + 1 :], strict=False))
    climb = steady and statistics.fmean(recent) > (1 + LARGE) * v[best] > 0
    start = _descent_end(v) if climb else 0
    local = min(local, noise(v[start:], LOCAL) or math.inf)
    margin, rise = max(floor, z * local), statistics.fmean(recent) - v[best]
    if min(recent) - v[best] <= floor or rise <= margin:
        return None
    if len(recent) > 1 and v[-1] < v[-2] - local:  # falling back: wait for the next one
        return None
    # a step up from the values just before them, beyond what the local noise moves
    descent = 0 < best == start and v[best - 1] > min(recent)  # the one before: still falling
    before = v[max(0, best - (not descent), n - patience - STEP) : n - patience]
    if len(before) < 2:
        return None
    if not step_up:  # other signals agree: the last ones worse than all since the best
        return (
            (best, rise, margin) if statistics.fmean(recent) > max(v[best : n - patience]) else None
        )
    step = statistics.fmean(recent) - statistics.fmean(before)
    if step <= z * local * math.sqrt(1 / patience + 1 / len(before)):
        return None
    if min(recent) <= max(before):  # not above the values before them: a wiggle
        return None
    return (best, rise, margin) if _slope(v[best:]) > 0 else None


def wiggle(values: Sequence[float]) -> float:
    """The largest jump of ``values`` above their running lowest (0 for fewer than two).

    A curve whose noise comes in single-validation spikes (its median second difference,
    ``noise``, ignores them) jumps that far and comes back: a rise no higher may be one
    more of them (``rules.overfitting`` weighs it).

    Example::

        >>> round(wiggle([0.379, 0.451, 0.319, 0.357, 0.336]), 3)
        0.072
    """
    low, jump = math.inf, 0.0
    for value in values:
        jump, low = max(jump, value - low), min(low, value)
    return jump


def episode(
    values: Sequence[float], patience: int, floor: float, known: int = 4
) -> tuple[int, float, float] | None:
    """Where a curve (lower is better) had its best, and how far it is above it now.

    The lowest value of a noisy curve is itself lower than the curve by chance, so the
    bar is the best plus one noise deviation; the latest value and the mean of the last
    ``patience`` values (the smoothed curve now, all after the best) must both exceed it
    by ``margin = max(floor, Z * noise)``; with fewer than ``known`` values (four: the
    noise unknown) it waits. A slow rise is confirmed by its trend instead:
    with five or more values after the best, their least-squares slope significantly
    above zero (``_rising``) and the smoothed rise past ``floor``. Returns
    ``(best index, rise, margin)``.
    """
    v, n = list(values), len(values)
    # the noise must be known (four values): on a floor alone, a BatchNorm CNN under SGD
    # 0.1 whose val loss went 0.193 -> 0.202 -> 0.218 at its first validations (then
    # 0.116, 0.043) was told "overfitting"
    if n < max(patience + 1, known):
        return None
    best = min(range(n), key=v.__getitem__)
    if best > n - 1 - patience:
        return None
    sigma = noise(v)
    margin, bar = max(floor, Z * sigma), v[best] + sigma
    rise = statistics.fmean(v[-patience:]) - bar
    if rise > margin and v[-1] - bar > margin:
        return best, rise, margin
    # a slow rise hides in the noise of single values but not in their trend: the slope of
    # the values after the best significantly above zero, and the smoothed rise past the
    # floor (from the best itself: the slope already says the rise is no wiggle)
    after = v[best + 1 :]
    if len(after) < 5 or sigma <= 0 or statistics.fmean(v[-patience:]) - v[best] <= floor:
        return None
    return (best, rise, margin) if _rising(after, sigma) else None


def held_above(
    values: Sequence[float],
    after: int,
    floor: float,
    low: float | None = None,
    draws: bool = True,
) -> tuple[int, float, float] | None:
    """The last ``after`` values (or more since the best) held above the best.

    Each more than ``low`` above it (default ``floor``), and their median more than
    ``floor``: a step up that stays up, however noisy the plateau it lands on. Where
    ``prompt`` and ``episode`` read it against a noise the run's steep start inflates, this
    reads only that the curve has not come back near its best lately: held out (hunt 26),
    1000 digits on a wide CNN, best 0.212, then 0.246, 0.263, 0.231 (+9%), 0.245 ... never
    back within 9%, was told 8 validations late while one +9% draw kept "every value since
    the best 10% above it" from holding. The caller decides what else must agree. Returns
    ``(best index, rise, floor)`` (``rise``: the mean of the last ``after`` values over the
    best). Their median must also sit half of ``floor`` above the lowest value before the
    best: a converged run's val loss, 0.115-0.125 for 8 validations, drew 0.1026 once and
    went on at 0.163, 0.119, 0.116, which is no rise. ``draws=False``: the caller knows
    the best was no low draw (the model trained far beyond it since), and that is not read.

    Example::

        >>> vals = [1.8, 1.13, 0.61, 0.47, 0.384, 0.365, 0.414, 0.448, 0.407]
        >>> best, rise, _ = held_above(vals, 3, 0.0365)
        >>> best, round(rise, 3), held_above(vals + [0.39], 3, 0.0365)
        (5, 0.058, None)
        >>> held_above([0.474, 0.265, 0.216, 0.212, 0.246, 0.263, 0.231], 3, 0.0212, 0.0106)[0]
        3
        >>> held_above([0.125, 0.115, 0.198, 0.150, 0.1026, 0.163, 0.119, 0.116], 3, 0.0103)
    """
    v, n = list(values), len(values)
    low = floor if low is None else low
    if n < after + 1 or after < 1:
        return None
    best = min(range(n), key=v.__getitem__)
    window = v[-after:]
    if n - 1 - best < after or min(window) - v[best] <= low:
        return None
    if statistics.median(window) - v[best] <= floor:
        return None
    # where the curve now is (a median: one high draw among them is no level) is within
    # half the floor of where it already was before its best: that best was a low draw
    if draws and best and statistics.median(window) - min(v[:best]) <= floor / 2:
        return None
    return best, statistics.fmean(window) - v[best], floor


def _rising(after: Sequence[float], sigma: float) -> bool:
    """Whether the least-squares slope of ``after`` is significantly above zero.

    Against the whole run's noise ``sigma`` (``Z`` standard errors), or, with seven or
    more values, against their own scatter about the line (Student's t with ``k - 2``
    degrees of freedom at the same one-sided level): the whole-run noise is inflated by
    the run's steep start, 3x the plateau's own wiggle in a wide CNN whose val loss crept
    up 0.5% an epoch for ten epochs (found 3 validations late without it).

    Example::

        >>> _rising([0.429, 0.432, 0.436, 0.445, 0.438, 0.436, 0.444, 0.446, 0.449, 0.447], 0.0088)
        True
        >>> _rising([0.384, 0.389, 0.395, 0.388, 0.391, 0.405, 0.373, 0.368, 0.382], 0.0088)
        False
    """
    k = len(after)
    slope, scale = _slope(after), math.sqrt(12 / (k * (k * k - 1)))
    if slope > Z * sigma * scale:
        return True
    if k < 7:
        return False
    mean, middle = statistics.fmean(after), (k - 1) / 2
    scatter = sum((y - mean - slope * (i - middle)) ** 2 for i, y in enumerate(after))
    return slope > _t_critical(Z, k - 2) * math.sqrt(scatter / (k - 2)) * scale


def _t_critical(z: float, dof: int) -> float:
    """Student's t quantile at the normal quantile ``z``'s level (Cornish-Fisher expansion).

    Within 1.5% of the exact value from 5 degrees of freedom on.

    Example::

        >>> round(_t_critical(3.0, 7), 2), round(_t_critical(3.0, 40), 2)  # exact: 4.53, 3.20
        (4.51, 3.2)
    """
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / dof + g2 / dof**2 + g3 / dof**3
