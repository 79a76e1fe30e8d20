"""Settings raised during the run that training goes wrong after: decay, momentum, dropout.

Nothing here knows about Lightning. A callback or schedule raising one mid-run makes the
loss climb at an unchanged learning rate, so it is named before the batches or the rate:
by the activation diagnosis's divergence (its readings at the first log and now,
``activations.divergence_causes``) and by the validation rules a collapse sets off
(``not_learning`` after a collapse, ``unstable_training``: the settings at the evaluation
before it and now, ``raised_since``). Each ``*_raised`` says whether a pair ``(then, now)``
rose far enough to explain it.

Example::

    >>> raised_setting(None, (0.9, 0.999), None)[:58]
    "The momentum (SGD's `momentum`, Adam's first beta) rose fr"
    >>> raised_setting(None, None, None) is None
    True
"""

from __future__ import annotations

import math
from typing import Any

from lightning_cnnviz.core.decay import DECAY_REMEDIES, DECAY_STALLS
from lightning_cnnviz.core.momentum_words import momentum_carries
from lightning_cnnviz.core.settings import HIGH_MOMENTUM

__all__ = [
    "DECAY_FELT",
    "DECAY_JUMP",
    "DECAY_RAISED",
    "DROPOUT_HIGH",
    "DROPOUT_RISE",
    "RATE_RAISED",
    "SETTINGS",
    "decay_raised",
    "dropout_raised",
    "lowest_settings",
    "momentum_raised",
    "raised_setting",
    "raised_since",
    "rate_raised",
]

DECAY_RAISED = 3.0  # decoupled decay a step this many times its value then: set anew
# ... or this many times, to this share a step: weights halve within 350 steps (hunt 59:
# AdamW's `weight_decay` 0.02 -> 2.0 at a rate of 3e-3, 0.6% a step, val 89% -> 68%)
DECAY_JUMP, DECAY_FELT = 10.0, 0.002
DROPOUT_RISE, DROPOUT_HIGH = 0.2, 0.5  # dropout p raised this much during the run, to this
RATE_RAISED = 3.0  # a learning rate this many times the highest before it: set anew

Pair = tuple[float | None, float | None]


def decay_raised(pair: Pair) -> tuple[float, float] | None:
    """``(decay a step then, now)`` where it rose to stall learning (``DECAY_STALLS``) since.

    Or jumped ``DECAY_JUMP`` x to ``DECAY_FELT`` or more.

    Example::

        >>> decay_raised((6e-5, 0.006)), decay_raised((6e-5, 0.0006)), decay_raised((0.01, 0.02))
        ((6e-05, 0.006), None, None)
    """
    then, now = pair
    if then is None or now is None:
        return None
    stalls = now >= DECAY_STALLS and now >= DECAY_RAISED * then
    jumped = now >= DECAY_FELT and now >= DECAY_JUMP * then
    return (then, now) if stalls or jumped else None


def dropout_raised(pair: Pair) -> tuple[float, float] | None:
    """``(dropout p then, now)`` where it rose to drop most outputs since."""
    then, now = pair
    if then is None or now is None or now < DROPOUT_HIGH or now < then + DROPOUT_RISE:
        return None
    return then, now


def momentum_raised(pair: Pair) -> tuple[float, float] | None:
    """``(momentum then, now)`` where it rose to ``HIGH_MOMENTUM`` or more since."""
    then, now = pair
    if then is None or now is None or not then < HIGH_MOMENTUM <= now < 1:
        return None
    return then, now


def rate_raised(pair: Pair) -> tuple[float, float] | None:
    """``(the highest learning rate before, now)`` where it rose ``RATE_RAISED`` x or more since.

    Against the highest rate before, not the lowest: a warm-up or a schedule's cycle
    climbs to its peak in steps; a rate set anew jumps past every one the run had
    (held-out hunt 125: RMSprop's rate raised 30x at step 128).

    Example::

        >>> rate_raised((0.003, 0.09)), rate_raised((0.003, 0.006)), rate_raised((None, 0.1))
        ((0.003, 0.09), None, None)
    """
    then, now = pair
    if then is None or now is None or then <= 0 or now < RATE_RAISED * then:
        return None
    return then, now


SETTINGS = ("decay_per_step", "momentum", "dropout")  # what ``raised_since`` reads


def lowest_settings(records: Any) -> dict[str, float | None]:
    """Each setting ``raised_since`` reads at its lowest over ``records`` (``None``: unknown).

    The settings before a climb: a decay raised acts slowly, so the training loss may
    reach its best after it (held out, hunt 61: AdamW's `weight_decay` 0.05 -> 5 at step 300,
    the best loss at 350, the climb from there told "the updates have grown too large").

    Example::

        >>> from types import SimpleNamespace as At
        >>> lowest_settings([At(decay_per_step=5e-5, momentum=0.9, dropout=None),
        ...         At(decay_per_step=5e-3, momentum=0.9, dropout=None)])
        {'decay_per_step': 5e-05, 'momentum': 0.9, 'dropout': None}
    """
    values = {name: [getattr(r, name) for r in records] for name in SETTINGS}
    return {n: min((x for x in v if x is not None), default=None) for n, v in values.items()}


def raised_since(then: Any, now: Any) -> str | None:
    """``raised_setting`` between two records of the run's settings (``Evaluation``s).

    Reads their ``decay_per_step``, ``momentum`` and ``dropout``.

    Example::

        >>> from types import SimpleNamespace as At
        >>> then = At(decay_per_step=None, momentum=0.5, dropout=0.1)
        >>> raised_since(then, At(decay_per_step=None, momentum=0.99, dropout=0.1))[:38]
        "The momentum (SGD's `momentum`, Adam's"
        >>> raised_since(then, At(decay_per_step=None, momentum=0.9, dropout=0.97))[:34]
        'Dropout rose from p = 0.1 to p = 0'
    """
    return raised_setting(
        decay_raised((then.decay_per_step, now.decay_per_step)),
        momentum_raised((then.momentum, now.momentum)),
        dropout_raised((then.dropout, now.dropout)),
    )


def raised_setting(
    decayed: tuple[float, float] | None,
    momentum: tuple[float, float] | None,
    dropped: tuple[float, float] | None,
    rate: tuple[float, float] | None = None,
) -> str | None:
    """Which setting rose before training went wrong, with what to try, else ``None``.

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

    ``rate``: ``(the highest learning rate before, now)`` where it jumped (``rate_raised``),
    named last: the other settings say more of what the run became.
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
    if rate is not None:
        before, now = rate
        return (
            f"The learning rate rose from {before:.3g} to {now:.3g} ({now / before:.0f}x) "
            "before it, set during the run: every update is that much larger. Try: set it back to "
            f"{before:.3g}; where a callback or schedule sets it, look at what it sets then."
        )
    return None
