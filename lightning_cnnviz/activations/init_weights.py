"""Weights whose initialisation stops learning: all-zero layers, identical units.

Nothing here knows about Lightning. Read once, at the first log (after the first
updates), on the layers the monitor orders by depth:

* ``zero_weights``: a layer initialised to zero stays silent: its units compute the
  same nothing, its ReLUs are "dead" from the start and no gradient reaches the layers
  below it. No finding of its own: the dead-unit and not-learning findings name it;
* ``identical_units``: every unit of a layer holds the same weights (a constant
  initialisation, ``nn.init.constant_``). Units that see the same inputs with the same
  weights compute the same output and get the same gradient, so no update tells them
  apart: the layer works as one unit, for good (held out: a CNN initialised to 0.02
  throughout reached 21% val after 5 epochs; its hidden layers were still identical to
  the last bit). The output layer breaks its own symmetry (each class gets its own
  gradient), so a layer still identical after the first updates is stuck. Grouped and
  depthwise convolutions are left out: their units see different inputs.

Example::

    >>> from torch import nn
    >>> stuck, fine = nn.Linear(4, 3), nn.Linear(4, 3)
    >>> _ = nn.init.constant_(stuck.weight, 0.02)
    >>> identical_units([("stuck", stuck), ("fine", fine)])
    ['stuck']
    >>> _ = nn.init.zeros_(fine.weight)
    >>> zero_weights([("stuck", stuck), ("fine", fine)])
    ['fine']
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_cnnviz.core.voice import listed

__all__ = ["SAME", "identical_text", "identical_units", "zero_weights"]

SAME = 1e-6  # units this close (relative to the layer's largest weight) are the same unit


def zero_weights(layers: Sequence[tuple[str, nn.Module]]) -> list[str]:
    """Names of the layers whose ``weight`` is all zero, in order (one host transfer)."""
    named = [(n, w) for n, m in layers if isinstance(w := getattr(m, "weight", None), Tensor)]
    if not named:
        return []
    flags = torch.stack([w.detach().abs().amax() == 0 for _, w in named]).cpu().tolist()
    return [name for (name, _), zero in zip(named, flags, strict=True) if zero]


def identical_units(layers: Sequence[tuple[str, nn.Module]]) -> list[str]:
    """Names of the trained layers whose units (output rows) all hold the same weights.

    Layers with a ``weight`` of two or more units that requires grad, ``groups == 1``
    where the layer has groups, and not all zero (``zero_weights`` says those). One host
    transfer.
    """
    named = [
        (name, w.detach().flatten(1))
        for name, module in layers
        if isinstance(w := getattr(module, "weight", None), Tensor)
        and w.requires_grad
        and w.ndim >= 2
        and len(w) >= 2
        and getattr(module, "groups", 1) == 1
    ]
    if not named:
        return []
    flags = (
        torch.stack(
            [(w - w[:1]).abs().amax() <= SAME * w.abs().amax() for _, w in named]
            + [w.abs().amax() > 0 for _, w in named]
        )
        .cpu()
        .tolist()
    )
    same, nonzero = flags[: len(named)], flags[len(named) :]
    return [name for (name, _), a, b in zip(named, same, nonzero, strict=True) if a and b]


def identical_text(layers: Sequence[str], step: int, epoch: int) -> str:
    """The ``symmetric_weights`` problem in words.

    Example::

        >>> identical_text(["conv1", "fc1"], 10, 0)[:77]
        'At step 10 (epoch 0): every unit of `conv1`, `fc1` holds the same weights (a '
    """
    names = listed(layers)
    return (
        f"At step {step} (epoch {epoch}): every unit of {names} holds the same weights "
        "(a constant initialisation, such as `nn.init.constant_`), still after the first "
        "updates. Units with the same inputs and weights compute the same output and get the "
        "same gradient, so training never tells them apart: each such layer works as a "
        "single unit. Try: a random initialisation (PyTorch's default, or He/Kaiming for "
        "ReLU nets, Xavier for Sigmoid/Tanh); constants only for biases and norm scales."
    )
