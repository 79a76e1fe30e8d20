"""A momentum in words: what each update carries, and a momentum high enough to be a cause.

Example::

    >>> momentum_text(0.9)
    ''
"""

from __future__ import annotations

from lightning_cnnviz.core.settings import HIGH_MOMENTUM

__all__ = ["momentum_carries", "momentum_text"]


def momentum_text(momentum: float | None) -> str:
    """A sentence naming a ``HIGH_MOMENTUM`` or higher as a cause (``""`` below it).

    Example::

        >>> print(momentum_text(0.999)[1:61])
        The momentum is 0.999 (SGD's `momentum`, Adam's first beta):
        >>> momentum_text(0.9)
        ''
    """
    if momentum is None or not HIGH_MOMENTUM <= momentum < 1:
        return ""
    return (
        f" The momentum is {momentum:g} (SGD's `momentum`, Adam's first beta): "
        f"{momentum_carries(momentum)}; 0.9 is usual."
    )


def momentum_carries(momentum: float) -> str:
    """What a momentum under 1 does to each update, in words.

    Example::

        >>> momentum_carries(0.99)[:54]
        'each update keeps going the way of the last ~100 gradi'
    """
    carried = 1 / (1 - momentum)
    return (
        f"each update keeps going the way of the last ~{carried:,.0f} gradients long after the "
        f"loss surface has turned (under SGD, steps up to {carried:,.0f}x the learning rate)"
    )
