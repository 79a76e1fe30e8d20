"""Weight decay that holds learning back: the thresholds, and what it does in words.

Nothing here knows about Lightning. Decoupled decay (SGD, AdamW: ``core.settings``'s
``decay_per_step``, the learning rate times ``weight_decay``) takes a fixed share of every
weight a step; an adaptive optimiser's L2 (Adam, RMSprop: no share a step) is scaled like
the gradient, so a large one pulls every weight to 0 at about the learning rate.
"""

from __future__ import annotations

import math

__all__ = [
    "DECAY_REMEDIES",
    "DECAY_STALLS",
    "L2_ADAPTIVE",
    "L2_REMEDIES",
    "adaptive_l2_remedy",
    "adaptive_l2_text",
    "decay_text",
    "decay_words",
    "heavy_decay",
]

DECAY_STALLS = 0.01
"""Decoupled weight decay taking this share of every weight a step: weights the gradient
does not hold up halve within 70 steps (SGD 0.05 x ``weight_decay=0.3``: 1.5%)."""
DECAY_REMEDIES = (
    "lower the weight decay 10-100x (1e-4 to 5e-4 is usual with SGD, 1e-2 to 5e-2 with "
    "AdamW; the share a step is the learning rate times it)"
)
# ... and an adaptive optimiser's L2 (``adaptive_l2_remedy``'s figures, in a sentence's words)
L2_REMEDIES = (
    "lower the weight decay (L2 of 1e-5 to 1e-3 is usual with Adam or RMSprop), or use AdamW, "
    "whose decay is decoupled from the gradient (1e-2 to 5e-2 is usual)"
)


# Adam's L2 (`weight_decay` added to the gradient): at 1.0 a CNN went from 37% to chance,
# its kernels decayed 3.6e-2 -> 3e-5 (hunt 24); L2 of 1e-5 to 1e-3 is what it is set to
L2_ADAPTIVE = 0.05


def heavy_decay(per_step: float | None, weight_decay: float | None) -> bool:
    """Whether weight decay is heavy enough to hold learning back.

    Decoupled decay of ``DECAY_STALLS`` a step or more, or an adaptive optimiser's L2
    (``per_step`` None) of ``L2_ADAPTIVE`` or more (hunt 49: Adam's ``weight_decay=1.0``
    held a GroupNorm CNN at 27% val against 84%, told nothing).

    Example::

        >>> heavy_decay(None, 1.0), heavy_decay(5e-5, 0.05), heavy_decay(None, None)
        (True, False, False)
    """
    if per_step is not None:
        return per_step >= DECAY_STALLS
    return weight_decay is not None and weight_decay >= L2_ADAPTIVE


def decay_words(weight_decay: float, lr: float, per_step: float | None) -> str:
    """What weight decay does to each weight a step: decoupled, or an adaptive optimiser's L2.

    Example::

        >>> decay_words(50.0, 1e-3, 0.05)
        '50 at learning rate 0.001 takes 5.0% off every weight each step'
    """
    if per_step is None:
        return adaptive_l2_text(weight_decay, lr)
    return (
        f"{weight_decay:.3g} at learning rate {lr:.3g} takes {100 * per_step:.1f}% off every "
        "weight each step"
    )


def adaptive_l2_text(weight_decay: float, lr: float | None = None) -> str:
    """What an adaptive optimiser's L2 of ``weight_decay`` does to every weight, in words."""
    rate = f" ({lr:.3g})" if lr is not None else ""
    return (
        f"`weight_decay={weight_decay:g}` in an adaptive optimiser (Adam, RMSprop) is L2 added "
        "to the gradient, and once it outweighs the gradient the optimiser's scaling turns it "
        f"into steps of about the learning rate{rate} pulling every weight to 0"
    )


def adaptive_l2_remedy(weight_decay: float) -> str:
    """What to try first where an adaptive optimiser's L2 of ``weight_decay`` is too strong.

    Example::

        >>> adaptive_l2_remedy(1.0)[:58]
        '**Lower the weight decay, or use AdamW**: `weight_decay=1`'
    """
    return (
        f"**Lower the weight decay, or use AdamW**: {adaptive_l2_text(weight_decay)}; AdamW's "
        "decoupled 1e-2 to 5e-2, or L2 of 1e-5 to 1e-3 here, is usual."
    )


def decay_text(per_step: float, weight_decay: float | None, lr: float | None) -> str:
    """Why decoupled weight decay of ``per_step`` stops learning, in words.

    Example::

        >>> decay_text(0.015, 0.3, 0.05)[:64]
        'Weight decay takes 1.5% of every weight each step (learning rate'
    """
    setting = (
        f" (learning rate {lr:g} x `weight_decay={weight_decay:g}`)"
        if weight_decay is not None and lr is not None
        else ""
    )
    return (
        f"Weight decay takes {per_step:.1%} of every weight each step{setting}: weights the "
        f"gradient does not hold up halve every {math.log(2) / per_step:.0f} steps, and "
        "the gradient reaching the first layers shrinks with them"
    )
