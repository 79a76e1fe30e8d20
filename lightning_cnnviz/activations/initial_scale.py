"""The scale a run starts at: weights that make the first losses huge, a loss scaled.

Nothing here knows about Lightning. Read once, at the first log (``CauseReview``): a
classifier of ``K`` outputs with weights at a sane scale starts near the chance level
``ln K``. The first training losses and the monitor's own cross-entropy of the probe far
above it: the initial weights are too large (``init_explosion``). The first losses far
above or below the model's own cross-entropy while that sits near ``ln K``: the loss
``training_step`` returns is scaled (``scaled_loss``); or, where the first updates blew
the weights up before the probe read them, the first loss far above ``ln K`` while the
weights at step 0 were at a standard scale (``init_growth``, ``scaled_at_start``).

Example::

    >>> over_chance(138.1, 10)
    True
    >>> scaled_loss([229.1, 231.0, 228.0], 10, 2.35)[1]["scale"]
    97.0
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_cnnviz.activations.init_weights import unnormalised

__all__ = [
    "INIT_EXPLOSION_REMEDIES",
    "NEAR",
    "OVER_CHANCE",
    "init_explosion",
    "init_growth",
    "over_chance",
    "scaled_at_start",
    "scaled_loss",
]

OVER_CHANCE = 10.0  # a first loss this many times ln K: the logits are far too large
INIT_EXPLOSION_REMEDIES = (
    "a standard initialisation (PyTorch's default, or He/Kaiming with gain sqrt(2) for ReLU, "
    "Xavier for Sigmoid/Tanh) instead of a scaled-up one; a lower init gain; normalisation "
    "layers (BatchNorm/LayerNorm) between layers; a smaller scale on the last layer's weights"
)
RAW_INPUTS_REMEDIES = (
    "the inputs scaled to unit range and normalised (mean 0, std 1 per channel) before the "
    "first layer; then, if the loss still starts far above chance, a lower init gain"
)
SCALED = 10.0  # a first loss this many times the model's own cross-entropy: scaled
SANE = 2.0  # ...where that cross-entropy is within this many times ln K (logits near 0)
# ... and, for a loss scaled down, at least this share of ln K: weights near their start. A
# trained model's losses both lie near 0 and their ratio is chance (setups hunt 59: a trained
# model fitted again, mean cross-entropy, was told "~0.096x the model's own cross-entropy")
FRESH = 0.5
NEAR = 3  # the last losses before the first log: a few updates from the probe's weights
# The layers' gains over He's (a unit's output over its inputs', sqrt(2) for a ReLU net),
# multiplied over the layers no normalisation follows, at most this: a standard scale.
# PyTorch's default (0.58 a layer), He, Xavier and a BatchNorm net read 1; He x2 on seven
# layers reads 128 (the logits too large, ``init_explosion``)
STANDARD_GROWTH = 4.0


def init_growth(modules: Sequence[tuple[str, nn.Module]]) -> Tensor | None:
    """How much larger than He's the weights make a unit's outputs, layer over layer.

    ``modules``: a model's ``named_modules()``, read before its first update (on its
    device, no host read: a 0-d tensor, ``None`` without weight layers). Each layer no
    normalisation follows (``init_weights.unnormalised``) gains the root mean square of
    its units' weight norms over He's ``sqrt(2)``; gains under 1 count as 1 (a layer that
    shrinks its outputs is no sign of one too large).

    Example::

        >>> net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        >>> float(init_growth(list(net.named_modules())))  # PyTorch's default
        1.0
        >>> for layer in (net[0], net[2]):
        ...     _ = nn.init.normal_(layer.weight, std=1.0)  # unit weights: sqrt(fan_in)
        >>> float(init_growth(list(net.named_modules()))) > 20  # 5.7 x 4
        True
    """
    gains = [
        torch.linalg.vector_norm(w.detach().float()) / math.sqrt(2 * len(w))
        for _, _, w in unnormalised(modules)
        if not w.is_complex() and not w.is_meta and len(w)
    ]
    if not gains:
        return None
    device = gains[0].device
    return torch.stack([g.to(device) for g in gains]).clamp_min(1.0).prod()


def scaled_at_start(
    first_loss: float, classes: int, probe_loss: float, growth: float | None
) -> tuple[str, dict[str, float]] | None:
    """A first loss ``SCALED`` x ``ln K`` from weights at a standard scale: a loss scaled.

    Where the first updates blew the weights up before the first log, the probe's
    cross-entropy there (``probe_loss``, over ``SANE`` x ``ln K``) no longer says what
    the model scored at step 0 and ``scaled_loss`` cannot read the loss's scale. The
    weights' ``growth`` at step 0 (``init_growth``) at most ``STANDARD_GROWTH`` says it:
    the model started near ``ln K``, so a first loss (before any update) ``SCALED`` x that
    is the loss ``training_step`` returns, scaled (held-out hunt 122: a cross-entropy
    x1000 under SGD 0.05 blew up at step 1 and was told as weights initialised too large,
    with "a standard initialisation instead of a scaled-up one" first, at PyTorch's
    default init).

    Example::

        >>> text, figures = scaled_at_start(2312.0, 10, 89.4, growth=1.0)
        >>> text[:58], figures["scale"]
        ('The training loss is ~1004x the chance level: the first lo', 1004.0)
        >>> scaled_at_start(2312.0, 10, 89.4, growth=128.0) is None  # weights too large
        True
        >>> scaled_at_start(2312.0, 10, 2.31, growth=1.0) is None  # ``scaled_loss`` reads it
        True
        >>> scaled_at_start(2312.0, 10, math.nan, growth=1.0)[1]["scale"]  # blown up to NaN
        1004.0
    """
    chance = math.log(classes) if classes >= 2 else math.nan
    if growth is None or not growth <= STANDARD_GROWTH or not first_loss >= SCALED * chance:
        return None
    blown = not math.isfinite(probe_loss) or probe_loss > SANE * chance  # NaN: blown up too
    if not (math.isfinite(first_loss) and blown):
        return None
    scale = round(first_loss / chance)
    text = (
        f"The training loss is ~{scale:.0f}x the chance level: the first loss "
        f"{first_loss:.4g} (before any update) against ln {classes} = {chance:.2f}, near "
        "which a model starts with its weights at a standard scale, as this one's were at "
        "step 0. The loss `training_step` returns is scaled (multiplied, or summed over the "
        f"batch instead of averaged): under SGD every step is ~{scale:.0f}x larger than the "
        "learning rate says, and the first updates blew the weights up. Try: average the "
        'loss over the batch (`reduction="mean"`) and drop the factor, or divide the learning '
        "rate by it"
    )
    return text, {"first_loss": first_loss, "chance_loss": chance, "scale": float(scale)}


def scaled_loss(
    first_losses: Sequence[float], classes: int, probe_loss: float
) -> tuple[str, dict[str, float]] | None:
    """A training loss ``SCALED`` x (or 1/``SCALED`` of) the model's own cross-entropy: a note.

    ``first_losses``: the training loss of the first steps (the very first, before any
    update, and their median); ``probe_loss``: the monitor's cross-entropy of the probe's
    logits, within ``SANE`` x ``ln K`` (else the weights are too large:
    ``init_explosion``), and for a loss scaled down at least ``FRESH`` x ``ln K`` (weights
    near their start). The loss ``training_step`` returns is then multiplied
    or summed over the batch: harmless under Adam (its steps do not scale with the
    gradient), while under SGD every step is that much larger (held out: a cross-entropy
    x100 under SGD 0.01 with momentum, first loss 229 against 2.35 on the probe, sat at
    chance with 81-100% of a conv layer dead by step 20, told as dead units and "lower the
    learning rate").

    Example::

        >>> text, figures = scaled_loss([229.1, 231.0, 228.0], 10, 2.35)
        >>> text[:62], figures["scale"]
        ("The training loss is ~97x the model's own cross-entropy: the f", 97.0)
        >>> scaled_loss([2.31, 2.30], 10, 2.3), scaled_loss([1212.0, 800.0], 10, 150.0)
        (None, None)
        >>> scaled_loss([2.3e-4, 2.29e-4], 10, 2.31)[1]["scale"]
        0.0001
        >>> scaled_loss([0.004, 0.006], 4, 0.05) is None  # a trained model: both near 0
        True
    """
    finite = [v for v in first_losses[:5] if math.isfinite(v)]
    if classes < 2 or not finite or not math.isfinite(probe_loss) or probe_loss <= 0:
        return None
    chance = math.log(classes)
    if probe_loss > SANE * chance:
        return None
    now = _near_probe(first_losses)  # a loss scaled stays so where the probe reads it
    up = min(statistics.median(finite), finite[0], math.inf if now is None else now)
    down = max(statistics.median(finite), finite[0], 0.0 if now is None else now)
    if up >= SCALED * max(probe_loss, chance):
        scale = round(up / probe_loss, 1)
        text = (
            f"The training loss is ~{scale:.0f}x the model's own cross-entropy: the first "
            f"loss {finite[0]:.4g} (before any update) against {probe_loss:.3g} on the probe "
            f"images (chance level ln {classes} = {chance:.2f}). The loss `training_step` "
            "returns is scaled (multiplied, or summed over the batch instead of averaged). "
            "Adam's steps barely follow the loss's scale; under SGD every step is "
            f"~{scale:.0f}x larger than the "
            'learning rate says. Try: average the loss over the batch (`reduction="mean"`) '
            "and drop the factor, or divide the learning rate by it"
        )
    elif down > 0 and probe_loss >= FRESH * chance and down * SCALED <= min(probe_loss, chance):
        # the other way: a loss multiplied by a small factor (x1e-4 under SGD 0.01 crawled
        # from 10% to 20% val accuracy in 282 steps, and nothing was said)
        scale = float(f"{down / probe_loss:.2g}")
        text = (
            f"The training loss is ~{scale:g}x the model's own cross-entropy: the first loss "
            f"{finite[0]:.4g} (before any update) against {probe_loss:.3g} on the probe images "
            f"(chance level ln {classes} = {chance:.2f}). The loss `training_step` returns is "
            "scaled down (multiplied by a small factor, or divided by a large count), or it "
            "is another loss than cross-entropy (MSE on one-hot targets, a custom loss), whose "
            "scale is its own. If scaled: under SGD every step is "
            f"~{1 / scale:.0f}x smaller than the learning rate says, and learning crawls; "
            "Adam's steps shrink too once the gradients come near its `eps` (1e-8 by "
            "default). Try: drop the factor (under SGD, or multiply the learning rate by "
            "its inverse)"
        )
    else:
        return None
    return text, {"first_loss": finite[0], "probe_loss": probe_loss, "scale": scale}


def _near_probe(losses: Sequence[float]) -> float | None:
    """The median of the last ``NEAR`` finite losses, where they follow the first ``NEAR``.

    Taken a few updates from the probe's weights: a loss the first updates brought down
    from an exploded start reads near the probe's cross-entropy there, a loss scaled in
    ``training_step`` stays that many times it (held out, hunt 95: a plain net at init gain
    2.5, losses 183 -> 2.6 in 3 steps, the probe at 1.6 by the first log, told as a loss
    "scaled or summed"). The lower of their median and the last: with a first log a step
    or two in, the last loss is the only one near the probe's weights (hunt 96: 123 -> 223
    -> 4.0 read at step 2, told "~31x ... summed"). ``None`` where there is only the first.
    """
    latest = [v for v in losses[max(1, len(losses) - NEAR) :] if math.isfinite(v)]
    return min(statistics.median(latest), latest[-1]) if latest else None


def over_chance(loss: float, classes: int | None) -> bool:
    """Whether ``loss`` is ``OVER_CHANCE`` x the chance level ``ln classes`` or more.

    Example::

        >>> over_chance(138.1, 10), over_chance(2.4, 10), over_chance(math.nan, 10)
        (True, False, False)
    """
    if not classes or classes < 2 or not math.isfinite(loss):
        return False
    return loss > OVER_CHANCE * math.log(classes)


def init_explosion(
    first_losses: Sequence[float], classes: int, probe_loss: float, raw_inputs: float = 0.0
) -> tuple[str, str, str, dict[str, float]] | None:
    """``exploding_gradients`` when the untrained model's loss is far above chance.

    A classifier of ``classes`` outputs with weights at a sane scale starts near the
    chance level ``ln K`` (logits near 0). ``first_losses`` (the training loss of the
    steps to the first log: the very first, before any update, and the median of the
    first three, so one odd batch does not decide, while an explosion the first two
    updates bring down still counts (hunt 96: 123, 223, 4.0); a resnet18 at SGD 4.0 starts
    at 2.5 and blows up to 190 at its second step: a divergence, not the init) over
    ``OVER_CHANCE`` x ``ln K``, and ``probe_loss`` (the monitor's own cross-entropy of the
    probe's logits against its labels, in eval mode) too, or the last losses near it
    (``_near_probe``: a loss summed over the batch, or not a cross-entropy, cannot pass for
    it): the logits are huge, the initial weights too large (activations grow layer after
    layer), or, where ``raw_inputs`` (the largest input, read by ``unnormalised_inputs``),
    inputs far from unit scale. The divergence rule cannot see it (it
    measures from the first loss, and the fall to chance looks like progress).

    Example::

        >>> init_explosion([1212.0, 800.0, 212.0], 10, 150.0)[2][:60]
        'Exploding activations at initialisation: the initial loss 12'
        >>> init_explosion([2.31, 2.30], 10, 2.3) is None, init_explosion([2.48, 190.0], 10, 4e25)
        (True, None)
    """
    finite = [v for v in first_losses[:5] if math.isfinite(v)]
    if classes < 2 or not finite or not math.isfinite(probe_loss):
        return None
    chance, start = math.log(classes), statistics.median(finite[:3])
    if not over_chance(min(start, finite[0]), classes):
        return None  # the first loss too: before any update, the weights are the init's
    now = _near_probe(first_losses)
    if not over_chance(probe_loss, classes) and (now is None or now >= SCALED * probe_loss):
        return None  # the loss returned is not the model's own cross-entropy: scaled
    probe = f"the probe's cross-entropy {probe_loss:.3g}"
    if not over_chance(probe_loss, classes):
        probe = f"the first updates shrank the weights: {probe} by the first log"
    # inputs far from unit scale start the logits huge at any sane init (hunt 100: 0-1023
    # counts into a Conv1d at PyTorch's default init, told "the initial weights are too large")
    cause = (
        f"the inputs reach |x| = {raw_inputs:.4g} (`unnormalised_inputs`), so the activations "
        "start huge at the first layer and the logits with them"
        if raw_inputs
        else "the initial weights are too large, so the activations (and the gradients) grow "
        "with depth and the logits start huge"
    )
    text = (
        f"Exploding activations at initialisation: the initial loss {finite[0]:.4g} is "
        f"~{start / chance:.0f}x the chance level ln {classes} = {chance:.2f} ({probe}): {cause}"
    )
    figures = {
        "first_loss": finite[0], "start_loss": start, "chance_loss": chance,
        "classes": float(classes), "probe_loss": probe_loss, "over_chance": start / chance,
        **({"input_max": raw_inputs} if raw_inputs else {}),
    }  # fmt: skip
    text = f"{text}. Try: {RAW_INPUTS_REMEDIES if raw_inputs else INIT_EXPLOSION_REMEDIES}."
    return "exploding_gradients", "problem", text, figures
