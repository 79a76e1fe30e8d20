"""An optimiser that climbs the loss: a learning rate a schedule (or a hand) turned negative.

Nothing here knows about Lightning beyond the optimisers it is handed. A schedule without
a floor turns the rate negative once stepped past its end (``LambdaLR(lambda s: 1 - s /
total)`` with ``total`` shorter than the run, or stepped more often than its length
assumes); every update then climbs the loss (hunt 31: the rate went negative at step 96,
the loss blew up from step 117, told as an early decay "-3x below its start" and as a
divergence whose remedy was a lower rate). Torch refuses a negative rate when the
optimiser is made, not when a schedule sets it. Read before the first step and at every
evaluation; told once.

Example::

    >>> import torch
    >>> w = [torch.zeros(1, requires_grad=True)]
    >>> sgd = torch.optim.SGD(w, lr=0.01)
    >>> schedule = torch.optim.lr_scheduler.LambdaLR(sgd, lambda s: 1 - s / 2)
    >>> for _ in range(3):
    ...     sgd.step(); schedule.step()
    >>> (text, figures), = ascent_checks([sgd])
    >>> text[:70], round(figures["lr"], 3)
    ('The learning rate of `SGD` is negative (-0.005; it started at 0.01): e', -0.005)
    >>> ascent_checks([torch.optim.Adam(w, lr=1e-3, maximize=True)])  # a negated objective
    []
    >>> sgd.param_groups[0].pop("initial_lr") and None  # a rate set by hand: read at the start
    >>> len(ascent_checks([sgd], {"0/0": 0.01})), ascent_checks([sgd])
    (1, [])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["ascent_checks", "group_rates", "highest", "maximize_check"]

WORSE = 1.1  # val loss this many times its best so far: the climb did harm
FELL = 0.05  # or val accuracy this far below its best


def _rate(value: Any) -> float | None:
    """A group's rate as a number: a float, or a one-value tensor (``lr=torch.tensor(...)``)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    return None


def group_rates(optimizers: Sequence[Any]) -> dict[str, float]:
    """Every parameter group's rate, keyed ``"optimiser/group"`` (read when training starts).

    Example::

        >>> group_rates([torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)])
        {'0/0': 0.1}
    """
    return {
        f"{i}/{j}": lr
        for i, optimizer in enumerate(optimizers)
        for j, g in enumerate(getattr(optimizer, "param_groups", []))
        if (lr := _rate(g.get("lr"))) is not None
    }


def highest(started: dict[str, float], now: dict[str, float]) -> dict[str, float]:
    """Each group's highest rate seen: a warm-up from 0 is positive once it rises.

    Example::

        >>> highest({"0/0": 0.0}, {"0/0": 0.01})
        {'0/0': 0.01}
    """
    return {k: max(v, started.get(k, v)) for k, v in now.items()} | {
        k: v for k, v in started.items() if k not in now
    }


def ascent_checks(
    optimizers: Sequence[Any], started: Mapping[str, float] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """``[(message, figures)]`` for each optimiser whose rate turned negative.

    A rate that was positive: since training started (``started``, ``group_rates``' and
    ``highest``'s), or the ``initial_lr`` a schedule of one of torch's optimisers
    recorded; a rate given as a tensor too (hunt 35: read as none). A rate
    negative from the start may be a custom optimiser's convention, and
    ``maximize=True`` is the right flag for a negated objective or an adversary's
    perturbation (hunt 33: all three were told, on runs that learnt); a sign turned
    during the run is no convention (hunt 34: a hand-written SGD's schedule, and a rate
    set negative by hand, were told as exploding gradients and late).
    """
    found = []
    for i, optimizer in enumerate(optimizers):
        torch_own = type(optimizer).__module__.startswith("torch.optim")
        turned = []
        for j, g in enumerate(getattr(optimizer, "param_groups", [])):
            lr = _rate(g.get("lr"))
            if lr is None or lr >= 0:
                continue
            begun = (started or {}).get(f"{i}/{j}")
            initial = _rate(g.get("initial_lr")) if torch_own else None
            if (begun is None or begun <= 0) and initial is not None:
                begun = initial
            if begun is not None and begun > 0:
                turned.append((float(lr), begun))
        if not turned:
            continue
        name = type(optimizer).__name__
        lr, start = min(turned)
        text = (
            f"The learning rate of `{name}` is negative ({lr:.3g}; it started at {start:.3g}): "
            "every update climbs the loss instead of descending it (gradient ascent). A "
            "schedule without a floor does this once stepped past its end (`LambdaLR(lambda "
            "s: 1 - s / total)` with `total` shorter than the run, or a scheduler stepped "
            "more often than its length assumes). Keep the rate at 0 or above (`max(0.0, 1 - "
            "s / total)`), and step the scheduler as often as its length assumes."
        )
        found.append((text, {"lr": lr, "optimizer": name}))
    return found


def maximize_check(
    climbing: Sequence[str], losses: Sequence[tuple[float | None, float | None, float | None]]
) -> tuple[str, dict[str, Any]] | None:
    """``(message, figures)`` where optimisers set to ``maximize=True`` climb a positive loss.

    ``climbing``: the optimisers with ``maximize=True`` on the model's layers
    (``Settings.maximize``); ``losses``: ``(training loss, val loss, val accuracy)`` per
    evaluation, the latest last; the training loss the one ``training_step`` returns,
    where known (the optimiser steps on it, whatever is logged). Told where the training
    loss is positive (not a negated objective) and validation got worse since its best
    (``WORSE``, ``FELL``): held out (hunt 36: ``maximize=True`` on the head's group
    only, val 53% -> 25%, told as dead units "lower the learning rate"). Before that, a
    negated objective or an adversary's layers may rightly climb.

    Example::

        >>> maximize_check(["AdamW"], [(2.1, 2.0, 0.5), (2.4, 2.6, 0.3)])[1]
        {'optimizer': 'AdamW', 'val_loss_best': 2.0, 'val_loss': 2.6}
        >>> maximize_check(["AdamW"], [(-2.1, 2.0, 0.5), (-2.4, 2.6, 0.3)]) is None
        True
    """
    if not climbing or len(losses) < 2:
        return None
    train, val, acc = losses[-1]
    before = [v for _, v, _ in losses[:-1] if v is not None]
    accs = [a for _, _, a in losses[:-1] if a is not None]
    if train is None or train <= 0 or val is None or not before:
        return None
    worse = val > WORSE * min(before) or (acc is not None and accs and acc < max(accs) - FELL)
    if not worse:
        return None
    names = ", ".join(f"`{n}`" for n in dict.fromkeys(climbing))
    text = (
        f"{names} {'is' if len(climbing) == 1 else 'are'} set to `maximize=True` on the "
        f"model's layers, and the training loss is positive ({train:.3g}): every update of "
        "those layers climbs the loss instead of descending it (gradient ascent), and "
        f"validation got worse with it (val loss {val:.3g}, its best {min(before):.3g}). "
        "Drop `maximize=True` (it is for an objective to maximise, an adversary's "
        "perturbation), or return the negated objective."
    )
    return text, {"optimizer": climbing[0], "val_loss_best": min(before), "val_loss": val}
