"""Dead and dormant units in words: the texts and the remedies that fit each cause.

``dead_text`` and ``dormant_text`` say what ``dead_rules.py`` decided, with the remedies
that fit the cause (``REMEDIES``; ``INIT_REMEDIES`` where the weights' scale at
initialisation silenced the units; ``MOMENTUM_REMEDIES``, ``CUT_REMEDIES``,
``BLOCKED_REMEDIES``, ``DATA_REMEDIES`` where the momentum, a schedule, a cut gradient or
the data stand behind them; ``DORMANT_REMEDIES`` for activations that pass gradient below
zero).

Example::

    >>> print(diagnosis_text([("relu1", 0.5, None)], {"relu1": [0, 2]}, 40, 0)[:66])
    Dead units at step 40 (epoch 0): `relu1`: 50% of units dead (0, 2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lightning_cnnviz.activations.dead_rules import SLOW

__all__ = [
    "BLOCKED_REMEDIES",
    "CUT_REMEDIES",
    "DATA_REMEDIES",
    "DORMANT_REMEDIES",
    "INIT_REMEDIES",
    "MOMENTUM_REMEDIES",
    "REMEDIES",
    "REWRITE_REMEDIES",
    "burst_text",
    "dead_text",
    "diagnosis_text",
    "dormant_text",
]


REMEDIES = (
    "lower the learning rate (units die after too large an update); use LeakyReLU, ELU or GELU; "
    "use He (kaiming) initialisation; put BatchNorm before the activation; check the bias "
    "(a large negative bias switches a unit off for every input)"
)
# Where the weights' scale at initialisation is the cause (zero, or far too large), the
# learning rate is not: a learning-rate remedy reads wrong at lr 1e-4.
INIT_REMEDIES = (
    "a standard initialisation (PyTorch's default, or He/Kaiming for ReLU nets, Xavier for "
    "Sigmoid/Tanh) instead of zero or over-scaled weights; a lower init gain; BatchNorm before "
    "the activation"
)
# Where the optimiser's momentum carries ~1,000 past gradients into each step, that comes first.
MOMENTUM_REMEDIES = (
    "lower the momentum to 0.9 (Adam: `betas=(0.9, 0.999)`); then, if units still die, lower "
    "the learning rate, use LeakyReLU or GELU, put BatchNorm before the activation"
)
# Where a schedule cut the rate early, too large an update is not the cause: the schedule is.
CUT_REMEDIES = (
    "check the learning-rate schedule: a scheduler stepped every batch where it was meant "
    "every epoch (`interval`, milestones counted in steps) cuts the rate within the first "
    "steps; keep the rate near the one set while the model learns; then, if units still "
    "die, use LeakyReLU or GELU, put BatchNorm before the activation"
)
# Where a layer was rewritten outside the optimiser, what wrote it comes first, not the rate.
REWRITE_REMEDIES = (
    "find what writes that layer during training (a callback or hook zeroing, shifting or "
    "re-initialising it, a checkpoint loaded without it, a pruning mask); the learning rate "
    "did not do this"
)
# Where no gradient reaches the layers below (exactly 0), the cut comes first.
BLOCKED_REMEDIES = (
    "let the gradient through: a straight-through estimator written `x + (f(x) - x).detach()` "
    "(without `.detach()` its gradient is exactly 0), no `.detach()` or `torch.no_grad()` on "
    "the way to the loss"
)
# Where the loss never left its chance level, nothing was learnt: the data comes first.
DATA_REMEDIES = (
    "check that each label belongs to its input (labels shuffled or misaligned against the "
    "inputs keep the loss exactly at chance), that the loss reads the model's output and the "
    "targets, and that the optimiser holds the model's parameters; if the units died with the "
    "first large updates, lower the learning rate"
)


def burst_text(rise: float) -> str:
    """The cause of dead units in a model at chance whose gradients burst (``GRAD_BURST``)."""
    return (
        f"The gradients rose to {rise:.0f}x their first level while the loss sat at its "
        "chance level: the updates are too large for this model, and units silenced by "
        "them follow from it."
    )


# Rectifiers that already pass gradient below zero get the same advice minus the swap.
DORMANT_REMEDIES = (
    "lower the learning rate; use He (kaiming) initialisation; put a normalisation layer "
    "before the activation; for reinforcement-style non-stationary targets, ReDo-style "
    "re-initialisation of dormant units (Sokar et al. 2023)"
)


def diagnosis_text(
    alerts: Sequence[tuple[str, float, float | None]],
    dead: Mapping[str, Sequence[int]],
    step: int,
    epoch: int,
) -> str:
    """The plain-words diagnosis for ``dead_alerts``: layers, fractions, when, what to do.

    Example::

        >>> print(diagnosis_text([("relu1", 0.5, None)], {"relu1": [0, 2]}, 40, 0)[:66])
        Dead units at step 40 (epoch 0): `relu1`: 50% of units dead (0, 2)
    """
    parts = [
        f"`{site}`: {fraction:.0%} of units dead ("
        + ", ".join(map(str, dead[site][:16]))
        + (", ..." if len(dead[site]) > 16 else "")
        + ("" if before is None else f"; {'up from' if fraction > before else 'was'} {before:.0%}")
        + ")"
        for site, fraction, before in alerts
    ]
    return (
        f"Dead units at step {step} (epoch {epoch}): {'; '.join(parts)}. "
        f"Units that never activate get no gradient and stop learning. Try: {REMEDIES}."
    )


def dead_text(
    alerts: Sequence[tuple[str, float, float | None]],
    dead: Mapping[str, Sequence[int]],
    step: int,
    epoch: int,
    severity: str,
    progress: float | None,
    cause: str | None = None,
    remedies: str = INIT_REMEDIES,
    consequence: bool = False,
    learnt: float | None = None,
) -> str:
    """``diagnosis_text`` with the severity's reason: why it hurts, or why it does not.

    ``cause``: what is known to have silenced the units (the weights' scale at
    initialisation), or to stand behind them (a loss that never left its chance level);
    said with its ``remedies`` instead of the learning-rate ones. ``consequence``: the
    cause is another finding's (a note then names it). ``learnt``: the probe's accuracy
    where it is far past chance (``probe_learning.probe_learnt``), said where the loss fell
    less than ``dead_rules.SLOW``: a floor holds it up.
    """
    text = diagnosis_text(alerts, dead, step, epoch)
    head = text.split(" Units that never")[0].rstrip(".")
    if consequence and cause:
        return f"{head}. A note: {cause} Try: {remedies}."
    if severity == "problem":
        if cause:
            return f"{head}. {cause} Try: {remedies}."
        return text
    if progress is None:
        why = "too few steps yet to tell whether learning suffers"
    elif learnt is not None and progress < SLOW:
        why = (
            f"learning goes on (the probe's images are {learnt:.0%} right; the loss fell "
            f"{max(progress, 0.0):.0%} since the first step, held up by a floor such as label "
            "smoothing's or soft targets')"
        )
    elif progress >= 0.01:
        why = f"learning goes on (the loss fell {progress:.0%} since the first step)"
    else:  # "learning goes on (the loss fell 0%)" contradicted itself
        why = "learning has barely begun (the loss is within 1% of its first step's)"

    return (
        f"{head}. A note, not a problem: {why}; a layer often keeps a share of silent units "
        "without harm (in wide layers, dense heads, small gating layers). Watch it if it "
        "keeps rising."
    )


def dormant_text(
    alerts: Sequence[tuple[str, float, float | None]],
    step: int,
    epoch: int,
    tau: float,
    written: str | None = None,
) -> str:
    """Dormant units of activations that pass gradient below zero (never called dead).

    ``written``: a layer written outside the optimiser silenced them
    (``rewrites.silenced_by``), said with its remedies instead of the rate's.

    Example::

        >>> dormant_text([("act", 0.5, None)], 9, 0, 0.025)[:60]
        'Dormant units at step 9 (epoch 0): `act`: 50% of units below'
    """
    parts = [f"`{site}`: {share:.0%} of units below {tau:g}x the layer's mean activity"
             + (f" (was {before:.0%})" if before is not None else "")
             for site, share, before in alerts]  # fmt: skip
    head = f"Dormant units at step {step} (epoch {epoch}): {'; '.join(parts)}."
    if written is not None:
        return f"{head} {written} Try: {REWRITE_REMEDIES}."
    return (
        f"{head} These activations pass gradient below zero, so the units are not dead, only "
        f"little used (dormant, Sokar et al. 2023). If it keeps rising: {DORMANT_REMEDIES}."
    )
