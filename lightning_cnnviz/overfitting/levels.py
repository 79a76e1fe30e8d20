"""The level rules: where the probe's accuracies stand at each evaluation.

Nothing here knows about Lightning. Unlike the val-curve rules (``rules.py``), which
read how the curves turn, these read levels at each evaluation and how many of the
latest ones hold them: the val probe at chance (``not_learning``), training images
learnt and validation images not (``generalisation_gap``), eval mode far below the same
probe with batch statistics (``bn_mismatch``). Thresholds and why:
``docs/diagnosis.md``.

Example::

    >>> e = Evaluation(0, 0, probe_acc_val=0.11, probe_loss_val=2.3, probe_size=128.0,
    ...                classes=10.0)
    >>> stuck(e), not_learning([e, e]).figures["chance_loss"] == math.log(10)
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.rules import Verdict, _finite

__all__ = [
    "BELOW_CHANCE_LOSS",
    "GAP",
    "GAP_SLACK",
    "bn_mismatch",
    "bn_mismatch_at_end",
    "chance_band",
    "discordant",
    "gapped",
    "generalisation_gap",
    "not_learning",
    "part_threshold",
    "parted",
    "stale",
    "stuck",
    "train_learns",
]

GAP = 0.4
"""Train accuracy this far above val accuracy is a generalisation gap. Healthy runs stay
within a few points; a digit CNN leaning on a cue only training images carry reaches 21
(1.0 vs 0.79), coloured shapes whose cue is on training images only 50-64."""
GAP_SLACK = 0.1  # a reported gap closes below GAP - GAP_SLACK (no flapping at the bar)


def chance_band(classes: int, probe_size: int) -> float:
    """Highest probe accuracy still at chance: ``1/K`` plus 3 binomial standard errors.

    Example::

        >>> round(chance_band(10, 128), 3)
        0.18
    """
    p = 1.0 / classes
    return p + 3 * math.sqrt(p * (1 - p) / max(1, probe_size))


BELOW_CHANCE_LOSS = 0.95
"""A val probe loss under this share of ``ln K`` has learnt something, whatever its accuracy."""


def stuck(e: Evaluation) -> bool | None:
    """Whether the val probe is at chance (``None``: it cannot tell).

    Its accuracy within the chance band, and its cross-entropy not below
    ``BELOW_CHANCE_LOSS`` x ``ln K``: on a class-balanced probe no prediction that ignores
    the image (the training labels' prior included) scores below ``ln K`` (Gibbs'
    inequality), so a lower loss is learning under way. A digit CNN whose training set
    held class 0 five times as often predicted it for most val images at its first two
    validations (accuracy 9.7%, 12.6%) while the probe loss went 2.59 -> 2.15 (ln 10 =
    2.30), and learnt every class by the fourth.
    """
    if e.classes is None or e.classes < 2 or e.probe_acc_val is None:
        return None
    if not _finite(e.probe_loss_val):
        return True  # non-finite outputs: nothing is learnt any more
    k = int(e.classes)
    band = chance_band(k, int(e.probe_size or 0))
    if band > 1 / k + 0.5 * (1 - 1 / k):  # a probe too small to tell chance from learning
        return None
    if e.probe_loss_val is not None and e.probe_loss_val < BELOW_CHANCE_LOSS * math.log(k):
        return False
    return e.probe_acc_val <= band


def _trailing(
    history: Sequence[Evaluation], test: Callable[[Evaluation], bool | None]
) -> tuple[list[Evaluation], int]:
    """The evaluations ``test`` could judge, and how many of the last ones it holds for."""
    evs = [e for e in history if test(e) is not None]
    streak = 0
    while streak < len(evs) and test(evs[-1 - streak]):
        streak += 1
    return evs, streak


def not_learning(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """The val probe at chance accuracy (or non-finite) for the last ``patience`` evaluations.

    From the start of the run, or after a collapse (an earlier evaluation above chance).
    The probe's own cross-entropy is compared with its chance level ``ln K``.
    """
    evs, streak = _trailing(history, stuck)
    if streak < patience or train_learns(evs[-1]):
        return None  # training images learnt: a generalisation gap, not "not learning"
    since, now = evs[-streak], evs[-1]
    before = evs[: len(evs) - streak]
    peak = max(before, key=lambda e: e.probe_acc_val or 0.0) if before else None
    k = int(now.classes or 0)
    figures = {
        "probe_acc": now.probe_acc_val,
        "probe_loss": now.probe_loss_val,
        "chance_acc": 1.0 / k,
        "chance_loss": math.log(k),
        "chance_band": chance_band(k, int(now.probe_size or 0)),
        "from_start": not before,
        "peak_acc_before": peak.probe_acc_val if peak else None,
        "non_finite": not _finite(now.probe_loss_val),
    }
    return Verdict("not_learning", since, now, peak, figures)


def train_learns(e: Evaluation) -> bool | None:
    """Whether training images are learnt at least halfway from chance to 100% (``None``: unknown).

    By the logged train accuracy or the train probe's: early in a run the logged one is
    an epoch's mean, which lags (35.7% while the probe read 72.7%).

    Example::

        >>> train_learns(Evaluation(0, 0, train_acc=0.999, classes=4.0))
        True
        >>> train_learns(Evaluation(0, 0, train_acc=0.357, probe_acc_train=0.727, classes=10.0))
        True
    """
    accs = [a for a in (e.train_acc, e.probe_acc_train) if a is not None and math.isfinite(a)]
    if not accs or e.classes is None or e.classes < 2:
        return None
    chance = 1.0 / e.classes
    return max(accs) >= chance + 0.5 * (1 - chance)


def gapped(e: Evaluation, slack: float = 0.0) -> bool | None:
    """Whether training images are learnt and validation images not (``None``: unknown).

    Train accuracy ``GAP - slack`` or more above val accuracy, training images learnt
    (``train_learns``) while the val probe is at chance (``stuck``), or a class learnt on
    the train probe and left out on the val probe (``class_gap.split_classes``). A reported gap
    closes only below ``GAP - GAP_SLACK``: at 37 points it had been called "closed".

    Example::

        >>> e = Evaluation(0, 0, train_acc=0.93, val_acc=0.56)
        >>> gapped(e), gapped(e, slack=GAP_SLACK)
        (False, True)
    """
    train, val = e.train_accuracy, e.val_accuracy
    if train is None or val is None:
        return None
    if e.split_classes:  # a class learnt on training images and left out on val ones
        return True
    return train - val >= GAP - slack or bool(stuck(e) and train_learns(e))


def generalisation_gap(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """Training images learnt, validation images not, for the last ``patience`` evaluations.

    A gap this size (``gapped``) at any time, not a val curve turning: the splits
    differ in what decides the label (a cue only training images carry, a different
    preprocessing of the two splits, labels that differ in meaning), or the model
    memorises a small training set.

    Example::

        >>> e = Evaluation(0, 0, train_acc=0.995, val_acc=0.49)
        >>> round(generalisation_gap([e, e]).figures["gap"], 3)
        0.505
    """
    evs, streak = _trailing(history, gapped)
    if streak < patience:
        return None
    now = evs[-1]
    figures = {
        "train_acc": now.train_accuracy,
        "val_acc": now.val_accuracy,
        "gap": now.train_accuracy - now.val_accuracy,  # type: ignore[operator]
        "val_at_chance": bool(stuck(now)),
        "split_classes": list(now.split_classes or ()),
        "split_taken": list(now.split_taken or ()),
    }
    return Verdict("generalisation_gap", evs[-streak], now, None, figures)


def discordant(e: Evaluation) -> float | None:
    """Share of the val probe right in one of its two passes only (``None``: not counted)."""
    return None if e.bn_only is None or e.eval_only is None else e.bn_only + e.eval_only


def part_threshold(
    acc: float, probe_size: float | None, discordant: float | None = None, gap: float = 0.0
) -> float:
    """The accuracy gap ``parted`` calls a mismatch: ``max(5 points, 3 standard errors)``.

    With ``discordant`` (the share of images right in one pass only) the error is the
    paired one, ``sqrt((discordant - gap^2) / n)``; without it, that of two independent
    accuracies near ``acc`` (larger: 18 points instead of 10 at 61% on 128 images).

    Example::

        >>> round(part_threshold(0.5, 128), 4), part_threshold(0.99, 128)
        (0.1875, 0.05)
        >>> round(part_threshold(0.61, 128, discordant=0.15, gap=0.11), 4)
        0.0985
    """
    n = max(1.0, probe_size or 0.0)
    if discordant is not None:
        spread = max(discordant - gap * gap, 1.0 / n)  # one flip at least
    else:
        spread = 2 * max(acc * (1 - acc), 0.01)
    return max(0.05, 3 * math.sqrt(spread / n))


def parted(e: Evaluation) -> bool | None:
    """Whether eval mode is far worse than batch statistics (``None``: not measured).

    Both passes read the same images, so the gap's standard error is the paired one
    (McNemar: from the images right in one pass only, ``part_threshold``). An
    evaluation whose batch-statistics pass the screen skipped (``bn_screen`` set,
    ``passes.py``: the gap cannot be near the threshold) counts as not parted.
    """
    if e.probe_acc_val is None:
        return None
    if e.probe_acc_bn is None:
        return None if e.bn_screen is None else False
    # accuracy only: early in a run the running statistics always lag (a higher eval loss
    # at equal accuracy), which harms nothing and passes within a few dozen steps
    return e.bn_gap_acc > _bar(e)  # type: ignore[operator]


STALE_LOSS = 2.0
"""Eval-mode probe loss over this many times the batch-statistics one on the same images."""


def stale(e: Evaluation) -> bool:
    """Whether eval mode's val figures measure BatchNorm's running statistics, not the model.

    ``parted``, or the eval-mode val probe's loss over ``STALE_LOSS`` x its loss with
    batch statistics (same images). The curve rules (overfitting, memorisation) leave
    such evaluations out: a BatchNorm CNN under mixup, whose running statistics come from
    mixed images, went 0.094 -> 0.229 in val loss at 96% eval-mode accuracy (batch
    statistics: probe loss 0.049, 100%), and both curve rules fired. Overfitting raises
    the loss in both modes alike.

    Example::

        >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
        >>> e = Evaluation(0, 0, probe_acc_val=0.97, probe_loss_val=0.214, probe_acc_bn=1.0,
        ...                probe_loss_bn=0.049, bn_only=0.03, eval_only=0.0, classes=4,
        ...                probe_size=128, bn_size=96)
        >>> bool(parted(e)), stale(e)
        (False, True)
    """
    if parted(e):
        return True
    eval_loss, bn_loss = e.probe_loss_val, e.probe_loss_bn
    return eval_loss is not None and bn_loss is not None and eval_loss > STALE_LOSS * bn_loss


def _bar(e: Evaluation) -> float:
    """``part_threshold`` of an evaluation with a batch-statistics pass, on its images."""
    gap = e.bn_gap_acc
    return part_threshold(e.probe_acc_bn, e.bn_size or e.probe_size, discordant(e), gap)  # type: ignore[arg-type]


CLOSING = 0.5
"""A gap under this share of the one before is closing: BatchNorm's statistics catching up."""


def bn_mismatch(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """Eval-mode val probe far worse than the same probe with batch statistics.

    The running statistics BatchNorm uses in eval mode no longer match the batch
    statistics the model trains with: eval accuracy more than
    ``max(5 points, 3 paired standard errors)`` below (``parted``) for ``patience``
    evaluations, or parted again, by twice that bar, one evaluation after it last was
    (``_recurs``; the losses are reported as evidence). A gap that shrank to under
    ``CLOSING`` of the one before at the confirming evaluation waits one more: in a
    resnet18's first steps under SGD, validated every 15 steps, eval mode trailed batch
    statistics by 25 points at step 15 and 9 at step 30, and was level at step 45.
    """
    evs, streak = _trailing(history, parted)
    if streak == patience and evs[-1].bn_gap_acc < CLOSING * evs[-2].bn_gap_acc:  # type: ignore[operator]
        return None  # closing fast: the running statistics catching up; one more evaluation
    if streak < patience:
        streak = _recurs(evs)
        if not streak:
            return None
    return _mismatch(evs, streak)


def bn_mismatch_at_end(history: Sequence[Evaluation]) -> Verdict | None:
    """At the end of fit: the last evaluation parted, confirmed or not (``bn_mismatch``).

    No later evaluation can confirm it or see it close, and the model that fit hands
    back is that much worse in eval mode: a BatchNorm CNN under mixup ended at 52% val
    probe accuracy in eval mode vs 100% with batch statistics, its mismatch of the last
    validation still waiting for a second one.
    """
    evs, streak = _trailing(history, parted)
    return _mismatch(evs, streak) if streak else None


def _mismatch(evs: Sequence[Evaluation], streak: int) -> Verdict:
    now = evs[-1]
    figures = {
        "eval_acc": now.bn_eval_acc,
        "batch_stats_acc": now.probe_acc_bn,
        "eval_loss": now.probe_loss_val,
        "batch_stats_loss": now.probe_loss_bn,
        "gap_acc": now.bn_gap_acc,
    }
    return Verdict("bn_mismatch", evs[-streak], now, None, figures)


def _recurs(evs: Sequence[Evaluation], window: int = 3, strength: float = 2.0) -> int:
    """A mismatch that came back: the evaluations since it first parted, else 0.

    The latest evaluation parted by ``strength`` x its bar and another of the last
    ``window`` parted too. A small ResNet under SGD 0.1 parted at its first validation
    (16 points, bar 14), came within 5 points at its second and parted by 26 (bar 12.5)
    at its third and last: a streak rule never confirmed it.

    Example::

        >>> def ev(val, bn, disc):
        ...     return Evaluation(0, 0, probe_acc_val=val, probe_acc_bn=bn, bn_only=disc,
        ...                       eval_only=0.0, probe_size=128.0)
        >>> _recurs([ev(0.46, 0.62, 0.3), ev(0.76, 0.80, 0.12), ev(0.65, 0.91, 0.29)])
        3
        >>> _recurs([ev(0.46, 0.62, 0.3), ev(0.76, 0.80, 0.12), ev(0.75, 0.91, 0.2)])
        0
    """
    if not evs or not parted(evs[-1]):
        return 0
    if evs[-1].bn_gap_acc < strength * _bar(evs[-1]):  # type: ignore[operator]
        return 0
    earlier = [i for i, e in enumerate(evs[-window:-1]) if parted(e)]
    return len(evs[-window:]) - earlier[0] if earlier else 0
