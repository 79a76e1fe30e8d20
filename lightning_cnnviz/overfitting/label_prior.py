"""Not learning for per-pixel, one-hot and multi-label targets: the label prior.

Nothing here knows about Lightning. A segmentation net that predicts the commonest class
at every pixel, or a multi-label net that gives every image the same labels (most often
none), has learnt how common each answer is and nothing of the images: its pixel or
label accuracy sits at the majority's share, which reads as high. One that finds its
objects but not their class has learnt where, not what. Held out (hunt 82): a GroupNorm
FCN under SGD with OneCycle found the digits and gave 6-14% of their pixels the right
class among 10 from step 100 to 400 (92.2% pixel accuracy, the background's share, the
val loss flat at 0.20) and was told nothing; class labels' ``levels.not_learning`` reads
no chance level there, and ``flat_loss.not_moving`` wants a loss flat from the start.

``prior_figures`` reads one val probe pass against the probe's targets; ``one_answer``
tells it: the same answer for (nearly) every pixel or image where the targets hold
others, or the objects' class no better than their commonest (``alike``), at
``patience`` evaluations in a row, the loss `training_step` returns no longer falling,
past the run's first steps (``too_soon.waits``); a note in the run's first quarter, and
for the objects until its last (``before_last_quarter``).

Example::

    >>> logits = torch.zeros(4, 3, 2, 2)
    >>> logits[:, 0] = 2.0  # class 0 everywhere
    >>> masks = torch.zeros(4, 2, 2, dtype=torch.long)
    >>> masks[:, 0, 0] = 2  # a quarter of the pixels are class 2
    >>> f = prior_figures(logits, masks)
    >>> f["prior_pred"], f["prior_truth"], f["prior_answer"], f["prior_task"]
    (1.0, 0.75, 0.0, 'pixels')
    >>> def ev(step, loss):
    ...     return Evaluation(step, 0, returned_loss=loss, run_share=step / 400, **f)
    >>> one_answer([ev(200, 0.201), ev(300, 0.2)]).severity
    'problem'
    >>> one_answer([ev(200, 0.3), ev(300, 0.2)]) is None  # the loss still falls
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_cnnviz.core.items import integer_dtype
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.too_soon import (
    STALLED,
    START_STEPS,
    held_streak,
    stalled,
    stalled_streak,
)
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import finite

__all__ = [
    "ALIKE",
    "LATE",
    "MIXED",
    "OBJECTS",
    "RISING",
    "SURER",
    "alike",
    "before_last_quarter",
    "commonest_share",
    "label_accuracy",
    "label_rank",
    "one_answer",
    "prior_figures",
]

ALIKE = 0.995
"""The share of pixels (or images) given one answer past which the model answers alike."""
MIXED = 0.98  # ... where no more than this share of the targets is that one answer
OBJECTS = 0.05
"""The other classes' pixels right no more than this above their commonest class's share:
their class is not told (the GroupNorm FCN's digits, 6-10% right among 10 classes)."""
RISING = 0.02  # ... or the found objects' pixels right rose this much
# one answer at this many evaluations in a row, its loss still falling: a loss that rewards
# the one answer falls as the model grows surer of it (held out, hunt 103: multi-label BCE
# with `pos_weight=1e-3`, no label given to any image from the first validation to the
# last while the val loss fell 0.14 -> 0.018, never told); a note until the run's last
# quarter (a slow start answers the prior too), a problem there and at its end
SURER = 3


def _predicted(outputs: Tensor) -> Tensor:
    """Binary answers: probabilities past 0.5 where outputs are in [0, 1], else logits past 0."""
    probabilities = bool(((outputs >= 0) & (outputs <= 1)).all())
    return outputs > (0.5 if probabilities else 0.0)


def commonest_share(outputs: Tensor) -> float:
    """The share of images ``(N, K)`` scores give their commonest set of labels.

    Example::

        >>> commonest_share(torch.tensor([[1.0, -1.0], [2.0, -3.0], [-1.0, 1.0]]))
        0.6666666666666666
    """
    _, counts = torch.unique(_predicted(outputs), dim=0, return_counts=True)
    return float(counts.max()) / len(outputs)


def label_accuracy(outputs: Tensor, truth: Tensor) -> float:
    """The share of (image, label) answers of ``(N, K)`` scores that match ``truth``.

    Example::

        >>> label_accuracy(torch.tensor([[2.0, -1.0], [3.0, 1.0]]), torch.tensor([[1, 0], [0, 1]]))
        0.75
    """
    return float((_predicted(outputs) == truth.bool()).double().mean())


def _binary(t: Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())


def _answers(pred: Tensor, truth: Tensor, k: int, task: str) -> dict[str, float | str]:
    """Class answers (pixels or images) against their classes, as ``prior_figures`` gives them."""
    counts = torch.bincount(pred, minlength=k).double()
    classes = torch.bincount(truth, minlength=k).double()
    answer, major = int(counts.argmax()), int(classes.argmax())
    n = float(len(pred))
    found: dict[str, float | str] = {
        "prior_pred": float(counts[answer]) / n, "prior_truth": float(classes[answer]) / n,
        "prior_major": float(classes.max()) / n, "prior_answer": float(answer),
        "prior_task": task,
    }  # fmt: skip
    # the other classes' pixels the model finds (answers other than the commonest class
    # for): is their class told? (missed ones are not: hunt 84, a bright square 85% of the
    # object pixels, 89% of them found and 99.6% of those right, read as "not their class")
    objects = (truth != major) & (pred != major)
    kinds = torch.bincount(truth[objects], minlength=k).double()
    if task == "pixels" and int((kinds > 0).sum()) >= 2:
        found["prior_obj_acc"] = float((pred[objects] == truth[objects]).double().mean())
        found["prior_obj_major"] = float(kinds.max() / kinds.sum())
    return found


def _dense(outputs: Tensor, targets: Tensor) -> dict[str, float | str] | None:
    """Per-pixel answers against per-pixel targets (class maps, or binary masks)."""
    if targets.dim() == outputs.dim() and targets.shape[1] == 1:
        targets = targets[:, 0]  # a (N, 1, ...) map or mask
    if not (integer_dtype(targets) or _binary(targets)) or targets.dim() != outputs.dim() - 1:
        return None
    size = outputs.shape[2:]
    if size != targets.shape[1:]:  # scores at a lower resolution: the maps taken to it
        if any(a > b for a, b in zip(size, targets.shape[1:], strict=True)):
            return None
        targets = F.interpolate(targets[:, None].float(), size=size, mode="nearest")[:, 0]
    k = outputs.shape[1]
    pred = outputs.argmax(1) if k > 1 else _predicted(outputs[:, 0]).long()
    targets = targets.long()
    valid = (targets >= 0) & (targets < max(k, 2))  # an ignore index (255, -100) left out
    if not bool(valid.any()):
        return None
    return _answers(pred[valid], targets[valid], max(k, 2), "pixels")


def _rows(outputs: Tensor, targets: Tensor) -> dict[str, float | str] | None:
    """Each image's answer against its target: a class (one-hot), or a set of labels."""
    if targets.shape != outputs.shape or not _binary(targets):
        return None
    truth = targets.bool()
    if bool((truth.sum(1) == 1).all()):  # one-hot: one class an image, the largest score
        return _answers(outputs.argmax(1), truth.long().argmax(1), outputs.shape[1], "classes")
    pred = _predicted(outputs)
    rows, counts = torch.unique(pred, dim=0, return_counts=True)
    answer = rows[counts.argmax()]
    _, truth_counts = torch.unique(truth, dim=0, return_counts=True)
    n = float(len(pred))
    found = {"prior_pred": float(counts.max()) / n,
             "prior_truth": float((truth == answer).all(1).double().mean()),
             "prior_major": float(truth_counts.max()) / n, "prior_answer": float(answer.sum()),
             "prior_task": "labels"}  # fmt: skip
    rank = label_rank(outputs, truth)
    return found if rank is None else {**found, "prior_rank": rank}


def label_rank(scores: Tensor, truth: Tensor) -> float | None:
    """The labels' mean AUC: how often an image holding a label outscores one that does not.

    Per label (column) with images of both kinds, averaged (a pooled AUC would credit
    the labels' frequencies, which answering each label's prior learns); ties count half.
    ``None`` where no label has both. A net that gives every image no label may still rank
    them (held out, hunt 103: `pos_weight=1e-3`, every score below 0 and an AUC of 0.85):
    it tells the images apart, the threshold is what it misses.

    Example::

        >>> truth = torch.tensor([[1, 0], [0, 1], [0, 0], [1, 1]]).bool()
        >>> scores = torch.tensor([[-1.0, -5.0], [-4.0, -2.0], [-3.0, -6.0], [-2.0, -1.0]])
        >>> label_rank(scores, truth)  # every score below 0, each label's images ranked
        1.0
        >>> label_rank(torch.full((4, 2), -3.0), truth)
        0.5
    """
    aucs = []
    for column, labels in zip(scores.T, truth.T, strict=True):
        pos, neg = column[labels], column[~labels]
        if len(pos) and len(neg):
            above = (pos[:, None] > neg[None, :]).double().mean()
            ties = (pos[:, None] == neg[None, :]).double().mean()
            aucs.append(float(above + ties / 2))
    return sum(aucs) / len(aucs) if aucs else None


def prior_figures(outputs: Tensor, targets: Tensor) -> dict[str, float | str] | None:
    """How alike a probe pass answers, against its targets (``None``: not comparable).

    ``outputs``: (N, K, ...) per-pixel scores against (N, ...) or (N, 1, ...) class maps
    or binary masks (at a lower resolution, the maps taken to it), or (N, K) scores against
    (N, K) multi-hot or one-hot targets. Figures: ``prior_pred`` (the share of pixels, or
    images, given the commonest answer), ``prior_truth`` (the share of the targets that
    are that answer), ``prior_major`` (the share of the targets' commonest answer),
    ``prior_answer`` (the class; for multi-label, how many labels the commonest set
    holds), ``prior_task`` (``"pixels"``, ``"classes"`` for one-hot, ``"labels"``);
    per pixel with two classes or more besides the commonest, ``prior_obj_acc`` (the
    share of their pixels right) and ``prior_obj_major`` (their commonest class's share).

    Example::

        >>> none = prior_figures(torch.full((4, 3), -5.0), torch.eye(3)[[0, 1, 2, 0]])
        >>> none["prior_task"], none["prior_pred"]  # one-hot: the largest score, class 0
        ('classes', 1.0)
        >>> sets = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
        >>> none = prior_figures(torch.full((2, 3), -5.0), sets)
        >>> none["prior_pred"], none["prior_truth"], none["prior_answer"]  # no label at all
        (1.0, 0.0, 0.0)
    """
    outputs, targets = outputs.detach().float(), targets.to(outputs.device)
    if len(outputs) != len(targets) or outputs.dim() < 2:
        return None
    if not bool(torch.isfinite(outputs).all()):  # no answers (hunt 101: NaN read as class 0)
        return None
    if outputs.dim() > 2:
        return _dense(outputs, targets)
    return _rows(outputs, targets) if targets.dim() == 2 else None


def alike(e: Evaluation) -> bool | None:
    """Whether ``e``'s val probe answered alike where its targets hold more (``None``: unread).

    One answer nearly everywhere; or, per pixel, the pixels of the classes other than the
    commonest that the model finds (the objects) right no more often than answering their
    commonest class would have them (``OBJECTS``): the objects told from the background,
    not their class.
    """
    if e.prior_pred is None or e.prior_major is None:
        return None
    if e.prior_pred >= ALIKE and e.prior_major <= MIXED:
        return True
    acc, major = e.prior_obj_acc, e.prior_obj_major
    return acc is not None and major is not None and acc <= major + OBJECTS


def one_answer(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """The same answer for every pixel or image at ``patience`` evaluations, learning stalled.

    Or at ``SURER`` evaluations, the loss still falling (``surer``: a note until the
    run's last quarter). Figures: ``one_answer``, ``task``, ``answer``, ``predicted`` /
    ``truth`` / ``major`` (``prior_figures``' shares), ``loss_before`` (the returned loss
    at the evaluation before the latest), ``evaluations`` (alike in a row), ``surer``,
    ``rank`` (multi-label: ``label_rank``).
    """
    found = stalled_streak(history, alike, patience)  # a slow start answers the prior
    surer = found is None  # ... for a while, its loss still falling
    if surer and (found := held_streak(history, alike, max(patience, SURER))) is None:
        return None
    (evs, before, from_start), now = found, found[0][-1]
    if (now.prior_obj_acc or 0.0) - (before.prior_obj_acc or 0.0) >= RISING:
        return None  # the objects' classes coming (hunt 84: GroupNorm FCNs' slow starts)
    figures = {
        "one_answer": True,
        "from_start": from_start,
        "non_finite": False,
        "task": now.prior_task,
        "answer": int(now.prior_answer or 0),
        "predicted": now.prior_pred,
        "truth": now.prior_truth,
        "major": now.prior_major,
        "loss_before": before.returned_loss,
        "objects": not (now.prior_pred >= ALIKE and now.prior_major <= MIXED),  # type: ignore[operator]
        "object_acc": now.prior_obj_acc,
        "object_major": now.prior_obj_major,
        "evaluations": len(evs),
        "surer": surer,
        "rank": now.prior_rank,
        "val_first": evs[0].val_loss,
    }
    # the val loss rising as the training loss falls is no slow start (hunt 105: labels
    # zeroed in `training_step`, val BCE 0.656 -> 0.906, told a note until step 423 of 564)
    first, last = evs[0].val_loss, now.val_loss
    rising = surer and finite(first, last) and last > (1 + STALLED) * first  # type: ignore[operator]
    figures["val_rising"] = rising
    slow = (figures["objects"] or (surer and not rising)) and before_last_quarter(now)
    return stalled(evs[0], now, figures, early=slow)


LATE = 0.75
"""The share of a planned run before which objects found but not their class are a note."""


def before_last_quarter(e: Evaluation) -> bool:
    """Whether ``e`` is before the run's last quarter (unknown length: ``3 * START_STEPS``).

    A segmentation net often finds its objects long before it tells their classes apart:
    held out (hunt 84), three GroupNorm FCNs sat at 5% of the digits' pixels right for
    a third to a half of their runs, then learnt them (93-95%); one that cannot (a 3x3
    receptive field) looks the same until then. A note until the last quarter, and a
    problem at the end of fit if it still holds (``Detector.conclude``).

    Example::

        >>> before_last_quarter(Evaluation(200, 1, run_share=0.5)), before_last_quarter(
        ...     Evaluation(300, 2, run_share=0.75))
        (True, False)
    """
    if e.run_share is not None:
        return e.run_share < LATE
    return e.step < 3 * START_STEPS
