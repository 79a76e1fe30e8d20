"""Whether the model clearly learnt: its val probe clearly past chance, now or before.

Nothing here knows about Lightning. ``levels.py`` reads a collapse (not learning after the
model had learnt) from ``learnt_before``; ``chance_levels.py`` says where chance is.

Example::

    >>> e = Evaluation(60, 1, probe_acc_val=0.6, probe_loss_val=1.2, probe_size=128.0,
    ...                classes=10.0)
    >>> clearly_learnt(e), learnt_before([e])
    (True, True)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from lightning_cnnviz.overfitting.chance_levels import (
    BELOW_CHANCE_LOSS,
    chance_band,
    chance_classes,
    near_uniform,
)
from lightning_cnnviz.overfitting.evaluation import Evaluation

__all__ = ["clearly_learnt", "learnt_before"]


def clearly_learnt(e: Evaluation, uniform: bool = False, by_loss: bool = True) -> bool:
    """Whether the val probe is clearly past chance: twice as far above it as the band reaches.

    Six binomial standard errors (``chance_band`` allows three), or a probe loss below
    ``BELOW_CHANCE_LOSS`` x ``ln K``, which no prediction that ignores the image reaches.
    Not from accuracy alone where the outputs are near uniform (``near_uniform``), unless
    ``uniform``: their argmax turns with a small shift of the outputs (hunt 98: a slow
    binary learner read 78% once at confidence 0.51, then the majority share while its
    loss kept falling, was told "not learning after a collapse" with labels shuffled as
    the cause); ``learnt_before`` reads such outputs past the bar twice in a row.
    ``by_loss=False``: by accuracy alone (a loss a little below chance is no accuracy
    clearly past it: held-out hunt 118, 0.9 ln 10 at 20% val).

    Example::

        >>> e = Evaluation(epoch=0, step=3, classes=10, probe_size=128, probe_acc_val=0.188)
        >>> clearly_learnt(e), clearly_learnt(Evaluation(0, 3, classes=10, probe_size=128,
        ...                                              probe_acc_val=0.4))
        (False, True)
        >>> clearly_learnt(Evaluation(0, 3, classes=1000, label_classes=10, probe_size=128,
        ...                           probe_acc_val=0.1, probe_loss_val=2.3))  # ln 10: chance
        False
    """
    if e.classes is None or e.classes < 2 or e.probe_acc_val is None:
        return False
    k = chance_classes(e)  # a 1000-output head at ln 10 learnt the labels' set, not them
    loss = e.probe_loss_val if by_loss else None
    if loss is not None and loss < BELOW_CHANCE_LOSS * math.log(k):
        return True
    past = e.probe_acc_val > 2 * chance_band(k, int(e.probe_size or 0)) - 1 / k
    return past and (uniform or not near_uniform(e))


def learnt_before(before: Sequence[Evaluation]) -> bool:
    """Whether the model had clearly learnt at one of ``before``'s evaluations.

    Outputs near uniform count by their accuracy where it was past the bar at two
    evaluations in a row: a bounded head (``tanh(logits) / 15``) learns to 70% at
    confidence 0.19 of 10 classes (hunt 99: a collapse after it told "from the start"),
    while a slow learner's outputs near 0.5 turn past it once and back (hunt 98).

    Example::

        >>> row = dict(classes=2.0, probe_size=128.0, probe_loss_val=0.686, conf_val=0.51)
        >>> once = [Evaluation(s, 0, probe_acc_val=a, **row) for s, a in ((25, 0.78), (50, 0.5))]
        >>> twice = [Evaluation(s, 0, probe_acc_val=a, **row) for s, a in ((25, 0.78), (50, 0.8))]
        >>> learnt_before(once), learnt_before(twice)
        (False, True)
    """
    if any(clearly_learnt(e) for e in before):
        return True
    past = [clearly_learnt(e, uniform=True) for e in before]
    return any(a and b for a, b in itertools.pairwise(past))
