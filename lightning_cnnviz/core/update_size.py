"""How far the optimiser's last update moved the weights, relative to their size.

Nothing here knows about Lightning. A run stuck at chance under a setting that shrinks the
steps (a small rate, a large ``eps``, a tiny clip) is stuck because of it only where the
steps are in fact small: the same settings train a BatchNorm CNN to 93% (hunt 42: Adam's
``eps=1e-2`` and SGD at 3e-3 without momentum, named as the cause of runs whose labels
were permuted). ``update_ratio`` reads the step from the optimiser's own state, the
update it applies for the gradient it holds, without changing either.

Example::

    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(4))
    >>> sgd = torch.optim.SGD([w], lr=0.1)
    >>> w.grad = torch.full((4,), 0.5)
    >>> round(update_ratio([sgd]), 6)
    0.05
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_cnnviz.core.real_values import real_values

__all__ = ["carried_shrink", "momentum_carry", "update_norms", "update_ratio", "weight_norm"]


def _update(group: dict[str, Any], p: Tensor, state: dict[str, Any]) -> Tensor | None:
    """The update ``group``'s optimiser applies to ``p`` for its state (``None``: not known)."""
    if group.get("lr") is None:  # a step of its own making (Adafactor's relative steps)
        return None
    lr, eps = float(group["lr"]), float(group.get("eps") or 0.0)
    g = p.grad
    if "exp_avg" in state and ("exp_avg_sq" in state or "exp_inf" in state):  # Adam's kin
        t = float(state.get("step", 1)) or 1.0
        b1, b2 = group.get("betas", (0.9, 0.999))
        m = state["exp_avg"] / (1 - b1**t)
        if "exp_inf" in state:  # Adamax
            return lr * m / (state["exp_inf"] + eps)
        v = state.get("max_exp_avg_sq", state["exp_avg_sq"]) / (1 - b2**t)
        return lr * m / (v.sqrt() + eps)
    if "acc_delta" in state:  # Adadelta (hunt 74: read as RMSprop's, 1000x too large)
        return lr * _adadelta_step(group, p, state, eps)
    if "square_avg" in state:  # RMSprop
        buf, rms = state.get("momentum_buffer"), state["square_avg"].sqrt()
        # the gradient gone (Lightning sets it to None by an epoch's end): its running RMS
        return lr * buf if buf is not None else lr * (rms if g is None else g) / (rms + eps)
    if "sum" in state:  # Adagrad: the gradient gone, the mean square its sum holds
        t = max(float(state.get("step", 1)), 1.0)
        return lr * ((state["sum"] / t).sqrt() if g is None else g) / (state["sum"].sqrt() + eps)
    if "exp_avg" in state or "exp_avg_sq" in state:  # a kin this does not know
        return None
    buf = state.get("momentum_buffer")  # SGD, its dampening inside the buffer
    if buf is not None:
        return lr * buf
    return lr * g if g is not None and not state else None


def _adadelta_step(group: dict[str, Any], p: Tensor, state: dict[str, Any], eps: float) -> Tensor:
    """Adadelta's last step before its rate: ``sqrt(acc + eps) / sqrt(square_avg + eps) * g``.

    Its state holds ``acc_delta`` after the step, ``rho * acc + (1 - rho) * step**2``; the
    ``acc`` before it follows from that exactly. The gradient gone, its running RMS.
    """
    rho, square = float(group.get("rho", 0.9)), state["square_avg"]
    rms = (square + eps).sqrt()
    g = square.sqrt() if p.grad is None else p.grad + float(group.get("weight_decay") or 0) * p
    r = (g / rms).pow(2)
    acc = (state["acc_delta"] - (1 - rho) * eps * r) / (rho + (1 - rho) * r)
    return (acc.clamp(min=0) + eps).sqrt() / rms * g


def update_ratio(optimizers: Sequence[Any]) -> float | None:
    """``||update|| / ||weights||`` of the first optimiser's last step (``None``: not known).

    Over every parameter it holds that has a gradient or a state; one host read. Plain
    SGD's update is its gradient's, which Lightning has set to None by an epoch's end:
    then unknown. An Adam
    at 1e-3 on a small CNN read 7e-3 to 2e-2 a step, SGD 0.05 with momentum 1e-2 to 4e-2,
    a BatchNorm CNN at SGD 3e-3 9e-4 (learning); Adam with ``eps=1.0`` 6.5e-5, SGD at
    3e-4 3e-5, SGD 3e-3 without BatchNorm 3e-4 (at chance, or crawling).
    """
    optimizer = optimizers[0] if optimizers else None
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return None
    moved: list[Tensor] = []
    sizes: list[Tensor] = []
    try:
        with torch.no_grad():
            for group in groups:
                for p in group["params"]:
                    state = optimizer.state.get(p, {})
                    if p.grad is None and not state:
                        continue
                    u = _update(group, p, state)
                    if u is None:
                        return None
                    moved.append(real_values(u).pow(2).sum())
                    sizes.append(real_values(p.detach()).pow(2).sum())
    except Exception:  # a state of its own kind (a float sum, a tensor of its own)
        return None
    if not moved:
        return None
    device = moved[0].device
    num, den = (float(torch.stack([t.to(device) for t in ts]).sum()) for ts in (moved, sizes))
    return math.sqrt(num / den) if den > 0 and math.isfinite(num) else None


def weight_norm(optimizers: Sequence[Any]) -> float | None:
    """The norm of every weight the first optimiser trains (``None``: none, or not finite).

    Read at each evaluation: how fast it shrinks tells a decay that outweighs the gradients
    (``decay_rule``; held-out hunt 125: AdamW's `weight_decay` raised to 5 at a rate of
    3e-3, 1.5% of every weight a step). One host read.

    Example::

        >>> w = torch.nn.Parameter(torch.full((4,), 1.5))
        >>> weight_norm([torch.optim.SGD([w], lr=0.1)]), weight_norm([])
        (3.0, None)
    """
    groups = getattr(optimizers[0], "param_groups", None) if optimizers else None
    try:
        with torch.no_grad():
            sizes = [
                real_values(p.detach()).pow(2).sum()
                for group in groups or ()
                for p in group["params"]
                if p.numel()
            ]
            if not sizes:
                return None
            device = sizes[0].device
            total = float(torch.stack([t.to(device) for t in sizes]).sum())
    except Exception:  # weights of their own kind (meta, sharded): not known
        return None
    return math.sqrt(total) if math.isfinite(total) else None


def update_norms(
    optimizers: Sequence[Any], wanted: Collection[int], less_decay: bool = False
) -> dict[int, Tensor]:
    """The norm of the update each optimiser now applies to the parameters ``wanted``.

    Keyed by ``id(param)``; scalars on the parameters' devices (no host read). A parameter
    whose update is not known (no gradient nor state, an optimiser state of its own kind)
    is left out. ``less_decay``: without what SGD's momentum buffer holds of the weight
    decay (``lr * weight_decay * p``, carried ``(1 - dampening) / (1 - momentum)`` times):
    the gradient's part, which after a weight is written large no longer grows with it.

    Example::

        >>> w = torch.nn.Parameter(torch.ones(4))
        >>> sgd = torch.optim.SGD([w], lr=0.1)
        >>> w.grad = torch.full((4,), 0.5)
        >>> [round(float(v), 6) for v in update_norms([sgd], {id(w)}).values()]
        [0.1]
    """
    found: dict[int, Tensor] = {}
    with torch.no_grad():
        for optimizer in optimizers:
            for group in getattr(optimizer, "param_groups", ()):
                for p in group["params"]:
                    if id(p) not in wanted or id(p) in found:
                        continue
                    state = optimizer.state.get(p, {})
                    try:
                        u = _update(group, p, state) if p.grad is not None or state else None
                        if u is not None and less_decay:
                            u = u - _carried_decay(group, p, state)
                    except Exception:  # a state of its own kind
                        u = None
                    if u is not None:
                        found[id(p)] = torch.linalg.vector_norm(real_values(u)).float()
    return found


def momentum_carry(group: dict[str, Any]) -> float:
    """How many times SGD's momentum buffer carries each gradient term: ``(1 - d) / (1 - m)``.

    Example::

        >>> momentum_carry({"momentum": 0.75, "dampening": 0.5}), momentum_carry({})
        (2.0, 1.0)
    """
    momentum = min(float(group.get("momentum") or 0.0), 0.99)
    return (1.0 - float(group.get("dampening") or 0.0)) / (1.0 - momentum)


def carried_shrink(per_step: float, group: dict[str, Any]) -> float:
    """The share of a weight SGD's decay takes a step, momentum's carry included.

    With no gradient, weight and momentum buffer follow a linear recurrence whose
    eigenvalues solve ``x**2 - (1 - c + m) x + m = 0`` (``c``: ``per_step`` times
    ``1 - dampening``); a weight shrinks by ``1 - |x|`` a step at the largest root. About
    ``per_step x momentum_carry`` for small ``c``; never past ``1 - sqrt(m)``, where it
    starts to oscillate (hunt 111: SGD at 0.05, momentum 0.9 and `weight_decay=3` was
    said to take "150% off every weight each step"; it takes 5%). Nesterov's step adds
    the decay once more beside the buffer: ``x**2 - (1 + m - c (1 + m)) x + m (1 - c) = 0``
    (hunt 115: at 0.05, momentum 0.9 and `weight_decay=1` said 5.1% a step, measured 7.5%).

    Example::

        >>> round(carried_shrink(0.001, {"momentum": 0.9}), 4)  # about 0.001 x 10
        0.0111
        >>> round(carried_shrink(0.15, {"momentum": 0.9}), 4)  # 1 - sqrt(0.9)
        0.0513
        >>> round(carried_shrink(0.05, {"momentum": 0.9, "nesterov": True}), 4)
        0.0753
        >>> round(carried_shrink(0.01, {}), 4)  # no momentum: the decay itself
        0.01
    """
    m = min(float(group.get("momentum") or 0.0), 0.99)
    c = per_step * (1.0 - float(group.get("dampening") or 0.0))
    b, product = 1.0 - c + m, m
    if group.get("nesterov") and m:
        b, product = 1.0 + m - c * (1.0 + m), m * (1.0 - c)
    disc = b * b - 4.0 * product
    radius = (abs(b) + math.sqrt(disc)) / 2.0 if disc >= 0 else math.sqrt(abs(product))
    return 1.0 - radius


def _carried_decay(group: dict[str, Any], p: Tensor, state: dict[str, Any]) -> Tensor | float:
    """The part of SGD's update its momentum buffer holds of the weight decay (else 0)."""
    decay = float(group.get("weight_decay") or 0.0)
    if not decay or "momentum_buffer" not in state or state["momentum_buffer"] is None:
        return 0.0
    return float(group.get("lr", 0.0)) * decay * momentum_carry(group) * p.detach()
