"""One-step changes of a learnt loss at an unchanged rate: not the optimiser's doing.

Nothing here knows about Lightning. Updates that grew too large make a loss climb (or
blow up); a learnt, steady loss that changes level in one step and stays there changed
because something else did at that step:

* ``to_chance_at_once``: to its chance level (the model lost what it learnt: weights
  zeroed or re-initialised, a checkpoint loaded);
* ``step_up``: to a level it then holds or leaves downwards (the training batches got
  harder: noisier labels, corrupted inputs, another loss).

``divergence_causes.divergence_cause`` names them.

Example::

    >>> calm = [(i, 2.3) for i in range(1, 6)] + [(i, 0.3) for i in range(6, 64)]
    >>> step_up(calm + [(64, 4.5)] + [(i, 1.9) for i in range(65, 100)], 66)
    (64, 0.3, 4.5, 1.9)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from lightning_cnnviz.activations.divergence import LATE, sudden
from lightning_cnnviz.activations.loss_trace import SMOOTH
from lightning_cnnviz.core.chance import at_chance

__all__ = ["STEP", "step_up", "to_chance_at_once"]

STEP = 3.0  # one step's loss this many times the steady level before it: a step up


def to_chance_at_once(
    series: Sequence[tuple[int, float]], spike_step: int, classes: int | None
) -> tuple[int, float, float, int] | None:
    """``(step, the loss just before, the loss then, K)``: a learnt loss at chance at once.

    The first loss at its chance level ``ln classes`` (``core.chance.at_chance``) in the
    ``SMOOTH`` steps up to a spike, after a learnt, steady loss (``sudden``): in one step
    the model's outputs became those of a model that learnt nothing, which one update at
    an unchanged rate does not do (held out, hunt 23: a layer zeroed at step 80 under Adam
    1e-3, loss 0.26 -> 2.30 = ln 10, told "the optimiser overshoots, lower the rate").

    Example::

        >>> calm = [(i, 2.3) for i in range(1, 6)] + [(i, 0.3) for i in range(6, 80)]
        >>> to_chance_at_once(calm + [(80, 2.30), (81, 1.9)], 81, 10)
        (80, 0.3, 2.3, 10)
        >>> to_chance_at_once(calm + [(80, 0.9), (81, 1.6), (82, 2.3)], 82, 10)  # it climbed
    """
    if classes is None or classes < 2:
        return None
    previous = math.nan
    for step, value in series:
        if spike_step - SMOOTH <= step <= spike_step and at_chance(value, classes):
            found = sudden(series, step)
            if found is None or not previous <= LATE * math.log(classes):  # on its way up
                return None
            return step, found[1], value, classes
        previous = value if math.isfinite(value) else previous
    return None


def step_up(
    series: Sequence[tuple[int, float]], spike_step: int
) -> tuple[int, float, float, float] | None:
    """``(step, the loss before, the loss then, the loss now)``: a one-step rise that holds.

    The first loss ``STEP`` x or more over a learnt, steady level (``sudden``) in the
    ``2 * SMOOTH`` steps up to a spike (hunt 93: noise switched on at step 140 took the
    loss 0.16 -> 1.6, 2.8, 1.1, 0.7, 1.0, 2.0: the median crossed the bar at step 147),
    the loss just before it not risen yet (2x the level or less, or ``STEP`` x under the
    step's: held-out hunt 125, a batch at 0.118 beside a level of 0.051 before a 6.2 at
    step 48, 50% wrong labels from then on, hid the step), and the median of
    the last ``SMOOTH`` losses no higher than that of the first ``SMOOTH`` from it: the
    loss stepped to a new level and has not climbed since, as a change of the training
    batches gives (held out, hunt 23: 50% of the labels random from step 64 under Adam
    1e-3, loss 0.3 -> 4.5 -> 1.9 for the rest of the run, told "the optimiser overshoots").
    Updates too large climb, or blow up and come back. One hard batch whose next step is
    back at the level is no step (hunt 91: a batch at 0.54 three steps before labels
    remapped at step 150, 0.15 -> 10.3, hid the step, told "updates too large").

    Example::

        >>> calm = [(i, 2.3) for i in range(1, 6)] + [(i, 0.3) for i in range(6, 64)]
        >>> climb = [(64, 1.0)] + [(i, 1.0 + 0.1 * (i - 64)) for i in range(65, 100)]
        >>> step_up(calm + climb, 66)  # not one step, and climbing
        >>> hard = calm + [(64, 1.2), (65, 0.3), (66, 9.0)] + [(i, 1.9) for i in range(67, 100)]
        >>> step_up(hard, 68)  # the batch at step 64 alone: the step is at 66
        (66, 0.3, 9.0, 1.9)
        >>> noisy = calm[:-1] + [(63, 0.7), (64, 6.2)] + [(i, 1.9) for i in range(65, 100)]
        >>> step_up(noisy, 66)  # one batch at 2x the level before a 20x step: still a step
        (64, 0.3, 6.2, 1.9)
    """
    finite = [(s, v) for s, v in series if math.isfinite(v)]
    for i, (step, value) in enumerate(finite):
        if step < spike_step - 2 * SMOOTH or step > spike_step or i == 0:
            continue  # (a noisy rise's median crosses the bar up to 2 SMOOTH steps on)
        found = sudden(finite, step)
        if found is None or value < STEP * found[1]:
            continue
        if i + 1 < len(finite) and finite[i + 1][1] < STEP * found[1]:
            continue  # one hard batch, the next back at the level: no step (hunt 91)
        if finite[i - 1][1] > 2 * found[1] and value < STEP * finite[i - 1][1]:
            return None  # it had begun to rise before, and rose on from there: a climb
        after = [v for _, v in finite[i:]]
        if len(after) < 2 * SMOOTH:
            return None
        now = statistics.median(after[-SMOOTH:])
        if now > statistics.median(after[:SMOOTH]):
            return None  # climbing on: the updates
        return step, found[1], value, now
    return None
