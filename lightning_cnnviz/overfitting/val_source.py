"""Logged val metrics that are not this model's: the val curves then describe something else.

Nothing here knows about Lightning. Every evaluation has two readings of the model on
validation images: what ``validation_step`` logs (``val_acc``, ``val_loss``, over the
whole val set) and the val probe, which the monitor scores itself (eval mode, 128
class-balanced images, ``probe_acc_val`` and ``probe_loss_val``). They agree within the
probe's noise when the step scores the model on its images. They part when it does not:

* the logged accuracy ``LOGGED_BELOW`` (30 points) or more under the probe's, at
  ``patience`` evaluations in a row: ``validation_step`` scores other weights (an
  exponential moving average that has not caught up, a teacher), changes the images
  before the model sees them, or computes the metric wrong. Held out: a module that
  validated an EMA of its weights with decay 0.9999 logged 12-17% val accuracy while the
  model scored 96.9% on the probe, and was told "the splits differ";
* the logged val loss not finite while the probe's is: a NaN or inf enters the step (a
  NaN pixel in the val data, a division by zero in the loss). Held out: a val set with
  one NaN pixel logged a NaN val loss at every validation, and the summary said "no
  problems found", the overfitting check counted as run.

One-sided: a class-balanced probe reads a model that favours the commoner classes lower
than the val set does, never 30 points higher.

Where the val probe's logits are read from the validation loop (``loop_logits.py``), the
logged figures and the probe come from one forward pass, and agree whatever the step does
to the images. So at the first evaluation, and at each one after they parted, the
monitor also scores the probe with a pass of its own on the images as the dataset gives
them (``loop_check``): the loop's accuracy below its own beyond the paired noise
(McNemar, as ``bn_levels.part_threshold``) means
``validation_step`` changes the images or the weights it scores. Held out: val images
normalised with ImageNet's mean and std inside ``validation_step`` (the model trained on
MNIST's) scored 82.6% against 97% on training images without BatchNorm ("no problems
found") and 46% in eval mode with it, told as a BatchNorm mismatch. A loop better than the
own pass (test-time augmentation, a transform both steps apply) is no finding.

Example::

    >>> e = Evaluation(50, 0, val_acc=0.13, probe_acc_val=0.97, probe_size=128.0)
    >>> val_metrics_differ([e, e]).figures["logged_acc"]
    0.13
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from torch import Tensor

from lightning_cnnviz.overfitting.bn_levels import part_threshold
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.levels import _trailing
from lightning_cnnviz.overfitting.loss_reads import OTHER_MODEL
from lightning_cnnviz.overfitting.val_relabelled import CHANGED
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import finite

__all__ = [
    "CLOSING",
    "LOGGED_BELOW",
    "differs",
    "loop_check",
    "trails",
    "unchanged",
    "val_metrics_differ",
]

LOGGED_BELOW = 0.3
"""The logged val accuracy this far under the val probe's: not the model's own score."""


CLOSING = 0.75
"""A gap under this share of the one before is closing: weights that lag catching up."""

RISING = 0.05
"""The logged accuracy up this much at each evaluation: a lagging copy still catching up."""

STALLED_SHARE = 0.5
"""Half the run gone with the validated copy's accuracy no higher than when they parted: it
does not catch up in this run (an average whose decay is too slow for its length)."""


def loop_check(loop: Tensor, own: Tensor | None, labels: Tensor | None) -> dict[str, float]:
    """The validation loop's logits on the val probe against the monitor's own pass.

    ``{}`` where they agree (or cannot be compared); else the two accuracies and the share
    of images right in the own pass only (``own_only``) and in the loop only.

    Example::

        >>> import torch
        >>> y = torch.arange(4).repeat(8)
        >>> right = torch.nn.functional.one_hot(y, 4).float()
        >>> loop_check(right, right, y), loop_check(right.roll(1, 1), right, y)["loop_acc"]
        ({}, 0.0)
    """
    if own is None or labels is None or own.shape != loop.shape or len(labels) != len(loop):
        return {}
    y = labels.to(loop.device)
    a, b = loop.argmax(1) == y, own.argmax(1) == y
    n = len(y)
    own_only, loop_only = float((b & ~a).sum()) / n, float((a & ~b).sum()) / n
    gap = own_only - loop_only
    if gap <= part_threshold(float(b.float().mean()), n, own_only + loop_only, gap):
        return {}
    return {"loop_acc": float(a.float().mean()), "own_acc": float(b.float().mean()),
            "own_only": own_only, "loop_only": loop_only}  # fmt: skip


def trails(e: Evaluation) -> bool:
    """Whether the logged val accuracy is ``OTHER_MODEL`` or more under the model's own.

    Example::

        >>> trails(Evaluation(0, 0, val_acc=0.3, probe_acc_val=0.9)), trails(Evaluation(0, 0))
        (True, False)
    """
    if e.val_acc is None or e.probe_acc_val is None:
        return False
    return e.probe_acc_val - e.val_acc >= OTHER_MODEL


def _logged(e: Evaluation) -> float | None:
    """The logged (or the loop's) val accuracy."""
    return e.loop_check["loop_acc"] if e.loop_check else e.val_acc


def _catching_up(evs: Sequence[Evaluation]) -> bool:
    """A lagging copy of the weights: logged accuracy rising, the gap closing past its peak.

    An average of the weights trails a model that learns fast by more at the second
    evaluation than at the first (its gap grows while the model jumps), then closes; a
    transform in ``validation_step`` keeps its gap once the model settles, an average
    that never catches up (decay 0.9999) keeps its logged accuracy flat.
    """
    logged, gaps = [_logged(e) for e in evs], [_gap(e) for e in evs]
    if None in logged or None in gaps:
        return False
    rising = all(b - a >= RISING for a, b in itertools.pairwise(logged))
    past_peak = gaps[gaps.index(max(gaps)) :]
    return rising and all(b < CLOSING * a for a, b in itertools.pairwise(past_peak))


def _gap(e: Evaluation) -> float | None:
    """How far the logged (or the loop's) val accuracy is under the model's own."""
    if e.loop_check:
        return e.loop_check["own_acc"] - e.loop_check["loop_acc"]
    if e.val_acc is None or e.probe_acc_val is None:
        return None
    return e.probe_acc_val - e.val_acc


def differs(e: Evaluation) -> bool | None:
    """Whether the logged val metrics are not the model's on its val images (``None``: unknown).

    Example::

        >>> differs(Evaluation(0, 0, val_loss=float("nan"), probe_loss_val=0.2))
        True
        >>> differs(Evaluation(0, 0, val_acc=0.9, probe_acc_val=0.95))
        False
    """
    if e.loop_check:
        return True
    if e.val_loss is not None and not finite(e.val_loss) and finite(e.probe_loss_val):
        return True
    if e.val_acc is None or e.probe_acc_val is None:
        return None if e.val_loss is None or e.probe_loss_val is None else False
    return e.probe_acc_val - e.val_acc >= LOGGED_BELOW


UNCHANGED = 3
"""Validations in a row whose logged val loss and accuracy did not move at all."""
MOVED = 0.05  # ... while the model's own loss on the val probe moved this share


def unchanged(history: Sequence[Evaluation]) -> Verdict | None:
    """The logged val metrics identical at ``UNCHANGED`` validations while the model moved.

    ``validation_step`` scores something that does not train: a frozen teacher, a copy
    never updated, a result cached once (hunt 80: a distillation run validating its
    teacher by mistake logged 0.7730 at all 8 validations while the student's own val
    accuracy moved, and nothing was told). Only where validation reached no trained layer
    (``val_elsewhere``): Lightning keeps a value a validation did not log, and a step that
    logs every third validation read as unchanged (hunt 81).

    Example::

        >>> evs = [Evaluation(50 * i, i, val_loss=0.81, val_acc=0.773, probe_loss_val=p,
        ...                   val_elsewhere=True) for i, p in enumerate((1.4, 1.1, 0.95))]
        >>> unchanged(evs).figures["logged_loss"], unchanged(evs[:2])
        (0.81, None)
    """
    evs = [e for e in history if e.val_loss is not None and finite(e.val_loss)][-UNCHANGED:]
    if len(evs) < UNCHANGED or any(e.lr == 0 or not e.val_elsewhere for e in evs):
        return None  # a step scoring the model itself may log only now and then (hunt 81)
    same = all(e.val_loss == evs[0].val_loss and e.val_acc == evs[0].val_acc for e in evs)
    own = [e.probe_loss_val for e in evs]
    if not same or None in own or not all(finite(v) and v > 0 for v in own):  # type: ignore[arg-type]
        return None
    if max(own) < (1 + MOVED) * min(own):  # type: ignore[type-var, operator]
        return None  # the model did not move either
    now = evs[-1]
    figures = {"unchanged": True, "logged_loss": now.val_loss, "logged_acc": now.val_acc,
               "probe_loss": own[-1], "probe_loss_first": own[0], "probe_acc": now.probe_acc_val,
               "evaluations": UNCHANGED, "non_finite": False}  # fmt: skip
    return Verdict("val_metrics_differ", evs[0], now, None, figures)


def val_metrics_differ(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """The logged val metrics parted from the val probe for ``patience`` evaluations.

    Not while the logged accuracy rises by ``RISING`` at each evaluation since they parted
    and the gap, past its largest, shrinks to under ``CLOSING`` of the one before: an
    average of the weights (an EMA at decay 0.99, validated: Lightning's
    ``WeightAveraging``, timm's ``ModelEmaV3`` or a swap of one's own) trailed the model by
    30-49 points at the first validation, 16 at the second, 0-12 at the third, and caught
    up; held out, a timm ResNet under SGD 0.1 trailed by 42, then 66 (the model jumped to
    99%), 38 and 13 points. A transform in ``validation_step`` keeps its gap.

    A note, not a problem, where no validation batch reached the model's first layer
    (``Evaluation.val_elsewhere``): ``validation_step`` scores another module, an average
    of the weights validated on purpose (hunt 79: a timm ``ModelEmaV3(0.99)`` over a
    BatchNorm CNN read 10-17% for four validations while the model learnt, then caught up);
    a problem where half the run has gone and its accuracy has not risen since they parted
    (``STALLED_SHARE``: an average at decay 0.9999 over 400 steps read 10% to the end).

    Example::

        >>> def ev(logged, probe=0.9):
        ...     return Evaluation(0, 0, val_acc=logged, probe_acc_val=probe)
        >>> val_metrics_differ([ev(0.1), ev(0.35)]), val_metrics_differ([ev(0.1), ev(0.25)]).kind
        (None, 'val_metrics_differ')
    """
    if (frozen := unchanged(history)) is not None:
        return frozen
    evs, streak = _trailing(history, differs)
    if streak < patience:
        return None
    if _catching_up(evs[-streak:]):
        return None
    now = evs[-1]
    figures = {
        **(now.loop_check or {}),
        "logged_acc": now.val_acc,
        "probe_acc": now.probe_acc_val,
        "logged_loss": now.val_loss,
        "probe_loss": now.probe_loss_val,
        "non_finite": not finite(now.val_loss) if now.val_loss is not None else False,
    }
    if (now.val_labels_changed or 0.0) >= CHANGED:  # the same val images, other labels
        figures["labels_changed"] = now.val_labels_changed
    if now.val_elsewhere:  # another module validated on purpose (an EMA): a fact, a note
        first = _logged(evs[-streak])
        stalled = (now.run_share or 0.0) >= STALLED_SHARE and (
            first is None or (figures["logged_acc"] or 0.0) - first < RISING
        )
        figures.update(elsewhere=True, stalled=stalled, early=not stalled)
        severity = "problem" if stalled else "note"
        return Verdict("val_metrics_differ", evs[-streak], now, None, figures, severity)
    return Verdict("val_metrics_differ", evs[-streak], now, None, figures)
