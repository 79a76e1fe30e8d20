"""A BatchNorm mismatch that a setting raised during the run set off: that setting, not a lag.

Nothing here knows about Lightning. A weight decay, learning rate, momentum or dropout
raised mid-run moves the weights (or the batches' statistics) faster than BatchNorm's
running statistics follow: eval mode parts from batch statistics at the next validation,
and a larger BatchNorm momentum does not undo it (held-out hunt 125: AdamW's
`weight_decay` 1e-2 -> 5 at step 128, val 79% -> 10.6% in eval mode against 92% on batch
statistics, told "raise momentum to 0.2"; the decay named two validations later, a 30x
RMSprop rate never). ``bn_levels.bn_mismatch`` tells the setting as the cause, at once.
The settings and their words are ``core.raised_settings``'.

Example::

    >>> row = dict(probe_size=128.0, eval_only=0.0, lr=0.003)
    >>> old = Evaluation(128, 3, probe_acc_val=0.83, probe_acc_bn=0.86, bn_only=0.03,
    ...                  decay_per_step=3e-5, **row)
    >>> new = Evaluation(160, 4, probe_acc_val=0.10, probe_acc_bn=0.92, bn_only=0.82,
    ...                  decay_per_step=0.015, **row)
    >>> since, said = raised_cause([old, new], 1)
    >>> since.step, said[:40]
    (160, 'Weight decay rose from 0.00% to 1.5% of ')
    >>> raised_cause([old, old], 1) is None
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

from lightning_cnnviz.core.raised_settings import (
    lowest_settings,
    raised_setting,
    raised_since,
    rate_raised,
)
from lightning_cnnviz.overfitting.bn_ranks import gap
from lightning_cnnviz.overfitting.evaluation import Evaluation

__all__ = ["BN_WORDS", "raised_cause", "raised_now"]

BN_WORDS = (
    "The weights now move faster than BatchNorm's running statistics follow, so eval mode "
    "normalises with statistics of weights already gone: a larger BatchNorm `momentum` "
    "would not fix it."
)


def raised_now(before: Sequence[Evaluation], now: Evaluation) -> str | None:
    """The setting raised between the evaluations ``before`` and ``now``, in words, else ``None``.

    The decay, momentum and dropout against their lowest before (``raised_since``), the
    learning rate against its highest (``rate_raised``). Not under a warm-up or a cyclic
    schedule (``warmup``, ``cyclic_lr``): the rate and the decay a step (the rate times
    the decay) rise by plan there.

    Example::

        >>> raised_now([Evaluation(32, 0, lr=0.003)], Evaluation(64, 1, lr=0.09))[:47]
        'The learning rate rose from 0.003 to 0.09 (30x)'
        >>> raised_now([Evaluation(32, 0, lr=0.003)], Evaluation(64, 1, lr=0.09, warmup=True))
    """
    if not before:
        return None
    lowest = lowest_settings(before)
    planned = now.warmup or now.cyclic_lr
    if planned:  # the decay a step follows the rate's plan
        lowest["decay_per_step"] = None
    said = raised_since(SimpleNamespace(**lowest), now)
    if said is not None or planned:
        return said
    top = max((e.lr for e in before if e.lr is not None), default=None)
    return raised_setting(None, None, None, rate_raised((top, now.lr)))


def raised_cause(evs: Sequence[Evaluation], streak: int) -> tuple[Evaluation, str] | None:
    """The setting a mismatch of the last ``streak`` of ``evs`` started right after, else ``None``.

    ``(the first evaluation after the raise, the setting in words)``.

    Raised at the evaluation before the streak or within it (first seen there, against
    the evaluations before), and, where the streak was parted before the raise already
    (the run's own lag), the gap wider after it than before: the raise widened it.
    ``evs``: the evaluations with a batch-statistics pass (``bn_levels``' ``parted``).
    """
    start = len(evs) - streak
    for at in range(1, len(evs)):
        said = raised_now(evs[:at], evs[at])
        if said is None:
            continue
        if at < start - 1:
            return None  # raised long before the mismatch: not what set it off
        if at > start and not (gap(evs[at]) or 0.0) > (gap(evs[at - 1]) or 0.0):
            return None  # a lag before it that the raise did not widen
        return evs[at], said
    return None
