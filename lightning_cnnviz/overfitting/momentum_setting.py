"""An optimiser whose momentum is 1 or more: nothing of a past gradient ever decays.

Nothing here knows about Lightning beyond the optimisers it is handed. ``torch.optim.SGD``
(and ``RMSprop``) accept ``momentum=1.0``: each update then adds the whole of every past
gradient, the steps grow without end, and training oscillates or diverges while the
curves stay ambiguous for a while (hunt 30: SGD with ``momentum=1.0`` doubled its train
loss and tripled its val loss while val accuracy moved within 10 points: nothing was
said). Adam refuses betas of 1 itself. Read once at the start of fit.

Example::

    >>> import torch
    >>> w = [torch.zeros(1, requires_grad=True)]
    >>> (text, figures), = momentum_checks([torch.optim.SGD(w, lr=0.01, momentum=1.0)])
    >>> text[:47], figures["momentum"]
    ('`SGD` runs with `momentum=1`: each update adds ', 1.0)
    >>> momentum_checks([torch.optim.SGD(w, lr=0.01, momentum=0.9)])
    []
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["momentum_checks"]


def momentum_checks(optimizers: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
    """``[(message, figures)]`` for each optimiser with a parameter group's momentum >= 1."""
    found = []
    for optimizer in optimizers:
        momenta = [g.get("momentum") for g in getattr(optimizer, "param_groups", [])]
        high = [m for m in momenta if isinstance(m, int | float) and m >= 1]
        if not high:
            continue
        name, momentum = type(optimizer).__name__, float(max(high))
        text = (
            f"`{name}` runs with `momentum={momentum:g}`: each update adds the whole of every "
            "past gradient (nothing of it decays), so the steps grow without end and training "
            "oscillates or diverges. Set a momentum below 1 (0.9 is usual)."
        )
        found.append((text, {"momentum": momentum, "optimizer": name}))
    return found
