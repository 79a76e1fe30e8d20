"""Training and validation images preprocessed differently (``inputs_differ``), in words.

By the steps' own code (a rescale or a channel order), by the loaders, a pipeline changed
mid-run, or read from the two probes (past the milder bars with BatchNorm's evidence or a
re-standardised val probe). Part of ``headlines.py``.

Example::

    >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
    >>> now = Evaluation(step=40, epoch=3)
    >>> figures = {"channel": 0.0, "train_mean": 0.0, "train_std": 1.0, "val_mean": 0.13,
    ...            "val_std": 0.31, "mean_gap": 0.18, "scale_ratio": 3.2}
    >>> inputs_differ(Verdict("inputs_differ", now, now, None, figures))[:52]
    'Training and validation images are preprocessed diff'
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning_cnnviz.core.step_input_shift import is_formula
from lightning_cnnviz.core.step_transform import affine_form
from lightning_cnnviz.overfitting.bn_ranks import levels_words
from lightning_cnnviz.overfitting.gap import EVAL_HELD
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import num, when

__all__ = ["inputs_differ"]


def _inputs_in_steps(v: Verdict) -> str:
    """The steps' own code preprocesses the two splits differently."""
    f = v.figures
    if "train_order" in f:  # channels reordered, not rescaled
        done = (
            f"`training_step` {_order_words(f['train_order'])} and `validation_step` "
            f"{_order_words(f['val_order'])}: the model's channel {f['channel']:.0f} is one "
            "loaded channel in training and another in validation"
        )
    else:
        train, val = (
            _step_words(f[f"{s}_scale"], f[f"{s}_offset"], f.get(f"{s}_fit"), f.get(f"{s}_moved"))
            for s in ("train", "val")
        )
        done = (
            f"`training_step` {train} channel {f['channel']:.0f} of the images as loaded, "
            f"`validation_step` {val} it"
        )
    return (
        "Training and validation images reach the model preprocessed differently by the "
        f"steps' own code: before the model's first layer, {done}. On the same images the "
        f"model meets mean "
        f"{num(f['train_mean'])}, std {num(f['train_std'])} in training vs mean "
        f"{num(f['val_mean'])}, std {num(f['val_std'])} in validation ({f['mean_gap']:.1f} "
        f"standard deviations apart, {f['scale_ratio']:.1f}x in spread): every validation "
        "figure measures that."
    )


def inputs_differ(v: Verdict) -> str:
    """Training and validation images preprocessed differently (by the steps' own code)."""
    f = v.figures
    if f.get("in_steps"):
        return _inputs_in_steps(v)
    if f.get("as_loaded"):
        return (
            f"Training and validation batches come out of their loaders unlike each other: "
            f"channel {f['channel']:.0f} has mean {num(f['train_mean'])}, std "
            f"{num(f['train_std'])} in a training batch vs mean {num(f['val_mean'])}, std "
            f"{num(f['val_std'])} in a val batch ({f['mean_gap']:.1f} standard deviations "
            f"apart, {f['scale_ratio']:.1f}x in spread), as the loaders' `collate_fn` made "
            "them (one that draws at random, which the probes do not read through): the "
            "model meets validation images unlike any it trained on, and every validation "
            "figure measures that."
        )
    if f.get("moved"):
        return (
            f"The validation images changed since {when(v.since)}: channel "
            f"{f['channel']:.0f} of the first val batch has mean {num(f['now_mean'])}, std "
            f"{num(f['now_std'])} as loaded now vs mean {num(f['first_mean'])}, std "
            f"{num(f['first_std'])} at the first validation ({f['mean_gap']:.1f} standard "
            f"deviations apart, {f['scale_ratio']:.1f}x in spread): the val pipeline changed "
            "mid-run (a transform set anew, a datamodule's `setup` run again, a callback "
            "that swaps the val set), and every validation figure since measures that."
        )
    if f.get("items_moved"):  # the loop's inputs moved, not their channels' statistics
        return (
            f"The validation images changed since {when(v.since)}: the val images at the "
            "probe's positions are no longer the ones the validations before read, though "
            "each channel's mean and spread stay alike (inverted, noised, another source), "
            f"and validation got worse with them ({_worse_words(f)}): the val pipeline "
            "changed mid-run (a transform set anew, a datamodule's `setup` run again, a "
            "callback that swaps the val set), and every validation figure since measures that."
        )
    if f.get("moved_train"):
        return (
            f"The training images changed since {when(v.since)}: channel "
            f"{f['channel']:.0f} of the epoch's first training batch has mean "
            f"{num(f['now_mean'])}, std {num(f['now_std'])} as loaded now vs mean "
            f"{num(f['first_mean'])}, std {num(f['first_std'])} in the first epoch's "
            f"({f['mean_gap']:.1f} standard deviations apart, {f['scale_ratio']:.1f}x in "
            "spread), and validation got worse with it: the training pipeline changed "
            "mid-run (a transform set anew, a callback or `setup` swapping or corrupting the "
            "training set), so the model now learns images unlike the ones it is validated on."
        )
    if "train_items_moved" in f:  # the train probe read the changed items (train_items)
        return _training_items_changed(f)
    if "batch_stats_acc" in f or "batch_stats_rank" in f:  # with BatchNorm's evidence
        levels = (
            f"the val probe reads {num(f['eval_acc'], True)} in eval mode vs "
            f"{num(f['batch_stats_acc'], True)} with its own batch statistics"
            if "batch_stats_acc" in f
            else f"{levels_words(f)} (its own)"  # multi-hot targets: the AUCs (hunt 110)
        )
        if "channel" not in f:  # the per-channel screen saw nothing (held-out hunt 117)
            return _shift_by_batch_norm(f, levels)
        return (
            f"Validation images differ from the training images: {_channel_words(f, 2)}, "
            "and BatchNorm's running statistics, gathered on training images, do not fit "
            f"them: {levels}. Not stale "
            "statistics: the val inputs are preprocessed or distributed otherwise "
            "(normalisation, noise, resizing), and every validation figure measures that."
        )
    if "restandardised_acc" in f:  # past the milder bars, with the model's own evidence
        return (
            f"Validation images differ from the training images: {_channel_words(f, 2)}, "
            f"and the model reads them far better moved to the training images' statistics: "
            f"the val probe reads {num(f['restandardised_acc'], True)} with each channel's "
            f"mean and spread set to the training images' vs {num(f['given_acc'], True)} as "
            "given. The val inputs are preprocessed or distributed otherwise (normalisation, "
            "noise, resizing), and every validation figure measures that."
        )
    if "noisy_acc" in f:  # past the milder bars, the val images' extra spread as noise
        return (
            f"Validation images differ from the training images: {_channel_words(f, 2)}, "
            "and that extra spread costs the model what validation loses: the train probe "
            f"reads {num(f['noisy_acc'], True)} with it added as noise vs "
            f"{num(f['clean_acc'], True)} as given, and validation "
            f"{num(f['noisy_val_acc'], True)}. The val inputs carry noise the training images "
            "lack (added in the val transform, another sensor or compression), and every "
            "validation figure measures that."
        )
    return (
        f"Training and validation images are preprocessed differently: {_channel_words(f, 1)}."
        " The model meets validation images unlike any it trained on: every validation figure "
        "measures that."
    )


def _training_items_changed(f: dict) -> str:
    """The training images changed mid-run, read on the train probe (held-out hunt 125).

    Example::

        >>> f = {"train_items_moved": 128.0, "eval_acc": 0.81, "batch_stats_acc": 0.94,
        ...      "train_eval_acc": 0.99}
        >>> _training_items_changed(f)[:59]
        'The training images changed mid-run and differ from the val'
    """
    evidence = []
    if "channel" in f:
        evidence.append(_channel_words(f, 2))
    if "batch_stats_acc" in f:
        train = f.get("train_eval_acc")
        kept = f" while eval mode reads {num(train, True)} on training images" if train else ""
        evidence.append(
            f"the val probe reads {num(f['eval_acc'], True)} in eval mode vs "
            f"{num(f['batch_stats_acc'], True)} with its own batch statistics{kept}: BatchNorm's "
            "running statistics fit the training images as they are now, no lag (a larger "
            "momentum would not change it)"
        )
    elif "restandardised_acc" in f:
        evidence.append(
            f"the val probe reads {num(f['restandardised_acc'], True)} moved to the training "
            f"images' statistics vs {num(f['given_acc'], True)} as given"
        )
    shown = f": {'; '.join(evidence)}" if evidence else ""
    return (
        "The training images changed mid-run and differ from the validation images since: "
        "the training items at the train probe's positions read at step "
        f"{f['train_items_moved']:.0f} are not the ones read before{shown}. The training "
        "pipeline changed (a cue or mark that "
        "only training images carry, a transform set anew, a callback or `setup` swapping "
        "the training set), so the model learns from images unlike the ones it is validated "
        "on, and every validation figure since measures that."
    )


def _worse_words(f: dict) -> str:
    """The val loss (and accuracy) at the validation before a change and at it.

    Example::

        >>> _worse_words({"before_loss": 0.5, "moved_loss": 12.5, "before_acc": 0.86,
        ...               "moved_acc": 0.17})
        'val loss 0.5 at the validation before vs 12.5 then, val accuracy 86.0% vs 17.0%'
    """
    text = (
        f"val loss {num(f['before_loss'])} at the validation before vs {num(f['moved_loss'])} then"
    )
    if f.get("before_acc") is None:
        return text
    return f"{text}, val accuracy {num(f['before_acc'], True)} vs {num(f['moved_acc'], True)}"


def _shift_by_batch_norm(f: dict, levels: str) -> str:
    """Val images unlike the training ones, read from BatchNorm alone (``gap.shifted_val_images``).

    Example::

        >>> f = {"eval_acc": 0.41, "batch_stats_acc": 0.91, "train_eval_acc": 0.89}
        >>> _shift_by_batch_norm(f, "the val probe reads 41.0% ...")[:60]
        'Validation images differ from the training images: the val p'
    """
    train = f.get("train_eval_acc")
    kept = f" while eval mode reads {num(train, True)} on the train probe's images" if train else ""
    # batch statistics short of the train probe too: the val images lack what training
    # images carry (a cue on training images only, held-out hunt 125), not only their spread
    part = train is not None and f.get("batch_stats_acc", 1.0) < train - EVAL_HELD
    undo = (
        "whose own batch statistics undo only part of the difference: not stale statistics "
        "(a larger BatchNorm momentum would not change it)"
        if part
        else "whose own batch statistics undo the difference: not stale statistics"
    )
    finer = "a mark or cue only training images carry, " if part else ""
    return (
        f"Validation images differ from the training images: {levels}{kept}. BatchNorm's "
        f"running statistics, gathered on training images, fit those and not the val images, "
        f"{undo}, and not memorisation. Each channel's mean and spread match on the two "
        f"probes, so the difference is finer ({finer}noise, blur, compression, another resize "
        "or source), and every validation figure measures it."
    )


def _channel_words(f: dict, places: int) -> str:
    """The channel whose statistics part most, on the two probes, in words."""
    return (
        f"channel {f['channel']:.0f} has mean {num(f['train_mean'])}, std "
        f"{num(f['train_std'])} on the train probe vs mean {num(f['val_mean'])}, std "
        f"{num(f['val_std'])} on the val probe ({f['mean_gap']:.{places}f} standard "
        f"deviations apart, {f['scale_ratio']:.{places}f}x in spread)"
    )


def _order_words(order: Sequence[int]) -> str:
    """What a step does to the order of the channels, in words.

    Example::

        >>> _order_words([2, 1, 0]), _order_words([0, 1, 2])
        ('reorders the channels as loaded to (2, 1, 0)', 'keeps their order')
    """
    if list(order) == sorted(order):
        return "keeps their order"
    return f"reorders the channels as loaded to ({', '.join(str(c) for c in order)})"


AFFINE_FIT = 0.95
"""A step's output correlating less than this with its input is no scale and shift of it,
unless its values are the input's moved about (``core.step_input_shift.is_formula``)."""


def _step_words(
    scale: float, offset: float, fit: float | None = None, moved: float | None = None
) -> str:
    """What a step's code does to a channel of the images, in words: as the user wrote it.

    ``fit``: the correlation of the step's output with its input, value by value; under
    ``AFFINE_FIT`` no formula is shown (hunt 111: noise of sd 3 added in `training_step`
    was said "makes `(x - 0.02458) / 0.1734` of", a formula nowhere in the code), unless
    ``moved`` says its values are the input's, moved about (hunt 112: a normalisation
    and a random flip lost the formula that told the splits apart). Past it but short of
    a formula (``is_formula``), the batch's figures with "about" (hunt 115: each image
    standardised by its own mean and spread was said "makes `(x - 0.1193) / 0.2948`").

    Example::

        >>> _step_words(3.25, -0.424), _step_words(1.0, 0.0)
        ('makes `(x - 0.1305) / 0.3077` of', 'leaves')
        >>> _step_words(1 / 255, 0.0)  # hunt 55: "scales by 0.00392x"
        'makes `x / 255` of'
        >>> _step_words(5.77, -0.14, fit=0.17, moved=0.3)[:57]
        'changes, beyond any scale and shift (its values correlate'
        >>> _step_words(3.25, -0.424, fit=0.7, moved=0.0)
        'makes `(x - 0.1305) / 0.3077` (its pixels moved about: a flip, a crop) of'
        >>> _step_words(3.39, -0.405, fit=0.976, moved=0.08)[:70]  # each image standardised
        'makes about `(x - 0.1195) / 0.295` on its batch (a scale and shift of '
    """
    if fit is not None and fit < AFFINE_FIT and not is_formula(fit, moved):
        return (
            f"changes, beyond any scale and shift (its values correlate {fit:.2f} with the "
            "loaded ones: noise added, each image scaled on its own, a transform per "
            "position, or other images),"
        )
    if fit is not None and fit < AFFINE_FIT:  # the same values, moved about, then scaled
        formula = _step_words(scale, offset)
        if formula == "leaves":
            return "moves about the pixels (a flip, a crop) of"
        return formula.replace("` of", "` (its pixels moved about: a flip, a crop) of")
    if fit is not None and not is_formula(fit, moved):  # near one, not one (hunt 115)
        formula = _step_words(scale, offset)
        return formula.replace("makes `", "makes about `").replace(
            "` of",
            "` on its batch (a scale and shift of each image's own, such as a "
            "per-image standardisation, or noise beside one) of",
        )
    if abs(scale - 1) < 0.01 and abs(offset) < 0.01:
        return "leaves"
    if not scale:
        return f"sets to {offset:.3g}"
    return f"makes `{affine_form([-offset / scale], [1 / scale])}` of"
