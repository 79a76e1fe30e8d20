"""A class learnt, then unlearnt while the other classes hold: the run stopped teaching it.

Nothing here knows about Lightning. A class dropped from the sampler, given a ``weight=`` of
0 or an ``ignore_index`` during the run fades over several validations: its val recall
falls (99% -> 78% -> 46% -> ... -> 0%) while the other classes hold, and its images, taken
ever more surely for another class, raise the val loss. Held out (hunt 57): a Conv1d net
given ``ignore_index=4`` at step 300 was told "overfitting, stop at epoch 2" at 380 and the
class left out (recall 10% or less, ``imbalance.py``) only at 560; a Conv3d net whose
sampler dropped class 2 the same. ``faded`` reads it from each class's recall on the
val probe (``Evaluation.recalls_val``) and ``imbalance.class_imbalance`` tells it.

Example::

    >>> row = dict(balanced_acc_val=0.95, class_images_val=[40, 40, 40])
    >>> seen = [Evaluation(100 * i, i, recalls_val=[0.95, r, 0.95], **row)
    ...         for i, r in enumerate((0.9, 1.0, 0.95, 0.5, 0.3))]
    >>> fading(seen[:4]), faded(seen)["faded"]
    ({1: (0.95, 200)}, [[1, 0.95, 200, 0.3]])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from lightning_cnnviz.overfitting.evaluation import Evaluation

__all__ = [
    "FADE",
    "GONE",
    "HELD",
    "LEARNT",
    "SURE",
    "collapsed",
    "faded",
    "fading",
    "others_held",
    "recovered",
]

FADE = 0.3  # a class's val recall this far below its best since the model learnt ...
LEARNT = 0.8  # ... a best of this or more, at an evaluation where the model had learnt
MODEL_LEARNT = 0.5  # (a balanced val accuracy this high or more, and halfway from chance)
MIN_BEFORE = 3  # ... at this many evaluations before the fade
SURE = 3.0  # ... and this many binomial standard errors of its probe images below it
LAST_SURE = 2.0  # ... the latest reading alone this many below it (hunt 63: 7% then 8/10)
HELD = 0.05  # ... while the other classes' mean recall is at most this below theirs then
SWING_WINDOW = 10  # evaluations a run's class recall swing is read over (``_swing``)
OTHERS = 0.7  # ... and this or more: a model that keeps the others (``untaught.OTHERS_LEARNT``)
GONE = 0.05  # a class's val recall at most this at each of the last evaluations: it is gone
GONE_AFTER = 2  # ... after this many evaluations where the model had learnt


def _sure(best: float, now: float, images: int, span: int, swing: float, z: float = SURE) -> bool:
    """Whether a recall ``best`` (one evaluation) -> ``now`` (``images``, ``span`` of them) is real.

    ``z`` (``SURE``) standard errors of the difference of two readings, the best's on one
    evaluation's images: of two binomial shares at their mean recall (13 images of a class,
    a 128-image probe of 10 classes, at 0.85 move by 0.1 from chance alone, and the best of
    many evaluations is a lucky one), or from ``swing``, one reading's spread in this run
    (``_swing``), where that is more.
    """
    p, one = (best + now) / 2, max(images / span, 1.0)
    binomial = math.sqrt(max(p * (1 - p), 0.0) * (1 / one + 1 / max(images, 1)))
    return best - now >= z * max(binomial, swing * math.sqrt(1 + 1 / span))


def _swing(before: Sequence[Evaluation]) -> float:
    """One class recall reading's spread in this run: from its moves between validations.

    The mean absolute change of every class's recall from one evaluation to the next over
    the last ``SWING_WINDOW`` (a normal spread ``s`` moves by ``1.13 s`` on average). A run
    whose classes swing hard between validations is no stable model losing one class:
    held out (hunt 62), a BatchNorm net at SGD 0.2 validated every 10 steps had its classes
    at 0-100% from one validation to the next (val accuracy 56-95%), told "class 8 fading".
    """
    window = before[-SWING_WINDOW:]
    moves = [abs(b - a) for x, y in itertools.pairwise(window)
             for a, b in zip(x.recalls_val or (), y.recalls_val or (), strict=False)
             if a is not None and b is not None]  # fmt: skip
    return sum(moves) / len(moves) / 1.13 if moves else 0.0


def fading(history: Sequence[Evaluation], span: int = 1) -> dict[int, tuple[float, int]]:
    """The classes whose val recall over the last ``span`` evaluations fell from their best.

    ``{class: (its best recall, the step of it)}``. The best reached at two evaluations
    (early on, a class can top one validation while the model finds its feet; a class
    learnt unevenly, 94% 60% 80% 67% 83% 41% 89%, still counts) where the model had learnt
    (balanced accuracy ``MODEL_LEARNT``), at least ``LEARNT``; the
    recall pooled over the ``span`` evaluations, its fall past ``SURE`` standard errors
    (of the probe's images, or of the run's own swing, ``_swing``);
    the other classes' mean recall at the last ``OTHERS`` or more and at most ``HELD``
    below their own level before (``others_held``); fewer than half of 3 or more classes (most
    classes falling is a model that stopped learning; of 2, one class taking the other's
    images is a collapse).
    """
    now, recent = history[-1], history[-span:]
    recalls = now.recalls_val
    if recalls is None or len(recalls) < 3 or len(recent) < span:
        return {}
    if any(e.recalls_val is None or e.class_images_val is None
           or len(e.recalls_val) != len(recalls) for e in recent):  # fmt: skip
        return {}
    # learnt: halfway from chance to all right (a 3-class model predicting two of its
    # classes is at 0.67; hunt 64: its favoured class flipped in the first validations)
    bar = max(MODEL_LEARNT, (1 + 1 / len(recalls)) / 2)
    before = [e for e in history[: len(history) - span] if e.recalls_val is not None
              and len(e.recalls_val) == len(recalls)
              and (e.balanced_acc_val or 0.0) >= bar]  # fmt: skip
    if len(before) < MIN_BEFORE:  # too few to know its level and its swing
        return {}
    found: dict[int, tuple[float, int]] = {}
    swing = _swing(before)
    for k in range(len(recalls)):
        column = [(e.recalls_val[k], e.step) for e in before]  # type: ignore[index]
        seen = sorted(((r, at) for r, at in column if r is not None), reverse=True)
        read = [(e.recalls_val[k], e.class_images_val[k]) for e in recent]  # type: ignore[index]
        if len(seen) < 2 or any(r is None for r, _ in read):
            continue
        images = sum(n for _, n in read)
        pooled = sum(r * n for r, n in read) / max(images, 1)  # type: ignore[operator]
        best = seen[1][0]  # reached twice: not one lucky reading
        step = max(at for r, at in seen if r >= best)
        if best >= LEARNT and best - pooled >= FADE and _sure(best, pooled, images, span, swing):
            found[k] = (best, step)
    if not found or 2 * len(found) >= len(recalls):
        return {}
    return found if others_held(now, list(found), before) else {}


def collapsed(history: Sequence[Evaluation], patience: int = 2) -> dict[int, tuple[float, int]]:
    """Classes at ``GONE`` or less at each of the last ``patience`` evaluations, learnt before.

    ``{class: (its best recall, the step of it)}``. A class dropped before it was learnt
    to ``LEARNT`` twice fades from a best reached once (hunt 77: the sampler stopped
    drawing class 3 at step 150, its recall 76% then 0% at every validation to step 400,
    while the other classes rose and the logged val accuracy set new highs: no finding).
    Gone at each of several evaluations is no noise: its best, at an evaluation where the
    model had learnt (as ``fading``'s, ``GONE_AFTER`` of them before), ``MODEL_LEARNT`` or
    more and ``SURE`` standard errors above; fewer than half of 3 or more classes; the
    others held (``others_held``).

    Example::

        >>> row = dict(balanced_acc_val=0.8, class_images_val=[40, 40, 40])
        >>> seen = [Evaluation(100 * i, i, recalls_val=[0.9, r, 0.9], **row)
        ...         for i, r in enumerate((0.5, 0.76, 0.0, 0.02))]
        >>> collapsed(seen), collapsed(seen[1:])
        ({1: (0.76, 100)}, {})
    """
    now, recent = history[-1], history[-patience:]
    recalls = now.recalls_val
    if recalls is None or len(recalls) < 3 or len(history) <= patience:
        return {}
    if any(e.recalls_val is None or e.class_images_val is None
           or len(e.recalls_val) != len(recalls) for e in recent):  # fmt: skip
        return {}
    bar = max(MODEL_LEARNT, (1 + 1 / len(recalls)) / 2)
    before = [e for e in history[:-patience] if e.recalls_val is not None
              and len(e.recalls_val) == len(recalls)
              and (e.balanced_acc_val or 0.0) >= bar]  # fmt: skip
    if len(before) < GONE_AFTER:  # a model finding its feet swings whole classes (hunt 64)
        return {}
    found: dict[int, tuple[float, int]] = {}
    swing = _swing(before)
    for k in range(len(recalls)):
        read = [(e.recalls_val[k], e.class_images_val[k]) for e in recent]  # type: ignore[index]
        column = [(e.recalls_val[k], e.step) for e in before if e.recalls_val[k] is not None]  # type: ignore[index]
        if not column or any(r is None or r > GONE for r, _ in read):
            continue
        best, step = max(column)
        images = sum(n for _, n in read)
        pooled = sum(r * n for r, n in read) / max(images, 1)  # type: ignore[operator]
        if best >= MODEL_LEARNT and _sure(best, pooled, images, patience, swing):
            found[k] = (best, step)
    if not found or 2 * len(found) >= len(recalls):
        return {}
    return found if others_held(now, list(found), before) else {}


def others_held(now: Evaluation, classes: Sequence[int], before: Sequence[Evaluation]) -> bool:
    """Whether the classes other than ``classes`` hold at ``now`` what they had ``before``.

    Their mean val recall ``OTHERS`` or more, and at most ``HELD`` below its second-highest
    value over ``before`` (reached twice, as the fading class's best): a run whose other
    classes swing too is no model keeping all but one (hunt 62: a BatchNorm net at SGD 0.2,
    its classes at 0-100% from one validation to the next, the others at 76% against 93%).

    Example::

        >>> before = [Evaluation(1, 0, recalls_val=[0.9, 0.9, 1.0]),
        ...           Evaluation(2, 0, recalls_val=[1.0, 0.9, 0.9])]
        >>> others_held(Evaluation(3, 0, recalls_val=[0.9, 0.2, 0.95]), [1], before)
        True
        >>> others_held(Evaluation(3, 0, recalls_val=[0.7, 0.2, 0.8]), [1], before)
        False
    """

    def mean(e: Evaluation) -> float | None:
        keep = [r for k, r in enumerate(e.recalls_val or ()) if k not in classes and r is not None]
        return sum(keep) / len(keep) if keep else None

    now_mean = mean(now)
    seen = sorted((m for m in map(mean, before) if m is not None), reverse=True)
    if now_mean is None or not seen:
        return False
    level = seen[1] if len(seen) > 1 else seen[0]
    return now_mean >= OTHERS and now_mean >= level - HELD


def faded(history: Sequence[Evaluation], patience: int = 2) -> dict[str, Any] | None:
    """``class_imbalance``'s figures where classes fade over the last ``patience`` evaluations.

    Fading at the first of them alone, and over all of them pooled (``fading``): one
    validation's dip is a step's noise (an SGD run at 99% had a class at 65% for one
    validation, back at 96% the next), and a class unlearnt fades unevenly (100% -> 60% ->
    76% -> 68%), the latest reading still ``FADE / 2`` and ``LAST_SURE`` standard errors
    below the best (a class of 10 val images at 100%, 7%, then 80% is back). Not where the
    logged val accuracy reaches a new high (hunt 62: an EMA copy validated at 81% -> 93%
    while the probe's pass of the raw weights had a class at 92% -> 46%). ``None``
    otherwise. Figures as ``imbalance.class_imbalance``'s for a common class lost during
    the run (``predicted_at``: the step of its best recall), plus ``faded``: ``[class, best
    recall, its step, recall now]`` for each, and ``since_step``: the first evaluation of
    the fade.
    """
    if len(history) < patience:
        return None
    start = fading(history[: len(history) - patience + 1])
    found = fading(history, patience)
    last, images = history[-1].recalls_val or [], history[-1].class_images_val or []
    swing = _swing(history[:-patience])

    def down(k: int) -> bool:  # still down at the last: a dip to 40% and back pools to 70%
        best, r = found[k][0], last[k]
        return best - r >= FADE / 2 and _sure(best, r, images[k], 1, swing, z=LAST_SURE)  # type: ignore[arg-type]

    classes = sorted(k for k in set(start) & set(found) if down(k))
    accs = [e.val_accuracy for e in history[:-patience] if e.val_accuracy is not None]
    high = history[-1].val_accuracy is not None and accs and history[-1].val_accuracy > max(accs)
    if high:  # the logged val accuracy at a new high: no class faded there
        classes = []
    gone = collapsed(history, patience)  # ... but a class gone at every one of them is
    found = {**found, **gone}
    classes = sorted({*classes, *gone})
    if not classes:
        return None
    now, at = history[-1], min(found[k][1] for k in classes)
    # where the fade began: its first evaluation past the bar after the best, kept as it
    # deepens (a Conv1d net's class 4: 100% at step 300, 84%, then 60% at 380), or gone
    since = next((e for i, e in enumerate(history) if e.step > at and all(
        k in fading(history[: i + 1]) or _gone_at(e, k) for k in classes)),
        history[-patience])  # fmt: skip
    depth = sum(1 - last[k] / found[k][0] for k in classes) / len(classes)  # type: ignore[operator]
    others = [r for k, r in enumerate(last) if k not in classes and r is not None]
    return {
        "ignored": classes,
        # worse (``Detector``) as they fade further, and once left out (1 class each)
        "left_out": len(classes) - 1 + min(depth, 0.99),
        "common": True,
        "predicted_at": at,
        "since_step": since.step,
        "faded": [[k, found[k][0], found[k][1], last[k]] for k in classes],
        "others_recall": sum(others) / len(others) if others else None,
        "balanced_acc": now.balanced_acc_val,
        "accuracy": now.val_accuracy,
        "early": False,
        "one_class": False,
        "missing": [],
        "dropped": 0.0,
    }


def _gone_at(e: Evaluation, k: int) -> bool:
    """Whether class ``k``'s val recall at ``e`` is ``GONE`` or less."""
    recalls = e.recalls_val or ()
    return k < len(recalls) and recalls[k] is not None and recalls[k] <= GONE  # type: ignore[operator]


def recovered(figures: dict[str, Any], ev: Evaluation) -> bool:
    """Whether each faded class of ``figures`` is back within ``FADE / 2`` of its best at ``ev``.

    Example::

        >>> f = {"faded": [[1, 1.0, 100, 0.3]]}
        >>> recovered(f, Evaluation(400, 4, recalls_val=[1.0, 0.9, 1.0]))
        True
    """
    recalls = ev.recalls_val
    if recalls is None:
        return False
    back = [k < len(recalls) and recalls[k] is not None and recalls[k] >= best - FADE / 2
            for k, best, _, _ in figures["faded"]]  # fmt: skip
    return all(back)
