"""Each finding's headline: the one sentence of its warning, ``Finding`` and summary line.

Nothing here knows about Lightning. ``headline`` words a ``Verdict`` of any kind of
``OverfittingMonitor`` finding (a note when it went away); ``text.py`` builds the
``overfitting/diagnosis`` entry around it.

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

import math
from collections.abc import Mapping
from typing import Any

from lightning_cnnviz.core.settings import momentum_text
from lightning_cnnviz.overfitting import bn_levels, class_gap, imbalance_words, levels, lr_decay
from lightning_cnnviz.overfitting.remedies import LR_CUT, raised
from lightning_cnnviz.overfitting.rules import Verdict, accuracy_climbed
from lightning_cnnviz.overfitting.words import num, when

__all__ = ["headline"]


def headline(v: Verdict) -> str:
    """One plain sentence for the warning, the ``Finding`` and the end-of-fit summary."""
    f, now, since, best = v.figures, v.detected, v.since, v.best
    gone = v.severity == "note"
    if v.kind == "overfitting":
        assert best is not None
        if gone:
            return (
                f"Val loss rose from epoch {since.epoch} but reached a new low "
                f"({num(now.val_loss)} at epoch {now.epoch}): a temporary bump, no lasting "
                "overfitting so far."
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
            f"{f['rise']:.0%} above its best ({num(best.val_loss)} at epoch {best.epoch}) "
            f"while train loss fell to {num(now.train_loss)}; {stop}{accuracy}."
        )
    if v.kind == "memorisation":
        assert best is not None
        if gone:
            return (
                f"Val accuracy fell from epoch {since.epoch} but reached a new high "
                f"({num(now.val_accuracy, True)} at epoch {now.epoch}): no lasting memorisation."
            )
        # a value logged per step is the latest batch's (``Evaluation.train_acc_images``)
        batch = " (the latest batch's)" if now.train_acc_images else ""
        return (
            f"Memorisation since {when(since)}: val accuracy fell from "
            f"{num(best.val_accuracy, True)} (epoch {best.epoch}) to "
            f"{num(now.val_accuracy, True)} while train accuracy climbed to "
            f"{num(now.train_accuracy, True)}{batch}: the model fits training labels that do "
            "not generalise (noisy or wrong labels?)."
        )
    if v.kind == "not_learning":
        if gone and levels.stuck(now) and bn_levels.parted(now):
            return (
                f"Val accuracy at chance in eval mode since {when(since)}, but with batch "
                f"statistics the same probe reaches {num(now.probe_acc_bn, True)} at epoch "
                f"{now.epoch} (eval mode {num(now.bn_eval_acc, True)}): the model learns; "
                "BatchNorm's running statistics do not match its batches (`bn_mismatch`)."
            )
        if gone and levels.stuck(now):
            return (
                f"Val accuracy at chance since {when(since)}, but training images are learnt "
                f"at epoch {now.epoch} (train {num(now.train_accuracy, True)}, train probe "
                f"{num(now.probe_acc_train, True)}): the model learns; what it learns does "
                "not carry over to validation images."
            )
        if gone and f.get("barely"):
            return (
                f"Learning under way at epoch {now.epoch}: the val probe loss "
                f"{num(now.probe_loss_val)} is below {num(levels.BARELY_LOSS, True)} of its "
                f"chance level, accuracy {num(now.probe_acc_val, True)}."
            )
        if gone:
            return (
                f"Accuracy was at chance from {when(since)} and is above it again at "
                f"epoch {now.epoch} ({num(now.probe_acc_val, True)})."
            )
        start = "from the start" if f["from_start"] else "after a collapse"
        if f["non_finite"]:
            loss = "the model's outputs are not finite (NaN/inf: training diverged)"
        else:
            k = round(1 / f["chance_acc"])
            loss = f"probe loss {num(now.probe_loss_val)}, chance level ln({k}) = "
            loss += num(f["chance_loss"])
        peak = f" (it had reached {num(f['peak_acc_before'], True)})" if not f["from_start"] else ""
        cut = ""  # a schedule that cut the rate before anything was learnt: say it here
        if (up := raised(v)) is not None:  # ...or raised it before a collapse
            cut = (
                f" The learning rate rose {up:.0f}x before it, from {f['lr_before']:.3g} to "
                f"{now.lr:.3g} (a schedule raising it)."
            )
        elif levels.loss_blind(now):
            cut = (
                f" The loss `training_step` returns is {num(now.returned_loss)}, far below its "
                "chance level, while the model is at chance on the training labels too: the "
                "loss does not measure the labels (targets taken from the model's own output, "
                "the wrong tensor passed as targets, a term that ignores them)."
            )
        elif f.get("warmup_outlasts"):
            cut = (
                f" The learning rate is {now.lr:.3g}, {now.lr / now.lr_initial:.1%} of the "
                f"{now.lr_initial:.3g} set, and still rising: at this pace the warm-up ends "
                f"after the run ({num(now.run_share, True)} of it gone)."
            )
        elif now.lr is not None and now.lr_initial and now.lr * LR_CUT <= now.lr_initial:
            cut = (
                f" The learning rate is 0 (it started at {now.lr_initial:.3g})."
                if now.lr == 0
                else f" The learning rate is {now.lr:.3g} now, {now.lr_initial / now.lr:.0f}x "
                f"below its start ({now.lr_initial:.3g})."
            )
        if f.get("barely"):
            return (
                f"Barely learning since {when(since)} ({start}{peak}): after {now.step} steps "
                f"the val probe loss {num(now.probe_loss_val)} is still "
                f"{num(now.probe_loss_val / f['chance_loss'], True)} of its chance level "
                f"ln({round(1 / f['chance_acc'])}) = {num(f['chance_loss'])}, with accuracy "
                f"{num(now.probe_acc_val, True)} (chance {num(f['chance_acc'], True)}): the "
                f"model has hardly moved from its initialisation.{cut}"
            )
        return (
            f"Not learning since {when(since)} ({start}{peak}): val probe accuracy "
            f"{num(now.probe_acc_val, True)} is at chance ({num(f['chance_acc'], True)}); "
            f"{loss}.{cut}"
        )
    if v.kind == "class_imbalance":
        return imbalance_words.headline(v)
    if v.kind == "loss_mismatch":
        if gone:
            return (
                f"The logged val loss ({num(now.val_loss)}) reads the model's outputs as "
                f"what they are again ({when(now)}): their own cross-entropy on the val "
                f"probe is {num(now.probe_loss_val)}."
            )
        if f.get("fed") == "negated":
            return (
                "The loss `training_step` returns falls below zero "
                f"({num(f['returned_loss'])}) while the model's own cross-entropy climbs past "
                "chance "
                f"({num(f['own_train_loss'])}, chance ln {int(now.classes or 2)} = "
                f"{math.log(now.classes or 2):.3f}), since {when(since)}: `training_step` "
                "returns a loss that rewards wrong answers (its sign flipped, or a "
                "subtracted term outweighing it), so training maximises the error (val "
                f"accuracy {num(f['val_acc'], True)})."
            )
        if f.get("fed") == "scores":
            what = "probabilities (a softmax)" if f.get("in_model") else "raw scores (logits)"
            return (
                f"The loss is fed {what} where it expects log-probabilities: the logged val "
                f"loss ({num(f['val_loss'])}) is `nll_loss` of the outputs as they are, "
                f"minus the mean output for the label ({num(f['raw_nll'])} on the val probe), "
                f"since {when(since)}. A cross-entropy is never negative: this one falls "
                "without bound as the model inflates the label's output, and learns nothing "
                f"that classifies (val accuracy {num(f['val_acc'], True)}; their own "
                f"cross-entropy is {num(f['own_loss'])})."
            )
        where = (
            "the model ends in a softmax, and the logged val loss "
            f"({num(f['val_loss'])}) is the cross-entropy of its outputs read as logits "
            f"({num(f['softmax_loss'])} on the val probe), not their negative "
            f"log-likelihood ({num(f['own_loss'])})"
            if f.get("in_model")
            else f"the logged val loss ({num(f['val_loss'])}) is the cross-entropy of the "
            f"softmax of the model's outputs ({num(f['softmax_loss'])} on the val probe), not "
            f"of the outputs themselves ({num(f['own_loss'])})"
        )
        return (
            f"The loss is fed probabilities: {where}, since {when(since)}. `cross_entropy` "
            "applies log-softmax itself: on probabilities it cannot fall below "
            f"{num(f['floor_loss'])} and its gradient vanishes as the "
            f"softmax saturates, so learning stalls (val accuracy {num(f['val_acc'], True)})."
        )
    if v.kind == "val_metrics_differ":
        if gone:
            return f"The logged val metrics agree with the val probe again at {when(now)}."
        if "loop_acc" in f:
            return (
                f"`validation_step` does not score the images as the dataset gives them: on "
                f"the val probe the model scores {num(f['own_acc'], True)} on them and "
                f"{num(f['loop_acc'], True)} in the validation loop (since {when(since)}). The "
                "step changes the images before the model sees them (a normalisation, a "
                "resizing or a transform of its own) or scores other weights; every val "
                "figure reads that."
            )
        if f["non_finite"]:
            return (
                f"The logged val loss is {num(f['logged_loss'])} since {when(since)}, while the "
                f"model's own cross-entropy on the val probe is {num(f['probe_loss'])}: a "
                "non-finite value enters `validation_step` (a NaN or inf in the val data, a "
                "division by zero or a log of 0 in the loss), and the val curves say nothing."
            )
        return (
            f"The logged val accuracy ({num(f['logged_acc'], True)}) is not this model's: it "
            f"scores {num(f['probe_acc'], True)} on the val probe (eval mode), since "
            f"{when(since)}. `validation_step` scores other weights (an average of the "
            "weights, a teacher), changes the images before the model sees them, or computes "
            "the metric wrong; every val curve reads that."
        )
    if v.kind == "inputs_differ" and f.get("in_steps"):
        return (
            "Training and validation images reach the model preprocessed differently by the "
            f"steps' own code: before the first convolution, `training_step` "
            f"{_step_words(f['train_scale'], f['train_offset'])} channel {f['channel']:.0f} of "
            f"the images as loaded, `validation_step` "
            f"{_step_words(f['val_scale'], f['val_offset'])} it. On the same images the model "
            f"meets mean "
            f"{num(f['train_mean'])}, std {num(f['train_std'])} in training vs mean "
            f"{num(f['val_mean'])}, std {num(f['val_std'])} in validation ({f['mean_gap']:.1f} "
            f"standard deviations apart, {f['scale_ratio']:.1f}x in spread): every validation "
            "figure measures that."
        )
    if v.kind == "inputs_differ":
        return (
            f"Training and validation images are preprocessed differently: channel "
            f"{f['channel']:.0f} has mean {num(f['train_mean'])}, std {num(f['train_std'])} "
            f"on the train probe vs mean {num(f['val_mean'])}, std {num(f['val_std'])} on the "
            f"val probe ({f['mean_gap']:.1f} standard deviations apart, {f['scale_ratio']:.1f}x "
            "in spread). The model meets validation images unlike any it trained on: every "
            "validation figure measures that."
        )
    if v.kind == "lr_decayed_early":
        return (
            "Learning all but stopped after the learning rate decayed early: it is "
            + (
                f"0 (it started at {num(f['lr_initial'])})"
                if f["lr"] == 0
                else f"{num(f['lr'])}, {f['cut']:.0f}x below its start ({num(f['lr_initial'])})"
            )
            + f", since "
            f"{when(since)} or before ({num(f['since_share'], True)} into the run), and val "
            f"loss has not improved by {100 * lr_decay.GAIN:.0f}% a validation since (best "
            f"{num(f['best_loss_since'])}, now {num(f['val_loss'])}; val accuracy "
            f"{num(f['val_acc'], True)})."
        )
    if v.kind == "weight_decay_too_strong":
        if gone:
            return (
                f"The training loss is back near its lowest ({num(now.train_loss)} at epoch "
                f"{now.epoch}; {num(f['best_train_loss'])} at epoch {f['best_epoch']})."
            )
        return (
            f"Weight decay too strong: {f['weight_decay']:.3g} at learning rate {f['lr']:.3g} "
            f"takes {100 * f['decay_per_step']:.1f}% off every weight each step, and the "
            f"training loss has climbed back {num(f['rise'], True)} since {when(since)} "
            f"({num(f['best_train_loss'])} at epoch {f['best_epoch']}, now "
            f"{num(f['train_loss'])}) at that rate: the decay undoes what the gradients "
            f"build (val accuracy {num(f['val_acc'], True)})."
        )
    if v.kind == "unstable_training":
        if gone:
            return (
                f"The training loss is back near its lowest ({num(now.train_loss)} at epoch "
                f"{now.epoch}; {num(f['best_train_loss'])} at epoch {f['best_epoch']})."
            )
        acc = f.get("train_acc_at_best")
        fell = (
            f", train accuracy {num(acc, True)} -> {num(now.train_accuracy, True)}"
            if acc is not None and now.train_accuracy is not None
            else ""
        )
        return (
            f"Training unstable: the training loss has climbed back {num(f['rise'], True)} "
            f"since {when(since)} ({num(f['best_train_loss'])} at epoch {f['best_epoch']}, now "
            f"{num(f['train_loss'])}{fell}) at a learning rate no higher ({num(f['lr'])}): "
            "the updates have grown too large for where the model now is, and undo what it "
            f"learnt (val accuracy {num(f['val_acc'], True)})." + momentum_text(f.get("momentum"))
        )
    if v.kind == "generalisation_gap":
        train, val = num(f["train_acc"], True), num(f["val_acc"], True)
        if gone:
            return (
                f"The train/val accuracy gap from {when(since)} closed at epoch {now.epoch} "
                f"(train {num(now.train_accuracy, True)}, val {num(now.val_accuracy, True)})."
            )
        chance = " (the val probe's is within chance)" if f["val_at_chance"] else ""
        return (
            f"Training images learnt, validation images not, since {when(since)}: train "
            f"accuracy {train} vs {val} on validation{chance}.{_split_text(f)} Such a gap says "
            "the splits differ in what decides the label: a cue only training images carry (a "
            "shortcut), a different preprocessing or augmentation of the two splits, labels "
            "that mean different things; or the model memorises a small training set."
            + _never_text(f)
        )
    if gone:
        return f"BatchNorm eval/train mismatch from {when(since)} closed at epoch {now.epoch}."
    return (
        f"BatchNorm running statistics do not match the batches since {when(since)}: val probe "
        f"accuracy {num(f['eval_acc'], True)} in eval mode vs {num(f['batch_stats_acc'], True)} "
        f"with batch statistics (loss {num(f['eval_loss'])} vs {num(f['batch_stats_loss'])})."
    )


def _split_text(f: Mapping[str, Any]) -> str:
    """The classes learnt on training images and left out on validation ones, in words."""
    classes, taken = f.get("split_classes") or [], f.get("split_taken") or []
    if not classes:
        return ""
    plural = "es" if len(classes) > 1 else ""
    into = ", ".join(f"{a} for {b}" for a, b in zip(classes, taken, strict=True))
    text = (
        f" Class{plural} {', '.join(map(str, classes))}: learnt on the train probe, (almost) "
        f"never predicted on the val probe, whose images of them are taken as {into}."
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
        "training label belongs to its image: random or shuffled training labels are learnt "
        "only by memorising, slowly, and nothing carries over."
    )


def _step_words(scale: float, offset: float) -> str:
    """What a step's code does to a channel of the images, in words.

    Example::

        >>> _step_words(3.25, -0.424), _step_words(1.0, 0.0)
        ('scales by 3.25x and shifts by -0.424', 'leaves')
    """
    if abs(scale - 1) < 0.01 and abs(offset) < 0.01:
        return "leaves"
    return f"scales by {scale:.3g}x and shifts by {offset:+.3g}"
