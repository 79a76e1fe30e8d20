"""Where the val probe stands against chance: at it, below it.

Nothing here knows about Lightning. The level rules (``levels.py``, ``gap.py``,
``bn_levels.py``, ``loss_reads.py``) ask these of one evaluation: whether the val probe is
at chance (``stuck``, within ``chance_band``, unless the logged val accuracy over the
whole val set is clearly past it: ``logged_past_chance``), whether its outputs score
something else than the labels' classes (``scores_elsewhere``) and whether val accuracy is
far below chance (``below_chance``). Whether it was clearly past chance is ``learnt.py``'s.

Example::

    >>> e = Evaluation(60, 1, probe_acc_val=0.11, probe_loss_val=2.3, probe_size=128.0,
    ...                classes=10.0)
    >>> stuck(e), below_chance(e)
    (True, False)
"""

from __future__ import annotations

import math

from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.words import finite

__all__ = [
    "BELOW_CHANCE_LOSS",
    "OUTSIDE",
    "TRAINS",
    "accuracy_read",
    "below_chance",
    "chance_band",
    "chance_classes",
    "logged_accuracy",
    "logged_past_chance",
    "near_uniform",
    "scores_elsewhere",
    "stuck",
    "too_small",
    "wide",
]


def chance_band(classes: int, probe_size: int) -> float:
    """Highest probe accuracy still at chance: ``1/K`` plus 3 binomial standard errors.

    Example::

        >>> round(chance_band(10, 128), 3)
        0.18
    """
    p = 1.0 / classes
    return p + 3 * math.sqrt(p * (1 - p) / max(1, probe_size))


UNMOVED = 0.1
"""The val probe's mean confidence at most this share of the way from ``1/K`` to 1: outputs
near uniform, a model that has not moved (not even to the label prior)."""


def near_uniform(e: Evaluation) -> bool:
    """Whether the val probe's mean confidence is near ``1/K`` (``UNMOVED``).

    A model leaving rare classes out for their training shares answers the common ones
    confidently; a slow but learning one grows confident past this within its first
    steps. Held out (hunt 90): 5.8% positives under SGD 1e-5, mean confidence 0.51-0.54
    on 2 classes for 282 steps, its loss at ln 2.

    Example::

        >>> near_uniform(Evaluation(90, 1, conf_val=0.53, classes=2.0))
        True
        >>> near_uniform(Evaluation(90, 1, conf_val=0.3, classes=10.0))
        False
    """
    k = chance_classes(e)  # spread over the labels' classes only is no move either
    if e.conf_val is None or k < 2:
        return False
    uniform = 1.0 / k
    return e.conf_val <= uniform + UNMOVED * (1.0 - uniform)


BELOW_CHANCE_LOSS = 0.95
"""A val probe loss under this share of ``ln K`` has learnt something, whatever its accuracy."""


OUTSIDE = 0.5
"""The share of val probe images whose largest output lies past every label's index beyond
which the outputs do not score the labels' classes (``scores_elsewhere``)."""
TRAINS = 0.8
"""... while the loss training returns is below this share of their cross-entropy."""
FELL = 0.85
"""... or fell to this share of its first value, their cross-entropy still at ``ln K``."""


def scores_elsewhere(e: Evaluation) -> bool:
    """Whether the outputs score something other than the labels' classes.

    Outputs at least twice as wide as the labels' classes whose largest entry lies past
    every label on ``OUTSIDE`` of the val probe (``probe_outside_val``), while the loss
    ``training_step`` returns sits below ``TRAINS`` of the outputs' cross-entropy over
    the labels on the val probe: the run trains another loss on them. A classifier
    trained by that cross-entropy moves its largest outputs onto the labels' indices
    (even one with a head too wide: `num_classes` left at 1000 for 10 labels), and one
    that learns nothing returns about its probe's cross-entropy, so both are still
    judged. An embedding trained by a metric loss (setups hunt 26: 64 dimensions against
    labels 0-9, SupCon 1.93 against a probe cross-entropy of 4.6) read as a 64-class
    model at chance, told "not learning". Or, on outputs at least twice as wide as the
    labels' classes, the loss returned fell (``FELL``) while their cross-entropy over the
    labels stays at ``ln K`` (``BELOW_CHANCE_LOSS``), where a contrastive loss may sit
    (setups hunt 48: NT-Xent 4.14 -> 3.50 on a 32-wide projection, labels 0-9, its probe
    cross-entropy 3.46 = ln 32, its largest outputs on label indices by chance).

    Example::

        >>> scores_elsewhere(Evaluation(10, 0, probe_outside_val=0.84, returned_loss=1.93,
        ...                             probe_loss_val=4.6))
        True
        >>> scores_elsewhere(Evaluation(10, 0, probe_outside_val=0.99, returned_loss=6.9,
        ...                             probe_loss_val=6.91))  # 1000 outputs, not learning
        False
        >>> scores_elsewhere(Evaluation(48, 2, probe_outside_val=0.23, returned_loss=3.50,
        ...                  first_loss=4.14, probe_loss_val=3.46, classes=32, label_classes=10))
        True
    """
    share, trained, own = e.probe_outside_val, e.returned_loss, e.probe_loss_val
    if share is None or trained is None or own is None or not finite(trained) or not finite(own):
        return False
    if (share >= OUTSIDE or wide(e)) and trained < TRAINS * own:
        return True  # (setups hunt 76: MoCo, 32 wide against labels 0-3, 4.15 against 5.25)
    k, first = e.classes, e.first_loss
    if not wide(e) or not finite(first):
        return False
    return 0 < trained <= FELL * first and own >= BELOW_CHANCE_LOSS * math.log(k)  # type: ignore[arg-type,operator]


def accuracy_read(e: Evaluation) -> bool:
    """Whether ``e``'s val accuracy is one: logged, or the probe's on outputs scoring classes.

    Not the argmax of outputs that score something else (hunt 101: a triplet embedding's
    read as "val accuracy 0.0% then, 3.9% now, its peak 11.7%").

    Example::

        >>> accuracy_read(Evaluation(10, 0, probe_outside_val=0.84, returned_loss=1.93,
        ...                          probe_loss_val=4.6, probe_acc_val=0.1))
        False
    """
    return e.val_acc is not None or not scores_elsewhere(e)


def wide(e: Evaluation) -> bool:
    """Whether the outputs are at least twice as wide as the labels' classes (2 or more)."""
    labels = e.label_classes
    return bool(e.classes and labels and labels >= 2 and e.classes >= 2 * labels)


def chance_classes(e: Evaluation) -> int:
    """K of every rule reasoning about classes: the labels', where the outputs are twice as wide.

    Else the outputs' width. A head left at 100 outputs for labels 0-9 (hunt 50): a model
    at 10% and ln 10 was read as learning against 1% and ln 100. The class-imbalance rules'
    uniform share 1/K too (held-out hunt 120: 2% of the training labels was "common" on a
    1000-output head, rare against 1/10).

    Example::

        >>> chance_classes(Evaluation(0, 0, classes=100.0, label_classes=10.0))
        10
    """
    return int(e.label_classes) if wide(e) else int(e.classes or 0)  # type: ignore[arg-type]


def too_small(k: int, band: float) -> bool:
    """A probe too small to tell chance from learning: its band past halfway to 100%."""
    return band > 1 / k + 0.5 * (1 - 1 / k)


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
    if e.classes is None or e.classes < 2 or e.probe_acc_val is None or scores_elsewhere(e):
        return None
    if not finite(e.probe_loss_val):
        return True  # non-finite outputs: nothing is learnt any more
    k = chance_classes(e)
    band = chance_band(k, int(e.probe_size or 0))
    if too_small(k, band):
        return None
    if e.probe_loss_val is not None and e.probe_loss_val < BELOW_CHANCE_LOSS * math.log(k):
        return False
    return e.probe_acc_val <= band and not logged_past_chance(e)


LOGGED_PAST = 3.0
"""The logged val accuracy this many binomial standard errors above chance, over the images
a validation sees (``val_images``), is past chance whatever the probe's few images say (the
probe's own band allows as many)."""


def logged_past_chance(e: Evaluation) -> bool:
    """Whether the logged val accuracy is ``LOGGED_PAST`` standard errors above chance.

    Chance is ``1/K``, or the commonest class's share in the batches validated where
    higher (``val_major``: a model answering that class scores it; unknown, the logged
    accuracy is not read: hunt 99, a majority answerer at 61% of a 60/40 val set was past
    a class-balanced probe's 50%); the logged accuracy counts only where it agrees with the
    probe's within the probe's own error (three of its standard errors): the same model's
    accuracy on the same labels, not top-5 or another model's. Held out (hunt 98):
    a slow 3-class Conv1d learner, 40% -> 53% on 1000 val signals (chance 33.3%, one
    error 1.5 points), was "at chance" for ten validations from a 128-image probe at 39.8%,
    inside its 45.8% band.

    Example::

        >>> row = dict(classes=3.0, probe_size=128.0, val_major=0.34)
        >>> logged_past_chance(Evaluation(78, 1, val_acc=0.403, val_images=1000.0,
        ...                               probe_acc_val=0.398, **row))
        True
        >>> logged_past_chance(Evaluation(78, 1, val_acc=0.36, val_images=1000.0,
        ...                               probe_acc_val=0.35, **row))  # 1.3 errors
        False
        >>> logged_past_chance(Evaluation(78, 1, val_acc=0.403, val_images=150.0,
        ...                               probe_acc_val=0.398, **row))  # 1.6 errors of 150
        False
    """
    acc, n = logged_accuracy(e), e.val_images
    if acc is None or not n or e.val_major is None:
        return False
    p = max(1.0 / chance_classes(e), e.val_major)
    return acc > p + LOGGED_PAST * math.sqrt(p * (1 - p) / n)


def logged_accuracy(e: Evaluation) -> float | None:
    """The logged val accuracy where it is this model's on these labels, else ``None``.

    It agrees with the val probe's within three of the probe's binomial errors at chance
    (not top-5, a percentage, or another model's).

    Example::

        >>> row = dict(classes=6.0, probe_size=128.0, probe_acc_val=0.5)
        >>> logged_accuracy(Evaluation(0, 0, val_acc=0.562, **row))
        0.562
        >>> logged_accuracy(Evaluation(0, 0, val_acc=56.2, **row)) is None
        True
    """
    acc, probe = e.val_acc, e.probe_acc_val
    if acc is None or probe is None or not e.classes or e.classes < 2:
        return None
    p = max(1.0 / chance_classes(e), e.val_major or 0.0)
    spread = math.sqrt(p * (1 - p) / max(1.0, e.probe_size or 1.0))
    return acc if abs(probe - acc) <= 3 * spread else None


def below_chance(now: Evaluation) -> bool:
    """Whether val accuracy is below half of chance while train accuracy is well above it.

    Well above: twice chance, or halfway from chance to 100% where that is lower (two
    classes: over 75%; twice chance there is 100%, never exceeded: hunt 108, 0.0% val
    accuracy on two classes beside 100% train was said "within chance"). Below: under
    half of chance, or as far under it as the chance band reaches over it.

    Updates that undo learning leave a model at chance, never far below it; below it, the
    model learnt labels that mean other things on the val set (held out, hunt 23: labels
    permuted from step 96, val 1.7% with train 82%, told "the updates have grown too
    large").

    Example::

        >>> now = Evaluation(step=160, epoch=4, train_acc=0.825, val_acc=0.017, classes=10.0)
        >>> below_chance(now)
        True
        >>> below_chance(Evaluation(step=160, epoch=4, train_acc=1.0, val_acc=0.0, classes=2.0))
        True
        >>> from dataclasses import replace
        >>> two = Evaluation(step=160, epoch=4, train_acc=1.0, val_acc=0.33, classes=2.0)
        >>> below_chance(two), below_chance(replace(two, probe_size=128.0))
        (False, True)
    """
    k, train, val = now.classes, now.train_accuracy, now.val_accuracy
    if k is None or k < 2 or train is None or val is None:
        return False
    # or as far under chance as the chance band reaches over it, on the probe's images
    # (hunt 109: 33% of 300 two-class val images, 5.9 standard errors under, "within chance")
    under = 2 / k - chance_band(int(k), int(now.probe_size or 0))
    return val < max(0.5 / k, under) and train > min(2 / k, (1 + 1 / k) / 2)
