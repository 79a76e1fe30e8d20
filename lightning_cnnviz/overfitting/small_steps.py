"""Settings that keep every optimiser step too small to learn, read from an evaluation.

Nothing here knows about Lightning. A rate small for its optimiser (``small_rate``), a
``gradient_clip_val`` that small, an Adam ``eps`` that large, each counted only where
the optimiser's last update was small against the weights (``steps_small``,
``core.update_size``). ``learning_words`` names them; ``levels.not_learning`` tells a
model at chance under them as a problem at once (``held_back``), not after the quarter
of the run a flat start may take.

Example::

    >>> from dataclasses import replace
    >>> now = Evaluation(100, 1, lr=1e-6, eps=1e-8, update_ratio=7e-6, classes=10.0)
    >>> now = replace(now, probe_acc_val=0.1, probe_loss_val=2.36, probe_size=128.0)
    >>> small_rate(now), held_back(now), held_back(replace(now, lr=1e-3))
    (1e-06, True, False)
"""

from __future__ import annotations

from lightning_cnnviz.overfitting import chance_levels
from lightning_cnnviz.overfitting.evaluation import Evaluation

__all__ = [
    "BELOW_DEFAULT",
    "LARGE_EPS",
    "SMALL_CLIP",
    "SMALL_RATE",
    "SMALL_STEP",
    "SMALL_UPDATE",
    "TINY_UPDATE",
    "held_back",
    "small_rate",
    "steps_small",
    "tiny_steps",
    "update_clause",
]

SMALL_RATE = 1e-4  # Adam and its kin: a highest rate at most this, nothing learnt: the cause
BELOW_DEFAULT = 1e-3  # ... or this share of the optimiser's default rate (Adadelta's 1.0)
SMALL_CLIP = 1e-2  # a `gradient_clip_val` this small keeps every step tiny
LARGE_EPS = 1e-2  # an Adam `eps` this large divides every step far below its rate
SMALL_STEP = 3e-3  # SGD and its kin: the rate over (1 - momentum), the step it takes
# ... each named only where the optimiser's last update was this small against the weights
# (``core.update_size``): stuck runs read 3e-5 to 3e-4; learning ones 9e-4 and up, and so
# did runs stuck on permuted labels under those very settings (hunt 42: 6e-4 to 2e-3, told
# "eps ... the steps are tiny" and "try the rate 10x higher")
SMALL_UPDATE = 4e-4
# ... and where the model is at chance (not learning slowly the right way), this small:
# permuted labels cancel in the momentum, their updates small too (hunt 44: SGD nesterov
# 3e-4 on a BN net read 1.4e-4, its twin with the right labels 4e-4 at 93%); stuck runs
# at chance with the rate at fault read 3e-6 to 7e-5
TINY_UPDATE = 1e-4
_ROUNDING = 1 + 1e-9  # 1e-4 / (1 - 0.9) is 1.0000000000000002e-3 in floats


def small_rate(now: Evaluation) -> float | None:
    """The run's highest rate where it is small for its optimiser, else None.

    The highest: a one-cycle schedule's peak, else its start or now.
    Adam and its kin (an ``eps``) normalise their steps: at most ``SMALL_RATE``, or
    ``BELOW_DEFAULT`` of their class's default rate where that is higher. SGD's
    step is its rate times the gradient, over ``1 - momentum`` with momentum: at most
    ``SMALL_STEP`` (hunt 38: plain SGD at 3e-4, told at chance with no cause; hunt 39:
    SGD 2e-4 with momentum 0.9, a step of 2e-3, at chance all run): an Adam step of
    1e-4 moves a weight about as far as an SGD step of 3e-3 on gradients of ~0.03.
    """
    rates = [r for r in (now.lr_peak, now.lr_initial, now.lr) if r is not None]
    top = max(rates) if rates else None
    if top is None or top <= 0:
        return None
    if now.eps is not None:
        # or 1000x below its optimiser's default where that is large (hunts 74 and 75:
        # Adadelta, default 1.0, at 1e-3 and 1e-4 at chance, named with no cause)
        bar = max(SMALL_RATE, (now.lr_default or 0.0) * BELOW_DEFAULT)
        return top if top <= bar * _ROUNDING else None
    # SGD's `dampening` leaves that share of each gradient out of its momentum (hunt 40:
    # 5e-4 with momentum 0.9 and dampening 0.9 steps 5e-4, at chance, unnamed)
    step = top * (1 - (now.dampening or 0.0)) / (1 - min(now.momentum or 0.0, 0.999))
    return top if step <= SMALL_STEP * _ROUNDING else None


def steps_small(now: Evaluation) -> bool:
    """Whether the last update was small enough to be why nothing is learnt.

    ``SMALL_UPDATE`` of the weights or less where the model learns the right way, slowly
    (the val probe above chance), else ``TINY_UPDATE``. Not read (a loader of unknown
    length, whose last step before a validation is not known ahead: setups hunt 45), the
    setting's bar alone where it learns slowly, and nothing at chance, where a failure
    elsewhere (permuted labels) looks the same.
    """
    slowly = chance_levels.stuck(now) is False
    if now.update_ratio is None:
        return slowly
    return now.update_ratio <= (SMALL_UPDATE if slowly else TINY_UPDATE)


def update_clause(now: Evaluation) -> str:
    """The last update's size against the weights, as a clause (``""``: not known)."""
    if now.update_ratio is None:
        return ""
    return f" (its last update moved the weights {now.update_ratio:.2g} of their size)"


def held_back(now: Evaluation) -> bool:
    """Whether a setting keeps every step too small and the model sits at chance under it.

    A small rate, a small clip or a large ``eps``, with the last update read and at most
    ``TINY_UPDATE`` of the weights: no flat start ends at that pace (hunt 68: Adam at
    1e-6 moved the weights 7e-6 of their size a step, at chance for 800 steps, and was
    told at step 200, a quarter of the run, having been a note at step 100).
    """
    return chance_levels.stuck(now) is True and tiny_steps(now)


def tiny_steps(now: Evaluation) -> bool:
    """Whether a small rate, a small clip or a large ``eps`` keeps the last update tiny.

    At most ``TINY_UPDATE`` of the weights, read from the optimiser's last update.
    """
    if now.update_ratio is None:
        return False
    tiny = (
        small_rate(now) is not None
        or (now.grad_clip is not None and now.grad_clip <= SMALL_CLIP)
        or (now.eps is not None and now.eps >= LARGE_EPS)
    )
    return tiny and now.update_ratio <= TINY_UPDATE
