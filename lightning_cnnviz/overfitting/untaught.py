"""A class as common as the others left out because the loss does not teach it.

Nothing here knows about Lightning. Every other class is learnt while one, with as many
training labels, is never predicted: its loss has no weight (``cross_entropy(...,
weight=w)`` with ``w[k] = 0``, an ``ignore_index`` set to it, a mask). The model's own
cross-entropy on the class-balanced training probe tells it from a class learnt late: the
loss ``training_step`` returns lacks what that class adds to it. ``imbalance.leaves_out``
asks ``common_left_out`` and ``untaught``. Thresholds and why: ``docs/diagnosis.md``.

Example::

    >>> untaught(Evaluation(94, 0, returned_loss=0.1, probe_loss_train=0.9))
    True
"""

from __future__ import annotations

import math

from lightning_cnnviz.overfitting.chance_levels import chance_classes
from lightning_cnnviz.overfitting.evaluation import Evaluation

__all__ = [
    "FAR_UNTAUGHT",
    "MISSING",
    "OTHERS_LEARNT",
    "UNTAUGHT",
    "common_left_out",
    "untaught",
]

OTHERS_LEARNT = 0.7  # a class not rare left out while the others' mean recall is this or more
# ... and only where the model's own cross-entropy on the training probe is this many times
# the loss `training_step` returns: the loss leaves the class out (weight 0: 0.1 returned,
# ~0.9 own). A class learnt late (a Conv3d net's class 2 at its third validation, a
# softmax before `cross_entropy` slowing every class) counts in both alike.
UNTAUGHT = 2.0
# ... and for half the classes or more, this many times: most classes left out is a model
# not learning, unless the loss itself leaves them out (hunt 28: `cross_entropy(...)[y < 5]`
# returned 0.02-0.8 with classes 5-9 at 0% val recall, the others 95-100%, told nothing)
FAR_UNTAUGHT = 10.0
# ... or the model's own above it by this share of what the left-out classes add to it
MISSING = 0.5


def common_left_out(e: Evaluation, measuring: bool = False) -> bool:
    """A class as common as the others left out while they are learnt (``leaves_out``).

    Not where the left-out classes are taken for each other (labels swapped) or are learnt
    on training images (split classes: the train/val gap tells those); of 3 classes or
    more, 2 or more of them learnt; among fewer than half the classes (a 2-class model
    predicting one class is at chance, ``not_learning``; most classes left out is a model
    not learning), unless the model's own cross-entropy on the training probe is
    ``FAR_UNTAUGHT`` x the loss returned (``measuring``: that loss is not read yet).
    """
    swapped = (e.swapped_val_share or 0.0) >= 0.5
    split = bool(set(e.ignored or ()) & set(e.split_classes or ()))
    learnt = e.others_recall_val is not None and e.others_recall_val >= OTHERS_LEARNT
    k, n = chance_classes(e), len(e.ignored or ())  # the labels' K, not a wider head's
    if k < 3 or n > k - 2 or not learnt or swapped or split:
        return False
    if n < k / 2:
        return True
    returned, own = _returned(e), e.probe_loss_train
    if own is None or returned is None:
        return measuring
    return returned > 0 and own >= FAR_UNTAUGHT * returned


def untaught(e: Evaluation) -> bool | None:
    """Whether the loss ``training_step`` returns leaves some images out (``None``: unknown).

    The model's own cross-entropy on the (class-balanced) training probe ``UNTAUGHT`` x or
    more the loss returned (``_returned``): a class weighted 0 or ignored is wrong on the
    probe and absent from the loss. Or above it by ``MISSING`` of what the left-out
    classes add to the probe's loss (their share x their cross-entropy), where that
    cross-entropy is above ``ln K``: a class no loss teaches has its score pushed down by
    every update and sits above chance level, one learnt late near or below it (held out,
    hunt 55: `ignore_index=0` under Adam 1e-3, the others still at a loss of 0.4-1.5, read
    1.1-1.9x and was never told, its images at 3.9-5.6; a healthy run's late classes at
    1.2, its own loss 0.12 above the one returned, were told "not taught"). Where that
    cross-entropy is measured, at ``ln K`` or below it rules "not taught" out whatever the
    ratio: a loss that returns less than the cross-entropy (focal loss, a loss scaled by
    0.1) read 2x on healthy runs whose late classes were at 1.5 (hunt 57, hunt 55).

    Example::

        >>> untaught(Evaluation(94, 0, returned_loss=0.1, probe_loss_train=0.9))
        True
        >>> untaught(Evaluation(94, 0, returned_loss=0.5, probe_loss_train=0.6))
        False
        >>> untaught(Evaluation(63, 0, returned_loss=0.92, recent_loss=0.3, probe_loss_train=0.9))
        True
        >>> row = dict(probe_loss_left_train=5.0, left_share_train=0.1, classes=10.0)
        >>> untaught(Evaluation(250, 1, returned_loss=0.92, probe_loss_train=1.3, **row))
        True
        >>> untaught(Evaluation(250, 1, returned_loss=1.25, probe_loss_train=1.3, **row))
        False
        >>> late = dict(row, probe_loss_left_train=1.2)  # below ln 10: learnt late
        >>> untaught(Evaluation(250, 1, returned_loss=0.89, probe_loss_train=1.0, **late))
        False
        >>> untaught(Evaluation(250, 1, returned_loss=0.3, probe_loss_train=1.0, **late))  # focal
        False
    """
    returned, own = _returned(e), e.probe_loss_train
    if returned is None or own is None or not (returned > 0 and own < float("inf")):
        return None
    left, share, k = e.probe_loss_left_train, e.left_share_train, chance_classes(e)
    measured = left is not None and share is not None and k > 1
    if measured and not left > math.log(k):  # type: ignore[operator]
        return False  # near chance level or below it: learnt late, whatever the loss's scale
    lacks = measured and own - returned >= MISSING * share * left  # type: ignore[operator]
    return own >= UNTAUGHT * returned or lacks


def _returned(e: Evaluation) -> float | None:
    """The loss returned: the lower of its mean since the last evaluation and its last steps'.

    At a run's first evaluation the mean still holds the descent from ``ln K``: SGD on
    digits with class 0 ignored returned 0.92 on average over its first 63 steps, about
    0.3 over its last ones, against 0.9 on the training probe (told a validation late).
    A loss scaled down is read as it is: its first value cannot tell a scale from a
    pretrained start (held out, hunt 56: fine-tuning from a trained model, first loss
    0.02, read as scaled 100x, hid a class weighted 0), so `0.1 * cross_entropy` with
    classes learnt late can read as "not taught" (hunt 55, left).
    """
    known = [v for v in (e.returned_loss, e.recent_loss) if v is not None]
    return min(known) if known else None
