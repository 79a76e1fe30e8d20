"""Learning read where dropout is off: the probe's own cross-entropy, in eval mode.

Nothing here knows about Lightning. The training loss is read in training mode: heavy
dropout, strong augmentation, MixUp, label smoothing or stochastic depth keep it high
while the model learns. The monitor's probe pass runs in eval mode at each log (no
dropout, plain cross-entropy on the labels), so its loss falling shows learning going on
that the training loss hides. Held-out hunt 122: ``Dropout(0.9)`` before the last Linear
of a CNN under Adam 1e-3, val 64% -> 89% and the val loss 2.04 -> 0.86 falling at every
validation, while the training loss stayed at 1.65-1.9 (17% below its start): a dense
layer 53% silent was told "learning has stalled ... lower the learning rate", where the
probe's cross-entropy had fallen 2.30 -> 1.39 with 14 of its 16 images right.

A loss with a floor above zero is read by the probe's accuracy (``probe_learnt``): label
smoothing 0.9 on 3 classes holds the training loss at 1.089 or more (ln 3 = 1.099: at most
0.9% below its start) and the probe's cross-entropy near it; the accuracy is what moves.

Example::

    >>> probe_falling([(20, 2.28), (40, 2.13)], [(20, 0.25), (40, 0.44)], 40, classes=10)
    True
    >>> probe_learnt([(20, 0.9375)], 20, classes=3), probe_learnt([(20, 0.5)], 20, classes=3)
    (0.9375, None)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lightning_cnnviz.activations.gradients import FALLING
from lightning_cnnviz.activations.spike_accuracy import learnt, learnt_well

__all__ = ["probe_falling", "probe_learnt", "probe_started"]


def probe_falling(
    losses: Sequence[tuple[int, float]],
    accs: Sequence[tuple[int, float]],
    step: int,
    classes: int | None,
) -> bool:
    """Whether the probe shows learning going on at the log of ``step``, read in eval mode.

    Its cross-entropy at ``step`` (the last of ``losses``, ``(step, loss)`` of the latest
    logs) ``FALLING`` below the lowest of the earlier ones: a new low, not a wobble back
    (a model stuck at some level moves its fixed probe up and down between logs); and its
    accuracy at ``step`` past chance (``spike_accuracy.learnt``): a model at chance may
    read 4 of the 16 probe images right, its loss drifting at ``ln K``. False where either
    was not read at ``step`` (no class labels, or no earlier log to fall from).

    Example::

        >>> losses, accs = [(20, 2.28), (40, 2.13)], [(40, 0.44)]
        >>> probe_falling(losses, accs, 40, 10), probe_falling(losses, [(40, 0.125)], 40, 10)
        (True, False)
        >>> probe_falling([(20, 1.20), (40, 0.90), (60, 0.89)], [(60, 0.8)], 60, 10)  # flat
        False
        >>> probe_falling(losses, accs, 60, 10)  # not read at this log
        False
    """
    if not classes or classes < 2 or len(losses) < 2 or not accs:
        return False
    (at, now), (acc_at, acc) = losses[-1], accs[-1]
    if at != step or acc_at != step or not math.isfinite(now) or not learnt(acc, classes):
        return False
    earlier = [v for _, v in losses[:-1] if math.isfinite(v)]
    return bool(earlier) and now <= (1.0 - FALLING) * min(earlier)


def probe_learnt(
    accs: Sequence[tuple[int, float]], step: int, classes: int | None, at_low: bool = True
) -> float | None:
    """The probe's accuracy at ``step`` where it shows a model that learnt well, else None.

    ``spike_accuracy.learnt_well``: half the way from chance to all right, read in eval
    mode at the log of ``step`` (the last of ``accs``). Learning goes on then, whatever the
    training loss's fall says: a floor above zero holds that loss up (label smoothing,
    soft targets of a teacher, MixUp, noisy labels). Held-out hunt 123: label smoothing
    0.9 on 3 classes, its loss at most 0.9% below its start, val 86% -> 99%: a dense layer
    33% -> 55% silent was told "learning has stalled ... lower the learning rate"; 0.5 on
    5 classes (at most 24% below) and 0.9 on 10 (1.6%) alike. ``at_low``: the training
    loss sits at its lows (``LossLevels.near_low``), as one held up by a floor does; one
    that fell and rose back (units killed by too large an update) is no floor: None.

    Example::

        >>> probe_learnt([(20, 0.9375), (40, 0.625)], 40, 10), probe_learnt([(40, 0.5)], 40, 10)
        (0.625, None)
        >>> probe_learnt([(20, 0.9375)], 40, 10) is None  # not read at this log
        True
        >>> probe_learnt([(40, 0.9375)], 40, 10, at_low=False) is None  # risen from its low
        True
    """
    if not classes or classes < 2 or not accs or not at_low:
        return None
    at, acc = accs[-1]
    return acc if at == step and learnt_well(acc, classes) else None


def probe_started(
    losses: Sequence[tuple[int, float]],
    accs: Sequence[tuple[int, float]],
    step: int,
    classes: int | None,
    at_low: bool = True,
) -> tuple[float, float] | None:
    """``(accuracy, fall below ln K)`` of the probe at ``step`` where it shows learning.

    The probe's cross-entropy read in eval mode against the chance level ``ln K``
    (``1 - loss / ln K``), with its accuracy past chance (``spike_accuracy.learnt``); None
    where either was not read at ``step`` or the accuracy is not past chance. A model at
    chance keeps its held-out probe near ``ln K`` (above it, where it memorises shuffled
    labels): a fall well below it is learning that noisy labels hide from the training
    loss (held-out hunt 127: 60% random labels, the training loss near its start while val
    went 11% -> 87%). ``at_low``: as ``probe_learnt``'s: a training loss that fell and
    rose back (units killed by too large an update) is no floor: None.

    Example::

        >>> acc, fall = probe_started([(40, 2.3), (60, 1.6)], [(60, 0.5)], 60, classes=10)
        >>> acc, round(fall, 2)
        (0.5, 0.31)
        >>> probe_started([(60, 1.6)], [(60, 0.125)], 60, classes=10) is None  # at chance
        True
    """
    if not classes or classes < 2 or not losses or not accs or not at_low:
        return None
    (at, loss), (acc_at, acc) = losses[-1], accs[-1]
    if at != step or acc_at != step or not math.isfinite(loss) or not learnt(acc, classes):
        return None
    return acc, 1.0 - loss / math.log(classes)
