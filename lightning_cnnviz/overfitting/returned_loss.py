"""What the loss ``training_step`` returns says of itself: negated, blind, or not fed probabilities.

Nothing here knows about Lightning. ``loss_reads.py`` compares the logged val loss with
what the val probe's outputs give; these read the returned training loss against the
model's own cross-entropy on the training probe: a loss returned with its sign flipped
(``maximised``), one falling without limit while the model learns (``unbounded_term``),
and one under the floor a loss fed probabilities cannot pass (``below_floor``). A loss
near 0 while the labels are not learnt is ``other_targets.loss_blind``'s.

Example::

    >>> maximised(Evaluation(126, 1, returned_loss=-7.6e4, probe_loss_train=2.4e5,
    ...                      classes=10.0))
    True
"""

from __future__ import annotations

import math

from lightning_cnnviz.overfitting.class_figures import REMAPPED
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.words import finite

__all__ = [
    "AT_CHANCE",
    "AT_FLOOR",
    "AVOIDED",
    "MIRRORED",
    "RANKED",
    "UNBOUNDED",
    "WORSE",
    "at_floor",
    "below_floor",
    "maximised",
    "outputs_scaled",
    "own_loss",
    "probability_floor",
    "unbounded_term",
]

WORSE = 1.5  # the own cross-entropy on training images this many times ln K: worse than a guess
UNBOUNDED = 1.5  # a returned loss below this many times -ln K: no bounded bonus reaches it
AVOIDED = 1 / 3  # training accuracy at most this share of chance: the labels avoided
MIRRORED = 0.1  # a negative loss within this share of the own cross-entropy's negative
UNLEARNT = 0.9  # ... the own cross-entropy at least this share of ln K: no model that classifies


def own_loss(ev: Evaluation) -> float | None:
    """The model's own cross-entropy on the training probe (the val probe's where not run)."""
    return ev.probe_loss_train if ev.probe_loss_train is not None else ev.probe_loss_val


AT_CHANCE = 0.005  # a loss within this share of ln K has not left its chance level
LEARNT = 0.98  # ... while the outputs' own cross-entropy is under this share of ln K
FURTHER = 10.0  # ... and this many times further under ln K than the loss


def outputs_scaled(ev: Evaluation) -> bool:
    """Whether the loss sits at ``ln K`` while the outputs themselves score well under it.

    The loss ``training_step`` returns and the logged val loss within ``AT_CHANCE`` of
    ``ln K``, the model's own cross-entropy under ``LEARNT`` x ``ln K`` and ``FURTHER`` x
    further under it than they are: the loss does not read the outputs as the model gives
    them (divided by a large temperature, or other outputs), its gradient near 0. Held
    out (hunt 39): logits divided by 100 inside the loss, both losses at 2.302 for six
    epochs while the outputs' own cross-entropy fell 2.27 -> 1.98 (26-30% val): no
    finding at all.

    Example::

        >>> row = dict(classes=10.0, val_loss=2.3020, probe_loss_val=2.246)
        >>> outputs_scaled(Evaluation(64, 1, returned_loss=2.3021, **row))
        True
        >>> outputs_scaled(Evaluation(64, 1, returned_loss=2.2, **row))
        False
    """
    k, own = ev.classes, own_loss(ev)
    if k is None or k < 2 or not finite(ev.returned_loss, own):
        return False
    chance = math.log(k)
    losses = [ev.returned_loss] + ([ev.val_loss] if finite(ev.val_loss) else [])
    off = max(abs(loss - chance) for loss in losses)  # type: ignore[operator]
    under = chance - own  # type: ignore[operator]
    return off <= AT_CHANCE * chance and own < LEARNT * chance and under >= FURTHER * off


def unbounded_term(ev: Evaluation) -> bool:
    """Whether the returned loss falls past any bounded bonus while the model learns.

    Below ``UNBOUNDED`` x ``-ln K`` (a confidence penalty, ``CE - beta * H`` with
    ``beta <= 1``, stays above ``-ln K``) while the model's own cross-entropy is under
    ``ln K``: the model classifies, and the loss holds a term that training drives down
    without limit. Held out (hunt 29): ``CE - 0.01 * sum(w ** 2)``, a penalty with its
    sign flipped, returned -4.3 at step 64 and -88 by step 192 at 95% val accuracy, told
    "`nll_loss` fed raw scores"; a confidence penalty (-0.9 at 97%) was told so too.

    Example::

        >>> unbounded_term(Evaluation(64, 1, returned_loss=-4.33, probe_loss_train=0.16,
        ...                           classes=10.0))
        True
        >>> unbounded_term(Evaluation(64, 1, returned_loss=-0.9, probe_loss_train=0.96,
        ...                           classes=10.0))
        False
    """
    loss, own, k = ev.returned_loss, own_loss(ev), ev.classes
    if not (finite(loss) and finite(own)) or k is None or k < 2:
        return False
    return loss < -UNBOUNDED * math.log(k) and own < math.log(k)  # type: ignore[operator]


def maximised(ev: Evaluation) -> bool:
    """Whether training lowers a loss that rewards wrong answers (its sign flipped).

    The model's own cross-entropy on the training probe (on the val probe where that
    pass did not run) is over ``WORSE`` x ``ln K`` (no guess that ignores the image scores
    that badly: the model has learnt to be wrong) while the loss ``training_step``
    returned (its mean since the last evaluation, logged or not: a module may log the
    cross-entropy and return its negative) is negative, or far below it with the training
    labels avoided (accuracy at most ``AVOIDED / K``). Above ``ln K`` only, a negative loss
    with the labels avoided. From ``UNLEARNT`` x ``ln K``, a negative loss within
    ``MIRRORED`` of the own cross-entropy's negative: that cross-entropy returned with its
    sign flipped.

    Example::

        >>> maximised(Evaluation(126, 1, returned_loss=-7.6e4, probe_loss_train=2.4e5,
        ...                      classes=10.0))
        True
        >>> maximised(Evaluation(23, 0, returned_loss=-2.6, probe_loss_train=3.1, classes=10.0,
        ...                      probe_acc_train=0.03))
        True
        >>> maximised(Evaluation(23, 0, returned_loss=-2.33, probe_loss_train=2.35, classes=10.0))
        True
        >>> maximised(Evaluation(126, 1, returned_loss=-0.2, probe_loss_val=0.4, classes=10.0))
        False
        >>> maximised(Evaluation(64, 1, returned_loss=2e-4, probe_loss_train=11.6,
        ...                      probe_acc_train=0.0, classes=10.0))
        True
    """
    loss, k, own = ev.returned_loss, ev.classes, own_loss(ev)
    if loss is None or own is None or k is None or k < 2:
        return False
    if not (math.isfinite(loss) and math.isfinite(own)):
        return False
    if loss < 0 < own and abs(loss + own) <= MIRRORED * own and own >= UNLEARNT * math.log(k):
        # the own cross-entropy of a model at chance or worse, its sign flipped (hunt 93:
        # from step 0); a model that classifies may return as much by design (hunt 29:
        # `CE - entropy`, -0.895 against its own 0.96 at 94% val)
        return True
    if own <= math.log(k):
        return False
    acc = ev.probe_acc_train if ev.probe_acc_train is not None else ev.train_acc
    avoided = acc is not None and acc <= AVOIDED / k
    if own <= WORSE * math.log(k):
        # worse than a guess, not yet far: a negative loss with the labels avoided already
        # (hunt 93: `-cross_entropy` from step 0 under Adam 1e-4, val 3% at the first
        # validation, its own cross-entropy 1.1-1.4x ln 10: told 4 validations late)
        return loss < 0 and avoided
    # a positive loss far below the own one, with the training labels avoided: a loss
    # minimised by wrong answers (hunt 29: a focal loss written `p_t ** 2 * CE`, 0.0001
    # returned at 0% train accuracy, was told "a scaled loss: drop the factor")
    return loss < 0 or (avoided and loss < own / WORSE and not remapped(ev))


def remapped(ev: Evaluation) -> bool:
    """Whether the val probe is answered one-to-one with other classes (``REMAPPED``).

    Of 3 classes or more: a loss that rewards wrong answers scatters them, a model that
    learnt the labels remapped (``(y + 3) % 10`` in ``training_step``) answers each class
    with one other class (hunt 91: told "a loss minimised by wrong answers ... targets
    inverted"). Of 2 classes a remap is the targets inverted, which those words name.

    Example::

        >>> remapped(Evaluation(228, 5, classes=10.0, remap_share=0.94))
        True
        >>> remapped(Evaluation(228, 5, classes=10.0, remap_share=0.1))
        False
    """
    return (ev.classes or 0.0) >= 3 and (ev.remap_share or 0.0) >= REMAPPED


def below_floor(ev: Evaluation) -> bool:
    """Whether ``training_step``'s loss is under 0.9x the floor of a loss fed probabilities.

    ``ln(1 + (K - 1) / e)``: a cross-entropy of probabilities cannot fall lower.

    Example::

        >>> below_floor(Evaluation(64, 1, classes=10.0, returned_loss=0.115))
        True
        >>> below_floor(Evaluation(64, 1, classes=10.0, returned_loss=1.5))
        False
    """
    if not ev.classes or not finite(ev.returned_loss):
        return False
    return ev.returned_loss < 0.9 * probability_floor(ev.classes)  # type: ignore[operator]


def probability_floor(classes: float) -> float:
    """``ln(1 + (K - 1) / e)``: the lowest a cross-entropy fed probabilities can reach.

    Example::

        >>> round(probability_floor(10), 3)
        1.461
    """
    return math.log(1.0 + (classes - 1.0) / math.e)


AT_FLOOR = 1.2  # a returned loss within this factor of the floor of a loss fed probabilities
RANKED = 0.8  # ... while the train probe's images are ranked right this often


def at_floor(ev: Evaluation) -> bool:
    """Whether the loss ``training_step`` returns sits at a loss-fed-probabilities' floor.

    Within ``AT_FLOOR`` x ``ln(1 + (K - 1) / e)`` (and not under 0.9x it), under the
    outputs' own cross-entropy, while the train probe is ``RANKED`` right: the outputs'
    own cross-entropy falls as the model learns, a softmax's only to that floor. Held out
    (hunt 39): softmax before `cross_entropy`, train loss 1.61 at 87% train accuracy, the
    logged val loss the probe's softmax cross-entropy to 0.6% at six validations, unsaid
    where the probe's own cross-entropy spread too widely (a standard error of 0.53) to
    rule out the logged one.

    Example::

        >>> row = dict(classes=10.0, probe_acc_train=0.875, probe_loss_train=2.11)
        >>> at_floor(Evaluation(96, 2, returned_loss=1.61, **row))
        True
        >>> at_floor(Evaluation(96, 2, returned_loss=0.3, **row))
        False
    """
    acc = ev.probe_acc_train if ev.probe_acc_train is not None else ev.train_acc
    own, loss = own_loss(ev), ev.returned_loss
    if not ev.classes or not finite(loss, own) or acc is None or acc < RANKED:
        return False
    floor = probability_floor(ev.classes)
    # and the outputs' own cross-entropy above it: a loss of their softmax is lower than
    # theirs, while label smoothing's floor sits above it (hunt 40: smoothing 0.5, its
    # minimum 1.68, at 98% val)
    return 0.9 * floor <= loss <= AT_FLOOR * floor and own > loss  # type: ignore[operator]
