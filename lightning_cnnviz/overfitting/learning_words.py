"""A model at chance, or barely moved from its initialisation, in words.

Since when, from the start or after a collapse, and what stands behind it: a rate cut or
raised, a warm-up that outlasts the run, a loss that does not measure the labels.

Part of ``headlines.py``.

Example::

    >>> from dataclasses import replace
    >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
    >>> now = Evaluation(step=40, epoch=3, train_loss=2.3, val_loss=2.3)
    >>> now = replace(now, probe_loss_val=2.3, probe_acc_val=0.1)
    >>> figures = {"from_start": True, "non_finite": False}
    >>> figures.update(chance_acc=0.1, chance_loss=2.303)
    >>> headline(Verdict("not_learning", now, now, None, figures))[:60]
    'Not learning since epoch 3 (step 40) (from the start): val p'
"""

from __future__ import annotations

import dataclasses
import math

from lightning_cnnviz.core.decay import decay_words, heavy_decay
from lightning_cnnviz.core.gradient_hooks import hooked_words
from lightning_cnnviz.core.settings import LR_CUT
from lightning_cnnviz.core.voice import listed, times
from lightning_cnnviz.overfitting import bn_levels, chance_levels, learnt, levels
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.learning_remedies import raised, settings_raised
from lightning_cnnviz.overfitting.other_targets import loss_blind, other_outputs, relabelled
from lightning_cnnviz.overfitting.small_steps import (
    LARGE_EPS,
    SMALL_CLIP,
    small_rate,
    steps_small,
    update_clause,
)
from lightning_cnnviz.overfitting.unlabelled_words import (
    unlabelled_early,
    unlabelled_gone,
    unlabelled_headline,
)
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import finite, num, when

__all__ = ["headline"]


EARLY = (
    " A note for now: a run can sit at chance for its first steps (a flat start); a problem "
    "if it still does past a quarter of the run."
)


def headline(v: Verdict) -> str:
    """Accuracy at chance, or barely moved from it: why, and since when (a note early on)."""
    if v.severity == "note" and v.figures.get("early"):
        early = unlabelled_early(v) or EARLY
        return _headline(dataclasses.replace(v, severity="problem")) + early
    return _headline(v)


def _headline(v: Verdict) -> str:
    f, now, since = v.figures, v.detected, v.since
    gone = v.severity == "note"
    # withdrawn while the val probe is not clearly past chance: never "above it again"
    # (held-out hunt 119: 2.3% of 100 classes, its band 3.6%, was "above it again")
    read = now.probe_acc_val is not None and (now.classes or 0) >= 2
    at_chance = gone and read and not learnt.clearly_learnt(now, uniform=True, by_loss=False)
    if at_chance and bn_levels.learns_on_batch_stats(now):
        return (
            f"Val accuracy at chance in eval mode since {when(since)}, but with batch "
            f"statistics the same probe reaches {num(now.probe_acc_bn, True)} at epoch "
            f"{now.epoch} (eval mode {num(now.bn_eval_acc, True)}): the model learns; "
            "BatchNorm's running statistics do not match its batches (`bn_mismatch`)."
        )
    if at_chance and (levels.train_learns(now) or chance_levels.stuck(now)):
        return (
            f"Val accuracy at chance since {when(since)}, but training images are learnt "
            f"at epoch {now.epoch} (train {num(now.train_accuracy, True)}, train probe "
            f"{num(now.probe_acc_train, True)}): the model learns; what it learns does "
            "not carry over to validation images."
        )
    if gone and chance_levels.scores_elsewhere(now):
        return (
            f"Outputs at chance on the labels since {when(since)}, but they score something "
            f"else: {num(now.classes)} wide against labels 0-{num(now.label_classes - 1)}, and "
            f"the loss `training_step` returns is {num(now.returned_loss)} (first "
            f"{num(now.first_loss)}) while their cross-entropy over the labels is "
            f"{num(now.probe_loss_val)}: the run trains a loss that does not use these labels "
            "(a contrastive or metric objective), which the checks on labels cannot judge."
        )
    if gone and f.get("climbing"):
        return (
            f"Learning under way at epoch {now.epoch}: the training loss "
            f"{num(now.returned_loss)} is below its first value or near its chance level, "
            f"val probe accuracy {num(now.probe_acc_val, True)}."
        )
    if gone and f.get("barely"):
        return f"Learning under way at epoch {now.epoch}: {_moved_off(now)}."
    if gone and (withdrawn := unlabelled_gone(v)) is not None:
        return withdrawn
    if at_chance:  # withdrawn on another reading (its loss, the logged accuracy)
        k = chance_levels.chance_classes(now)
        return (
            f"Accuracy was at chance from {when(since)}; at epoch {now.epoch} the val probe "
            f"still reads {num(now.probe_acc_val, True)}, inside its chance band, but no "
            f"longer reads as not learning (probe loss {num(now.probe_loss_val)}, chance "
            f"level ln({k}) = {num(math.log(k))})."
        )
    if gone:
        return (
            f"Accuracy was at chance from {when(since)} and is above it again at "
            f"epoch {now.epoch} ({num(now.probe_acc_val, True)})."
        )
    start = "from the start" if f["from_start"] else "after a collapse"
    if f["from_start"] and now.resumed_at:  # what came before the resumed fit is unknown
        start = (
            f"since the run resumed at step {now.resumed_at}, from a checkpoint without this "
            "monitor's history"
        )
    if f["non_finite"]:
        loss = "the model's outputs are not finite (NaN/inf: training diverged)"
    elif f.get("loss_only") or f.get("one_answer") or f.get("at_mean") or f.get("same_output"):
        loss = ""
    else:
        k = round(1 / f["chance_acc"])
        loss = f"probe loss {num(now.probe_loss_val)}, chance level ln({k}) = "
        loss += num(f["chance_loss"])
    reached = None if f["from_start"] else f.get("peak_acc_before")  # class labels' only
    peak = f" (it had reached {num(reached, True)})" if reached is not None else ""
    cut = ""  # a schedule that cut the rate before anything was learnt: say it here
    if (up := raised(v)) is not None:  # ...or raised it before a collapse
        cut = (
            f" The learning rate rose {up:.0f}x before it, from {f['lr_before']:.3g} to "
            f"{now.lr:.3g} (a schedule or a callback raising it)."
        )
    elif (said := settings_raised(v)) is not None:
        cut = f" {said}"
    elif relabelled(now):
        cut = (
            f" The loss `training_step` returns is {num(now.returned_loss)}, far below its "
            "chance level, while the model answers each class of the val probe with one "
            f"other class ({num(now.remap_share, True)} of its images; accuracy "
            f"{num(now.probe_acc_val, True)}, chance {num(f['chance_acc'], True)}): it "
            "learnt another labelling of the same images, so the loss measures the labels "
            "remapped (a permutation or an offset such as `(y + 3) % 10` in `training_step` "
            "or the dataset); a model that learnt nothing scores chance, not below it."
        )
    elif loss_blind(now):
        cut = (
            f" The loss `training_step` returns is {num(now.returned_loss)}, far below its "
            "chance level, while the model is at chance on the training labels too: the "
            "loss does not measure the labels (targets taken from the model's own output, "
            "the wrong tensor passed as targets, a term that ignores them), or measures other "
            "outputs than those `forward` returns (a loss on a second head)."
        )
    elif other_outputs(now):
        cut = (
            f" The logged train accuracy reads {num(now.train_acc, True)} while the model's "
            f"own outputs are at chance on training images ({num(now.probe_acc_train, True)}, "
            "train probe): the loss and the logged accuracy read other outputs than those "
            "`forward` returns, which validation reads (a loss on an auxiliary head or a "
            "second output, another module): those are never trained."
        )
    elif f.get("warmup_outlasts"):
        aim = now.lr_peak or now.lr_initial  # a one-cycle schedule's `max_lr`
        cut = (
            f" The learning rate is {now.lr:.3g}, {now.lr / aim:.1%} of the {aim:.3g} "
            "its warm-up aims at, and still rising: at this pace the warm-up ends after the "
            f"run ({num(now.run_share, True)} of it gone)."
        )
    elif now.lr is not None and now.lr < 0:
        cut = (
            f" The learning rate is negative ({now.lr:.3g}): every update climbs the loss "
            "(gradient ascent)."
        )
    elif now.maximize and (now.returned_loss or 0.0) > 0:
        # hunt 35: SGD(maximize=True) at 1e-3 climbing slowly, told with no cause
        cut = (
            f" {listed(list(now.maximize))} is set to `maximize=True`: every update climbs "
            "the loss it is handed, and this loss is positive, not a negated objective "
            "(drop the flag)."
        )
    elif now.lr is not None and now.lr_initial and now.lr * LR_CUT <= now.lr_initial:
        cut = (
            f" The learning rate is 0 (it started at {now.lr_initial:.3g})."
            if now.lr == 0
            else f" The learning rate is {now.lr:.3g} now, {times(now.lr_initial / now.lr)} "
            f"below its start ({now.lr_initial:.3g})."
        )
    elif (top := small_rate(now)) is not None and steps_small(now):
        # hunt 36: OneCycleLR with `max_lr=1e-5` under Adam, 31-46% at the end, no cause
        cycle = " (the one-cycle schedule's `max_lr`)" if now.lr_peak else ""
        cut = (
            f" The learning rate has been {top:.3g} at most{cycle}: a rate that small moves "
            f"the weights little in a run this long{update_clause(now)}; try it 10x higher."
        )
    elif now.grad_clip is not None and now.grad_clip <= SMALL_CLIP and steps_small(now):
        # hunt 41: `gradient_clip_val=1e-4` under SGD, at chance, no cause
        by = f" by {now.clip_algorithm}" if now.clip_algorithm else ""
        cut = (
            f" Gradients are clipped{by} to {now.grad_clip:.3g} (`gradient_clip_val`): every "
            f"step is that small whatever the loss says{update_clause(now)}; clip at 0.5-5, or not "
            "at all."
        )
    elif now.eps is not None and now.eps >= LARGE_EPS and steps_small(now):
        # hunt 41: Adam with `eps=1.0`, "hardly moved", no cause
        cut = (
            f" The optimiser's `eps` is {now.eps:.3g}: it divides every step by at least "
            "that, far above the gradients' scale, so the steps are tiny (1e-8 is usual)"
            f"{update_clause(now)}."
        )
    elif heavy_decay(now.decay_per_step, now.weight_decay) and now.lr:
        # hunt 59: Adam's `weight_decay=1.0` held a model at chance, told with no cause
        said = decay_words(now.weight_decay, now.lr, now.decay_per_step)  # type: ignore[arg-type]
        cut = f" Weight decay: {said}."
    elif not f["from_start"] and _loss_at_chance(now, f):
        # hunt 94: labels shuffled from step 160 under label smoothing, the training loss at
        # ln 10 at an unchanged rate: "after a collapse", no cause
        cut = (
            f" The training loss went to its chance level too ({num(now.returned_loss)}) at "
            "a learning rate not raised: the training batches may no longer carry the label "
            "(labels shuffled or remapped, images blanked or replaced), something outside "
            "the optimiser reset the model, or updates too large left it dead (a divergence "
            "or dead units told beside this)."
        )
    elif now.hooked:
        # hunt 40: a hook negating fc1's gradient (gradient ascent on that layer), told as
        # dead units, then not learning with no cause
        cut = (
            f" Also: {hooked_words(now.hooked)}: where it returns a changed gradient (a sign "
            "flip, a factor, zeros), every update follows that instead of the loss's; check "
            "what it returns."
        )
    if (said := unlabelled_headline(v, cut)) is not None:
        return said
    if f.get("climbing"):
        return (
            f"Not learning since {when(since)} ({start}{peak}): after {now.step} steps the "
            f"training loss {num(now.returned_loss)} is above its first value "
            f"({num(f['first_loss'])}) and {now.returned_loss / f['chance_loss']:.1f}x its "
            f"chance level ln({round(1 / f['chance_acc'])}) = {num(f['chance_loss'])}, with "
            f"val probe accuracy {num(now.probe_acc_val, True)} (chance "
            f"{num(f['chance_acc'], True)}): the updates do not bring the loss down.{cut}"
        )
    if f.get("barely"):
        moved = (  # after a collapse it moved, away from what it had learnt
            "model has hardly moved from its initialisation"
            if f["from_start"]
            else "model has lost what it had learnt"
        )
        return (
            f"Barely learning since {when(since)} ({start}{peak}): after {now.step} steps "
            f"the val probe loss {num(now.probe_loss_val)} is still "
            f"{num(now.probe_loss_val / f['chance_loss'], True)} of its chance level "
            f"ln({round(1 / f['chance_acc'])}) = {num(f['chance_loss'])}, with accuracy "
            f"{num(now.probe_acc_val, True)} (chance {num(f['chance_acc'], True)}): the "
            f"{moved}.{cut}"
        )
    # far under chance is no guess: it predicts other classes than the probe holds (a val
    # set of one class: "0.0% is at chance (25.0%)", setups hunt 22)
    band = f.get("chance_band")
    low = 2 * f["chance_acc"] - band if band is not None else 0.0
    where = "below" if now.probe_acc_val is not None and now.probe_acc_val < low else "at"
    return (
        f"Not learning since {when(since)} ({start}{peak}): val probe accuracy "
        f"{num(now.probe_acc_val, True)} is {where} chance ({num(f['chance_acc'], True)}); "
        f"{loss}.{cut}"
    )


# a training loss within this share of ln K: at its chance level. Wider than
# ``core.chance.AT_CHANCE`` (3%, one log's smoothed loss): this is the mean over the interval
# since the last validation, which holds the collapse's own rise (hunt 94: 2.396, ln 10 = 2.303)
AT_CHANCE_LOSS = 0.1


def _loss_at_chance(now: Evaluation, f: dict) -> bool:
    """Whether the loss ``training_step`` returns sits at the chance level of the verdict."""
    loss, chance = now.returned_loss, f.get("chance_loss")
    return loss is not None and bool(chance) and abs(loss - chance) <= AT_CHANCE_LOSS * chance


def _moved_off(now: Evaluation) -> str:
    """Why a model that had barely moved no longer reads so (``levels.barely``), in words.

    Each reading stated only where it holds (hunt 99: "the val probe loss 0.6923 is below
    95.0% of its chance level", 0.658; hunt 100: "the loss `training_step` returns, 1.787,
    is below 95.0%" of ln 6 = 1.792).
    """
    k = chance_levels.chance_classes(now)
    chance = math.log(k)
    level, share = levels.BARELY_LOSS * chance, num(levels.BARELY_LOSS, True)
    loss, returned, first = now.probe_loss_val, now.returned_loss, now.first_loss
    acc = max(now.probe_acc_val or 0.0, chance_levels.logged_accuracy(now) or 0.0)
    bar = levels.barely_bar(k)
    if finite(loss) and loss < level:  # type: ignore[operator]
        return f"the val probe loss {num(loss)} is below {share} of its chance level"
    if acc > bar:
        return f"val accuracy {num(acc, True)} is past {num(bar, True)}"
    if finite(returned) and returned < level:  # type: ignore[operator]
        return (
            f"the loss `training_step` returns, {num(returned)}, is below {share} of its "
            f"chance level, while the val probe's is {num(loss)}: what it learns shows on its "
            "training images first"
        )
    if finite(first) and finite(returned) and returned < levels.MOVED * first:  # type: ignore[operator]
        return f"the loss `training_step` returns came down from {num(first)} to {num(returned)}"
    if finite(loss) and loss > levels.BARELY_ABOVE * chance:  # type: ignore[operator]
        return f"the val probe loss {num(loss)} is far above its chance level: confidently wrong"
    return f"its outputs moved off uniform (val probe accuracy {num(acc, True)})"
