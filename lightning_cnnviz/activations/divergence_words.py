"""A divergence in words: the finding, and the problems told on the way to it.

Nothing here knows about Lightning. The texts of ``divergence.py``'s readings, with where
non-finite values first showed and the level a late spike left; the cause and what to try
come from ``divergence_causes.py``; the notes of spikes that were no divergence or that
ended, from ``recovery_words.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

from lightning_cnnviz.activations.divergence import EVERY_PARAMETER
from lightning_cnnviz.activations.divergence_causes import divergence_cause

__all__ = ["LOSS_TERM", "crawl_text", "divergence_text", "no_loss_text", "part_of_text"]

LOSS_TERM = (
    "A term of the loss gives NaN or Inf on some batches (log(0) or the log of a negative "
    "value, a division by zero, the square root of a negative value) without a NaN gradient "
    "reaching the weights; the logged loss, and whatever reads it (a checkpoint or early "
    "stopping on it, a scheduler on plateau), is broken from there. Try: check each term of "
    "the loss with `torch.isfinite` (or run a step under `torch.autograd.detect_anomaly()`), "
    "and keep its argument in range (e.g. `x.clamp_min(1e-8).log()`)."
)
"""What a loss non-finite in a model that is not says (hunt 111: ``log`` of a negative
value in an auxiliary term, every weight finite and val loss falling at 100% accuracy,
was told "Training diverged ... then blew up in that one step")."""


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
    loss_only: bool = False,
    rewritten: bool = False,
    sat: float | None = None,
    peak_at: int | None = None,
) -> str:
    """The divergence finding in words: what went wrong when, where first, what to try.

    ``spike``: ``(its first step, its peak loss, best, start)``; ``peak_at``: the step of
    that peak, where later than the first.

    ``level``: after a late spike, ``(the loss just before it, the loss now)``.
    ``sat``: after an early one, the loss now, back at its start and level since
    (``early_spike.left_at_start``).
    ``cause``: ``divergence_cause``'s words (the overshooting optimiser by default).
    ``loss_only``: the loss non-finite while no weight, activation or gradient is (steps
    after it): a term of the loss, not training, went wrong (``LOSS_TERM``), said so.
    ``rewritten``: the cause is a layer written outside the optimiser, which silenced the
    ``died`` units itself (hunt 111: BatchNorm biases set to -6, its units said "a
    consequence, not the cause").

    Example::

        >>> print(divergence_text(40, 0, nonfinite_step=12, spike=None, first_weights="fc.weight",
        ...       first_activations="relu1", first_grads=None, died={})[:80])
        Training diverged (seen at step 40, epoch 0): the loss became non-finite (NaN or
        >>> text = divergence_text(10, 0, nonfinite_step=None, spike=(5, 10.1, 9.53, 2.83),
        ...       first_weights=None, first_activations=None, first_grads=None, died={})
        >>> text[text.index("(start"):].split(")")[0]  # rising from the first step on
        '(start 2.83, the loss above it from the first steps up to this one'
        >>> text = divergence_text(60, 1, nonfinite_step=None, spike=(50, 19.9, 0.4, 2.28),
        ...       first_weights=None, first_activations=None, first_grads=None, died={},
        ...       peak_at=51, level=(0.41, 2.3))
        >>> text[text.index("the loss"):].split(" (")[0]
        'the loss spiked at step 50, to 19.9 at step 51'
    """
    if loss_only and nonfinite_step is not None:
        return (
            f"The loss became non-finite (NaN or Inf) at step {nonfinite_step} (seen at step "
            f"{step}, epoch {epoch}), while no weight, activation or gradient of the model is: "
            f"the NaN/Inf is in the loss's value, not in the model. {LOSS_TERM}"
        )
    what = []
    if nonfinite_step is not None:
        what.append(f"the loss became non-finite (NaN or Inf) at step {nonfinite_step}")
    if spike is not None:
        at, value, best, start = spike
        low = (  # a loss that rose from its first step has its lowest median above the start
            f"best {best:.3g}, start {start:.3g}"
            if best < start
            # (not "no lower than <its median> after": the loss may since be back at its start,
            # held-out hunt 124: 2.36, 7.09, 5.57, 3.88, 2.76, then 2.30 at every step)
            else f"start {start:.3g}, the loss above it from the first steps up to this one"
        )
        # the per-step losses (``recovery.spike_seen``): where it went up, how high, when
        peak = f"to {value:.3g} at step {at}"
        if peak_at not in (None, at):  # it went on rising after its first step
            peak = f"at step {at}, to {value:.3g} at step {peak_at}"
        what.append(f"the loss spiked {peak} ({low})")
        if sat is not None:
            what[-1] += (
                f", then came back to its start and has sat there since ({sat:.3g} at step "
                f"{step}): the spike left the network at its chance loss"
            )
        if level is not None:  # the loss had come down: by half, or learnt below its start
            what[-1] += f" after the loss had come down, from {level[0]:.3g} just before it"
            if nonfinite_step is None:  # (after a NaN, the last finite losses say nothing now)
                # (hunt 95: "still 2.73 (0.5x that level)"; hunt 114: "still 0.607 (-0.2x
                # that level)" of a Poisson NLL learnt below 0: no ratio there)
                times = f" ({level[1] / level[0]:.1f}x that level)" if level[0] > 0 else ""
                what[-1] += (
                    f", and is still {level[1]:.3g}{times} at step {step}"
                    if level[1] >= level[0]
                    else f", and is {level[1]:.3g} at step {step} (back below that level)"
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
    if first_weights == EVERY_PARAMETER:
        where[0] = (
            "every parameter holds non-finite values (one step on a NaN gradient writes NaN "
            "into all of them: they do not show where it began)"
        )
    text = f"Training diverged (seen at step {step}, epoch {epoch}): {'; '.join(what)}."
    if where:
        joined = "; ".join(where)
        text += f" {joined[0].upper()}{joined[1:]}."  # names keep their case
    if died:
        dead = ", ".join(f"`{site}` {share:.0%}" for site, share in died.items())
        # a layer written outside the optimiser silences them itself: its doing, not the loss's
        why = "the rewrite's doing (below)" if rewritten else "a consequence, not the cause"
        text += f" Units that stopped activating with it ({dead}) are {why}."
    return f"{text} {cause or divergence_cause(None, None)}"


def crawl_text(
    step: int,
    epoch: int,
    spike: tuple[int, float, float, float],
    peak: float,
    now: float,
    acc: float | None = None,
    lr: float | None = None,
) -> str:
    """A blow-up of the first steps the loss came back from only to crawl (``crawling``).

    Told over the divergence finding (held-out hunt 118: Adam 0.3 on mobilenet_v2, 2.32 ->
    179 at step 1, back to 2.05 by epoch 3 at 20% val, was told "recovered").

    Example::

        >>> print(crawl_text(120, 3, (1, 179.0, 2.32, 2.32), 179.0, 2.05, 0.125, 0.3)[:88])
        Training diverged (seen at step 120, epoch 3): the loss came back from the spike at step
    """
    at, _, _, start = spike
    probe = f"; the probe's accuracy {acc:.0%}" if acc is not None else ""
    rate = f" ({lr:.3g})" if lr is not None else ""
    return (
        f"Training diverged (seen at step {step}, epoch {epoch}): the loss came back from the "
        f"spike at step {at} (to {peak:.3g}, start {start:.3g}) but has learnt little since: "
        f"{now:.3g} now, {1 - now / start:.0%} below its start (a run that learns is soon far "
        f"below it{probe}). The learning rate{rate} is too high to learn at, though the loss "
        "no longer blows up. Try: lower the learning rate (10x or more); a warmup keeps the first "
        "steps from blowing up."
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


def no_loss_text(optimizers: int, backward_seen: bool) -> str:
    """Why the divergence check had no training loss to read, and what to do.

    Example::

        >>> no_loss_text(2, False)[:52]
        'needs the training loss: `training_step` returned no'
    """
    backward = (
        f"the run has {optimizers} optimizers (one backward's loss stands in for a single one)"
        if optimizers != 1
        else "the loss its backward saw is not one value (a loss per item, "
        "`manual_backward(loss, gradient=...)`)"
        if backward_seen
        else "no `manual_backward` ran (its loss stands in for a returned one)"
    )
    return (
        f"needs the training loss: `training_step` returned none, and {backward}; "
        "return the loss, e.g. `{'loss': loss.detach()}`"
    )
