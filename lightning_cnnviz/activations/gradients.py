"""Gradients across depth: vanishing, exploding, and saturated Sigmoid/Tanh layers.

Nothing here knows about Lightning. At a logging step the recorder reads, for every
layer with a weight matrix (conv, linear) in the order the forward pass runs them,
the RMS of its weight gradient (``||g|| / sqrt(numel)``: per parameter, so a 1x1
shortcut conv and a 3x3 conv compare fairly). From that profile:

* ``depth_ratio``: the median RMS of the first third of the layers over that of the
  last third. Backpropagation multiplies by every layer's Jacobian on the way down;
  when each factor is below 1 (saturated sigmoids, poor init) the first layers get
  orders of magnitude less gradient than the last and stop learning;
* ``vanishing``: ``depth_ratio < VANISH`` (1e-3, three orders of magnitude; healthy
  nets measured here stay within 1e-2 .. 1e2); or, two signals agreeing, the first
  layer alone below ``VANISH`` x the last layer's while ``depth_ratio < VANISH_THIRDS``
  (5e-3): a 16-conv plain Tanh CNN at chance gets 1.3e-4 .. 3.7e-4 at its first layer,
  1.6e-3 .. 3e-3 by thirds; a healthy 8-conv plain ReLU CNN in its flat start 1.4e-3 and
  1.7e-2 at least; or, with the loss at its chance level since the first step, a weaker
  attenuation (``attenuated``: the first layer below ``VANISH_STUCK``, 1e-2, of the last
  and ``depth_ratio`` below ``THIRDS_STUCK``, 5e-2, in ``STUCK_DEPTH`` weight layers or
  more) at ``STUCK_LOGS`` logs in a row by step
  ``STUCK_STEPS``: plain 8- and 10-conv ReLU/Tanh CNNs at PyTorch's default init under
  SGD sit at chance for the whole run at 1.8e-3 .. 8.5e-3 (1.2e-2 .. 4.8e-2 by thirds),
  while the same nets that leave chance do so by step 120, and healthy nets stay above
  1e-2 once learning; ``exploding``: ``depth_ratio > EXPLODE`` (1e3) with the first layer
  alone over ``EXPLODE_ALONE`` (30) x the last, or the mean RMS grew
  ``GROWTH`` (100x) above its baseline (the first log's, raised to every log's at which
  the loss set a new low) while the loss is not at its lows;
* ``saturated``: Sigmoid/Tanh-like layers with over ``SATURATED`` (50%) of their
  outputs within 1% of a rail, where their derivative is ~0.

Example::

    >>> profile = [("conv1", 1e-9), ("conv2", 1e-7), ("conv3", 1e-4), ("fc", 1e-2)]
    >>> f"{depth_ratio(profile):.0e}"
    '1e-07'
    >>> gradient_findings(profile, first_rms=None, saturation={"sig1": 0.9}, stalled=True)[0][:2]
    ('vanishing_gradients', 'problem')
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Collection, Mapping, Sequence

from lightning_cnnviz.core.voice import times

__all__ = [
    "attenuated",
    "depth_ratio",
    "finite_rms",
    "gradient_findings",
    "mean_rms",
    "saturation_eased",
]

VANISH, EXPLODE, GROWTH, SATURATED = 1e-3, 1e3, 100.0, 0.5
FALLING = 0.03  # the loss fell this much since the previous log, to a new low: learning
VANISH_THIRDS = 5e-3  # by thirds, enough when the first layer alone is below VANISH
EXPLODE_ALONE = 30.0  # the first layer alone over the last, beside EXPLODE by thirds
VANISH_STUCK, THIRDS_STUCK = 1e-2, 5e-2  # enough when the loss never left chance ...
# ... in a net of this many weight layers or more: a 3-conv GroupNorm net on data with no
# signal settles on a constant output, its first layer at 9e-3 of its head (hunt 95)
STUCK_DEPTH = 6
STUCK_LOGS, STUCK_STEPS = 3, 100  # ... at this many logs in a row, by this step

REMEDIES = {
    "vanishing_gradients": (
        "use ReLU-family activations instead of Sigmoid/Tanh in hidden layers; He (kaiming) "
        "initialisation; BatchNorm (or LayerNorm) between layers; residual connections; a "
        "shallower model"
    ),
    # without a Sigmoid/Tanh-like layer the swap to ReLU means nothing
    "vanishing_gradients_rectified": (
        "He (kaiming) initialisation; BatchNorm (or LayerNorm) between layers; residual "
        "connections; a shallower model; a lower learning rate if units are dying "
        "(`activations/*/dead_strip`)"
    ),
    "exploding_gradients": (
        "clip gradients (Trainer(gradient_clip_val=1.0)); lower the learning rate; "
        "BatchNorm between layers; smaller initial weights"
    ),
    "saturated_activations": (
        "normalise the inputs; BatchNorm before the activation; smaller initial weights "
        "(Xavier/Glorot for Sigmoid/Tanh); ReLU-family activations in hidden layers"
    ),
    # a rectifier capped at a top (ReLU6, a clamp): the units pinned there by what feeds it
    "saturated_capped": (
        "check the biases and weights before the capped activation (a large positive bias "
        "pins every unit at its top) and the input scale; BatchNorm before the activation; "
        "a plain ReLU where the cap is not needed"
    ),
}


def finite_rms(profile: Sequence[tuple[str, float]]) -> list[float]:
    """The profile's gradient RMS values that are finite and above 0."""
    return [v for _, v in profile if math.isfinite(v) and v > 0]


def depth_ratio(profile: Sequence[tuple[str, float]]) -> float | None:
    """Median gradient RMS of the first third of the layers over the last third's.

    None with fewer than 3 layers with a finite, non-zero gradient.
    """
    values = finite_rms(profile)
    if len(values) < 3:
        return None
    third = max(1, len(values) // 3)
    return statistics.median(values[:third]) / statistics.median(values[-third:])


def first_last(profile: Sequence[tuple[str, float]]) -> float | None:
    """The first layer's gradient RMS over the last layer's, or None when either is 0."""
    first, last = (profile[0][1], profile[-1][1]) if profile else (0.0, 0.0)
    return first / last if first > 0 < last else None


def attenuated(profile: Sequence[tuple[str, float]]) -> bool:
    """Whether the gradient fades with depth by the weaker bar (``VANISH_STUCK``).

    Enough for ``vanishing_gradients`` only while the loss has never left its chance
    level (``gradient_findings``'s ``stuck``).

    Example::

        >>> deep = [("c1", 2e-6), ("c2", 5e-6), ("c3", 1e-5), ("c4", 4e-5), ("c5", 1e-4)]
        >>> attenuated([*deep, ("fc", 1e-3)]), attenuated([*deep[2:], ("fc", 1e-3)])
        (True, False)
        >>> attenuated([("c1", 2e-5), ("c2", 5e-5), *deep[2:], ("fc", 1e-3)])
        False
    """
    ratio, alone = depth_ratio(profile), first_last(profile)
    if len(profile) < STUCK_DEPTH:  # too few layers to fade through
        return False
    return (
        ratio is not None and alone is not None and alone < VANISH_STUCK and (ratio < THIRDS_STUCK)
    )


def gradient_cut(
    profile: Sequence[tuple[str, float]], dead: Mapping[str, float]
) -> tuple[str, str] | None:
    """``(the last layer whose gradient is exactly 0, the first after it that has one)``.

    Layers in depth order (``profile``), all before it at 0 too: one a step left out between
    layers with a gradient cuts nothing (hunt 53: it hid a sigmoid net's vanishing). Not
    where a watched layer of units is all dead (``dead``: each site's dead share), which
    blocks the gradient below it too: that is the dead units' own finding (hunt 33). Held
    out (hunt 35): a straight-through estimator written without ``.detach()`` (``x +
    (step(x) - x)``: gradient exactly 0) left the convolutions untrained, and the units
    after them were told dead with learning-rate remedies.

    Example::

        >>> gradient_cut([("c1", 0.0), ("c2", 0.0), ("fc", 1e-3)], {})
        ('c2', 'fc')
        >>> gradient_cut([("c1", 0.0), ("fc", 1e-3)], {"relu": 1.0}) is None
        True
        >>> gradient_cut([("c1", 1e-6), ("c2", 0.0), ("fc", 1e-3)], {}) is None  # c2 skipped
        True
    """
    if any(share >= 0.999 for share in dead.values()):
        return None
    for (name, rms), (after, later) in itertools.pairwise(profile):
        if rms != 0.0:  # a layer before it gets a gradient: one left out of a step, no cut
            return None
        if later > 0.0 and math.isfinite(later):
            return name, after
    return None


def mean_rms(profile: Sequence[tuple[str, float]]) -> float | None:
    """The geometric mean of the finite, non-zero gradient RMS values, else None."""
    values = finite_rms(profile)
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def gradient_findings(
    profile: Sequence[tuple[str, float]],
    first_rms: float | None,
    saturation: Mapping[str, float],
    stalled: bool | None,
    new_low: bool = False,
    falling: bool = False,
    stuck: bool = False,
    capped: Collection[str] = (),
) -> list[tuple[str, str, str, dict[str, float]]]:
    """``[(kind, severity, message, figures)]`` for one log's gradient profile.

    ``first_rms``: the baseline the growth is measured from (the caller raises it to
    the level of every log at which the loss set a new low: gradients flowing while it
    learns). ``new_low``: the loss set a new low since the previous log. Gradients that
    grew ``GROWTH`` x since the baseline are then no explosion: a deep plain net's flat
    start has tiny gradients that grow 370x as it begins to learn (loss 2.29 -> 2.17 ->
    1.30); a zero-initialised head blocks backprop at first (1e-4 at step 5), 124x that by
    step 40 with the loss down 2.30 -> 1.23.

    ``stalled``: the loss has barely fallen since the start (None: unknown). A finding
    is a problem when learning stalls (or when unknown), a note while the loss keeps
    falling (gradients that grew ``GROWTH`` x are a problem whatever the loss).
    ``falling``: the loss fell ``FALLING`` since the previous log, to a new low
    (two signals: a plateau's 5-step medians differ by up to 1.4% between logs);
    saturation is then a note too (a 3-conv sigmoid net leaving its plateau at ln 4:
    59% at a rail with the loss 1.379 -> 1.336 since the last log, 3.1%, its lowest yet;
    74% accuracy later). ``stuck``: the loss never left its chance level and the profile
    was ``attenuated`` at the last ``STUCK_LOGS`` logs, by step ``STUCK_STEPS``: the
    weaker bar then tells vanishing gradients. ``capped``: the ``saturation`` sites that
    are rectifiers capped at a top (ReLU6), said as such.
    """
    found = []
    severity = "note" if stalled is False else "problem"
    ratio = depth_ratio(profile)
    first, last = (profile[0], profile[-1]) if profile else (None, None)
    saturated = {site: share for site, share in saturation.items() if share > SATURATED}
    figures: dict[str, float] = {"depth_ratio": ratio} if ratio is not None else {}
    if first and last:
        figures |= {"first_rms": first[1], "last_rms": last[1]}
    alone = first_last(profile)
    if alone is not None:
        figures["first_last_ratio"] = alone
    weak = stuck and attenuated(profile)
    strong = alone is not None and alone < VANISH and ratio is not None and ratio < VANISH_THIRDS
    if ratio is not None and (ratio < VANISH or strong or weak):
        text = (
            f"Vanishing gradients: the first layers get {ratio:.1e} of the last layers' gradient "
            f"per parameter (`{first[0]}` {first[1]:.1e} vs `{last[0]}` {last[1]:.1e}"
            + (f": the first layer alone {alone:.1e})" if ratio >= VANISH else ")")
        )
        told_weak = weak and not strong and ratio >= VANISH
        if told_weak:
            text += (
                f" at each of the last {STUCK_LOGS} logs, with the loss at its chance level "
                "since the first step"
            )
        if saturated:
            text += "; saturated " + ", ".join(f"`{s}` {v:.0%}" for s, v in saturated.items())
        text += "; the loss has stopped falling" if stalled and not told_weak else ""
        fig = figures | {f"saturation/{s}": v for s, v in saturated.items()}
        # Sigmoid/Tanh remedies where such units are read, not for rectifiers alone (hunt 112:
        # a ReLU net under crushing weight decay told "use ReLU instead of Sigmoid/Tanh")
        sigmoid_like = set(saturation) - set(capped)
        remedies = "vanishing_gradients" if sigmoid_like else "vanishing_gradients_rectified"
        remedies = "saturated_capped" if saturated and set(saturated) <= set(capped) else remedies
        found.append(("vanishing_gradients", severity, _with_remedies(text, remedies), fig))
    elif saturated:
        share = ", ".join(f"`{s}` {v:.0%}" for s, v in saturated.items())
        tops = set(saturated) <= set(capped)
        where = "the top of their capped activation (ReLU6's 6, a clamp)" if tops else (
            "a rail of the Sigmoid/Tanh")  # fmt: skip
        text = f"Saturated activations: {share} of the outputs sit at {where}, "
        text += "where its gradient is ~0"
        fig = figures | {f"saturation/{s}": v for s, v in saturated.items()}
        level = "note" if falling else severity
        why = "saturated_capped" if tops else "saturated_activations"
        found.append(("saturated_activations", level, _with_remedies(text, why), fig))
    now = mean_rms(profile)
    grew = first_rms is not None and now is not None and now > GROWTH * first_rms
    grew = grew and not new_low
    # the first layers' gradient large, not only the last ones' small: a converged two-head
    # model, one head's loss at 0, read 8e3x from gradients all under 1e-4 (setups hunt 18);
    # and the first layer's over the last one's too (two signals, as for vanishing): timm's
    # Darknets zero-initialise each residual branch's last norm, whose convs fill the last
    # third at ~1e-6 while the stem and the head read 6e-2 and 4e-2 (hunt 24: 2e3x by thirds)
    large = first is not None and (first_rms is None or first[1] >= first_rms)
    steep = ratio is not None and ratio > EXPLODE and large
    steep = steep and alone is not None and alone > EXPLODE_ALONE
    if steep or grew:
        text = "Exploding gradients: " + (
            f"the first layers get {ratio:.1e}x the last layers' gradient per parameter"
            if steep
            else f"the gradient grew {times(now / first_rms)} since the first log (or the last "
            "log at which the loss set a new low), with the loss no longer at its lows"
        )
        fig = figures | ({"mean_rms": now, "first_mean_rms": first_rms} if grew else {})
        # steep by depth alone, while the loss falls: a note (held out, hunt 26: a healthy
        # timm EfficientViT-B0, its stem's gradient flat at 0.1-0.2 from step 0 and its
        # attention convs at 1e-4, read 1.9e3x by thirds and 40x alone at 86% val)
        level = "problem" if grew else severity
        found.append(
            ("exploding_gradients", level, _with_remedies(text, "exploding_gradients"), fig)
        )
    return found


def saturation_eased(
    progress: float, saturation: Mapping[str, float]
) -> tuple[str, dict[str, float]]:
    """The note that replaces a standing ``saturated_activations`` problem.

    Said once the loss has fallen well since the start (``progress``, ``1 - loss now /
    loss at the start``, at least the dead-unit rules' ``STALLED``): the saturation no
    longer holds learning back, whatever its share now.

    Example::

        >>> saturation_eased(0.37, {"sig": 0.88})[0][:62]
        'Saturated activations no longer hold learning back: the loss h'
    """
    shares = ", ".join(f"`{s}` {v:.0%}" for s, v in saturation.items()) or "none over 50%"
    text = (
        f"Saturated activations no longer hold learning back: the loss has fallen "
        f"{progress:.0%} since the start (at a rail now: {shares}). A note, not a problem: "
        "the saturation was reported while learning stalled, and learning has since begun"
    )
    return text, {"progress": progress} | {f"saturation/{s}": v for s, v in saturation.items()}


def _with_remedies(text: str, kind: str) -> str:
    return f"{text}. Try: {REMEDIES[kind]}."
