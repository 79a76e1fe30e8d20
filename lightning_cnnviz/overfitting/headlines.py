"""Each finding's headline: the one sentence of its warning, ``Finding`` and summary line.

Nothing here knows about Lightning. ``headline`` words a ``Verdict`` of any kind of
``OverfittingMonitor`` finding (a note when it went away); ``text.py`` builds the
``overfitting/diagnosis`` entry around it. The val-curve and level kinds are worded here;
``learning_words.py`` words a model at chance, ``pipeline_words.py`` and ``input_words.py``
the data and loss plumbing, ``imbalance_words.py`` left-out classes, ``climb_words.py`` a
training loss climbing back.

Example::

    >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
    >>> best = Evaluation(step=20, epoch=1, train_loss=0.5, val_loss=0.5)
    >>> since = Evaluation(step=30, epoch=2, train_loss=0.3, val_loss=0.6)
    >>> now = Evaluation(step=40, epoch=3, train_loss=0.2, val_loss=0.7)
    >>> headline(Verdict("overfitting", since, now, best, {"rise": 0.4}))[:75]
    'Overfitting since epoch 2 (step 30): val loss 0.7 is 40% above its best (0.'
    >>> headline(Verdict("overfitting", since, now, best, {"rise": 0.4}))[75:]
    '5 at epoch 1) while train loss fell to 0.2; stop at epoch 1.'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from lightning_cnnviz.core.voice import times
from lightning_cnnviz.overfitting import (
    bn_cause,
    class_gap,
    climb_words,
    imbalance_words,
    input_words,
    label_prior,
    labels_turned,
    learning_words,
    lr_decay,
    pipeline_words,
)
from lightning_cnnviz.overfitting.bn_ranks import levels_words
from lightning_cnnviz.overfitting.rules import accuracy_climbed
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import above, finite, num, train_words, when

__all__ = ["headline"]


def headline(v: Verdict) -> str:
    """One plain sentence for the warning, the ``Finding`` and the end-of-fit summary."""
    # a BatchNorm mismatch folded into its cause is told as its evidence (``bn_cause.fold``)
    beside = bn_cause.beside_words(v.figures) if v.severity == "problem" else ""
    return _BY_KIND.get(v.kind, _bn_mismatch)(v) + beside


def _overfitting(v: Verdict) -> str:
    """Val loss risen past its best while train loss falls."""
    f, now, since, best = v.figures, v.detected, v.since, v.best
    assert best is not None
    if v.severity == "note":
        back = (  # a new low, or back within the tolerance of the best (hunt 26: 0.1976
            # against a best of 0.1885 was called "a new low")
            f"reached a new low ({num(now.val_loss)} at epoch {now.epoch})"
            if now.val_loss is not None and now.val_loss < best.val_loss  # type: ignore[operator]
            else f"came back near its best ({num(now.val_loss)} at epoch {now.epoch}; "
            f"{num(best.val_loss)} at epoch {best.epoch})"
        )
        return (
            f"Val loss rose from epoch {since.epoch} but {back}: a temporary bump, no "
            "lasting overfitting so far."
        )
    # the accuracy beside it: a val loss may rise from over-confidence while val
    # accuracy holds (held out: best val loss at epoch 22, val accuracy's peak at 25)
    accuracy = (
        f" (lowest val loss; val accuracy {num(f['val_acc_at_best'], True)} then, "
        f"{num(f['val_acc'], True)} now, its peak {num(f['peak_val_acc'], True)} at "
        f"epoch {f['peak_epoch']})"
        if "peak_val_acc" in f
        else ""
    )
    stop = f"stop at epoch {best.epoch}"
    if (climbed := accuracy_climbed(f)) is not None:
        # held out: a one-validation dip of the val loss at epoch 3 (95.5% val accuracy)
        # was "the epoch to stop at" while the accuracy climbed to 97.1% at epoch 20
        stop += f" for the lowest val loss, or at epoch {climbed} for the best val accuracy"
    return (
        f"Overfitting since {when(since)}: val loss {num(now.val_loss)} is "
        f"{above(f['rise'])} its best ({num(best.val_loss)} at epoch {best.epoch}) "
        f"while train loss fell to {num(now.train_loss)}; {stop}{accuracy}."
    )


def _memorisation(v: Verdict) -> str:
    """Val accuracy falling while train accuracy climbs."""
    now, since, best = v.detected, v.since, v.best
    assert best is not None
    if v.severity == "note":
        return (
            f"Val accuracy fell from epoch {since.epoch} but reached a new high "
            f"({num(now.val_accuracy, True)} at epoch {now.epoch}): no lasting memorisation."
        )
    if v.figures.get("turned"):
        return labels_turned.headline(v)
    # a value logged per step is one batch's (``Evaluation.train_acc_images``): said so
    return (
        f"Memorisation since {when(since)}: val accuracy fell from "
        f"{num(best.val_accuracy, True)} (epoch {best.epoch}) to "
        f"{num(now.val_accuracy, True)} while {train_words(now, verb=' climbed to')}: the "
        "model fits training labels that do "
        "not generalise (noisy or wrong labels, or too few training images to learn the "
        "classes from?)."
    )


BACK = 0.1  # the val probe on batch statistics this near the train accuracy: level with it
GAP_LEFT = 0.05  # a train/val gap under this is closed; above it, narrowed (hunt 21: a
# 13-point gap of val images normalised otherwise had been told "closed")


def _generalisation_gap(v: Verdict) -> str:
    """Training images learnt, validation images not."""
    f, now, since = v.figures, v.detected, v.since
    train, val = train_words(now, f["train_acc"]), num(f["val_acc"], True)
    if v.severity == "note":
        left = (now.train_accuracy or 0.0) - (now.val_accuracy or 0.0)
        how = "closed" if left < GAP_LEFT else f"narrowed to {left * 100:.0f} points"
        return (
            f"The train/val accuracy gap from {when(since)} {how} at epoch {now.epoch} "
            f"({train_words(now)}, val {num(now.val_accuracy, True)})."
        )
    chance = " (the val probe's is within chance)" if f["val_at_chance"] else ""
    if f.get("val_below_chance"):  # hunt 23: labels permuted mid-run, val 1.0% "within chance"
        chance = (
            " (below chance: the model gives the val images other classes than their labels, "
            "as where labels mean different things in the two splits, or were shifted)"
        )
    on_batch = f.get("val_acc_bn")
    if on_batch is not None and abs(on_batch - f["val_acc"]) >= GAP_LEFT:
        chance += f" ({num(on_batch, True)} with BatchNorm on the val batches' own statistics)"
    differ = (
        "the splits differ in what decides the label: a cue only training images carry (a "
        "shortcut), a different preprocessing or augmentation of the two splits, labels "
        "that mean different things"
    )
    # some classes carry over and some do not: the splits; none does well: either
    why = (
        f"{differ}; or the model memorises a small training set"
        if f.get("split_classes")
        else "the model memorises its training images and what it learns does not carry over "
        f"to others: a training set too small or too noisy for the task, or {differ}"
    )
    if on_batch is not None and f["train_acc"] - on_batch < BACK:
        # the val batches' own statistics undo the gap: no memorising (held-out hunt 117)
        why = (
            "the val images differ from the training ones in what BatchNorm's batch "
            "statistics undo and its running statistics, gathered on training images, do "
            "not: a different preprocessing, noise, blur or another source of the val images"
        )
    return (
        f"Training images learnt, validation images not, since {when(since)}: "
        f"{train} vs {val} on validation{chance}.{_split_text(f)} Such a gap says "
        f"{why}." + _never_text(f)
    )


def _bn_mismatch(v: Verdict) -> str:
    """Eval mode below the same probe with batch statistics."""
    f, now, since = v.figures, v.detected, v.since
    if v.severity == "note" and f.get("early"):
        return _bn_mismatch(dataclasses.replace(v, severity="problem")) + (
            " A note for now: in a run's first half BatchNorm's running statistics often "
            "trail weights that move fast, and catch up; a problem if the gap lasts past it."
        )
    if v.severity == "note":
        return f"BatchNorm eval/train mismatch from {when(since)} closed at epoch {now.epoch}."
    if f.get("nonfinite"):
        layers = ", ".join(f"`{n}`" for n in f["nonfinite"])
        # an infinite variance divides the features to 0: finite outputs, alike for every
        # image (hunt 93: told "every validation output is NaN" at a val loss of 4.34)
        outputs = (
            "every validation output is NaN"
            if not finite(f.get("eval_loss"))
            else "each channel whose variance is infinite outputs the same for every image "
            "(its features divided to 0; the outputs stay finite)"
        )
        return (
            f"BatchNorm running statistics hold NaN/Inf since {when(since)} ({layers}): eval "
            f"mode normalises with them, so {outputs} ({levels_words(f)}), while training, "
            "on batch statistics, goes on."
        )
    if "batch_stats_rank" in f:  # multi-hot targets: no accuracy (hunt 110)
        same, apart = f.get("same_labels") or 0.0, f.get("same_labels_bn")
        with_bn = f" ({num(apart, True)} with batch statistics)" if apart is not None else ""
        alike = (
            f" In eval mode it gives the same labels to {num(same, True)} of the val probe's "
            f"images{with_bn}: the model learns, the running statistics it is evaluated with "
            "do not fit."
            if same >= label_prior.ALIKE
            else ""
        )
        return (
            f"BatchNorm running statistics do not match the batches since {when(since)}: "
            f"{levels_words(f)}.{alike}"
        )
    return (
        f"BatchNorm running statistics do not match the batches since {when(since)}: "
        f"{levels_words(f)} (loss {num(f['eval_loss'])} vs {num(f['batch_stats_loss'])})."
        + _train_images_text(f)
        + (f" {f['raised']} {bn_cause.BN_WORDS}" if f.get("raised") else "")
    )


def _train_images_text(f: dict) -> str:
    """Eval mode failing training images too, told beside unlike inputs (hunt 115)."""
    if not f.get("beside_inputs"):
        return ""
    train = (
        f" against {num(f['train_acc'], True)} train accuracy" if finite(f.get("train_acc")) else ""
    )
    return (
        f" Eval mode also reads only {num(f['train_eval_acc'], True)} on the train probe's "
        f"images{train}: the running statistics fail the images the model trained on, so "
        "this is not the val images' doing, and making both splits alike will not fix it."
    )


def _lr_decayed_early(v: Verdict) -> str:
    """Learning stalled after the learning rate was cut early."""
    f, since = v.figures, v.since
    return (
        "Learning all but stopped after the learning rate decayed early: it is "
        + (
            f"0 (it started at {num(f['lr_initial'])})"
            if f["lr"] == 0
            else f"{num(f['lr'])}, {times(f['cut'])} below its start ({num(f['lr_initial'])})"
        )
        + f", since "
        f"{when(since)} or before ({num(f['since_share'], True)} into the run), and val "
        f"loss has not improved by {100 * lr_decay.GAIN:.0f}% a validation since (from "
        f"{num(f['best_loss_since'])} to {num(f['val_loss'])}; val accuracy "
        f"{num(f['val_acc'], True)})."
    )


def _split_text(f: Mapping[str, Any]) -> str:
    """The classes learnt on training images and left out on validation ones, in words."""
    classes, taken = f.get("split_classes") or [], f.get("split_taken") or []
    if not classes:
        return ""
    plural = "es" if len(classes) > 1 else ""
    into = ", ".join(f"those of {a} for {b}" for a, b in zip(classes, taken, strict=True))
    text = (
        f" Class{plural} {', '.join(map(str, classes))}: learnt on the train probe, (almost) "
        f"never recognised on the val probe, whose images are taken for others ({into})."
    )
    pairs = class_gap.swapped_pairs(classes, taken)
    if pairs:
        names = ", ".join(f"{a} and {b}" for a, b in pairs)
        text += f" {names}: each taken for the other, swapped labels between the splits?"
    return text


def _never_text(f: Mapping[str, Any]) -> str:
    """Val at chance at every validation while training images are learnt: the labels too."""
    if not f.get("val_never_learnt"):
        return ""
    return (
        " With validation images at chance since the first validation, also check that each "
        "label belongs to its image, in both splits: validation labels shuffled or mapped "
        "otherwise give this from the start; random or shuffled training labels are learnt "
        "only by memorising, slowly, and nothing carries over."
    )


_BY_KIND: dict[str, Callable[[Verdict], str]] = {
    "overfitting": _overfitting,
    "memorisation": _memorisation,
    "not_learning": learning_words.headline,
    "class_imbalance": imbalance_words.headline,
    "loss_mismatch": pipeline_words.loss_mismatch,
    "val_metrics_differ": pipeline_words.val_metrics_differ,
    "inputs_differ": input_words.inputs_differ,
    "lr_decayed_early": _lr_decayed_early,
    "weight_decay_too_strong": climb_words.weight_decay_too_strong,
    "unstable_training": climb_words.unstable_training,
    "generalisation_gap": _generalisation_gap,
    "bn_mismatch": _bn_mismatch,
}
