"""Settings raised during the run that a divergence follows from: decay, momentum, dropout.

Nothing here knows about Lightning. Each is kept at the first log and now
(``diagnose.TrainingDiagnosis``); a callback or schedule raising one mid-run makes the loss
climb at an unchanged learning rate, so it is named before the batches or the rate
(``divergence_causes.divergence_cause`` asks ``raised_setting`` after the rate checks).

Example::

    >>> raised_setting(None, (0.9, 0.999), None)[:58]
    "The momentum (SGD's `momentum`, Adam's first beta) rose fr"
    >>> raised_setting(None, None, None) is None
    True
"""

from __future__ import annotations

import math

from lightning_cnnviz.core.decay import DECAY_REMEDIES
from lightning_cnnviz.core.settings import momentum_carries

__all__ = ["raised_setting"]


def raised_setting(
    decayed: tuple[float, float] | None,
    momentum: tuple[float, float] | None,
    dropped: tuple[float, float] | None,
) -> str | None:
    """Which setting rose before a divergence, with what to try, else ``None``.

    ``decayed``: ``(the decoupled weight decay a step at the first log, now)`` where it
    rose to ``DECAY_STALLS`` or more since (``RAISED`` x): the weights shrink faster than
    the gradient holds them up (held out, hunt 29: `weight_decay` set to 0.5 at step 64
    under SGD 0.05, the loss at chance by step 75, told "the training batches may no
    longer carry the label").

    ``momentum``: ``(SGD's momentum or Adam's first beta at the first log, now)`` where it
    rose to ``HIGH_MOMENTUM`` or more (held out, hunt 54: Adam's betas set to (0.999, 0.999)
    at step 250, the rate unchanged, told "lower the learning rate").

    ``dropped``: ``(the model's highest dropout p at the first log, now)`` where it rose
    to drop most outputs (held out, hunt 29: every ``Dropout`` set to 0.97 at step 96, the
    training loss 0.3 -> 3.8, told as the training batches changing).
    """
    if decayed is not None:
        before, now = decayed
        return (
            f"Weight decay rose from {before:.2%} to {now:.1%} of every weight a step before "
            "it (`weight_decay` raised during the run): weights the gradient does not hold up "
            f"halve every {math.log(2) / now:.0f} steps, and what the model learnt decays "
            f"away. Try: {DECAY_REMEDIES}."
        )
    if momentum is not None:
        before, now = momentum
        return (
            f"The momentum (SGD's `momentum`, Adam's first beta) rose from {before:g} to "
            f"{now:g} before it, set during the run: {momentum_carries(now)}, and the "
            f"optimiser overshoots. Try: set it back to {before:g}; where a callback or "
            "schedule sets it, look at what it sets then."
        )
    if dropped is not None:
        before, now = dropped
        return (
            f"Dropout rose from p = {before:.2g} to p = {now:.2g} before it (set during the "
            f"run): training now drops {now:.0%} of the outputs of the layers it follows, so "
            "the training loss climbs while the model in eval mode, without dropout, may "
            "hold. Try: set the dropout back (p <= 0.5); where a callback or schedule sets it, "
            "look at what it sets then."
        )
    return None
