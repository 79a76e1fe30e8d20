"""Training images learnt and validation images not: the generalisation gap's level rule.

Nothing here knows about Lightning. At each evaluation (``gapped``): train accuracy
``GAP`` or more above val accuracy, training images learnt while the val probe is at
chance (``chance_levels.stuck``), or a class learnt on the train probe and left out on the val
probe (``class_gap.py``); reported once it holds for the last ``patience`` evaluations
(``generalisation_gap``). Thresholds and why: ``docs/diagnosis.md``.

Example::

    >>> e = Evaluation(0, 0, train_acc=0.995, val_acc=0.49)
    >>> gapped(e), round(generalisation_gap([e, e]).figures["gap"], 3)
    (True, 0.505)
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning_cnnviz.overfitting.bn_levels import part_threshold
from lightning_cnnviz.overfitting.chance_levels import below_chance, stuck
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.levels import (
    LEARNT,
    LEARNT_KEPT,
    _trailing,
    train_accuracy,
    train_learns,
)
from lightning_cnnviz.overfitting.rules import tiny_val
from lightning_cnnviz.overfitting.verdict import Verdict

__all__ = [
    "EVAL_HELD",
    "GAP",
    "GAP_SLACK",
    "failed_on_train_images",
    "gapped",
    "gapped_on_batch_stats",
    "generalisation_gap",
    "held_on_train_images",
    "kept_on_train_images",
    "shifted_val_images",
]

GAP = 0.4
"""Train accuracy this far above val accuracy is a generalisation gap. Healthy runs stay
within a few points; a digit CNN leaning on a cue only training images carry reaches 21
(1.0 vs 0.79), coloured shapes whose cue is on training images only 50-64."""
GAP_SLACK = 0.1  # a reported gap closes below GAP - GAP_SLACK (no flapping at the bar)
EVAL_HELD = 0.05
"""Eval mode within this of the logged train accuracy on the train probe: BatchNorm's
running statistics fit the training images (``held_on_train_images``)."""


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
    train, val = train_accuracy(e), e.val_accuracy
    if train is None or val is None:
        return None
    if e.split_classes:  # a class learnt on training images and left out on val ones
        return True
    learnt = train_learns(e, LEARNT_KEPT if slack else LEARNT)
    return train - val >= GAP - slack or bool(stuck(e) and learnt)


def gapped_on_batch_stats(e: Evaluation) -> bool:
    """Whether train accuracy is ``GAP`` or more above the val probe read on batch statistics.

    Training accuracy is measured on batch statistics too: a gap this size there is the
    splits', not BatchNorm's running statistics' (hunt 51: a training-only cue on a timm
    ResNet, train 100% vs val 18% in eval mode and 52% on batch statistics, was told as a
    BatchNorm mismatch alone, with its remedies).

    ``GAP`` is read as its share of the ten classes' span above chance (0.9): on two
    classes 0.22 (hunt 108: a training-only cue on a binary BatchNorm net, train 100% vs
    val 48% in eval mode and 73% on batch statistics, was told as a BatchNorm mismatch
    alone, beside Grad-CAM's shortcut).

    Example::

        >>> gapped_on_batch_stats(Evaluation(0, 0, train_acc=1.0, probe_acc_bn=0.52))
        True
        >>> from dataclasses import replace
        >>> two = Evaluation(0, 0, train_acc=1.0, probe_acc_bn=0.73, classes=2.0)
        >>> gapped_on_batch_stats(two), gapped_on_batch_stats(replace(two, classes=10.0))
        (True, False)
    """
    train, k = train_accuracy(e), e.classes
    bar = GAP * (1 - 1 / k) / 0.9 if k is not None and k >= 2 else GAP
    return train is not None and e.probe_acc_bn is not None and train - e.probe_acc_bn >= bar


def held_on_train_images(e: Evaluation) -> bool:
    """Whether eval mode keeps the logged train accuracy on the train probe's images.

    Running statistics that trail the weights fail training and val images alike in eval
    mode; eval mode within ``EVAL_HELD`` of the train accuracy (read on batch statistics)
    on training images says they fit those: what eval mode then misses on val images is
    the splits' (hunt 109: a corner patch on one class's training images only, eval mode
    100% on the train probe and 50% on the val probe, 86-88% on it with batch statistics,
    was told as a BatchNorm mismatch alone). Unknown without a logged train accuracy.

    Example::

        >>> held_on_train_images(Evaluation(0, 0, train_acc=1.0, probe_acc_train=1.0))
        True
        >>> held_on_train_images(Evaluation(0, 0, train_acc=1.0, probe_acc_train=0.6))
        False
    """
    train, own = e.train_acc, e.probe_acc_train
    return train is not None and own is not None and own >= train - EVAL_HELD


def failed_on_train_images(e: Evaluation) -> bool:
    """Whether eval mode fails the train probe's images that batch statistics get right.

    ``held_on_train_images``' mirror: eval mode on the train probe below the train
    accuracy (read on batch statistics, ``levels.train_accuracy``) or below the val probe
    read on batch statistics, by more than ``bn_levels.part_threshold`` on the train
    probe's images, and not held there. Eval mode wrong on the very images the model
    trained on is BatchNorm's running statistics, whatever the splits do (held out, hunt
    119: a MobileNetV3 with momentum 0.01 on val digits with noise of sd 0.6, eval mode at
    7-9% on training images against 91% on batch statistics, was told as unlike inputs
    alone; removing the noise left it at chance). Nor where eval mode loses far more on
    the val images than on training ones (``shifted_val_images``): most of its loss is the
    val inputs'. ``False`` where unknown.

    Example::

        >>> failed_on_train_images(Evaluation(0, 0, train_acc=0.91, probe_acc_train=0.09,
        ...                                   probe_size_train=64.0))
        True
        >>> failed_on_train_images(Evaluation(0, 0, probe_acc_train=0.09, probe_acc_bn=0.4,
        ...                                   probe_size=128.0))  # below val's batch stats
        True
        >>> failed_on_train_images(Evaluation(0, 0, train_acc=0.91, probe_acc_train=0.88,
        ...                                   probe_acc_bn=0.4, probe_size=128.0))
        False
    """
    own, size = e.probe_acc_train, e.probe_size_train or e.probe_size
    if own is None or held_on_train_images(e) or shifted_val_images(e):
        return False
    on_batch_stats = (a for a in (train_accuracy(e), e.probe_acc_bn) if a is not None)
    return any(a - own > part_threshold(a, size) for a in on_batch_stats)


def shifted_val_images(e: Evaluation) -> bool:
    """Whether eval mode keeps on training images what it loses on val images' own statistics.

    Running statistics that trail the weights fail both probes alike in eval mode. Eval
    mode on the train probe far above the val probe (by ``bn_levels.part_threshold`` of two
    independent accuracies), nearer the val probe on batch statistics than the val probe
    in eval mode, and that batch-statistics read back at the train probe's level: the
    running statistics fit the training images and the val images differ from them, seen
    by the per-channel screen (``split_inputs``) or not (held-out hunt 117: val digits with
    noise of sd 0.25, 1.03x in spread, eval mode 89% on the train probe and 41% on the val
    probe, 91% on it with batch statistics, was told as a BatchNorm lag). Batch statistics
    that leave the val probe below the train probe are the splits' (a cue on training
    images only, ``held_on_train_images``). ``False`` where unknown.

    Example::

        >>> row = dict(probe_size=128.0, probe_size_train=128.0, bn_size=128.0)
        >>> def ev(own, val, bn):
        ...     return Evaluation(0, 0, probe_acc_train=own, probe_acc_val=val,
        ...                       probe_acc_bn=bn, **row)
        >>> shifted_val_images(ev(0.89, 0.41, 0.91)), shifted_val_images(ev(0.67, 0.41, 0.86))
        (True, True)
        >>> shifted_val_images(ev(0.3, 0.25, 0.9))  # a lag: both probes fail in eval mode
        False
        >>> shifted_val_images(ev(1.0, 0.5, 0.87))  # a cue only training images carry
        False
    """
    own, val, bn = e.probe_acc_train, e.probe_acc_val, e.probe_acc_bn
    if own is None or val is None or bn is None:
        return False
    n = min(e.probe_size_train or e.probe_size or 0.0, e.bn_size or e.probe_size or 0.0)
    kept = own - val > part_threshold((own + val) / 2, n) and own - val >= bn - own
    return kept and bn >= own - part_threshold((own + bn) / 2, n)


def kept_on_train_images(e: Evaluation) -> bool:
    """Whether eval mode keeps the training images and loses the val images, the splits' doing.

    ``shifted_val_images``, or eval mode holding the train accuracy on the train probe
    (``held_on_train_images``: the running statistics fit the training images) and far
    above the val probe in eval mode (``bn_levels.part_threshold`` of two independent
    accuracies), whatever batch statistics read on the val probe: a cue that only
    training images carry leaves it short of the train probe too (held-out hunt 125: a
    class-coded square on training images only, eval mode 94-100% on training batches, the
    val probe 73-83% in eval mode and 87-90% on batch statistics, told "raise BatchNorm's
    momentum"). Running statistics that trail the weights fail both probes alike. Not
    where train accuracy is ``GAP`` above val (``gapped``): the train/val gap tells that
    (hunt 109, ``precedence``).

    Example::

        >>> row = dict(probe_size=128.0, probe_size_train=128.0, bn_size=128.0, train_acc=0.99)
        >>> def ev(own, val, bn):
        ...     return Evaluation(0, 0, probe_acc_train=own, probe_acc_val=val,
        ...                       probe_acc_bn=bn, **row)
        >>> kept_on_train_images(ev(0.99, 0.75, 0.88)), kept_on_train_images(ev(0.8, 0.72, 0.9))
        (True, False)
    """
    own, val = e.probe_acc_train, e.probe_acc_val
    if shifted_val_images(e):
        return True
    if own is None or val is None or not held_on_train_images(e) or gapped(e):
        return False
    n = min(e.probe_size_train or e.probe_size or 0.0, e.probe_size or 0.0)
    return own - val > part_threshold((own + val) / 2, n)


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
    if streak < patience or tiny_val(history):
        return None
    now = evs[-1]
    figures = {
        "train_acc": train_accuracy(now),
        "val_acc": now.val_accuracy,
        "gap": train_accuracy(now) - now.val_accuracy,  # type: ignore[operator]
        "val_at_chance": bool(stuck(now)),
        "val_below_chance": below_chance(now),  # labels that mean other things on val
        # at chance at every validation: nothing about the labels carried over, ever
        "val_never_learnt": bool(stuck(now)) and all(stuck(e) is not False for e in history),
        "split_classes": list(now.split_classes or ()),
        "split_taken": list(now.split_taken or ()),
        "val_acc_bn": now.probe_acc_bn,  # the val probe on batch statistics, where read
    }
    return Verdict("generalisation_gap", evs[-streak], now, None, figures)
