"""What to try first for a model at chance: the run's own settings that explain it.

Nothing here knows about Lightning. A ``not_learning`` finding's first remedies name what
the run is set to (``core.settings``): a loss that does not measure the labels, a rate a
schedule raised before a collapse, a warm-up that outlasts the run, a rate cut or 0, a
loss above chance from overshooting steps, gradient clipping, weight decay or dropout
far too strong (Adam's L2 too); or, barely moved and nothing else, steps too small. ``remedies.py``
puts them before the kind's fixed list.

Example::

    >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
    >>> ev = Evaluation(46, 0, lr=1e-3, dropout=0.9, classes=10.0)
    >>> first(Verdict("not_learning", ev, ev, None, {"non_finite": False}))[0][:20]
    '**Lower the dropout*'
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from lightning_cnnviz.core.decay import (
    DECAY_STALLS,
    L2_ADAPTIVE,
    adaptive_l2_remedy,
    decay_words,
)
from lightning_cnnviz.core.raised_settings import raised_since
from lightning_cnnviz.core.settings import LR_CUT
from lightning_cnnviz.core.voice import times
from lightning_cnnviz.overfitting.other_targets import loss_blind, other_outputs, relabelled
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import num

__all__ = [
    "CLIP",
    "DROPOUT",
    "FLAT_LOSS",
    "LR_RAISED",
    "SET_BACK",
    "first",
    "raised",
    "settings_raised",
]

# the rate this many times above the lowest rate it learnt at, before a collapse: a schedule
# raising it (a warmup to 1.5 meant 0.015 took a CNN from 55% to chance at about 0.13)
LR_RAISED = 3
DROPOUT = 0.5
# gradient norms of a training CNN run 0.1-10; clipping at 1e-2 or below scales every
# update down 10-1000x, a learning rate that far too low
CLIP = 1e-2


def raised(v: Verdict) -> float | None:
    """How many times the learning rate rose before a ``not_learning`` collapse.

    Now over ``lr_before``, the lowest rate of the evaluations before it; ``None`` from
    the start, without rates, or under ``LR_RAISED``.

    Example::

        >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
        >>> now = Evaluation(92, 1, lr=0.197)
        >>> round(raised(Verdict("not_learning", now, now, None, {"lr_before": 0.049})))
        4
    """
    before, now = v.figures.get("lr_before"), v.detected.lr
    if not before or now is None:
        return None
    ratio = now / before
    return ratio if ratio >= LR_RAISED else None


# ``not_learning`` read from a flat loss where the targets are no class labels (``flat_loss``):
# no chance level, no cross-entropy (then the generic gradients remedy)
FLAT_LOSS = (
    "**Raise the learning rate** (10x), or add momentum / use Adam: the loss has not moved "
    "from where it began, as steps far too small leave it.",
    "**Check that the loss reaches the weights**: the outputs `forward` returns go into the "
    "loss with no `.detach()` or `torch.no_grad()` between, against the batch's targets.",
)

# ``not_learning`` read from predictions at the targets' mean (``blind_level``)
SAME_OUTPUT = (
    "**Find what pulls the outputs together**: a VAE's KL weight (warm beta up from 0, or "
    "give each latent a few free bits), a metric loss with too few negatives or the hardest "
    "ones from the first step (start with semi-hard ones), a self-supervised pair without "
    "its stop-gradient or predictor, a last activation that saturates.",
    "**Try another learning rate** (10x lower if the outputs fell together after a jump "
    "of the loss) and check that the images reach the model.",
)


AT_MEAN = (
    "**Check that the images reach the model and carry the targets**: inputs that are not "
    "zeroed, masked or detached on the way in, targets that belong to their images (a "
    "shuffled or misaligned target file), and targets scaled to the outputs' range.",
    "**Try another learning rate** (10x higher if the loss sits still, 10x lower if it "
    "jumps) and a model that sees enough of the image to predict its target.",
)

SET_BACK = (
    "**Set back the setting raised during the run** (named above) to its value before "
    "it; where a callback or schedule sets it, look at what it sets then."
)


def settings_raised(v: Verdict) -> str | None:
    """A weight decay, momentum or dropout raised between ``v``'s best evaluation and now.

    In words with what to try (``core.raised_settings``), else ``None``: after a collapse
    (``not_learning``) or a climb back (``unstable_training``), never from the start; from
    each setting's lowest up to the best (``figures["settings_before"]``) where given.
    Held out (hunt 57): dropout set to 0.97 at step 300 was told "barely learning ... the
    model has hardly moved from its initialisation"; SGD's momentum 0.5 -> 0.99 "the
    updates have grown too large", the momentum named only as a value.

    Example::

        >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
        >>> best, now = Evaluation(300, 3, momentum=0.5), Evaluation(400, 4, momentum=0.99)
        >>> settings_raised(Verdict("unstable_training", now, now, best, {}))[:30]
        "The momentum (SGD's `momentum`"
    """
    if v.best is None or v.figures.get("from_start"):
        return None
    before = v.figures.get("settings_before")  # the lowest up to the best (``lowest_settings``)
    return raised_since(SimpleNamespace(**before) if before else v.best, v.detected)


def first(v: Verdict) -> list[str]:
    """What to try first for a ``not_learning`` ``v``, from the run's settings (may be empty)."""
    now, tried = v.detected, []
    chance = v.figures.get("chance_loss")
    if relabelled(now):
        tried.append(
            "**Check the labels the loss is handed against the loader's**: print `y` in "
            "`training_step` beside the dataset's labels for a few images; undo the mapping "
            "between them, or apply the same one where validation reads the labels."
        )
    elif loss_blind(now):
        tried.append(
            "**Check what the loss compares the outputs with**: the labels of the batch "
            "(`F.cross_entropy(logits, y)`), not the model's own predictions (`logits.argmax(1)`"
            ") or another tensor of the batch; and on the outputs `forward` returns, those "
            "validation reads."
        )
    elif other_outputs(now):
        tried.append(
            "**Compute the loss on the outputs `forward` returns** (those validation reads), "
            "or return from `forward` the head the loss trains; log the train accuracy of "
            "those same outputs."
        )
    if settings_raised(v) is not None:
        tried.append(SET_BACK)
    elif (up := raised(v)) is not None:
        tried.append(
            f"**Lower the peak learning rate** the schedule reaches (10x), or raise it more "
            f"slowly: it rose {up:.0f}x ({v.figures['lr_before']:.3g} -> {now.lr:.3g}) while "
            "the model learnt, and the model fell back to chance."
        )
    elif v.figures.get("warmup_outlasts"):
        tried.append(
            f"**Shorten the warm-up**: the schedule has raised the rate to {now.lr:.3g} of the "
            f"{now.lr_peak or now.lr_initial:.3g} it aims at, and at this pace reaches it only "
            "after the run; a warm-up of 1-5% of the run's steps is usual (check its "
            "`total_iters` / `warmup_steps` / `total_steps`, and whether it is stepped per "
            "batch or per epoch)."
        )
    elif now.lr == 0:
        tried.append("**Raise the learning rate**: it is 0, so no weight moves.")
    elif now.lr is not None and now.lr < 0:
        tried.append(
            f"**Keep the learning rate at 0 or above**: it is {now.lr:.3g}, so every update "
            "climbs the loss; floor the schedule at 0 (`max(0.0, 1 - s / total)`)."
        )
    elif now.lr and now.lr_initial and now.lr * LR_CUT <= now.lr_initial:
        tried.append(
            f"**Raise the learning rate**: it is {now.lr:.3g} now, "
            f"{times(now.lr_initial / now.lr)} below its start ({now.lr_initial:.3g}): a "
            "schedule that decays this early stops learning before it began."
        )
    elif (
        chance
        and now.train_loss
        and math.isfinite(now.train_loss)
        and (now.train_loss > 1.2 * chance)
    ):
        tried.append(
            f"**Lower the learning rate** (by 10x): the training loss ({now.train_loss:.4g}) "
            f"stands above its chance level ({chance:.4g}), as steps that overshoot leave it."
        )
    if now.grad_clip is not None and now.grad_clip <= CLIP:
        tried.append(
            f"**Raise the gradient clipping threshold**: `gradient_clip_val={now.grad_clip:g}` "
            "caps every step's gradient at that size, where a training CNN's runs 0.1-10: each "
            "update shrinks as if the learning rate were 10-1000x lower. 0.5-5 is usual, or "
            "no clipping."
        )
    if now.decay_per_step is not None and now.decay_per_step >= DECAY_STALLS:
        tried.append(
            f"**Lower the weight decay**: "
            f"{decay_words(now.weight_decay, now.lr, now.decay_per_step)} (decoupled, "  # type: ignore[arg-type]
            "as AdamW and SGD apply it), faster than the gradients can build anything up; "
            "1e-4 to 5e-2 is usual."
        )
    elif now.weight_decay and now.decay_per_step is None and now.weight_decay >= L2_ADAPTIVE:
        tried.append(adaptive_l2_remedy(now.weight_decay))
    if now.dropout is not None and now.dropout >= DROPOUT:
        tried.append(
            f"**Lower the dropout** (p = {now.dropout:.2g}): at this rate most units are "
            "zeroed at every step; 0.1-0.5 is usual, after the convolutions less."
        )
    if v.figures.get("barely") and not tried:
        tried.append(
            f"**Raise the learning rate** (10x; it is {now.lr:.3g}), or add momentum / use "
            "Adam: the loss has hardly moved from its chance level in "
            f"{now.step} steps, as steps far too small leave it."
            if now.lr
            else "**Raise the learning rate** (10x): the loss has hardly moved from its "
            "chance level, as steps far too small leave it."
        )
    return tried


def one_answer(v: Verdict) -> list[str]:
    """What to try for one answer everywhere (``label_prior``): weigh the rare answers."""
    f = v.figures
    if f.get("objects"):
        weigh = (
            "**Give the model what it needs to tell the classes apart**: it finds the objects "
            "but not their class; a deeper encoder or a larger receptive field (more "
            "downsampling, dilation), and class weights where the classes differ in frequency."
        )
    elif f["task"] in ("pixels", "classes"):
        weigh = (
            f"**Weigh the rarer classes**: `weight=` in `cross_entropy` (inverse class "
            f"frequencies), or a Dice / focal loss: with {num(f['major'], True)} of the targets "
            "one class, answering it everywhere is the loss's easy minimum."
        )
    else:
        weigh = (
            "**Weigh the positive labels**: `pos_weight=` in `BCEWithLogitsLoss` (negatives / "
            "positives per label, above 1 where positives are rare: one below 1 weighs them "
            "less), or a focal loss: with most targets 0, answering 0 everywhere is the "
            "loss's easy minimum."
        )
    return [
        weigh,
        "**Check the learning rate and its schedule** (10x higher if the updates are tiny, "
        "a schedule that decayed it early), and that each target belongs to its image.",
    ]
