"""A divergence in words: the finding, a spike the run recovered from, and its end.

Nothing here knows about Lightning. The texts of ``divergence.py``'s readings, with where
non-finite values first showed, the level a late spike left, and what to try
(``REMEDIES``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from lightning_cnnviz.activations.loss_trace import SMOOTH
from lightning_cnnviz.activations.recovery import BACK, level_before

__all__ = [
    "RAISED_REMEDIES",
    "REMEDIES",
    "SUDDEN_REMEDIES",
    "divergence_cause",
    "divergence_text",
    "half_first",
    "part_of_text",
    "recovered_text",
    "transient_text",
]

REMEDIES = (
    "lower the learning rate (10x); clip gradients (Trainer(gradient_clip_val=1.0)); add a "
    "learning-rate warmup; check the inputs and labels for NaN/Inf and the loss for log(0) or "
    "division by zero; under 16-bit precision use bf16 or keep the loss scaler"
)
# A rate a schedule raised (a warmup) is the cause: another warmup is no remedy.
RAISED_REMEDIES = (
    "lower the peak learning rate the schedule reaches (10x), or raise it more slowly; clip "
    "gradients (Trainer(gradient_clip_val=1.0)); under 16-bit precision use bf16 or keep the "
    "loss scaler"
)
# The first loss far above chance: the loss's scale at step 0 (the init, or a summed loss).
INIT_REMEDIES = (
    "a standard initialisation (PyTorch's default, or He/Kaiming with gain sqrt(2) for ReLU, "
    "Xavier for Sigmoid/Tanh) instead of a scaled-up one, or a smaller scale on the last "
    "layer's weights; a loss averaged over the batch (`reduction='mean'`); normalisation "
    "layers between layers; then, if it still diverges, a lower learning rate (10x) or "
    "gradient clipping (Trainer(gradient_clip_val=1.0))"
)
# A NaN/Inf from the data or the loss itself: the batch and the operation to check.
DATA_REMEDIES = (
    "check the training items for NaN/Inf or wild values (`torch.isfinite(x).all()`, "
    "`x.abs().max()` on the batch of that step; a corrupt file, a division by a zero std in "
    "a transform); guard the loss against "
    "log(0) and division by zero (clamp probabilities, add an epsilon); "
    "`torch.autograd.set_detect_anomaly(True)` names the operation; under 16-bit precision use "
    "bf16 or keep the loss scaler"
)
# One step from a learnt, steady loss to NaN/Inf: one batch or one operation, not a rate.
SUDDEN_REMEDIES = f"{DATA_REMEDIES}; only if the data is clean, lower the learning rate"
RAISED = 3.0  # the rate at the divergence this many times its first: a schedule raised it
HALF_TINY = 6e-8  # float16's smallest number: an epsilon below it rounds to 0


def half_first(message: str, eps: float | None = None) -> str:
    """A divergence's ``message`` with float32 weights as the first remedy (float16 weights).

    Held out: ``precision="16-true"`` with Adam went NaN at step 2 (its ``eps=1e-8``
    rounds to 0 in float16), told with "lower the learning rate" first.

    Example::

        >>> print(half_first("NaN at step 2. Try: lower the learning rate.", 1e-8)[15:75])
        Try: float32 weights first (`precision="16-mixed"` or `"bf16
    """
    adam = (
        f"; the optimiser's `eps={eps:g}` rounds to 0 there, so its steps divide by zero"
        if eps is not None and 0 < eps < HALF_TINY
        else ""
    )
    return message.replace(
        "Try: ",
        'Try: float32 weights first (`precision="16-mixed"` or `"bf16-mixed"` instead of '
        '`"16-true"`): the weights are float16, whose range (6e-8 to 65504) updates and '
        f"gradients leave easily{adam}; then ",
        1,
    )


def transient_text(
    step: int,
    epoch: int,
    spike: tuple[int, float, float, float],
    series: Sequence[tuple[int, float]],
) -> str:
    """A spike the run recovered from, in words (a note): early or late, and from what level.

    Example::

        >>> series = [(i, 2.3) for i in range(1, 6)] + [(6, 7.0), (7, 0.9)]
        >>> series += [(i, 0.8) for i in range(8, 13)]
        >>> print(transient_text(12, 0, (6, 7.0, 2.3, 2.3), series))  # doctest: +ELLIPSIS
        Loss spike at step 6 (to 7, start 2.3), recovered by step 12 (0.8, below the start)...
    """
    at, value, _, start = spike
    now = statistics.median([v for _, v in series if math.isfinite(v)][-SMOOTH:])
    level = level_before(series, spike)
    tail = " A note, not a problem; if spikes recur, add a learning-rate warmup or clip gradients."
    if level is not None:
        return (
            f"Loss spike at step {at}, late in training (to {value:.3g} from {level:.3g} just "
            f"before it; start {start:.3g}), recovered by step {step} ({now:.3g}, within "
            f"{BACK:g}x its level before the spike): a brief overshoot (an odd batch, a "
            "learning-rate step), not a divergence." + tail
        )
    before = [v for s, v in series if s < at and math.isfinite(v)][: -(SMOOTH - 1)]
    if len(before) >= SMOOTH:  # the loss had not yet halved: early in training
        from_ = statistics.median(before[-SMOOTH:])
        when = f"early in training (to {value:.3g} from {from_:.3g} just before it; start "
        what = "an early transient"
    else:
        when, what = f"(to {value:.3g}, start ", "a transient of the first steps"
    return (
        f"Loss spike at step {at} {when}{start:.3g}), recovered by step {step} ({now:.3g}, "
        f"below the start): {what} (as Adam's start or a large first learning rate give), "
        "not a divergence." + tail
    )


def recovered_text(
    step: int,
    epoch: int,
    spike: tuple[int, float, float, float],
    series: Sequence[tuple[int, float]],
    reported: int | None,
    rate_rose: bool = False,
) -> str:
    """The note that ends a divergence finding whose loss came back (``recovered``).

    ``rate_rose``: the learning rate was raised before the spike (a warm restart, a cyclic
    schedule's peak), which the note then names; a constant rate is not said to have risen.

    Example::

        >>> series = [(i, 2.3) for i in range(1, 11)] + [(i, 0.3) for i in range(11, 41)]
        >>> series += [(i, 2.0) for i in range(41, 61)] + [(i, 0.4) for i in range(61, 89)]
        >>> print(recovered_text(88, 1, (44, 2.0, 0.3, 2.3), series, 60))  # doctest: +ELLIPSIS
        Training recovered from the loss spike at step 44 (to 2, from 0.3 just before it): by...
    """
    at, value, _, start = spike
    now = statistics.median([v for _, v in series if math.isfinite(v)][-SMOOTH:])
    level = level_before(series, spike)
    origin = f"from {level:.3g} just before it" if level is not None else f"start {start:.3g}"
    back = f"within {BACK:g}x its level before" if level is not None else "below the start"
    return (
        f"Training recovered from the loss spike at step {at} (to {value:.3g}, {origin}): by "
        f"step {step} (epoch {epoch}) the loss is back to {now:.3g} ({back}). Reported at step "
        f"{reported} as a divergence; a note now: the run came back on its own. "
        + (
            "It came after the learning rate rose (a warm restart, a cyclic schedule's peak): "
            "a lower peak avoids it; if spikes recur, "
            if rate_rose
            else "If spikes recur, add a learning-rate warmup or "
        )
        + "clip gradients (Trainer(gradient_clip_val=1.0))."
    )


def divergence_text(
    step: int,
    epoch: int,
    *,
    nonfinite_step: int | None,
    spike: tuple[int, float, float, float] | None,
    first_weights: str | None,
    first_activations: str | None,
    first_grads: str | None,
    died: Mapping[str, float],
    level: tuple[float, float] | None = None,
    cause: str | None = None,
) -> str:
    """The divergence finding in words: what went wrong when, where first, what to try.

    ``level``: after a late spike, ``(the loss just before it, the loss now)``.
    ``cause``: ``divergence_cause``'s words (the overshooting optimiser by default).

    Example::

        >>> print(divergence_text(40, 0, nonfinite_step=12, spike=None, first_weights="fc.weight",
        ...       first_activations="relu1", first_grads=None, died={})[:80])
        Training diverged (seen at step 40, epoch 0): the loss became non-finite (NaN or
    """
    what = []
    if nonfinite_step is not None:
        what.append(f"the loss became non-finite (NaN or Inf) at step {nonfinite_step}")
    if spike is not None:
        at, value, best, start = spike
        what.append(
            f"the loss spiked to {value:.3g} at step {at} (best {best:.3g}, start {start:.3g})"
        )
        if level is not None:
            what[-1] += f" late in training, from {level[0]:.3g} just before it"
            if nonfinite_step is None:  # (after a NaN, the last finite losses say nothing now)
                what[-1] += (
                    f", and is still {level[1]:.3g} ({level[1] / level[0]:.1f}x that level) at "
                    f"step {step}"
                )
    where = [
        f"{label} `{name}`"
        for label, name in (
            ("first parameter with non-finite values:", first_weights),
            ("first layer with non-finite activations:", first_activations),
            ("first layer with non-finite gradients:", first_grads),
        )
        if name
    ]
    text = f"Training diverged (seen at step {step}, epoch {epoch}): {'; '.join(what)}."
    if where:
        text += " " + "; ".join(where).capitalize() + "."
    if died:
        dead = ", ".join(f"`{site}` {share:.0%}" for site, share in died.items())
        text += f" Units that stopped activating with it ({dead}) are a consequence, not the cause."
    return f"{text} {cause or divergence_cause(None, None)}"


def divergence_cause(
    sudden: tuple[int, float] | None,
    rates: tuple[float, float] | None,
    start: tuple[float, int] | None = None,
    scale: float | None = None,
    jump: tuple[int, float, int, float] | None = None,
    first: bool = False,
) -> str:
    """Why it diverged and what to try, from what came before.

    ``first``: the loss was non-finite at step 0, before any update: the data or the loss,
    never the rate (held out: a few NaN pixels in the training images were told as
    "the updates are too large ... lower the learning rate").

    ``sudden``: ``(the step, the loss just before)`` where a learnt, steady loss turned
    non-finite or blew up in one step (a batch or an operation, not the rate), else ``None``.
    ``rates``: ``(the learning rate at the first log, the rate now)``: a rate a schedule
    raised ``RAISED`` x or more (a warmup to a rate 10x too high) is the cause named.
    ``start``: ``(the first loss, K)`` where that loss was already ``OVER_CHANCE`` x the
    chance level ``ln K`` or more, before any update: the loss's scale at step 0 (weights
    initialised too large, or a loss summed over the batch), which the updates from there
    overshoot. ``scale``: where that first loss was this many times the model's own
    cross-entropy (``initial_scale.scaled_loss``: the weights are sane, the loss is
    scaled), which is then the cause named instead. ``jump``: ``(a log's step, its rate,
    the next log's step, its rate)`` around the divergence, where the rate rose ``RAISED``
    x or more between them (a warm restart, a schedule's step up): named first, also
    before a ``sudden`` blow-up (held out: SGDR restarting from 1e-5 to 2.0 at step 96,
    loss 0.14 -> 20 -> 27,000 -> NaN, was told as "one batch or one operation").

    Example::

        >>> divergence_cause(None, (0.01, 1.0))[:61]
        'The learning rate rose from 0.01 to 1 before it (a warmup or '
        >>> divergence_cause((60, 0.88), None)[:60]
        'The loss was 0.88 and steady just before step 60, then blew '
        >>> divergence_cause((98, 0.11), None, jump=(80, 1e-5, 100, 2.0))[:67]
        'The learning rate jumped from 1e-05 (step 80) to 2 (step 100) just '
    """
    if first:
        return (
            "The loss was already NaN/Inf at step 0, before any update, so no learning rate "
            "or update did it: the first batch or the loss computed on it holds it (a NaN/Inf "
            "in an input or a label, log(0) or a division by zero in the loss, a weight "
            "initialised to NaN). "
            f"Try: {DATA_REMEDIES}."
        )
    if jump is not None:
        a, before, b, after = jump
        return (
            f"The learning rate jumped from {before:.3g} (step {a}) to {after:.3g} (step {b}) "
            f"just before it, {after / before:.0f}x (a warm restart or a schedule stepping it "
            "up): the rate it jumped to is too high for this model and data, and the "
            f"optimiser overshoots. Try: {RAISED_REMEDIES}."
        )
    if sudden is not None:
        at, before = sudden
        return (
            f"The loss was {before:.3g} and steady just before step {at}, then blew up in that "
            "one step: one step from a learnt model to NaN/Inf or a huge loss points at one "
            "batch or one operation (a NaN/Inf or a wildly scaled value in an input or label, "
            "log(0) or a division by zero in the loss), not at updates that grew too large. "
            f"Try: {SUDDEN_REMEDIES}."
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
    if rates is not None and rates[0] > 0 and rates[1] >= RAISED * rates[0]:
        return (
            f"The learning rate rose from {rates[0]:.3g} to {rates[1]:.3g} before it (a warmup "
            "or a schedule raising it): the rate it reached is too high for this model and "
            f"data, and the optimiser overshoots. Try: {RAISED_REMEDIES}."
        )
    return (
        "The updates are too large for this model and data: the optimiser overshoots. "
        f"Try: {REMEDIES}."
    )


def part_of_text(kind: str, since: int, spike: int, rise: int, step: int, epoch: int) -> str:
    """Units told silent on the way to a divergence, said to be part of it (a note).

    ``spike``: the step the loss spiked (or turned non-finite); ``rise``: where it began
    to rise to it (``spike`` itself where it did not).

    Example::

        >>> print(part_of_text("dead_units", 90, 103, 103, 120, 2)[:71])
        Dead units reported at step 90 were part of the divergence told at step
    """
    title = "Dead units" if kind == "dead_units" else "Dormant units"
    rising = f", rising from step {rise} on" if rise < spike else ""
    return (
        f"{title} reported at step {since} were part of the divergence told at step {step} "
        f"(epoch {epoch}): they went silent on its way (the loss spiked at step {spike}"
        f"{rising}), with the too-large updates, not on their own. A note now: what to try "
        "is the divergence's."
    )
