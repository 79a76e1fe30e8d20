"""An optimiser that climbs the loss: a learning rate a schedule turned negative.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ascent_checks"]


def ascent_checks(optimizers: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
    """``[(message, figures)]`` for each torch optimiser whose set rate a schedule turned negative.

    Only torch's own optimisers, which descend by ``-lr * step``, and only a rate that
    started positive (``initial_lr``): a custom optimiser may take a negative rate by its
    own convention, and ``maximize=True`` is the right flag for a negated objective or an
    adversary's perturbation (hunt 33: all three were told, on runs that learnt).
    """
    found = []
    for optimizer in optimizers:
        if not type(optimizer).__module__.startswith("torch.optim"):
            continue
        groups = getattr(optimizer, "param_groups", [])
        turned = [
            (float(g["lr"]), float(g["initial_lr"]))
            for g in groups
            if isinstance(g.get("lr"), int | float) and g["lr"] < 0
            and isinstance(g.get("initial_lr"), int | float) and g["initial_lr"] > 0
        ]  # fmt: skip
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
