"""Gradient clipping by value that cuts nearly every gradient entry (a note).

Nothing here knows about Lightning: ``gradient_review.py`` hands it the layers' gradient
profile (``gradients.py``) and the trainer's clipping settings.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from lightning_cnnviz.activations.gradients import finite_rms

__all__ = ["CLIPPED", "clipped_by_value"]

CLIPPED = 10.0  # the layers' median gradient RMS this many times a value-clipping bar


def clipped_by_value(
    profile: Sequence[tuple[str, float]], clip: float | None, algorithm: str | None
) -> tuple[str, dict[str, float]] | None:
    """A note where clipping by value cuts nearly every gradient entry (``CLIPPED`` x the bar).

    ``clip``, ``algorithm``: the trainer's ``gradient_clip_val`` and
    ``gradient_clip_algorithm``. Each entry is cut to ``[-clip, clip]``: with the layers'
    gradients far above it, SGD's steps become about ``lr x clip`` per weight, whatever
    the gradient says (held out: ``gradient_clip_val=1e-5`` by value under SGD 0.05
    reached 58-66% val against 96.5%, and nothing was said; clipping was named only at
    chance). Adam rescales the entries itself and minds less.

    Example::

        >>> text, fig = clipped_by_value([("c1", 2e-3), ("c2", 4e-3), ("fc", 9e-3)], 1e-5, "value")
        >>> text[:64], fig["over_clip"]
        ('Gradient clipping by value at 1e-05 cuts nearly every gradient e', 400.0)
        >>> layer = [("c1", 2e-3)]
        >>> clipped_by_value(layer, 1e-5, "norm"), clipped_by_value(layer, 1.0, "value")
        (None, None)
    """
    values = finite_rms(profile)
    if not clip or clip <= 0 or algorithm != "value" or not values:
        return None
    median = statistics.median(values)
    if median < CLIPPED * clip:
        return None
    over = round(median / clip)
    text = (
        f"Gradient clipping by value at {clip:g} cuts nearly every gradient entry: the "
        f"layers' gradients are {median:.1e} per parameter (median RMS), ~{over}x the bar. "
        "Each update then follows the gradient's signs more than its sizes, and under SGD "
        f"every step is ~{over}x smaller than the learning rate says (Adam rescales and "
        'minds less). Try: `gradient_clip_algorithm="norm"` with `gradient_clip_val` '
        "0.5-5, or no clipping"
    )
    return text, {"clip": float(clip), "median_rms": median, "over_clip": float(over)}
