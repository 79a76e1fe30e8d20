"""Settings that make every update climb the loss or grow the weights, whatever the rate.

Nothing here knows about Lightning. A divergence under one of them is named by it first,
before anything a learning rate could explain: ``maximize=True`` on a positive loss, a
negative rate, a returned loss that went below 0, a negative weight decay
(``divergence_causes.py`` asks ``wrong_setting`` before its other causes).

Example::

    >>> wrong_setting((), (0.01, -1e-3), None, None)[:64]
    'The learning rate is negative (-0.001; 0.01 at the first log): e'
    >>> wrong_setting((), (0.01, 1e-3), None, None) is None
    True
"""

from __future__ import annotations

import math

from lightning_cnnviz.core.voice import listed

__all__ = ["went_negative", "wrong_setting"]


def wrong_setting(
    maximize: tuple[str, ...],
    rates: tuple[float, float] | None,
    negated: tuple[int, float] | None,
    grown: tuple[float, float | None] | None,
) -> str | None:
    """The setting a divergence follows from, with what to try, else ``None``.

    ``maximize``: the optimisers set to ``maximize=True`` where the loss started positive
    (held out, hunt 34: ``AdamW(maximize=True)`` on the cross-entropy, copied from an
    adversary's optimiser, was told "lower the learning rate"): named first. On a negated
    loss (negative from the start) it is the right flag, and not named.

    ``rates``: ``(the learning rate at the first log, now)``; a negative one climbs the
    loss (hunt 31: a ``LambdaLR`` without a floor stepped past its end, told "lower the
    learning rate").

    ``negated``: ``(the step, the first loss)`` where a loss that started positive went
    below 0 before it: the loss is negated or a term subtracted outgrew it, and every
    update climbs the cross-entropy (held out, hunt 43: `training_step` returning -CE from
    epoch 3 under SGD, NaN 7 steps later, told "lower the learning rate").

    ``grown``: ``(weight_decay, the share of each weight it adds a step)`` where the
    weight decay is negative: every step pushes the weights away from 0 (held out, hunt 42:
    SGD's `weight_decay` set to -0.5 at epoch 3, the loss blown up from step 106, told
    "the optimiser overshoots, lower the learning rate"); the share ``None`` where the
    decay is added to the gradient (Adam's L2).

    """
    if maximize:
        return (
            f"{listed(list(maximize))} {'is' if len(maximize) == 1 else 'are'} set to "
            "`maximize=True`: every update climbs the loss it is handed instead of "
            "descending it (gradient ascent), and this loss is positive, not a negated "
            "objective. Try: drop `maximize=True` (it is for an objective to maximise, or "
            "an adversary's perturbation), or return the negated objective."
        )
    if rates is not None and rates[1] < 0:
        return (
            f"The learning rate is negative ({rates[1]:.3g}; {rates[0]:.3g} at the first "
            "log): every update climbs the loss instead of descending it (gradient ascent), "
            "as a schedule without a floor does once stepped past its end. Try: keep the "
            "rate at 0 or above (`max(0.0, 1 - s / total)`), and step the scheduler as often "
            "as its length assumes."
        )
    if negated is not None:
        at, first_loss = negated
        return (
            f"The loss `training_step` returns went below 0 at step {at} (it started at "
            f"{first_loss:.3g}): a cross-entropy never does, so the loss is negated or a term "
            "subtracted from it outgrew it, and every update from there climbs the "
            "cross-entropy. Try: return the loss itself, never below 0; keep any term "
            "subtracted from it (an entropy bonus) smaller than it."
        )
    if grown is not None:
        decay, share = grown
        each = f" (by {-share:.2%} of itself a step)" if share is not None else ""
        return (
            f"Weight decay is negative ({decay:.3g}): every step pushes each weight away from "
            f"0 instead of towards it{each}, so the weights and the logits grow until the "
            "loss blows up, whatever the learning rate. Try: set `weight_decay` to 0 or "
            "above (1e-4 to 5e-2 is usual); where a schedule or callback sets it, look at "
            "what it sets."
        )
    return None


def went_negative(series: list[tuple[int, float]]) -> tuple[int, float] | None:
    """``(the first step below 0, the first loss)`` of a loss that started above 0.

    Example::

        >>> went_negative([(0, 2.3), (1, 0.4), (2, -2.5)]), went_negative([(0, 2.3), (1, -1.0)])
        ((2, 2.3), None)

    As far below 0 as it started above it: a loss offset below 0 on purpose (``CE - 1``,
    an entropy bonus) stays near 0 (hunt 44: such losses were named as the cause of a
    divergence a rate raised 30x made). Finite values only: ``-inf`` is a ``log(0)``, not
    a negated loss (hunt 111: ``0.01 * log(relu(s))`` hit ``log(0)`` while the model kept
    learning, said "the loss is negated ... every update climbs the cross-entropy").

        >>> went_negative([(0, 2.3), (1, 0.4), (2, float("-inf"))]) is None
        True
    """
    if not series or not series[0][1] > 0:
        return None
    first = series[0][1]
    finite = [(s, v) for s, v in series if math.isfinite(v)]
    if not any(v <= -first for _, v in finite):
        return None
    return next((s, first) for s, v in finite if v < 0)
