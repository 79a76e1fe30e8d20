"""The level rules: where the probe's accuracies stand at each evaluation.

Nothing here knows about Lightning. Unlike the val-curve rules (``rules.py``), which
read how the curves turn, these read levels at each evaluation and how many of the
latest ones hold them: the val probe at chance (``not_learning``) and how far training
images are learnt (``train_learns``); where the val probe stands against chance is in
``chance_levels.py``. Training images learnt and validation images not
(``generalisation_gap``) is in ``gap.py``, eval mode far below the same probe with batch
statistics (``bn_mismatch``) in ``bn_levels.py``; when it is too soon to call a model at
chance "not learning", in ``too_soon.py``. Thresholds and
why: ``docs/diagnosis.md``.

Example::

    >>> e = Evaluation(60, 1, probe_acc_val=0.11, probe_loss_val=2.3, probe_size=128.0,
    ...                classes=10.0)
    >>> stuck(e), not_learning([e, e]).figures["chance_loss"] == math.log(10)
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lightning_cnnviz.core.raised_settings import lowest_settings
from lightning_cnnviz.overfitting.chance_levels import (
    chance_band,
    chance_classes,
    logged_accuracy,
    near_uniform,
    scores_elsewhere,
    stuck,
    too_small,
)
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.learnt import learnt_before
from lightning_cnnviz.overfitting.other_targets import loss_blind, other_outputs, relabelled
from lightning_cnnviz.overfitting.small_steps import held_back
from lightning_cnnviz.overfitting.too_soon import (
    _trailing,
    early,
    falling,
    warming_up,
    warmup_outlasts,
    young,
)
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import finite

__all__ = ["LEARNT", "LEARNT_KEPT", "not_learning", "train_accuracy", "train_learns"]


BARELY_LOSS = 0.95  # a val probe loss this share of ln K or more, past the first steps...
BARELY_ACC = 0.5  # ...with accuracy at most this: the model has barely left its start
BARELY_SHARE = 0.44  # ... or this share of the way from chance to 100%, where that is higher
# ...and no more than this share of ln K: a loss far above chance is a model confidently
# wrong, not one that has hardly moved. Held out (hunt 18): a timm MixNet from scratch,
# val accuracy 25% -> 33% -> 47% over its first epochs with an eval-mode probe loss of
# 8.4 (3.65 ln 10), was told "barely learning ... hardly moved from its initialisation"
BARELY_ABOVE = 1.5
# A training loss that started above ``BARELY_ABOVE`` x ln K and has come down below this
# share of its start has moved: held out (hunt 19), a timm TinyNet from scratch, first loss
# 4.74 (2.1 ln 10), val accuracy 41% with its probe loss at 0.97 ln 10 after one epoch, was
# told "barely learning ... hardly moved from its initialisation", its first remedy
# "lower the learning rate"
MOVED = 0.7


def barely(e: Evaluation) -> bool | None:
    """Whether the model has barely moved: off chance accuracy, its loss still at chance level.

    The val probe's cross-entropy ``BARELY_LOSS`` x ``ln K`` or more (but no more than
    ``BARELY_ABOVE`` x), and the loss ``training_step`` returned too, with the probe's
    accuracy at most ``BARELY_ACC``, past the first ``FIRST_STEPS`` steps; not where the
    training loss started above ``BARELY_ABOVE`` x ``ln K`` and has fallen below ``MOVED`` x
    its start. Held out: SGD at lr 1e-3 without momentum
    (23-32% val after 188 steps vs 79% at 1e-2, the training loss 2.289 -> 2.265 with
    ln 10 = 2.303) ended "no problems found" on 3 of 3 seeds. ``None``: cannot tell.

    Example::

        >>> row = dict(probe_acc_val=0.3, classes=10.0, probe_size=128.0)
        >>> barely(Evaluation(94, 1, probe_loss_val=2.27, **row))
        True
        >>> barely(Evaluation(94, 1, probe_loss_val=1.6, **row))
        False
        >>> barely(Evaluation(94, 1, probe_loss_val=8.4, **row))  # confidently wrong
        False
        >>> barely(Evaluation(94, 1, probe_loss_val=2.24, first_loss=4.74, returned_loss=2.24,
        ...                   **row))  # down from far above chance: it has moved
        False
    """
    if e.classes is None or e.classes < 2 or e.probe_acc_val is None:
        return None
    k = chance_classes(e)
    if too_small(k, chance_band(k, int(e.probe_size or 0))):
        return None
    if early(e):
        return None  # the first steps: too early to tell slow from barely moving
    if not finite(e.probe_loss_val):
        return False
    level, above = BARELY_LOSS * math.log(k), BARELY_ABOVE * math.log(k)
    # outputs near uniform say it by themselves: the loss's level moves with the labels'
    # shares (hunt 90: 5.8% positives, the returned loss 0.89 ln 2 at confidence 0.54)
    flat = near_uniform(e)
    returned = e.returned_loss is None or not finite(e.returned_loss) or e.returned_loss >= level
    near = level <= e.probe_loss_val <= above  # type: ignore[operator]
    first, now = e.first_loss, e.returned_loss
    moved = first is not None and now is not None and first > above and now < MOVED * first
    # the logged accuracy over the whole val set too (hunt 100: a head smoothed at 0.9,
    # near uniform, the probe at 50% of 6 classes, 56% logged over 1000 images)
    acc = max(e.probe_acc_val, logged_accuracy(e) or 0.0)
    return (near or flat) and acc <= barely_bar(k) and (returned or flat) and not moved


def barely_bar(k: int) -> float:
    """The most accuracy ``barely`` allows: ``BARELY_ACC``, or as far from chance for few classes.

    Example::

        >>> barely_bar(10), round(barely_bar(2), 2)
        (0.5, 0.72)
    """
    return max(BARELY_ACC, 1 / k + BARELY_SHARE * (1 - 1 / k))


CLIMBED = 2.0  # a returned loss this many times ln K or more, and not below its first


def climbing(e: Evaluation) -> bool | None:
    """Whether the training loss sits above its first value, far above chance level.

    The loss ``training_step`` returned since the last evaluation at least its first step's
    and ``CLIMBED`` x ``ln K``, past the first steps, with the val probe's accuracy at most
    ``BARELY_ACC``: the updates do not bring the loss down, whatever a few probe images
    say. Held out (hunt 24): timm's FBNet-C from scratch, its loss 7.5 at the first step
    and 9-14 after 96 (4-6x ln 10, train accuracy 14-16%), was "learning under way" at a
    probe accuracy of 23%. A loss summed instead of averaged falls below its first value
    while the model learns. ``None``: cannot tell.

    Example::

        >>> row = dict(probe_acc_val=0.23, classes=10.0, first_loss=7.5)
        >>> climbing(Evaluation(96, 2, returned_loss=11.0, **row))
        True
        >>> climbing(Evaluation(96, 2, returned_loss=6.0, **row))  # below its first: falls
        False
    """
    if e.classes is None or e.classes < 2 or e.probe_acc_val is None or early(e):
        return None
    first, now = e.first_loss, e.returned_loss
    if not finite(first) or not finite(now):
        return None
    high = now >= max(first, CLIMBED * math.log(int(e.classes)))  # type: ignore[type-var]
    return high and e.probe_acc_val <= BARELY_ACC


def _not_moving(e: Evaluation) -> bool | None:
    """``stuck``, ``barely`` or ``climbing`` (``None`` where none can tell: no streak starts)."""
    if scores_elsewhere(e):
        return None
    found = [stuck(e), barely(e), climbing(e)]
    return True if any(found) else (None if all(f is None for f in found[1:]) else False)


def not_learning(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """The val probe at chance accuracy (or non-finite) for the last ``patience`` evaluations.

    Or barely off it with its loss still at chance level (``barely``: figure ``barely``),
    or its training loss still above its first value, far above chance (``climbing``).

    From the start of the run, or after a collapse (an earlier evaluation above chance).
    The probe's own cross-entropy is compared with its chance level ``ln K``. At chance
    from the start, it waits for the first steps (``early``) and while the learning
    rate is still rising (``warming_up``), unless that warm-up outlasts the run
    (``warmup_outlasts``).
    """
    if history and scores_elsewhere(history[-1]):
        return None  # the outputs score another loss's target now, not the labels
    evs, streak = _trailing(history, stuck)
    slow = streak < patience  # not at chance: maybe barely moved from it (``barely``)
    if slow:
        evs, streak = _trailing(history, _not_moving)
    if streak < patience or train_learns(evs[-1]):
        return None  # training images learnt: a generalisation gap, not "not learning"
    if any(train_learns(e) for e in evs[-streak:]) and train_learns(evs[-1], LEARNT_KEPT):
        return None  # learnt in this streak and kept: the train probe's noise around the bar
    since, now = evs[-streak], evs[-1]
    before = evs[: len(evs) - streak]
    if not learnt_before(before):
        # evaluations a little off chance are noise, not learning that collapsed since
        # (setups hunt 27: one at 18.8% of 10 classes, step 3 of a run that learnt, made
        # "not learning after a collapse" at step 6): from the start, with its early guard
        before = []
    plateau = now.lr != 0 and finite(now.probe_loss_val)  # not a zero rate, not NaN outputs
    warm = warming_up(evs) and not warmup_outlasts(now)
    if not before and plateau and (early(now) or warm or falling(evs)):
        # at chance from the start within the first steps, while the schedule still raises
        # the learning rate, or while the probe loss falls: held out, CNNs validated every
        # 11-12 steps were at chance at their first two validations (a 40-step warm-up at
        # lr 0.015, 0.029 of 0.05; SGD 0.02 with 12-step epochs), and at 15-26% by step 33-48
        return None
    peak = max(before, key=lambda e: e.probe_acc_val or 0.0) if before else None
    k = chance_classes(now)
    figures = {
        "probe_acc": now.probe_acc_val,
        "probe_loss": now.probe_loss_val,
        "chance_acc": 1.0 / k,
        "chance_loss": math.log(k),
        "chance_band": chance_band(k, int(now.probe_size or 0)),
        "from_start": not before,
        "peak_acc_before": peak.probe_acc_val if peak else None,
        # the lowest rate it learnt at before the collapse (a schedule may have raised it)
        "lr_before": min((e.lr for e in before if e.lr), default=None),
        "non_finite": not finite(now.probe_loss_val),
        "warmup_outlasts": warming_up(evs) and warmup_outlasts(now),
        "barely": slow and not stuck(now) and not climbing(now),
        "climbing": slow and not stuck(now) and bool(climbing(now)),
        "first_loss": now.first_loss,
        "settings_before": lowest_settings(before) if before else None,  # ``learning_remedies``
        # a relabelling learnt since the first report: its words replace the first ones
        # (hunt 93: a remap half learnt at the first report read "other outputs" to the end)
        "relabelled": 1.0 if relabelled(now) else 0.0,
    }
    # at chance from the start in a run's first quarter: a note, a flat start may still end
    # (not a loss climbing above its first value: no start is that; nor steps a setting
    # keeps too small to ever end it, ``small_steps.held_back``)
    flat = plateau and not figures["warmup_outlasts"] and not figures["climbing"]
    if not before and flat and young(now) and not held_back(now):
        return Verdict("not_learning", since, now, peak, {**figures, "early": True}, "note")
    return Verdict("not_learning", since, now, peak, figures)


LEARNT = 0.5  # training images learnt: this share of the way from chance to 100%
# ... and still learnt, once they were: a random-label run's train probe read 55.2%, then
# 54%, then 58% (10 classes), and "not learning" came and went with each
LEARNT_KEPT = 0.3


def train_accuracy(e: Evaluation) -> float | None:
    """``e.train_accuracy``, the train probe's where the logged one reads other targets.

    Other targets (``other_targets.loss_blind``), or other outputs than the model's
    (``other_targets.other_outputs``).

    Example::

        >>> row = dict(classes=10.0, probe_size=128.0, returned_loss=1e-5, first_loss=2.3)
        >>> train_accuracy(Evaluation(64, 1, train_acc=1.0, probe_acc_train=0.1, **row))
        0.1
        >>> row["returned_loss"] = 0.37  # a loss that learns: of other outputs
        >>> train_accuracy(Evaluation(64, 1, train_acc=0.88, probe_acc_train=0.09, **row))
        0.09
    """
    return e.probe_acc_train if loss_blind(e) or other_outputs(e) else e.train_accuracy


def train_learns(e: Evaluation, share: float = LEARNT) -> bool | None:
    """Whether training images are learnt ``share`` of the way from chance to 100%.

    ``None``: unknown.

    By the logged train accuracy or the train probe's: early in a run the logged one is
    an epoch's mean, which lags (35.7% while the probe read 72.7%). Not by the logged one
    where the loss ``training_step`` returns is near 0 while the train probe is at chance
    (``other_targets.loss_blind``): both read targets other than the labels (hunt 29:
    targets taken from the model's own argmax logged 100% at 10% on the train probe, told
    "training images learnt, validation images not"); nor where it reads other outputs
    (``train_accuracy``). The logged one is measured on the training labels as drawn:
    its chance is the commonest class's share where that is higher (``top_share``; the
    probes are class-balanced). Held out (hunt 90): 5.8% positives at SGD 1e-5, a logged
    82% under the 94% of answering the common class, read as "training images learnt".

    Example::

        >>> train_learns(Evaluation(0, 0, train_acc=0.999, classes=4.0))
        True
        >>> train_learns(Evaluation(0, 0, train_acc=0.357, probe_acc_train=0.727, classes=10.0))
        True
        >>> train_learns(Evaluation(0, 0, train_acc=0.82, classes=2.0, top_share=0.942))
        False
    """
    logged = None if loss_blind(e) or other_outputs(e) else e.train_acc  # of other targets
    if e.classes is None or e.classes < 2:
        return None
    chance = 1.0 / chance_classes(e)
    prior = max(chance, e.top_share or 0.0)  # the logged accuracy's: labels as drawn
    bars = [(logged, prior), (e.probe_acc_train, chance)]
    read = [(a, c) for a, c in bars if a is not None and math.isfinite(a)]
    if not read:
        return None
    return any(a >= c + share * (1 - c) for a, c in read)
