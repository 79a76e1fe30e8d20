"""Classes the model leaves out: rare among its training labels, or given no weight.

Nothing here knows about Lightning. A model trained on imbalanced labels can reach
a high accuracy by predicting the common classes only: 90% of a training set in class
0 gave 92-94% logged train and val accuracy (val imbalanced alike) while two of four
classes were never predicted. Neither the logged accuracies nor their gap show it; the
class-balanced val probe does, class by class (its confusion counts).

A class as common as the others can be left out too, while every other class is learnt:
its loss has no weight (``cross_entropy(..., weight=w)`` with ``w[k] = 0``, an
``ignore_index`` set to it, a mask). Held out: class 3 weighted 0, or ``ignore_index=0``,
took 10% off val accuracy (86-88%, the class at 0% recall) and nothing was said.

``class_figures.probe_figures`` reads the val probe's confusion counts and the training
labels' class shares into the ``Evaluation``; ``class_imbalance`` is the rule (its sentence:
``imbalance_words.py``). Thresholds and why: ``docs/diagnosis.md``.

Example::

    >>> import torch
    >>> from lightning_cnnviz.overfitting.class_figures import probe_figures
    >>> confusion = [[30, 0, 0], [9, 1, 0], [2, 0, 8]]   # class 1 taken for class 0
    >>> shares = torch.tensor([0.9, 0.05, 0.05])
    >>> f = probe_figures(confusion, shares)
    >>> f["ignored"], f["taken_for"], f["ignored_share"], f["taken_share"]
    ([1], 0, 0.05, 0.9)
    >>> ev = Evaluation(0, 0, classes=3.0, **f)
    >>> leaves_out(ev), class_imbalance([ev, ev]).severity, class_imbalance([ev, ev, ev]).severity
    (True, 'note', 'problem')
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning_cnnviz.overfitting import class_fading, made_rare
from lightning_cnnviz.overfitting.chance_levels import chance_classes, near_uniform
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.made_rare import RARE  # a rare class: <= RARE x 1/K in training
from lightning_cnnviz.overfitting.small_steps import tiny_steps
from lightning_cnnviz.overfitting.untaught import common_left_out, untaught
from lightning_cnnviz.overfitting.verdict import Verdict

__all__ = [
    "COMMON",
    "ONE_CLASS",
    "OTHERS_CLEAR",
    "RARE",
    "STALL",
    "class_imbalance",
    "explains_val_loss",
    "leaves_out",
    "long_tail",
    "wants_train_loss",
]

COMMON = 1.5  # and the training labels imbalanced: their commonest class this times 1/K or more
# ... or the left-out class itself this rare, whatever the commonest (hunt 28: two classes
# of ten at 1:50, the commonest at 12.3%, left out at 1-11% val recall, told nothing)
VERY_RARE = 0.15
STALL = 0.05  # balanced accuracy no more than this above its best before: learning has stalled
ONE_CLASS = 0.999  # the commonest class's share of the training labels: a one-class set
OTHERS_CLEAR = 0.9  # ... a problem at once (no note first) where it is this or more
PREDICTED = 0.5  # a class recognised at a balanced val accuracy this high or more: learnt


def leaves_out(e: Evaluation) -> bool | None:
    """Whether classes are left out for their training labels (``None``: cannot tell).

    Rare classes of imbalanced labels: at most ``RARE`` x the uniform share ``1/K`` among
    the training labels, the commonest class at least ``COMMON`` x (or the rare class
    ``VERY_RARE`` x or less), or the tail of a long-tailed set (``long_tail``). Or a class
    that is not rare left out while the other classes' mean recall is ``OTHERS_LEARNT`` or more: a
    model that learns the others that well and none of this one, with as many labels of
    it, is not taught it (its loss has no weight); fewer than half the classes, of 3 or
    more (a 1-unit bottleneck that kept 2 of 10, or a 2-class model predicting one class,
    is a model not learning). Not where the left-out classes are
    taken for each other (``swapped_val_share``: 1 <-> 7 swapped in the training labels)
    or learnt on the train probe (``split_classes``): the train/val gap names those. Nor
    where the val probe's outputs are near uniform (``chance_levels.near_uniform``; hunt
    90: 5.8% positives at SGD 1e-5, told "rare classes left out" with sampling remedies):
    a model leaving rare classes out for their shares answers the common ones confidently;
    nor where its steps are too small to move it (``small_steps.tiny_steps``; hunt 92: a
    one-logit head initialised at the prior under Adam 1e-7).

    Their images may be taken for another rare class: with 90% of the training labels in
    class 0, a CNN told class 0 from the rest and took classes 1 and 2 (3.3% each) for
    class 3. Without the training labels' shares it cannot tell the cause. K: the labels'
    classes (``chance_classes``; held-out hunt 120: 2% of the labels was "common" on a
    1000-output head for labels 0-9, the prior shift told as memorisation).
    """
    if e.ignored is None:
        return None
    if not e.ignored:
        return False
    if e.missing:  # no training label at all: never predicted, whatever the other shares
        return True
    if near_uniform(e) or tiny_steps(e):
        return False  # a model that has not moved, or cannot: not one that learnt the shares
    k = chance_classes(e)
    if e.ignored_share is None or e.top_share is None or not k:
        return None
    uniform = 1.0 / k
    if e.ignored_share > RARE * uniform and not long_tail(e):  # not rare, the others learnt
        return common_left_out(e) and bool(untaught(e))
    return e.top_share >= COMMON * uniform or e.ignored_share <= VERY_RARE * uniform


def long_tail(e: Evaluation) -> bool:
    """Whether ``e``'s model predicts the commonest training classes only (a long tail's head).

    Every left-out class rarer than every class it predicts or under the uniform share
    ``1/K``, the commonest of them above
    ``RARE`` x the uniform share (else they are rare classes, told as such), the rarest
    ``RARE`` x or less, the commonest class ``COMMON`` x or more: left-out classes
    commoner than ``RARE`` x are the tail's upper part, not classes the loss does not teach
    (held out, hunt 61: a 100:1 tail, classes 29% .. 0.4%, predicted 0-2 only and stalled at
    30% val accuracy, the left-out class 3 at 9.7%, was never told).

    Example::

        >>> long_tail(Evaluation(0, 0, classes=10.0, ignored_share=0.097, ignored_min_share=0.004,
        ...                      kept_min_share=0.163, top_share=0.329))
        True
    """
    shares = (e.ignored_share, e.ignored_min_share, e.kept_min_share, e.top_share)
    k = chance_classes(e)
    if not k or any(v is None for v in shares):
        return False
    uniform = 1.0 / k
    # rarer than every class predicted, or each under the uniform share (hunt 64: a healthy
    # 10:1 tail predicting its class 7 early but not 5, 6, 8, 9 at 6.9% or less)
    tail = e.kept_min_share >= e.ignored_share or e.ignored_share < uniform  # type: ignore[operator]
    return (
        tail
        and e.ignored_share > RARE * uniform  # type: ignore[operator]
        and e.ignored_min_share <= RARE * uniform  # type: ignore[operator]
        and e.top_share >= COMMON * uniform  # type: ignore[operator]
    )


def wants_train_loss(e: Evaluation) -> bool:
    """Whether ``e`` leaves a common class out and needs the training probe's loss to tell why."""
    k = chance_classes(e)
    if not e.ignored or e.missing or e.ignored_share is None or not k:
        return False
    common = e.ignored_share > RARE / k and not long_tail(e)
    return common and e.probe_loss_train is None and common_left_out(e, measuring=True)


def explains_val_loss(history: Sequence[Evaluation], verdict: Verdict | None) -> bool:
    """Whether a class the loss does not teach (``verdict``'s) explains a rising val loss.

    The model grows surer of the other classes, so its answers on the left-out class's
    images grow surer and wrong: held out (hunt 53), the val loss of runs with a class
    ignored rose 8-17% while val accuracy climbed, told as overfitting ("stop at epoch
    ..."). Not where val accuracy fell ``STALL`` or more below its best since the class was
    left out: the classes taught overfit then. Rare classes explain it where they were made
    rare during the run and the common ones held (``made_rare.held_common``).

    Example::

        >>> row = dict(train_acc=0.95, train_loss=0.1)
        >>> v = Verdict("class_imbalance", Evaluation(10, 0), Evaluation(30, 2), None,
        ...             {"common": True})
        >>> held = [Evaluation(10 * i, i, val_acc=a, **row) for i, a in ((1, .8), (2, .81))]
        >>> fell = [*held, Evaluation(30, 3, val_acc=0.7, **row)]
        >>> explains_val_loss(held, v), explains_val_loss(fell, v)
        (True, False)
    """
    if verdict is None:
        return False
    if not verdict.figures.get("common"):
        return made_rare.held_common(history, verdict)
    if verdict.figures.get("faded"):  # the other classes held while it faded
        before = [e for e in history if e.step <= verdict.figures["predicted_at"]]
        return class_fading.others_held(history[-1], verdict.figures["ignored"], before)
    accs = [e.val_accuracy for e in history if e.step >= verdict.since.step]
    accs = [a for a in accs if a is not None]
    return bool(accs) and accs[-1] > max(accs) - STALL


def _stalled(streak: Sequence[Evaluation]) -> bool:
    """Whether the balanced accuracy at the end of ``streak`` is within ``STALL`` of its best."""
    accs = [e.balanced_acc_val for e in streak]
    if accs[-1] is None or all(a is None for a in accs[:-1]):
        return True  # no balanced accuracy to see progress by: the streak decides
    return accs[-1] <= max(a for a in accs[:-1] if a is not None) + STALL


def class_imbalance(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """Rare training classes left out (``leaves_out``) for the last ``patience`` evaluations.

    A note first: common classes are learnt first, and rare ones may follow. Healthy runs
    left them out at their first two or three validations: digit CNNs whose five rare
    classes had 1.8% or 3.5% of the training labels each (balanced accuracy 44% -> 70%,
    35% -> 56% -> 68%), a BatchNorm CNN on 90% class-0 shapes with an inverse-frequency
    weighted loss (50% at its second validation, every class predicted at its third). A
    problem once one more evaluation finds them still left out and the balanced accuracy
    stalled (at most ``STALL`` above its best since they were), or at the end of fit
    (``Detector.conclude``): the model on 90% class-0 shapes went 25% -> 33% -> 53% -> 50%.
    A problem at once where one class holds ``ONE_CLASS`` of the training labels (a
    dataset whose ``__getitem__`` ignores its index returned item 0 for every index), or
    where left-out classes have no training label at all (``missing``: a split made by
    class; held out, digits 8 and 9 left out of training capped val at 76% and the run
    ended "no problems found", the other eight classes' shares being even).

    A class learnt, then fading while the others hold, is told before it is left out
    (``class_fading.faded``, its figures).

    Figures: the left-out classes, the class they are taken for, both training shares,
    the val probe's balanced accuracy beside the plain one, ``early`` (the note) and
    ``one_class``.
    """
    left = _left_out(history, patience)
    # ... or learnt, then fading while the others hold: told before it is out (a note on
    # its way out, or none, says less)
    lost = class_fading.faded(history, patience)
    if lost is not None and (left is None or left.severity == "note"):
        since = next(e for e in history if e.step == lost["since_step"])
        return Verdict("class_imbalance", since, history[-1], None, lost)
    return left


def _left_out(history: Sequence[Evaluation], patience: int) -> Verdict | None:
    """``class_imbalance`` for classes left out (``leaves_out``) at the last evaluations."""
    evs = [e for e in history if leaves_out(e) is not None]
    streak = 0
    while streak < len(evs) and leaves_out(evs[-1 - streak]):
        streak += 1
    now = evs[-1] if evs else None
    if now is None or not streak:
        return None
    predicted = _predicted_before(history, evs[-streak], now.ignored or ())
    # rare now and not when predicted: the training draws changed (held-out hunt 125: a
    # sampler set at step 128), no late learner: no waiting, from the first evaluation
    then = made_rare.share_then(history, evs[-streak], now, predicted)
    # classes with no training label can never be learnt: no waiting
    if streak < (1 if now.missing or then is not None else patience):
        return None
    # one class holds every training label: nothing else can be learnt, so no waiting
    single = now.top_share is not None and now.top_share >= ONE_CLASS
    # a class as common as the others left out while they are all but perfect: no class
    # comes that late (held out: class 3 weighted 0 at 0% recall, the others at 95-99%),
    # once learning has stalled: a run still learning brings late classes in (hunt 58: a
    # BatchNorm resnet under focal loss left class 8 out at step 50, the others at 90%, its
    # balanced accuracy up from 50% to 82% since the last validation; 97% at the end)
    stalled = _stalled(evs[-streak:])
    tail = long_tail(now)
    k = chance_classes(now)
    common = bool(k and (now.ignored_share or 0.0) > RARE / k) and not tail
    clear = common and (now.others_recall_val or 0.0) >= OTHERS_CLEAR and stalled
    # ... or predicted before: a class lost while the loss lacks it is no late learner
    changed = then is not None
    waits = not (single or now.missing or clear or (common and predicted is not None) or changed)
    # a long tail's upper classes come late and unevenly: a note for the whole run, a
    # problem at its end if still left out (``Detector.conclude``; hunt 63: healthy 20:1
    # tails under SGD learnt theirs over 70% of the run; hunt 61: a 100:1 tail never did)
    early = waits and (streak == patience or tail or not stalled)
    figures = {
        "ignored": list(now.ignored or ()),
        "left_out": len(now.ignored or ()),
        "taken_for": now.taken_for,
        "ignored_share": now.ignored_share,
        "ignored_min_share": now.ignored_min_share,
        "tail": tail,
        "taken_share": now.taken_share,
        "top_share": now.top_share,
        "over_classes": now.over_classes,
        "ignored_val_share": now.ignored_val_share,
        "taken_val_share": now.taken_val_share,
        "balanced_acc": now.balanced_acc_val,
        "balanced_acc_since": evs[-streak].balanced_acc_val,
        "accuracy": now.val_accuracy,
        "early": early,
        "one_class": single,
        "missing": list(now.missing or ()),
        "dropped": now.dropped_items or 0.0,
        "common": common and not now.missing,  # not rare: not taught (``leaves_out``)
        "others_recall": now.others_recall_val,
        "shift": now.shift,
        "shift_share": now.shift_share,
        "predicted_at": predicted,  # recognised before: changed during the run
        "share_then": then,  # the left-out classes' least share when predicted, not rare
    }
    severity = "note" if early else "problem"
    return Verdict("class_imbalance", evs[-streak], now, None, figures, severity)


def _predicted_before(
    history: Sequence[Evaluation], since: Evaluation, classes: Sequence[int]
) -> int | None:
    """The last step before ``since`` at which a model that had learnt recognised ``classes``.

    Learnt: a balanced val accuracy ``PREDICTED`` or more (a start at chance predicts
    classes by chance). A class learnt, then left out while the others stay learnt, was
    taught until then: the training labels or the loss changed for it during the run
    (held out, hunt 54: training labels 1 -> 7, 3 -> 8, 4 -> 9 from step 250 were told
    "not taught: a `weight=` of 0", the shares read at the start calling them common).

    Example::

        >>> seen = [Evaluation(10, 0, ignored=[], balanced_acc_val=0.9),
        ...         Evaluation(20, 1, ignored=[3], balanced_acc_val=0.8)]
        >>> _predicted_before(seen, seen[1], [3]), _predicted_before(seen, seen[0], [3])
        (10, None)
        >>> _predicted_before([Evaluation(10, 0, ignored=[], balanced_acc_val=0.2), seen[1]],
        ...                   seen[1], [3])  # a start at chance predicts classes by chance
    """
    before = [e for e in history if e.step < since.step and e.ignored is not None]
    known = [e for e in before if not set(classes) & set(e.ignored or ())
             and (e.balanced_acc_val or 0.0) >= PREDICTED]  # fmt: skip
    return known[-1].step if known else None
