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
  nets measured here stay within 1e-2 .. 1e2); ``exploding``: ``depth_ratio > EXPLODE``
  (1e3) or the mean RMS grew ``GROWTH`` (100x) above its first log;
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

import math
import statistics
from collections.abc import Mapping, Sequence

__all__ = ["depth_ratio", "gradient_findings", "mean_rms"]

VANISH, EXPLODE, GROWTH, SATURATED = 1e-3, 1e3, 100.0, 0.5

REMEDIES = {
    "vanishing_gradients": (
        "use ReLU-family activations instead of Sigmoid/Tanh in hidden layers; He (kaiming) "
        "initialisation; BatchNorm (or LayerNorm) between layers; residual connections; a "
        "shallower model"
    ),
    "exploding_gradients": (
        "clip gradients (Trainer(gradient_clip_val=1.0)); lower the learning rate; "
        "BatchNorm between layers; smaller initial weights"
    ),
    "saturated_activations": (
        "normalise the inputs; BatchNorm before the activation; smaller initial weights "
        "(Xavier/Glorot for Sigmoid/Tanh); ReLU-family activations in hidden layers"
    ),
}


def _finite(profile: Sequence[tuple[str, float]]) -> list[float]:
    return [v for _, v in profile if math.isfinite(v) and v > 0]


def depth_ratio(profile: Sequence[tuple[str, float]]) -> float | None:
    """Median gradient RMS of the first third of the layers over the last third's.

    None with fewer than 3 layers with a finite, non-zero gradient.
    """
    values = _finite(profile)
    if len(values) < 3:
        return None
    third = max(1, len(values) // 3)
    return statistics.median(values[:third]) / statistics.median(values[-third:])


def mean_rms(profile: Sequence[tuple[str, float]]) -> float | None:
    """The geometric mean of the finite, non-zero gradient RMS values, else None."""
    values = _finite(profile)
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def gradient_findings(
    profile: Sequence[tuple[str, float]],
    first_rms: float | None,
    saturation: Mapping[str, float],
    stalled: bool | None,
) -> list[tuple[str, str, str, dict[str, float]]]:
    """``[(kind, severity, message, figures)]`` for one log's gradient profile.

    ``stalled``: the loss has barely fallen (None: unknown). A finding is a problem
    when learning stalls (or when unknown), a note while the loss keeps falling.
    """
    found = []
    severity = "note" if stalled is False else "problem"
    ratio = depth_ratio(profile)
    first, last = (profile[0], profile[-1]) if profile else (None, None)
    saturated = {site: share for site, share in saturation.items() if share > SATURATED}
    figures: dict[str, float] = {"depth_ratio": ratio} if ratio is not None else {}
    if first and last:
        figures |= {"first_rms": first[1], "last_rms": last[1]}
    if ratio is not None and ratio < VANISH:
        text = (
            f"Vanishing gradients: the first layers get {ratio:.1e} of the last layers' gradient "
            f"per parameter (`{first[0]}` {first[1]:.1e} vs `{last[0]}` {last[1]:.1e})"
        )
        if saturated:
            text += "; saturated " + ", ".join(f"`{s}` {v:.0%}" for s, v in saturated.items())
        text += "; the loss has stopped falling" if stalled else ""
        fig = figures | {f"saturation/{s}": v for s, v in saturated.items()}
        found.append(
            ("vanishing_gradients", severity, _with_remedies(text, "vanishing_gradients"), fig)
        )
    elif saturated:
        share = ", ".join(f"`{s}` {v:.0%}" for s, v in saturated.items())
        text = (
            f"Saturated activations: {share} of the outputs sit at a rail of the Sigmoid/Tanh, "
            "where its gradient is ~0"
        )
        fig = figures | {f"saturation/{s}": v for s, v in saturated.items()}
        found.append(
            ("saturated_activations", severity, _with_remedies(text, "saturated_activations"), fig)
        )
    now = mean_rms(profile)
    grew = first_rms is not None and now is not None and now > GROWTH * first_rms
    if (ratio is not None and ratio > EXPLODE) or grew:
        text = "Exploding gradients: " + (
            f"the first layers get {ratio:.1e}x the last layers' gradient per parameter"
            if ratio is not None and ratio > EXPLODE
            else f"the gradient grew {now / first_rms:.0f}x since the first log"
        )
        fig = figures | ({"mean_rms": now, "first_mean_rms": first_rms} if grew else {})
        found.append(
            ("exploding_gradients", "problem", _with_remedies(text, "exploding_gradients"), fig)
        )
    return found


def _with_remedies(text: str, kind: str) -> str:
    return f"{text}. Try: {REMEDIES[kind]}."
