"""A spike that was no divergence, or that ended, in words: the notes.

Nothing here knows about Lightning. The texts of ``recovery.py``'s and the review's
readings: a transient the run came back from on its own, a divergence that ended, late
spikes that recur, and a loss that rose while the model did not get worse (a harder
target, a loss weighted anew). The finding itself: ``divergence_words.py``.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence

from lightning_cnnviz.activations.loss_trace import SMOOTH
from lightning_cnnviz.activations.recovery import BACK, level_before, spike_seen
from lightning_cnnviz.activations.rewrites import rewrite_words
from lightning_cnnviz.core.voice import times

# a spike past this many steps is no optimiser's start (Adam's first steps, a large first
# rate): a slow learner whose loss never halved spiked at step 155 of 320 (hunt 94)
START_STEPS = 100

__all__ = [
    "anew_text",
    "came_hot",
    "recovered_text",
    "recurring_text",
    "still_in_force",
    "target_text",
    "transient_text",
]


def target_text(
    step: int,
    epoch: int,
    spike: tuple[int, float, float, float],
    level: float | None,
    accuracy: tuple[float, float] | None = None,
    own_loss: tuple[float, float] | None = None,
) -> str:
    """A training loss that rose while the model's accuracy held (or its own loss fell): a note.

    Example::

        >>> print(target_text(120, 2, (96, 1.61, 0.23, 2.3), 0.25, (0.95, 0.96))[:79])
        The training loss rose at step 96 (to 1.61 from 0.25 just before it), while the
        >>> print(target_text(20, 0, (5, 0.91, 0.23, 0.23), None, own_loss=(2.3, 0.5))[44:116])
        while the model's own cross-entropy on the probe images fell (2.3 before
    """
    at, value, _, _ = spike
    frm = f" from {level:.3g} just before it" if level is not None else ""
    now = f"at step {step}, epoch {epoch}"
    if own_loss is not None:
        held = f"own cross-entropy on the probe images fell ({own_loss[0]:.3g} before it, "
        held += f"{own_loss[1]:.3g} {now})"
    else:
        held = f"accuracy on the probe images held ({accuracy[0]:.1%} before it, "  # type: ignore[index]
        held += f"{accuracy[1]:.1%} {now})"  # type: ignore[index]
    return (
        f"The training loss rose at step {at} (to {value:.3g}{frm}), while the model's {held}: "
        "the training target got harder or the loss's weight grew, the model did not get "
        "worse (a loss weight ramped up, label smoothing, CutMix or MixUp, a stronger "
        "augmentation, noisier labels or another loss switched on?). A note, not a problem: "
        "nothing to fix where that was meant; else look at what the training batches or the "
        "loss became at that step."
    )


def recurring_text(step: int, epoch: int, spikes: Sequence[int]) -> str:
    """Late spikes the run came back from, again and again, in words (a problem).

    Example::

        >>> print(recurring_text(200, 5, [33, 65, 97])[:71])
        The loss spiked and came back 3 times, at steps 33, 65 and 97 (every 32
    """
    gaps = {b - a for a, b in itertools.pairwise(spikes)}
    every = f" (every {gaps.pop()} steps)" if len(gaps) == 1 else ""
    shown = ", ".join(map(str, spikes[:-1])) + f" and {spikes[-1]}"
    return (
        f"The loss spiked and came back {len(spikes)} times, at steps {shown}{every}, seen "
        f"at step {step} (epoch {epoch}), at an unchanged learning rate: one odd batch "
        "makes one spike; spikes that recur are something the run does again and again, "
        "undoing part of what was learnt each time (a layer re-initialised, an optimiser "
        "or its state reset, weights reloaded in a callback at each epoch start; a data "
        "shard that is corrupt). Try: look at what the code does at those steps (the "
        "epoch's start, a callback's hook); only if nothing does, lower the learning rate."
    )


def transient_text(
    step: int,
    epoch: int,
    spike: tuple[int, float, float, float],
    series: Sequence[tuple[int, float]],
    outside: bool = False,
    jumped: tuple[float, float] | None = None,
    written: tuple[str, str, float, float] | None = None,
    hot: tuple[float, float] | None = None,
) -> str:
    """A spike the run recovered from, in words (a note): early or late, and from what level.

    ``written``: a layer rewritten outside the optimiser since the last log
    (``rewrites.rewritten``), named as the spike's cause (hunt 73: conv2's biases -20 at
    step 1000, told "a brief overshoot (an odd batch, a learning-rate step)").

    ``jumped``: ``(the rate before, the rate now)`` where the rate jumped around the spike
    and is still that high (``still_in_force``). ``hot``: ``(the rate the spike came at,
    the rate now)`` where that was far higher (``came_hot``).

    ``outside``: a learnt loss went to chance in one step (``divergence.to_chance_at_once``):
    no overshoot, something changed the model or its batches (hunt 23: a layer zeroed).

    Example::

        >>> series = [(i, 2.3) for i in range(1, 6)] + [(6, 7.0), (7, 0.9)]
        >>> series += [(i, 0.8) for i in range(8, 13)]
        >>> print(transient_text(12, 0, (6, 7.0, 2.3, 2.3), series))  # doctest: +ELLIPSIS
        Loss spike at step 6 (to 7, start 2.3), recovered by step 12 (0.8, below the start)...
    """
    _, _, _, start = spike
    # the per-step losses: where it went up, how high, the step before (not the medians)
    at, _, value, just = spike_seen(series, spike)
    now = statistics.median([v for _, v in series if math.isfinite(v)][-SMOOTH:])
    level = level_before(series, spike)
    rate = still_in_force(*jumped) if jumped else came_hot(*hot) if hot else None
    tail = " A note, not a problem; if spikes recur, add a learning-rate warmup or clip gradients."
    if level is not None:
        what = (
            "the loss went to its chance level in one step at an unchanged learning rate, "
            "which no update does: something outside the optimiser changed the model or its "
            "batches then (weights zeroed, re-initialised or loaded; blank images)"
            if outside
            else "a brief overshoot (an odd batch, a learning-rate step), not a divergence"
        )
        if written is not None:
            what = (
                f"{rewrite_words(written)}: no update moves a whole layer that fast, so "
                "something outside the optimiser rewrote it, and the run came back"
            )
        if outside or written is not None:
            tail = " A note, not a problem; if it recurs, look at what the code does at that step."
        elif rate is not None:
            what = "a brief overshoot, not a divergence"
            tail = " " + rate
        return (
            f"Loss spike at step {at}, after the loss had come down (to {value:.3g} from "
            f"{level if just is None else just:.3g} just "
            f"before it; start {start:.3g}), recovered by step {step} ({now:.3g}, within "
            f"{BACK:g}x its level before the spike): {what}." + tail
        )
    before = [v for s, v in series if s < spike[0] and math.isfinite(v)][: -(SMOOTH - 1)]
    from_ = statistics.median(before[-SMOOTH:]) if len(before) >= SMOOTH else None
    from_ = just if from_ is not None and just is not None else from_  # the step before's
    if from_ is not None and (rate is not None or at > START_STEPS):  # no start: the
        # rate's doing, or an odd batch (hunt 94: a 100x jump at step 150 of 320 was "an
        # early transient (as Adam's start or a large first learning rate give)")
        why = rate if rate is not None else tail.lstrip()
        return (
            f"Loss spike at step {at} (to {value:.3g} from {from_:.3g} just before it; start "
            f"{start:.3g}), recovered by step {step} ({now:.3g}, below the start): a brief "
            f"overshoot (an odd batch, a learning-rate step), not a divergence. {why}"
        )
    if from_ is not None:  # the loss had not yet halved: early in training
        when = f"early in training (to {value:.3g} from {from_:.3g} just before it; start "
        what = "an early transient"
    else:
        when, what = f"(to {value:.3g}, start ", "a transient of the first steps"
    return (
        f"Loss spike at step {at} {when}{start:.3g}), recovered by step {step} ({now:.3g}, "
        f"below the start): {what} (as Adam's start or a large first learning rate give), "
        "not a divergence." + tail
    )


def still_in_force(before: float, now: float) -> str:
    """The note's ending where the rate jumped around the spike and stays there.

    Example::

        >>> print(still_in_force(0.001, 0.05))  # doctest: +NORMALIZE_WHITESPACE
        It came after the learning rate jumped 50x (from 0.001 to 0.05), which is still in
        force: the run came back for now, but trains at 50x the rate it learnt at. A note;
        if the loss spikes again or settles higher than before, lower the rate.
    """
    factor = times(now / before)
    return (
        f"It came after the learning rate jumped {factor} (from {before:.3g} to {now:.3g}), "
        f"which is still in force: the run came back for now, but trains at {factor} the "
        "rate it learnt at. A note; if the loss spikes again or settles higher than before, "
        "lower the rate."
    )


def came_hot(then: float, now: float) -> str:
    """The note's ending where the spike came at a rate far above the one in force now.

    Example::

        >>> print(came_hot(0.035, 0.001))  # doctest: +NORMALIZE_WHITESPACE
        It came at a learning rate of 0.035, 35x the 0.001 in force now: a few steps at a
        far higher rate, put back since. A note; if that rate was not meant, look at what
        sets it at that step (a scheduler, code that writes the optimiser's `param_groups`).
    """
    return (
        f"It came at a learning rate of {then:.3g}, {times(then / now)} the {now:.3g} in force "
        "now: a few steps at a far higher rate, put back since. A note; if that rate was not "
        "meant, look at what sets it at that step (a scheduler, code that writes the "
        "optimiser's `param_groups`)."
    )


def recovered_text(
    step: int,
    epoch: int,
    spike: tuple[int, float, float, float],
    series: Sequence[tuple[int, float]],
    reported: int | None,
    rate_rose: bool = False,
    outside: bool = False,
    jumped: tuple[float, float] | None = None,
    cooled: tuple[float, float] | None = None,
    hot: tuple[float, float] | None = None,
) -> str:
    """The note that ends a divergence finding whose loss came back (``recovered``).

    ``rate_rose``: the learning rate was raised before the spike (a warm restart, a cyclic
    schedule's peak), which the note then names; a constant rate is not said to have risen.
    ``outside``: the loss changed level in one step at an unchanged rate (``loss_steps``:
    to chance, or a step up), which no rate or clipping explains. ``jumped``: as
    ``transient_text``'s. ``cooled``: ``(the rate at the spike, the rate now)``, far lower
    now (``early_spike.cooled``): a hot first step, a warm-up restarted, which the note names.
    ``hot``: as ``transient_text``'s, a hot step between two logs (named before ``cooled``).

    Example::

        >>> series = [(i, 2.3) for i in range(1, 11)] + [(i, 0.3) for i in range(11, 41)]
        >>> series += [(i, 2.0) for i in range(41, 61)] + [(i, 0.4) for i in range(61, 89)]
        >>> print(recovered_text(88, 1, (44, 2.0, 0.3, 2.3), series, 60))  # doctest: +ELLIPSIS
        Training recovered from the loss spike at step 41 (to 2, from 0.3 just before it): by...
    """
    _, _, _, start = spike
    at, _, value, just = spike_seen(series, spike)  # the per-step losses, as the finding's
    now = statistics.median([v for _, v in series if math.isfinite(v)][-SMOOTH:])
    level = level_before(series, spike)
    level = just if level is not None and just is not None else level
    origin = f"from {level:.3g} just before it" if level is not None else f"start {start:.3g}"
    back = f"within {BACK:g}x its level before" if level is not None else "below the start"
    if outside:  # not the rate: what changed the model or its batches at that step
        ending = (
            "If it recurs, look at what changes the model's weights or its batches at that "
            "step: the loss changed level in one step at an unchanged learning rate."
        )
    elif jumped is not None:
        ending = still_in_force(*jumped)
    elif hot is not None:  # (held-out hunt 124: a hot step during a warm-up)
        ending = came_hot(*hot)
    elif cooled is not None:  # (held-out hunt 121: a first step at 40x, then a warm-up)
        ending = (
            f"It came at a learning rate of {cooled[0]:.3g}, {times(cooled[0] / cooled[1])} the "
            f"{cooled[1]:.3g} in force now (a hot first step, a warm-up restarted): warming up "
            "from a lower rate avoids it."
        )
    elif rate_rose:
        ending = (
            "It came after the learning rate rose (a warm restart, a cyclic schedule's peak): "
            "a lower peak avoids it; if spikes recur, clip gradients "
            "(Trainer(gradient_clip_val=1.0))."
        )
    else:
        ending = (
            "If spikes recur, add a learning-rate warmup or clip gradients "
            "(Trainer(gradient_clip_val=1.0))."
        )
    return (
        f"Training recovered from the loss spike at step {at} (to {value:.3g}, {origin}): by "
        f"step {step} (epoch {epoch}) the loss is back to {now:.3g} ({back}). Reported at step "
        f"{reported} as a divergence; a note now: the run came back on its own. {ending}"
    )


def anew_text(
    step: int,
    epoch: int,
    spike: tuple[int, float, float, float],
    reported: int | None,
    before: float,
    acc: float,
    now: float,
) -> str:
    """The note that ends a divergence whose loss learns a new target (``_learns_anew``).

    Example::

        >>> print(anew_text(180, 6, (90, 23.9, 4e-5, 2.39), 100, 0.25, 0.56, 1.69))
        ... # doctest: +ELLIPSIS
        The divergence told at step 100 is over: the loss learns again at an unchanged...
    """
    told = f"told at step {reported} " if reported is not None else ""
    return (
        f"The divergence {told}is over: the loss learns again at an unchanged learning rate "
        f"({now:.3g} now, at step {step}, epoch {epoch}) and the probe's accuracy is "
        f"{acc:.0%}, above the {before:.0%} it had before the spike at step {spike[0]}: the "
        f"batches from step {spike[0]} on carry a target the model learns (classes or data "
        "added, a harder task on purpose), which updates that broke it would not give. The "
        f"losses before and after step {spike[0]} measure different tasks; if that change "
        "was not meant, look at what the data does at that step."
    )
