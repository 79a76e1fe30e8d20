"""The ``class_imbalance`` finding in one sentence: which classes, for which, and why.

Nothing here knows about Lightning. Rare classes left out (and whether they are learnt
yet), one class holding every training label, classes with no training label at all,
training labels moved from one class to another (``class_figures.relabelled``), a class
as common as the others left out while they are learnt (no weight in the loss), or one
learnt and fading during the run (``class_fading``).

Example::

    >>> import torch
    >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
    >>> from lightning_cnnviz.overfitting.class_figures import probe_figures
    >>> from lightning_cnnviz.overfitting.imbalance import class_imbalance
    >>> ev = Evaluation(0, 2, classes=3.0, **probe_figures([[30, 0, 0], [9, 1, 0], [2, 0, 8]],
    ...                                                     torch.tensor([0.9, 0.05, 0.05])))
    >>> headline(class_imbalance([ev, ev, ev]))[:66]
    'Rare classes left out since epoch 2 (step 0): the model (almost) n'
"""

from __future__ import annotations

from lightning_cnnviz.overfitting.chance_levels import chance_classes
from lightning_cnnviz.overfitting.class_figures import relabelled, shifted
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import finite, num, when

__all__ = ["headline"]


def headline(v: Verdict) -> str:
    """``class_imbalance`` in one sentence: which classes are left out, for which, and why."""
    f, now, since = v.figures, v.detected, v.since
    if v.severity == "note" and not f.get("early"):
        return (
            f"Classes left out since {when(since)} are predicted again at epoch {now.epoch} "
            f"(balanced accuracy {num(now.balanced_acc_val, True)})."
        )
    if f.get("faded"):
        return _faded(v)
    left = ", ".join(map(str, f["ignored"]))
    if f.get("common") and not relabelled(f, chance_classes(now)):
        return _unweighted(v, left)
    plural, each = ("es", " each") if len(f["ignored"]) > 1 else ("", "")
    classes = (
        f"class{plural} {left} ({num(f['ignored_share'], True)} of the training labels or "
        f"less{each}; the commonest class has {num(f['top_share'], True)})"
    )
    rare = "Rare classes"
    if f.get("tail"):  # the upper tail is no rarer than 1/K: say where it sits
        rare = "The tail of a long-tailed training set"
        classes = (
            f"classes {left} ({num(f['ignored_share'], True)} down to "
            f"{num(f['ignored_min_share'], True)} of the training labels; the commonest "
            f"class has {num(f['top_share'], True)}), only the commonest classes being predicted"
        )
    balanced = num(f["balanced_acc"], True)
    if f.get("early"):
        until = "A note while it rises; a problem if it stalls."
        if f.get("tail"):  # ``imbalance.class_imbalance``: a note until the end of fit
            until = (
                "A note while the run lasts: a long tail's rarer classes come late; a problem "
                "if they are still left out at the end of fit."
            )
        return (
            f"{rare} not predicted yet since {when(since)}: {classes}, taken for class "
            f"{f['taken_for']}. Common classes are learnt first; the balanced accuracy (mean "
            f"over classes, val probe) went {num(f['balanced_acc_since'], True)} -> "
            f"{balanced}. {until}"
        )
    acc = num(f["accuracy"], True)
    if finite(f["accuracy"], f["balanced_acc"]) and f["accuracy"] - f["balanced_acc"] >= 0.1:
        shown = f"Val accuracy {acc} hides it: the balanced accuracy (mean over classes, "
        shown += f"val probe) is {balanced}."
    else:
        shown = f"Balanced accuracy (mean over classes, val probe) {balanced}, val accuracy {acc}."
    end = " at the end of fit" if f.get("at_end") else ""
    if f.get("one_class"):
        return (
            f"One class holds every training label{end}: since {when(since)} the model "
            f"predicts class {f['taken_for']} for every image ({num(f['taken_share'], True)} "
            f"of the val probe's other classes); nothing else can be learnt. A dataset whose "
            "`__getitem__` ignores its index, a label column read wrong, or a filter that "
            f"kept one class? {shown}"
        )
    if shifted(f):
        c = f["shift"]
        return (
            f"The val labels look shifted by {-c:+d} from the training labels{end}: since "
            f"{when(since)} the model predicts class k{c:+d} for {num(f['shift_share'], True)} "
            f"of the val probe's images of class k, and class {f['missing'][0]} never appears "
            "among the training labels. A label mapping applied to one split only (labels "
            f"counted from 1 in one, from 0 in the other)? {shown}"
        )
    if f.get("missing"):
        gone = ", ".join(map(str, f["missing"]))
        plural = "es" if len(f["missing"]) > 1 else ""
        them = "them" if plural else "it"
        why = f"A training split made by class, a filter or a label mapping that dropped {them}?"
        if f.get("dropped"):
            why = (
                f"The training loader reads its items in a fixed order and drops the last "
                f"{f['dropped']:.0f} every epoch (`drop_last=True` cuts its last part-batch): "
                f"class{plural} {gone} stored last, among them? Else: {why[0].lower()}{why[1:]}"
            )
        return (
            f"Class{plural} {gone} never appear{'' if plural else 's'} among the training labels"
            f"{' the loader reads' if f.get('dropped') else ''}{end}, but the val probe has "
            f"images of {them}: since {when(since)} the model takes {them} for class "
            f"{f['taken_for']}, and it can never predict {them}. "
            f"{why} {shown}"
        )
    if relabelled(f, chance_classes(now)):
        return (
            f"Training labels of class {left} look moved to class {f['taken_for']} since "
            f"{when(since)}{end}: the model (almost) never predicts class {left} and takes "
            f"its images for class {f['taken_for']}. Class {left} is "
            f"{num(f['ignored_share'], True)} of the training labels but "
            f"{num(f['ignored_val_share'], True)} of the val probe, and class "
            f"{f['taken_for']} {num(f['taken_share'], True)} vs "
            f"{num(f['taken_val_share'], True)}: images of class {left} labelled "
            f"{f['taken_for']} in training (wrong labels, not a rare class)? {shown}"
        )
    cut = ""
    if f.get("dropped"):  # hunt 43: 16 of a class's 17 items stored last, cut every epoch
        cut = (
            f" The training loader reads its items in a fixed order and drops the last "
            f"{f['dropped']:.0f} every epoch (`drop_last=True`): items of class {left} stored "
            "last, among them?"
        )
    if f.get("share_then") is not None:  # hunt 125: a sampler set during the run
        them = "them" if plural else "it"
        cut += (
            f" {'They were' if plural else 'It was'} predicted at step {f['predicted_at']}, "
            f"at {num(f['share_then'], True)} of the training labels or more{each}: the "
            f"training draws changed since (a sampler, filter or label map that now yields "
            f"{them} rarely?); the val accuracy falls with {them}, not from overfitting."
        )
    return (
        f"{rare} left out since {when(since)}{end}: the model (almost) never predicts "
        f"{classes} and takes {'their' if plural else 'its'} images for class {f['taken_for']} "
        f"({num(f['taken_share'], True)}).{cut} {shown}"
    )


def _unweighted(v: Verdict, left: str) -> str:
    """A class as common as the others, left out while they are learnt: given no weight."""
    f, since = v.figures, v.since
    plural = "es" if len(f["ignored"]) > 1 else ""
    state = "not predicted yet" if f.get("early") else "left out"
    end = " at the end of fit" if f.get("at_end") else ""
    text = (
        f"Class{plural} {left} {state} since {when(since)}{end}: the model (almost) never "
        f"predicts {'them' if plural else 'it'} and takes {'their' if plural else 'its'} "
        f"images for class {f['taken_for']}, while the other classes are learnt (mean recall "
        f"{num(f['others_recall'], True)} on the val probe) and class{plural} {left} "
    )
    them = "them" if plural else "it"
    if f.get("predicted_at") is not None:  # learnt before: what changed during the run?
        return text + (
            f"{'were' if plural else 'was'} predicted at step {f['predicted_at']}. The training "
            f"labels or the loss changed for {them} since: a label map, filter or sampler "
            f"that no longer yields {them}, a `weight=` of 0 or an `ignore_index` set during "
            "the run?"
        )
    text += (
        f"{'are' if plural else 'is'} not rare in training ({num(f['ignored_share'], True)} "
        f"of the labels). {'They are' if plural else 'It is'} not taught: a `weight=` of 0 "
        f"or near it for {them} in `cross_entropy`, an `ignore_index` set to {them}, a mask "
        f"that drops {them}, a sampler of the run's own that never draws {them}, or parts of "
        "the model that cannot learn?"  # hunt 61: the shares read are the dataset's
    )
    if f.get("early"):
        text += " A note for now; a problem if the balanced accuracy stalls."
    return text


def _faded(v: Verdict) -> str:
    """Classes learnt, then fading while the others hold (``class_fading.faded``)."""
    f = v.figures
    plural = len(f["faded"]) > 1
    each = "; ".join(f"class {k} {num(best, True)} (step {at}) -> {num(now, True)}"
                     for k, best, at, now in f["faded"])  # fmt: skip
    left = ", ".join(str(k) for k, *_ in f["faded"])
    them = "them" if plural else "it"
    return (
        f"Class{'es' if plural else ''} {left} fading since {when(v.since)}: the model "
        f"learnt {them} and is unlearning {them} while the other classes hold (mean recall "
        f"{num(f['others_recall'], True)} on the val probe); recall on the val probe: {each}. "
        f"The training batches or the loss stopped teaching {them} during the run: a "
        f"sampler, filter or label map that no longer yields {them}, a `weight=` of 0 or an "
        f"`ignore_index` set to {them}, {'their' if plural else 'its'} labels changed? "
        f"Val accuracy {num(f['accuracy'], True)}, falling with {them}: not overfitting."
    )
