"""Classes made rare during the run: predicted while common, left out once rare.

Nothing here knows about Lightning. A sampler, filter or relabelling set during the run
can make classes rare in the training draws from a step on (``run_data`` reads the shares
again for each new training loader): the model, which predicted them, trades them for
the common classes. Held out (hunt 125): a ``WeightedRandomSampler`` drawing classes 5-9
at 1% from step 128 was told "memorisation: noisy or wrong labels", and an overfitting
"stop at epoch 4", never the imbalance. ``imbalance.class_imbalance`` tells it without
the note a late learner gets (``share_then``), and the curve rules leave the val fall
to it (``held_common``).

Example::

    >>> row = dict(classes=4.0, balanced_acc_val=0.9)
    >>> then = Evaluation(20, 1, class_shares_train=[0.25] * 4, ignored=[], **row)
    >>> now = Evaluation(40, 2, class_shares_train=[0.33, 0.33, 0.33, 0.01], ignored=[3], **row)
    >>> share_then([then, now], now, now, 20)
    0.25
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning_cnnviz.overfitting import class_fading
from lightning_cnnviz.overfitting.chance_levels import chance_classes
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.verdict import Verdict

__all__ = ["RARE", "held_common", "rare_classes", "share_then"]

RARE = 0.5  # a class at most this times the uniform share 1/K in the draws is rare (``imbalance``)


def rare_classes(e: Evaluation) -> list[int] | None:
    """The classes at most ``RARE`` x the uniform share of ``e``'s training draws.

    ``None`` where the shares were not read.

    Example::

        >>> rare_classes(Evaluation(0, 0, classes=3.0, class_shares_train=[0.6, 0.38, 0.02]))
        [2]
    """
    shares, k = e.class_shares_train, chance_classes(e)
    if shares is None or not k:
        return None
    return [c for c, share in enumerate(shares) if share <= RARE / k]


def share_then(
    history: Sequence[Evaluation], since: Evaluation, now: Evaluation, predicted: int | None
) -> float | None:
    """The left-out classes' least training share when last read before ``since``, if not rare.

    ``predicted``: the step at which the model last recognised them (``imbalance``). Each of
    ``now``'s left-out classes rare in the draws now (``rare_classes``) and above ``RARE`` x
    the uniform share at the last evaluation up to ``predicted`` whose shares were read:
    the draws changed since. ``None`` otherwise (never read then: a long tail's rare class
    recognised once stays a late learner).
    """
    left, rare = set(now.ignored or ()), rare_classes(now)
    if predicted is None or not left or rare is None or not left <= set(rare):
        return None
    read = [e for e in history if e.step <= predicted and e.step < since.step
            and e.class_shares_train is not None and rare_classes(e) is not None]  # fmt: skip
    if not read or left & set(rare_classes(read[-1]) or ()):
        return None
    return min(read[-1].class_shares_train[c] for c in left)  # type: ignore[index]


def held_common(history: Sequence[Evaluation], verdict: Verdict) -> bool:
    """Whether ``verdict``'s rare classes were made rare during the run, the common ones held.

    Left-out classes predicted before (``predicted_at``) and rare in the training draws
    now: the model trades them for the common classes, so the balanced val probe loses
    accuracy and gains loss while the train accuracy on the new draws climbs, which the
    curve rules read as memorisation. Theirs where the classes common in the draws hold
    their recall since (``class_fading.others_held``).

    Example::

        >>> row = dict(class_shares_train=[0.33, 0.33, 0.33, 0.01], classes=4.0)
        >>> before = [Evaluation(10 * i, i, recalls_val=[0.9, 0.9, 0.9, 0.8], **row)
        ...           for i in (1, 2)]
        >>> now = Evaluation(30, 3, recalls_val=[0.95, 0.9, 0.9, 0.0], **row)
        >>> v = Verdict("class_imbalance", now, now, None, {"ignored": [3], "predicted_at": 20})
        >>> held_common([*before, now], v)
        True
        >>> unknown = Verdict("class_imbalance", now, now, None, {"ignored": [3]})
        >>> held_common([*before, now], unknown)  # never predicted: a late learner
        False
    """
    now, at = history[-1], verdict.figures.get("predicted_at")
    rare = rare_classes(now)
    if at is None or not rare or not set(verdict.figures.get("ignored") or ()) <= set(rare):
        return False
    before = [e for e in history if e.step <= at]
    return class_fading.others_held(now, rare, before)
