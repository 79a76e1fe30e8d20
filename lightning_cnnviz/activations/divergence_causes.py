"""Why a run diverged and what to try: the cause a divergence finding names.

Nothing here knows about Lightning. ``divergence_cause`` reads what came before the
divergence (a loss NaN at step 0, a rate a schedule raised or jumped, a learnt loss that
blew up in one step, a loss scaled up, a first loss far above chance) and says the cause
with its remedies (``divergence_remedies.py``). ``divergence_words.py`` builds the
finding around it.
"""

from __future__ import annotations

import math

from lightning_cnnviz.activations.divergence_remedies import (
    DATA_REMEDIES,
    HOT_REMEDIES,
    INIT_REMEDIES,
    RAISED_REMEDIES,
    REMEDIES,
    SUDDEN_REMEDIES,
    hot_start_text,
)
from lightning_cnnviz.activations.divergence_settings import wrong_setting
from lightning_cnnviz.activations.mode_switch import switch_cause
from lightning_cnnviz.activations.rate_readings import RAISED, rate_rise
from lightning_cnnviz.activations.rewrites import rewrite_words
from lightning_cnnviz.core.gradient_hooks import hooked_words
from lightning_cnnviz.core.raised_settings import raised_setting
from lightning_cnnviz.core.voice import listed, times

__all__ = ["RAISED", "divergence_cause"]


def divergence_cause(
    sudden: tuple[int, float] | None,
    rates: tuple[float, float] | None,
    start: tuple[float, int] | None = None,
    scale: float | None = None,
    jump: tuple[int, float, int, float] | None = None,
    first: bool = False,
    chance: tuple[int, float, int] | None = None,
    inputs: int | None = None,
    flat: tuple[int, float, float, int] | None = None,
    stepped: tuple[int, float, float, float] | None = None,
    decayed: tuple[float, float] | None = None,
    dropped: tuple[float, float] | None = None,
    hooked: tuple[str, ...] = (),
    maximize: tuple[str, ...] = (),
    zeroed: tuple[tuple[str, str, float, float], ...] = (),
    epoch_start: int | None = None,
    grown: tuple[float, float | None] | None = None,
    negated: tuple[int, float] | None = None,
    momentum: tuple[float, float] | None = None,
    switched: tuple[int, int, list[str]] | None = None,
    hot: tuple[int, float, float | None, bool] | None = None,
) -> str:
    """Why it diverged and what to try, from what came before.

    ``first``: the loss was non-finite at step 0, before any update: the data or the loss,
    never the rate (held out: a few NaN pixels in the training images were told as
    "the updates are too large ... lower the learning rate").

    ``sudden``: ``(the step, the loss just before)`` where a learnt, steady loss turned
    non-finite or blew up in one step (a batch or an operation, not the rate), else ``None``.
    ``rates``: ``(the learning rate at the first log, the rate now)``: a rate a schedule
    raised ``RAISED`` x or more (a warmup to a rate 10x too high) is the cause named.
    ``maximize``, a negative rate now, ``negated`` and ``grown``: a setting that makes
    every update climb the loss or grow the weights, named first
    (``divergence_settings.wrong_setting``).
    ``start``: ``(the first loss, K)`` where that loss was already ``OVER_CHANCE`` x the
    chance level ``ln K`` or more, before any update: the loss's scale at step 0 (weights
    initialised too large, or a loss summed over the batch), which the updates from there
    overshoot. ``scale``: where that first loss was this many times the model's own
    cross-entropy (``initial_scale.scaled_loss``: the weights are sane, the loss is
    scaled), which is then the cause named instead. ``jump``: ``(a log's step, its rate,
    the next log's step, its rate)`` around the divergence, where the rate rose ``RAISED``
    x or more between them (a warm restart, a schedule's step up): named first, also
    before a ``sudden`` blow-up (held out: SGDR restarting from 1e-5 to 2.0 at step 96,
    loss 0.14 -> 20 -> 27,000 -> NaN, was told as "one batch or one operation"), as is a
    rate ``rates`` shows raised (hunt 19: a 100x step at step 100, which the log at step 100
    already read, and the blow-up at 101).

    ``hot``: ``(the spike's step, the rate of the steps up to it, the rate now, whether the
    network learnt nothing since)`` of a blow-up at a rate the schedule lowered since, or of
    an early one that left the network at its chance loss: that rate (``hot_start_text``),
    not one a schedule reached after it (held-out hunt 123: 9.0 at steps 0-1, then a warm-up
    from 0.00525, told "lower the learning rate (10x) ... add a learning-rate warmup").

    ``epoch_start``: the epoch whose first step the ``sudden`` blow-up was (0 excluded):
    what runs between two epochs is likelier than one batch there (hunt 35: NaN written
    into a layer's weights by a callback at epoch 3, told as one batch or one operation).

    ``inputs``: the step of a training batch with NaN/Inf inputs where the loss first
    turned non-finite (held out, setups hunt 20: three all-NaN items made the loss NaN at
    step 3, told as "the optimiser overshoots"), named before anything else.

    ``chance``: ``(the spike's step, the loss now, K)`` where a learnt loss went to its
    chance level ``ln K`` and sits there at an unchanged rate: the training batches may
    have lost the label (held out, hunt 19: training images blanked,
    or labels drawn at random, from step 100: told "the optimiser overshoots").

    ``flat``: ``(the step, the loss before, the loss then, K)`` where a learnt, steady loss
    went to its chance level in that one step at an unchanged rate
    (``divergence.to_chance_at_once``): no update does that; something outside the
    optimiser changed the model or its batches (held out, hunt 23: a layer zeroed at
    step 80, told "the optimiser overshoots, lower the learning rate").

    ``stepped``: ``(the step, the loss before, the loss then, the loss now)`` where a
    learnt, steady loss stepped up in that one step at an unchanged rate and has not
    climbed since (``loss_steps.step_up``): the training batches changed (held out, hunt
    23: half the labels random from step 64, told "the optimiser overshoots").

    ``decayed``, ``momentum``, ``dropped``: a weight decay, a momentum or a dropout raised
    during the run (``core.raised_settings.raised_setting``), named before a layer rewritten.

    ``zeroed``: ``(layer, "weights" or "biases", norm at the log before, now)`` where they
    were rewritten (``rewrites.rewritten``) outside the optimiser (held out, hunt 34: conv2
    zeroed by a callback at epoch 3 was told "the training batches may no longer carry
    the label"); named after a decay raised during the run, which shrinks weights too.

    ``switched``: ``(the last log in training mode, the first in eval mode, the norm
    layers)`` where BatchNorm layers were switched to eval mode before it
    (``mode_switch.py``; held-out hunt 119: told "the training batches changing at that
    step"), named before a layer rewritten and before the data.

    ``hooked``: the modules whose gradients pass through a hook, named after the
    remedies where nothing else explains it: the optimiser steps on what the hook returns
    (hunt 31: a hook multiplying a layer's gradient by 1000 was told "lower the learning
    rate"); a hook that only logs changes nothing (hunt 33), so it is not put first.

    Example::

        >>> divergence_cause(None, (0.01, 1.0))[:61]
        'The learning rate rose from 0.01 to 1 before it (a warmup, a '
        >>> divergence_cause((60, 0.88), None)[:60]
        'The loss was 0.88 and steady just before step 60, then blew '
        >>> divergence_cause((98, 0.11), None, jump=(80, 1e-5, 100, 2.0))[:67]
        'The learning rate jumped from 1e-05 (step 80) to 2 (step 100) just '
    """
    if inputs is not None:
        return (
            f"The training batch at step {inputs} held NaN/Inf inputs, and the loss turned "
            "non-finite with it: the data did it, not the learning rate or the updates (a "
            "NaN pixel or feature in a few items, a division by zero in a transform). "
            f"Try: {DATA_REMEDIES}."
        )
    if first:
        return (
            "The loss was already NaN/Inf at step 0, before any update, so no learning rate "
            "or update did it: the first batch or the loss computed on it holds it (a NaN/Inf "
            "in an input or a label, log(0) or a division by zero in the loss, a weight "
            "initialised to NaN). "
            f"Try: {DATA_REMEDIES}."
        )
    told = wrong_setting(maximize, rates, negated, grown)
    if told is not None:
        return told
    if jump is not None:
        a, before, b, after = jump
        return (
            f"The learning rate jumped from {before:.3g} (step {a}) to {after:.3g} (step {b}) "
            f"just before it, {times(after / before)} (a warm restart, a schedule or a callback "
            "stepping it up): the rate it jumped to is too high for this model and data, and the "
            f"optimiser overshoots. Try: {RAISED_REMEDIES}."
        )
    if hot is not None:
        return f"{hot_start_text(*hot)} Try: {HOT_REMEDIES}."
    if rates is not None and rate_rise(None, rates) is not None:
        return (
            f"The learning rate rose from {rates[0]:.3g} to {rates[1]:.3g} before it (a warmup, "
            "a schedule or a callback raising it): the rate it reached is too high for this "
            f"model and data, and the optimiser overshoots. Try: {RAISED_REMEDIES}."
        )
    if (raised := raised_setting(decayed, momentum, dropped)) is not None:
        return raised
    if switched is not None:
        return switch_cause(switched)
    if zeroed:
        part, moved = zeroed[0][1], rewrite_words(zeroed[0])
        # every layer written, not the first alone (hunt 111: BatchNorm biases of 7 layers)
        for kind in dict.fromkeys(p for _, p, *_ in zeroed[1:]):
            others = listed([name for name, p, *_ in zeroed[1:] if p == kind])
            moved += f", and so did {'those' if kind == part else f'the {kind}'} of {others}"
        whose = "that layer's" if len(zeroed) == 1 else "those layers'"
        if hooked:  # hunt 36: a global hook x1000 made the optimiser jump conv2's biases
            return (
                f"{moved}, and {hooked_words(hooked)}: where it returns a changed gradient (a "
                "factor, a sign flip), the optimiser steps on that and writes such a jump "
                "itself. Try: check what the hook returns (return `None`, or the gradient "
                "unchanged, to leave it alone); if it changes nothing, find what writes "
                f"{whose} {part} during training (a callback, a checkpoint loaded, a mask)."
            )
        return (
            f"{moved}: no update moves a whole layer's {part} that fast, so something outside "
            "the optimiser rewrote them (a callback or hook zeroing or re-initialising it, a "
            "checkpoint loaded without it, a pruning mask), and the units after it went "
            f"silent. Try: find what writes {whose} {part} during training."
        )
    if chance is not None:
        at, now, k = chance
        return (
            f"The loss went to its chance level at step {at} and sits there ({now:.3g}, ln {k} "
            f"= {math.log(k):.3g}: the loss of a model that predicts the class shares) at an "
            "unchanged learning rate: the training batches may no longer carry the label "
            "(blank or constant images, labels shuffled, shifted or misaligned from step "
            f"{at}). Try: look at a training batch of that step, its images and labels side "
            "by side; if they are right, the updates overshot: lower the learning rate (10x)."
            + _hooked_too(hooked)
        )
    if flat is not None:
        at, before, then, k = flat
        return (
            f"The loss was {before:.3g} and steady just before step {at}, then went to its "
            f"chance level in that one step ({then:.3g}, ln {k} = {math.log(k):.3g}: what a "
            "model that learnt nothing scores) at an unchanged learning rate: one update does "
            "not undo a learnt model, so something outside the optimiser changed the model or "
            f"its batches at step {at} (weights zeroed, re-initialised or loaded from another "
            "checkpoint, network surgery; blank or constant images). Try: look at what the "
            f"code does to the model's weights at step {at} (its `state_dict` before and "
            "after) and at a training batch of that step; only if both are right, lower the "
            "learning rate (10x)." + _hooked_too(hooked)
        )
    if sudden is not None and epoch_start is not None:
        at, before = sudden
        return (
            f"The loss was {before:.3g} and steady just before step {at}, the first step of "
            f"epoch {epoch_start}, then blew up in that one step: what runs between two epochs "
            "is likelier than one batch there (a callback or hook writing the weights, a NaN "
            "or Inf among them, a checkpoint reloaded; the data, augmentation or loss switched "
            f"per epoch). Try: look at what the code does when epoch {epoch_start} begins (the "
            "model's `state_dict` before and after: `torch.isfinite` on each weight); then "
            f"{DATA_REMEDIES}." + _hooked_too(hooked)
        )
    if sudden is not None:
        at, before = sudden
        return (
            f"The loss was {before:.3g} and steady just before step {at}, then blew up in that "
            "one step: one step from a learnt model to NaN/Inf or a huge loss points at one "
            "batch or one operation (a NaN/Inf or a wildly scaled value in an input or label, "
            "log(0) or a division by zero in the loss), not at updates that grew too large. "
            f"Try: {SUDDEN_REMEDIES}." + _hooked_too(hooked)
        )
    if stepped is not None:
        at, before, then, now = stepped
        return (
            f"The loss was {before:.3g} and steady just before step {at}, then stepped up to "
            f"{then:.3g} in that one step at an unchanged learning rate, and has not climbed "
            f"since (now {now:.3g}): updates grown too large make a loss climb; a step that "
            "holds is the training batches changing at that step (labels remapped, noisier or "
            "shuffled, inputs corrupted or scaled otherwise, a stronger augmentation, another "
            f"loss). Try: look at a training batch of step {at} beside one from before it, "
            "and at what the code changes then in the data, the augmentation or the loss; "
            "only if nothing did, lower the learning rate (10x)." + _hooked_too(hooked)
        )
    if scale is not None:
        return (
            f"The training loss is ~{scale:.0f}x the model's own cross-entropy (scaled in "
            "`training_step`, or summed over the batch instead of averaged): every step is "
            f"~{scale:.0f}x larger than the learning rate says, and the optimiser overshoots. "
            "Try: average the loss over the batch and drop the factor, or divide the "
            "learning rate by it."
        )
    if start is not None:
        first, k = start
        return (
            f"The first loss ({first:.4g}, before any update) was already "
            f"~{first / math.log(k):.0f}x the chance level ln {k} = {math.log(k):.2f}: the "
            "loss starts far too large (weights initialised too large, or a loss summed over "
            "the batch instead of averaged), and the first updates from there overshoot. Try: "
            f"{INIT_REMEDIES}."
        )
    hooks = (
        f" Also: {hooked_words(hooked)}; where it returns a changed gradient (a factor, a "
        "sign flip), the optimiser steps on that, and the updates overshoot or climb by it."
        if hooked
        else ""
    )
    return (
        "The updates are too large for this model and data: the optimiser overshoots. "
        f"Try: {REMEDIES}.{hooks}"
    )


def _hooked_too(hooked: tuple[str, ...]) -> str:
    """A sentence naming gradient hooks beside a one-step blow-up ("" where none).

    Hunt 38: a gradient hook returning NaN, registered by a callback mid-run, was told as
    "one batch or one operation" with the hook unnamed; hunt 39: a hook scaling one
    step's gradient 1e5x left the loss at chance, told as batches without their label.
    """
    if not hooked:
        return ""
    return (
        f" Also: {hooked_words(hooked)}; a hook returning NaN/Inf or a changed gradient "
        "does this in one step too."
    )
