"""An optimiser that climbs the loss: a negative learning rate, or ``maximize=True``.

Nothing here knows about Lightning beyond the optimisers it is handed. A schedule without
a floor turns the rate negative once stepped past its end (``LambdaLR(lambda s: 1 - s /
total)`` with ``total`` shorter than the run, or stepped more often than its length
assumes); every update then climbs the loss (hunt 31: the rate went negative at step 96,
the loss blew up from step 117, told as an early decay "-3x below its start" and as a
divergence whose remedy was a lower rate). ``maximize=True`` does the same from the first
step (torch refuses a negative rate when the optimiser is made, not when a schedule sets
it). Read before the first step and at every evaluation; told once.

Example::

    >>> import torch
    >>> w = [torch.zeros(1, requires_grad=True)]
    >>> sgd = torch.optim.SGD(w, lr=0.01)
    >>> sgd.param_groups[0]["lr"] = -0.01  # as a schedule past its end sets it
    >>> (text, figures), = ascent_checks([sgd])
    >>> text[:53], figures["lr"]
    ('The learning rate of `SGD` is negative (-0.01): every', -0.01)
    >>> (text, figures), = ascent_checks([torch.optim.Adam(w, lr=1e-3, maximize=True)])
    >>> text[:39], figures["maximize"]
    ('`Adam` runs with `maximize=True`: every', 1.0)
    >>> ascent_checks([torch.optim.SGD(w, lr=0.01)])
    []
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["ascent_checks"]


def ascent_checks(optimizers: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
    """``[(message, figures)]`` for each optimiser that climbs the loss in a parameter group."""
    found = []
    for optimizer in optimizers:
        groups = getattr(optimizer, "param_groups", [])
        name = type(optimizer).__name__
        rates = [g.get("lr") for g in groups]
        negative = [r for r in rates if isinstance(r, int | float) and r < 0]
        if any(g.get("maximize") is True for g in groups):
            text = (
                f"`{name}` runs with `maximize=True`: every update climbs the loss instead of "
                "descending it (gradient ascent), so training makes the model worse. Drop "
                "`maximize=True` (or return the negated objective as the loss)."
            )
            found.append((text, {"maximize": 1.0, "optimizer": name}))
        elif negative:
            lr = float(min(negative))
            first = [g["initial_lr"] for g in groups if isinstance(g.get("initial_lr"), float)]
            start = f"; it started at {first[0]:.3g}" if first else ""
            text = (
                f"The learning rate of `{name}` is negative ({lr:.3g}{start}): every update "
                "climbs the loss instead of descending it (gradient ascent). A schedule "
                "without a floor does this once stepped past its end (`LambdaLR(lambda s: 1 "
                "- s / total)` with `total` shorter than the run, or a scheduler stepped more "
                "often than its length assumes). Keep the rate at 0 or above (`max(0.0, 1 - "
                "s / total)`), and step the scheduler as often as its length assumes."
            )
            found.append((text, {"lr": lr, "optimizer": name}))
    return found
