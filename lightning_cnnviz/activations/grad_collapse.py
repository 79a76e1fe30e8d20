"""Gradients taken with a die-off: the layers before the last fallen far below their start.

A rectifier layer gone silent passes no gradient to the layers before it: their gradient
falls to a trickle of its first reading (or to 0) at the die-off, and they stop learning.
With the loss flat at its chance level, that die-off is why nothing is learnt, not a
consequence of data without signal: shuffled labels keep the loss at chance while the
gradient of every layer holds its first level (the loss's gradient ``p - onehot`` does not
shrink), the units dying slowly. Held-out hunt 118: a Conv3d net whose last ReLU layer
went 0% -> 88% -> 100% dead by step 20-160, its convolutions' gradients 0.22 -> 0.006 -> 0,
the loss at ln 3 throughout, was told "a consequence ... check the labels"; with
LeakyReLU the same net learnt to 98%.

Example::

    >>> first = first_readings({}, [("c1", 4e-4), ("c2", 8e-4), ("fc", 2e-2)])
    >>> collapsed([("c1", 1e-6), ("c2", 0.0), ("fc", 5e-4)], first)
    (('c1', 'c2'), 0.0025)
    >>> collapsed([("c1", 1e-4), ("c2", 1e-6), ("fc", 5e-4)], first) is None  # c1 at 1/4
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["COLLAPSED", "collapse_text", "collapsed", "first_readings"]

COLLAPSED = 0.05  # a gradient 20x below its first reading: the layer no longer learns
# (held-out hunt 118: 1/37 of it at the die-off, then 0; a net whose dead layer revived
# kept 1/25-1/10 of it while still at chance, and went on to learn)


def first_readings(
    first: Mapping[str, float], profile: Sequence[tuple[str, float]]
) -> dict[str, float]:
    """Each layer's first finite, non-zero gradient reading (``profile``: depth order).

    Example::

        >>> first_readings({"c1": 1e-3}, [("c1", 5e-3), ("fc", 0.0), ("c2", 2e-3)])
        {'c1': 0.001, 'c2': 0.002}
    """
    out = dict(first)
    for name, rms in profile:
        if name not in out and math.isfinite(rms) and rms > 0.0:
            out[name] = rms
    return out


def collapsed(
    profile: Sequence[tuple[str, float]], first: Mapping[str, float]
) -> tuple[tuple[str, ...], float] | None:
    """The layers before the last, each at ``COLLAPSED`` of its first reading or below.

    ``(their names, the highest of their ratios)``, or None where any of them still gets
    its gradient (a die-off in the middle of a net leaves the layers after it theirs), or
    where a layer has no first reading to compare with.
    """
    before = profile[:-1]
    if not before or any(name not in first for name, _ in before):
        return None
    ratios = [rms / first[name] for name, rms in before]
    if not all(math.isfinite(r) and r <= COLLAPSED for r in ratios):
        return None
    return tuple(name for name, _ in before), round(max(ratios), 6)


def collapse_text(sites: Sequence[str], layers: Sequence[str], ratio: float) -> str:
    """The cause of not learning: ``sites`` went silent and took ``layers``' gradients.

    Example::

        >>> print(collapse_text(["body.9"], ["body.0", "body.4"], 0.0)[:80])
        `body.9` went silent and took the gradient of the layers before it with it (`bod
    """
    named = ", ".join(f"`{s}`" for s in sites)
    span = f"`{layers[0]}`" + (f" ... `{layers[-1]}`" if len(layers) > 1 else "")
    level = "0" if ratio == 0 else f"{ratio:.1e}x"
    return (
        f"{named} went silent and took the gradient of the layers before it with it ({span} "
        f"at {level} of their first reading): they no longer learn, and the loss stays at its "
        "chance level because of it."
    )
