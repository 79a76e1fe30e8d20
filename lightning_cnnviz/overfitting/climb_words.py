"""A training loss climbing back, in words: weight decay too strong, training unstable.

Nothing here knows about Lightning. The headlines of ``loss_climb.py``'s two findings, and
the note either ends in once the loss is back near its lowest (``headlines.py`` words the
other kinds).

Example::

    >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
    >>> best = Evaluation(step=20, epoch=1, train_loss=0.3)
    >>> now = Evaluation(step=60, epoch=5, train_loss=0.31)
    >>> loss_back(Verdict("unstable_training", best, now, best, {"best_train_loss": 0.3,
    ...                                                           "best_epoch": 1}))
    'The training loss is back near its lowest (0.31 at epoch 5; 0.3 at epoch 1).'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning_cnnviz.core.decay import decay_words
from lightning_cnnviz.core.momentum_words import momentum_text
from lightning_cnnviz.overfitting.learning_remedies import settings_raised
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import above, num, when

__all__ = ["MIXED_GAP", "loss_back", "unstable_training", "weight_decay_too_strong"]


MIXED_GAP = 0.1  # train accuracy this far below val's: read against mixed targets


def weight_decay_too_strong(v: Verdict) -> str:
    """The training loss climbing back under strong weight decay."""
    f, since = v.figures, v.since
    if v.severity == "note":
        return loss_back(v)
    decay = decay_words(f["weight_decay"], f["lr"], f.get("decay_per_step"))
    if f.get("raised_from") is not None:  # raised during the run, told at once (decay_rule)
        return (
            f"Weight decay too strong since it was raised during the run: {decay} "
            f"(up from {100 * f['raised_from']:.2g}% at epoch {f['raised_after'][0]}, step "
            f"{f['raised_after'][1]}). The weights' norm shrank "
            f"{f['shrunk']:.0%} in the {f['steps']} steps since the evaluation before, the "
            f"training loss climbed back to {above(f['rise'])} its lowest "
            f"({num(f['best_train_loss'])} at epoch {f['best_epoch']}, now "
            f"{num(f['train_loss'])}) and val accuracy went {num(f['val_acc_before'], True)} "
            f"-> {num(f['val_acc'], True)}: the decay undoes what the gradients build."
        )
    if f.get("held_back"):
        train, val = f.get("train_acc"), f.get("val_acc")
        # a train accuracy far below val's is read against targets mixed or softened
        # (MixUp, CutMix: hunt 50, 54% against 80%): no sign of a model that cannot fit
        fit = (
            "the model cannot fit the training data"
            if train is None or val is None or train >= val - MIXED_GAP
            else "the model fits its targets no better (a train accuracy far below val's is "
            "read against targets mixed or softened, as MixUp's and CutMix's are, which keep "
            "the loss up too)"
        )
        return (
            f"Weight decay too strong: {decay}, and the training loss has stayed "
            f"at {num(f['train_loss'])} since {when(since)} "
            f"({num(f['train_loss'] / f['chance_loss'], True)} of its chance level "
            f"ln K = {num(f['chance_loss'])}): the decay holds the weights near zero and "
            f"{fit} (train accuracy {num(train, True)}, val accuracy {num(val, True)})."
        )
    return (
        f"Weight decay too strong: {decay}, and the training loss has climbed "
        f"back to {above(f['rise'])} its lowest since {when(since)} "
        f"({num(f['best_train_loss'])} at epoch {f['best_epoch']}, now "
        f"{num(f['train_loss'])}) at that rate: the decay undoes what the gradients "
        f"build (val accuracy {num(f['val_acc'], True)})."
    )


def unstable_training(v: Verdict) -> str:
    """The training loss climbing back at an unchanged learning rate."""
    f, now, since = v.figures, v.detected, v.since
    if v.severity == "note":
        return loss_back(v)
    acc = f.get("train_acc_at_best")
    fell = (
        f", train accuracy {num(acc, True)} -> {num(now.train_accuracy, True)}"
        if acc is not None and now.train_accuracy is not None
        else ""
    )
    climbed = (
        f"Training unstable: the training loss has climbed back to {above(f['rise'])} its lowest "
        f"since {when(since)} ({num(f['best_train_loss'])} at epoch {f['best_epoch']}, now "
        f"{num(f['train_loss'])}{fell}) at a learning rate no higher ({num(f['lr'])})"
    )
    if (said := settings_raised(v)) is not None:  # set during the run: that, not the rate
        return f"{climbed}, val accuracy {_val_fall(f)}. {said}"
    return (
        f"{climbed}: the updates have grown too large for where the model now is (or the training "
        "batches changed from then on: labels noisier, images otherwise; or a part of the "
        "loss works against the task: a gradient-reversal layer, an adversarial term), and "
        f"undo what it learnt (val accuracy {_val_fall(f)})." + momentum_text(f.get("momentum"))
    )


def _val_fall(f: Mapping[str, Any]) -> str:
    """``92.0% -> 66.0%``: the val accuracy at the lowest train loss and now (now alone)."""
    then = f.get("val_acc_at_best")
    now = num(f["val_acc"], True)
    return now if then is None else f"{num(then, True)} -> {now}"


def loss_back(v: Verdict) -> str:
    """A climbing training loss back near its lowest: the note either climb rule ends in."""
    f, now = v.figures, v.detected
    return (
        f"The training loss is back near its lowest ({num(now.train_loss)} at epoch "
        f"{now.epoch}; {num(f['best_train_loss'])} at epoch {f['best_epoch']})."
    )
