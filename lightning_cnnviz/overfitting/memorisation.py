"""The memorisation rule: val accuracy falls from its peak while train accuracy climbs.

Nothing here knows about Lightning. A pure function of the evaluations so far, like the
other val-curve rules (``rules.py``); the signature of noisy or memorised labels, told
apart from plain overfitting (val loss rises, val accuracy holds). Thresholds and why:
``docs/diagnosis.md``.

Example::

    >>> accs = [0.80, 0.90, 0.92, 0.88, 0.84, 0.80]
    >>> evs = [Evaluation(step=10 * i, epoch=i, val_acc=a, train_acc=0.5 + 0.08 * i,
    ...                   val_loss=0.5 + (0.1 * i if i > 2 else 0.0))
    ...        for i, a in enumerate(accs)]
    >>> v = memorisation(evs)
    >>> v.kind, v.best.epoch, round(v.figures["drop"], 2)
    ('memorisation', 2, 0.12)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from lightning_cnnviz.overfitting.chance_levels import accuracy_read
from lightning_cnnviz.overfitting.curves import LOCAL, Z_AGREE, episode, noise, prompt
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.rules import tiny_val
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import finite

__all__ = ["Z_BATCH", "Z_COUNT", "memorisation", "train_acc_error"]


def _memorising(evs: Sequence[Evaluation], patience: int) -> bool:
    """Whether val loss and train accuracy agree with a fall of val accuracy, now.

    Over the last ``patience`` validations the train accuracy climbed by more than a
    point and twice its own noise, and the latest val loss is above the lowest of the
    ones before it: the model fits more of its training labels while it gets more
    validation images wrong and is less sure of the right ones.
    """
    if len(evs) < patience + 2:
        return False
    train = [e.train_accuracy for e in evs]
    val = [e.val_loss for e in evs]
    if any(t is None for t in train[-patience - 1 :]) or not all(finite(x) for x in val[-3:]):
        return False
    climb = train[-1] - train[-patience - 1]  # type: ignore[operator]
    known = [t for t in train if t is not None]
    # its own noise now: the last LOCAL values, or the last 5 where that window still
    # holds the steep climb of the first epochs (it doubled the bar for a noisy-label run)
    if climb <= max(0.01, 2 * min(noise(known, LOCAL), noise(known, 5) or math.inf)):
        return False
    earlier = [x for x in val[:-1] if finite(x)]
    return bool(earlier) and val[-1] > min(earlier[-LOCAL:])  # type: ignore[operator]


def _new_lows(evs: Sequence[Evaluation], raw: int) -> bool:
    """Whether the val loss reached a new low at every validation after ``evs[raw]``.

    Example::

        >>> evs = [Evaluation(i, 0, val_loss=v) for i, v in enumerate([0.6, 0.485, 0.482, 0.477])]
        >>> _new_lows(evs, 1), _new_lows(evs[:3] + [Evaluation(3, 0, val_loss=0.49)], 1)
        (True, False)
    """
    low = min((e.val_loss for e in evs[: raw + 1] if finite(e.val_loss)), default=None)
    for e in evs[raw + 1 :]:
        if low is None or not finite(e.val_loss) or not e.val_loss < low:  # type: ignore[operator]
            return False
        low = e.val_loss
    return raw + 1 < len(evs)


TRADED = 0.2  # a class's val probe recall up this much since the peak: classes trade places


def _trading(evs: Sequence[Evaluation]) -> bool:
    """Whether a class's val probe recall rose ``TRADED`` or more from one of ``evs`` to the next.

    Example::

        >>> recalls = ([0.88, 0.98, 0.55], [0.0, 0.98, 1.0], [0.95, 0.98, 0.0])  # hunt 66
        >>> _trading([Evaluation(i, 0, recalls_val=r) for i, r in enumerate(recalls)])
        True
    """
    for a, b in itertools.pairwise(evs):
        before, after = a.recalls_val, b.recalls_val
        if before and after and len(before) == len(after):
            pairs = zip(after, before, strict=True)
            if any(x - y >= TRADED for x, y in pairs if x is not None and y is not None):
                return True
    return False


Z_COUNT = 1.5  # a val accuracy drop past 1.5 sigma of two readings' binomial difference
Z_BATCH = 2.0  # a train accuracy climb past 2 sigma where a reading is one batch's


def _binomial_var(share: float | None, images: float | None) -> float:
    """The variance of an accuracy ``share`` counted on ``images`` (0 where not known)."""
    if share is None or not images:
        return 0.0
    return max(share * (1.0 - share), 0.0) / images


def _drop_error(evs: Sequence[Evaluation]) -> float:
    """``Z_COUNT`` x the binomial error of the difference of two val accuracy readings.

    At the best accuracy so far, on the images the latest validation saw (the logged
    accuracy's loop, else the probe's): a 150-image val set at 97% reads +-2.5 points
    between two validations of an unchanged model; 2000 images at 85%, +-1.1.

    Example::

        >>> round(_drop_error([Evaluation(0, 0, val_acc=0.973, val_images=150.0)]), 3)
        0.028
    """
    if not evs:
        return 0.0
    now = evs[-1]
    images = now.val_images if now.val_acc is not None else now.probe_size
    best = max(e.val_accuracy for e in evs)  # type: ignore[type-var]
    return Z_COUNT * math.sqrt(2.0 * _binomial_var(best, images))


def train_acc_error(now: Evaluation, then: Evaluation) -> float:
    """``Z_BATCH`` x the error of a train accuracy change read from one batch each time.

    Mid-epoch a logged train accuracy is the latest batch's (``train_acc_images``):
    63/64 -> 64/64 is batch noise, not the model fitting more of its labels. Read from
    the train probe (no train accuracy logged), the same ``probe_size_train`` images
    each time: a climb of ``d`` images is at most ``sqrt(d)`` standard errors (McNemar's
    test, no image turned wrong), so it must reach ``Z_BATCH ** 2`` images. Held out
    (hunt 56): a healthy CNN's 32-image probe went 31/32 -> 32/32 while val accuracy
    wobbled 2.3 points off a high, told "memorisation" one validation before a new high.

    Example::

        >>> then = Evaluation(0, 0, train_acc=0.984, train_acc_images=64.0)
        >>> round(train_acc_error(Evaluation(9, 0, train_acc=1.0, train_acc_images=64.0), then), 3)
        0.031
        >>> probe = dict(probe_size_train=32.0)
        >>> round(train_acc_error(Evaluation(9, 0, probe_acc_train=1.0, **probe),
        ...                    Evaluation(0, 0, probe_acc_train=0.969, **probe)), 3)
        0.109
    """
    images = now.probe_size_train
    if now.train_acc is None and then.train_acc is None and images:
        return (Z_BATCH**2 - 0.5) / images  # half an image under 4: a climb of 4 passes
    var = sum(
        _binomial_var(e.train_acc, e.train_acc_images)
        for e in (now, then)
        if e.train_acc is not None
    )
    return Z_BATCH * math.sqrt(var)


def memorisation(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """Val accuracy falling from its peak while train accuracy climbs past it.

    The signature of noisy or memorised labels: unlike plain overfitting (val loss
    rises, val accuracy holds), the model now gets *more* val images wrong.
    The fall (floor: 2 points, or the binomial error of two readings on a small val set,
    ``_drop_error``) is confirmed like ``overfitting``'s rise; when the val
    loss and the train accuracy agree (``_memorising``) the prompt check needs only one
    local noise deviation. The train accuracy must be more than a point above its value
    at the peak (and past a one-batch reading's error, ``train_acc_error``). With noisy labels the
    train accuracy (against those labels) may stay below the val accuracy for long: it
    climbing is the sign, its passing val accuracy comes later.
    """
    # outputs that score no classes (an embedding): their argmax is no accuracy (hunt 101)
    evs = [e for e in history if finite(e.val_accuracy) and accuracy_read(e)]
    if tiny_val(evs):
        return None
    accs = [-e.val_accuracy for e in evs]  # type: ignore[operator]
    floor = max(0.02, _drop_error(evs))
    # a floor alone confirms on three values: the train accuracy must climb too (below),
    # a second signal (a BN ResNet on 35% noisy labels: val 71.4% -> 65.6%, 65.8% while
    # train accuracy went 62% -> 79%, its fourth curve value a validation later)
    found = prompt(accs, patience, floor) or episode(accs, patience, floor, known=patience + 1)
    if found is None and _memorising(evs, patience):  # three signals agree: a lower bar
        found = prompt(accs, patience, floor, Z_AGREE, step_up=False)
    if found is None:
        return None
    raw, _, margin = found
    peak, now = evs[raw], evs[-1]
    losses = [e.val_loss for e in evs[:-1] if finite(e.val_loss)]
    if raw == 0 and finite(now.val_loss) and losses and now.val_loss < min(losses):  # type: ignore[operator,type-var]
        # a peak at the first validation, read before the run had settled, and the val
        # loss at a new low since: no memorising yet (held out, hunt 18: 99.0% at the first
        # validation, then 96.3% and 95.8% while the val loss went 0.42 -> 0.23 -> 0.17; a
        # 95/5 binary task 92% -> 89% -> 87%, its val loss 0.34 -> 0.19 -> 0.18)
        return None
    if _new_lows(evs, raw) and _trading(evs[raw:]):
        # the val loss at a new low at every validation since the peak while a class's
        # recall climbed from one validation to the next: the model still learns, its
        # classes trading places (held out, hunt 66: a 3-class net validated every 5
        # steps, 0.485 -> 0.482 -> 0.477 while val accuracy swung 79% -> 65%, told "noisy
        # or wrong labels"). Noisy labels may keep the val loss falling too, but take
        # recall from every class
        return None
    train, train_then = now.train_accuracy, peak.train_accuracy
    climb = 0.01 if train_then is None else max(0.01, train_acc_error(now, peak))
    if train is None or (train_then is not None and not train > train_then + climb):
        return None  # training does not improve either: a collapse, not memorisation
    before = evs[-2].train_accuracy
    if raw == 0 and len(evs) > 2 and before is not None and train < before:
        # a peak at the first validation, whose train accuracy is read through the steep
        # start (an epoch's mean), and training falling back since: held out (hunt 49),
        # weight decay 0.1 under SGD held train and val at 85% (98% without it), its train
        # accuracy "climbed" from the first epoch's mean of 75% (the same value twice is an
        # epoch's mean read at two validations of that epoch: no fall)
        return None
    figures = {
        "best_epoch": peak.epoch,
        "best_step": peak.step,
        "best_val_acc": peak.val_accuracy,
        "val_acc": now.val_accuracy,
        "drop": peak.val_accuracy - now.val_accuracy,  # type: ignore[operator]
        "train_acc": train,
        "train_acc_at_best": train_then,
        "noise": noise([e.val_accuracy for e in evs]),  # type: ignore[misc]
        "margin": margin,
    }
    return Verdict("memorisation", evs[raw + 1], now, peak, figures)
