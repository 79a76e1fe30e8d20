"""A BatchNorm mismatch with a cause of its own: a setting raised, the data changed; not a lag.

Nothing here knows about Lightning. A weight decay, learning rate, momentum or dropout
raised mid-run moves the weights (or the batches' statistics) faster than BatchNorm's
running statistics follow: eval mode parts from batch statistics at the next validation,
and a larger BatchNorm momentum does not undo it (held-out hunt 125: AdamW's
`weight_decay` 1e-2 -> 5 at step 128, val 79% -> 10.6% in eval mode against 92% on batch
statistics, told "raise momentum to 0.2"; the decay named two validations later, a 30x
RMSprop rate never). ``bn_levels.bn_mismatch`` tells the setting as the cause, at once.
The settings and their words are ``core.raised_settings``'.

The training data changed during the run do the same (``data_cause``): labels turned
noisy, classes made rare by a sampler. The batches' statistics and the weights follow
the new batches, eval mode on the training images reads what the noisy labels or the
imbalance allow, and the gap to batch statistics is that change, not running statistics
left behind (held-out hunt 125: 50% wrong labels from step 128 told "raise momentum to
0.2" beside the labels). The mismatch is folded into that cause's finding as evidence
(``fold``).

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

import dataclasses
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from lightning_cnnviz.core.raised_settings import (
    lowest_settings,
    raised_setting,
    raised_since,
    rate_raised,
)
from lightning_cnnviz.overfitting.bn_lag import frozen, lags_long
from lightning_cnnviz.overfitting.bn_ranks import gap
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import num

__all__ = [
    "BN_WORDS",
    "beside_words",
    "data_cause",
    "data_changed",
    "fold",
    "raised_cause",
    "raised_now",
]

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


def data_changed(v: Verdict | None) -> bool:
    """Whether ``v`` is a change of the training data during the run.

    Labels turned noisy (``labels_turned``: ``memorisation`` with ``turned``) or classes
    made rare (``class_imbalance`` with ``share_then``, ``made_rare``); a note is none.

    Example::

        >>> e = Evaluation(160, 4)
        >>> data_changed(Verdict("memorisation", e, e, e, {"turned": True}))
        True
        >>> data_changed(Verdict("class_imbalance", e, e, None, {"share_then": None}))
        False
    """
    if v is None or v.severity == "note":
        return False
    return bool(v.figures.get("turned")) or v.figures.get("share_then") is not None


def data_cause(bn: Verdict | None, causes: Sequence[Verdict | None]) -> Verdict | None:
    """The data change of ``causes`` (``data_changed``) that explains the mismatch ``bn``.

    ``None`` where none does, or where the mismatch has a cause of its own: running
    statistics holding NaN/Inf, frozen or as initialised, a setting raised
    (``raised_cause``), or a momentum whose lag lasts (``bn_lag.lags_long``: a momentum
    of 0.001 beside noisy labels keeps eval mode behind whatever the data do).

    Example::

        >>> e = Evaluation(192, 5, bn_momentum=0.1)
        >>> bn = Verdict("bn_mismatch", e, e, None, {"eval_acc": 0.70, "batch_stats_acc": 0.87})
        >>> turned = Verdict("memorisation", e, e, e, {"turned": True})
        >>> data_cause(bn, [None, turned]) is turned
        True
        >>> slow = Evaluation(192, 5, bn_momentum=0.001)
        >>> data_cause(Verdict("bn_mismatch", slow, slow, None, {}), [turned]) is None
        True
    """
    if bn is None or bn.figures.get("nonfinite") or bn.figures.get("raised"):
        return None
    if frozen(bn.detected) or lags_long(bn.detected):
        return None
    return next((c for c in causes if data_changed(c)), None)


def fold(cause: Verdict, bn: Verdict) -> Verdict:
    """``cause`` with the mismatch ``bn`` it explains as evidence (``beside_words``).

    Example::

        >>> e = Evaluation(192, 5)
        >>> bn = Verdict("bn_mismatch", e, e, None, {"eval_acc": 0.70, "batch_stats_acc": 0.87})
        >>> fold(Verdict("memorisation", e, e, e, {"turned": True}), bn).figures["bn_eval_acc"]
        0.7
    """
    eval_acc, bn_acc = bn.figures.get("eval_acc"), bn.figures.get("batch_stats_acc")
    if eval_acc is None or bn_acc is None:  # multi-hot targets: no accuracies to give
        return cause
    figures = {**cause.figures, "bn_eval_acc": eval_acc, "bn_batch_acc": bn_acc}
    return dataclasses.replace(cause, figures=figures)


def beside_words(figures: Mapping[str, Any]) -> str:
    """The folded mismatch (``fold``) in words, else ``""``.

    Example::

        >>> beside_words({"bn_eval_acc": 0.633, "bn_batch_acc": 0.852})[:62]
        ' Eval mode trails batch statistics too (val probe 63.3% vs 85.'
    """
    if figures.get("bn_eval_acc") is None:
        return ""
    return (
        f" Eval mode trails batch statistics too (val probe {num(figures['bn_eval_acc'], True)}"
        f" vs {num(figures['bn_batch_acc'], True)}): BatchNorm's running statistics follow "
        "the changed batches, so a larger BatchNorm `momentum` would not fix it."
    )
