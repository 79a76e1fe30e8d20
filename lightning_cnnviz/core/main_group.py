"""The parameter group whose settings most of the model trains with.

Nothing here knows about Lightning. Optimisers are often built with several groups: the
usual recipe leaves biases and normalisation weights out of weight decay in a group of
their own, often listed first, and fine-tuning gives the backbone a lower rate than the
head. Reading the first group's rate or decay then reads the settings of a few thousand
biases, not of the weights (held out: SGD with momentum at ``weight_decay=0.05`` on the
weights and 0 on the biases and norms, that group first, stayed unnamed while the same
run with one group was told ``weight_decay_too_strong``).

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Linear(100, 10)
    >>> opt = torch.optim.SGD(
    ...     [{"params": [net.bias], "weight_decay": 0.0}, {"params": [net.weight]}],
    ...     lr=0.1, weight_decay=5e-4)
    >>> main_group(opt)["weight_decay"]
    0.0005
    >>> opt.param_groups[0]["lr"] = 10.0  # a rate raised on the biases alone
    >>> main_group(opt)["lr"], fastest_group(opt)["lr"]
    (0.1, 10.0)
"""

from __future__ import annotations

from typing import Any

__all__ = ["fastest_group", "main_group"]


def main_group(optimizer: Any) -> dict[str, Any] | None:
    """The group of ``optimizer`` holding the most trainable elements (``None``: no groups).

    Counts ``numel`` of the parameters that require a gradient (metadata only, no device
    work); a tie goes to the group listed first, as does a set of groups holding none.
    """
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return None

    def size(group: dict[str, Any]) -> int:
        return sum(p.numel() for p in group.get("params", ()) if getattr(p, "requires_grad", 0))

    return max(groups, key=size) if len(groups) > 1 else groups[0]


def fastest_group(optimizer: Any) -> dict[str, Any] | None:
    """The group of ``optimizer`` stepping at the highest rate (``None``: no groups).

    What a divergence reads: the weights that move fastest blow up first, and a rate raised
    on a small group (a head at 200x) is the cause, however few weights it holds. Only
    groups holding a trainable parameter count (setups hunt 69: an empty group at lr 100
    was read as the rate of a run diverging at 3), and only rates held as numbers (a tensor
    rate would need a device read); a tie goes to the group listed first, none to the
    ``main_group``. Read at every step: a group's parameters are visited up to its first
    trainable one.
    """
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return None

    def rate(group: dict[str, Any]) -> float:
        lr = group.get("lr")
        trains = any(getattr(p, "requires_grad", False) for p in group.get("params", ()))
        return float(lr) if trains and isinstance(lr, int | float) else -1.0

    rates = [rate(g) for g in groups]
    top = max(rates)  # none held as a number by a trainable group: the main group's
    return groups[rates.index(top)] if top >= 0 else main_group(optimizer)
