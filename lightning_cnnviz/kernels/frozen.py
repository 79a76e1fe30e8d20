"""Layers whose weights never change: frozen, left out of the optimiser, or cut off.

Nothing here knows about Lightning. ``KernelMonitor`` hands each event's
``relative_change`` per layer to ``still_layers``; a layer whose weights were exactly
the same at ``STILL_EVENTS`` events in a row (one, where its weight has
``requires_grad=False``: no optimiser can move it) is not being trained, which
``frozen_words.frozen_text`` says as a note (a frozen backbone is often deliberate; a
forgotten ``requires_grad=False`` or a parameter group left out of the optimiser is a bug
the loss alone hides: the head still learns). Measured (user-side hunt): a CNN whose conv
layers were frozen by mistake reached 66% val accuracy (94% trained) and nothing was said,
while every conv layer's ``relative_change`` read exactly 0 at every log.

Example::

    >>> counts = {}
    >>> [still_layers(counts, {"conv1": 0.0, "fc": 0.02}) for _ in range(3)]
    [[], ['conv1'], []]
    >>> still_layers({}, {"conv1": 0.0}, fixed={"conv1"})
    ['conv1']
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_cnnviz.core.real_values import real_values
from lightning_cnnviz.core.weight_leaves import held_by

__all__ = [
    "NEARLY_STILL",
    "SCALE_GAVE_UP",
    "SET_UP",
    "STILL_EVENTS",
    "TINY_LR",
    "events_needed",
    "gradient_state",
    "loss_scale",
    "param_groups",
    "still_layers",
    "still_reason",
    "tiny_rate",
    "unoptimised",
]

STILL_EVENTS = 2  # events in a row without any change: one could be a learning rate at 0
TINY_LR = 1e-3  # a group's learning rate this far below the optimisers' largest keeps it still
LR_CUT_STILL = 1e3  # ... or a scheduler's cut of it this many times below its start
NEARLY_STILL = 1e-3  # relative change a log under which a layer at such a rate counts as still
# a 16-bit loss scale under which the scaler's skipped steps are no longer its search for a
# scale (from 65,536, 16 halvings without one step that fit float16) but a run that is stuck
SCALE_GAVE_UP = 1.0


def still_layers(
    counts: dict[str, int],
    changes: Mapping[str, float],
    fixed: Collection[str] = (),
    nearly: Collection[str] = (),
) -> list[str]:
    """The layers that just reached their count of events in a row without change.

    ``STILL_EVENTS``, or one for the ``fixed`` layers (weights with ``requires_grad=False``:
    the fact is known, one unchanged event confirms nothing else moves them). Told a log
    earlier, a frozen random backbone is named before the problems that follow from it
    (a frozen plain CNN's head lost 43% of its units at the log that confirmed it).
    The ``nearly`` layers (a learning rate ``TINY_LR`` of the largest or less:
    ``tiny_rate``) count as unchanged below ``NEARLY_STILL``. ``counts`` (events in a row
    without change, per layer) is updated in place; a layer that moves starts again from 0.
    """
    reached = []
    for name, change in changes.items():
        still = change == 0.0 or (name in nearly and change < NEARLY_STILL)
        counts[name] = counts.get(name, 0) + 1 if still else 0
        if counts[name] == events_needed(name, fixed):
            reached.append(name)
    return reached


def events_needed(name: str, fixed: Collection[str]) -> int:
    """Unchanged events in a row that make ``name`` still: 1 if ``fixed``, else ``STILL_EVENTS``."""
    return 1 if name in fixed else STILL_EVENTS


def tiny_rate(weight: Tensor, groups: Sequence[Mapping[str, Any]] | None) -> float | None:
    """``weight``'s learning rate over the optimisers' largest, where ``TINY_LR`` or less.

    ``None`` where it is 0 (``lr_zero``), larger, or not known. A random-init backbone's
    group at 1e-7 beside a head at 1e-3 moved its kernels 1e-5 to 1e-4 of their size a
    log and stayed as initialised: frozen in all but name.

    Example::

        >>> w, head = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
        >>> groups = [{"params": [w], "lr": 1e-7}, {"params": [head], "lr": 1e-3}]
        >>> round(tiny_rate(w, groups), 6), tiny_rate(head, groups)
        (0.0001, None)
        >>> tiny_rate(w, [{"params": [w], "lr": None}, {"params": [head], "lr": 1e-3}]) is None
        True
    """
    if groups is None:
        return None
    # a rate held as None (Adafactor's relative steps: setups hunt 70, KernelMonitor aborted)
    rates = [float(g.get("lr") or 0.0) for g in groups]
    held = [r for g, r in zip(groups, rates, strict=True) if any(p is weight for p in g["params"])]
    top = max(rates, default=0.0)
    if not held or top <= 0 or not 0 < max(held) <= TINY_LR * top:
        return None
    return max(held) / top


def param_groups(
    optimizers: Sequence[Any], parameters: Iterable[Tensor]
) -> list[Mapping[str, Any]] | None:
    """Every optimiser's parameter groups, ``None`` where they hold none of ``parameters``.

    A strategy that flattens the parameters (FSDP, DeepSpeed) leaves the optimisers with
    other tensors than the model's: then no layer can be matched to its group.
    """
    groups = [g for opt in optimizers for g in opt.param_groups]
    held = held_by(groups=groups)
    return groups if any(id(p) in held for p in parameters) else None


def unoptimised(
    named: Iterable[tuple[str, Tensor]], groups: Sequence[Mapping[str, Any]] | None
) -> list[str]:
    """Parameters a backward reached (``.grad`` set) that no optimiser's group holds.

    They never change, and their gradient is computed for nothing. ``[]`` where the groups
    cannot be matched to the model's parameters (``param_groups`` gave ``None``).

    Example::

        >>> w, head = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
        >>> w.grad, head.grad = torch.zeros(2), torch.zeros(2)
        >>> unoptimised([("w", w), ("head", head)], [{"params": [w]}])
        ['head']
    """
    if groups is None:
        return []
    held = held_by(groups=groups)
    return [n for n, p in named if p.requires_grad and p.grad is not None and id(p) not in held]


# the reasons (``still_reason``) that keep weights as they are, which a random init makes a
# problem (a learning rate of 0 too: a backbone's group at 0 from the start left its convs
# at their random init, 79% val against 96.5%; a schedule that reaches 0 late leaves
# trained kernels, which the untrained look tells apart)
SET_UP = ("no_grad", "not_optimised", "detached", "lr_zero", "lr_tiny", "own_gradient_removed")


def gradient_state(parameters: Iterable[Tensor]) -> str:
    """What the gradients of ``parameters`` hold: ``none``, ``zero``, ``nonfinite`` or ``some``.

    One host read. ``nonfinite``: a NaN or inf anywhere, as a 16-bit loss scaler finds them
    in a step it skips.

    Example::

        >>> w = torch.nn.Parameter(torch.ones(2))
        >>> gradient_state([w]), (setattr(w, "grad", torch.zeros(2)), gradient_state([w]))[1]
        ('none', 'zero')
        >>> w.grad = torch.tensor([1.0, float("nan")])
        >>> gradient_state([w])
        'nonfinite'
    """
    grads = [_top(p.grad.detach()) for p in parameters if p.grad is not None]
    if not grads:
        return "none"
    top = float(torch.stack([g.to(grads[0].device) for g in grads]).amax())
    return "nonfinite" if not math.isfinite(top) else "some" if top > 0 else "zero"


def _top(grad: Tensor) -> Tensor:
    """The largest magnitude in ``grad`` (0 for none stored: a sparse gradient)."""
    values = real_values(grad).abs()
    return values.amax() if values.numel() else values.new_zeros(())


def loss_scale(precision_plugin: object) -> float | None:
    """The loss scale of a 16-bit mixed-precision plugin's ``GradScaler``, else ``None``.

    The scaler skips each optimizer step whose gradients overflow float16 and halves its
    scale, so a scale lower than at the last look means steps were skipped since.

    Example::

        >>> loss_scale(object()) is None
        True
    """
    scaler = getattr(precision_plugin, "scaler", None)
    if scaler is None or not callable(getattr(scaler, "get_scale", None)):
        return None
    if callable(getattr(scaler, "is_enabled", None)) and not scaler.is_enabled():
        return None
    return float(scaler.get_scale())


def still_reason(
    weight: Tensor,
    groups: Sequence[Mapping[str, Any]] | None,
    grads_kept: bool = True,
    rates_set: Mapping[int, float] | None = None,
) -> str:
    """Why ``weight`` stays as it is: a key of ``frozen_words.REASONS``.

    ``groups``: every optimiser's parameter groups, ``None`` where they cannot be matched
    to the model's weights (a strategy that flattens them): then only ``requires_grad``
    is known. ``grads_kept``: other parameters of the model hold a gradient now (read
    after a training step's backward; Lightning zeroes them before the next one), so a
    ``weight.grad`` of None means no backward reached it (``"detached"``). ``rates_set``:
    each group's rate when the fit started, by ``id``, the start of a cut by a scheduler
    that records no ``initial_lr`` (``ReduceLROnPlateau``).

    Example::

        >>> w, v = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
        >>> groups = [{"params": [w], "lr": 0.1}]
        >>> w.grad = torch.zeros(2)  # a backward reached it, with nothing to say
        >>> still_reason(w, groups), still_reason(v, groups), still_reason(v, None)
        ('no_gradient', 'not_optimised', 'no_update')
        >>> w.grad = None  # no backward reached it
        >>> still_reason(w, groups)
        'detached'
        >>> still_reason(w, [{"params": [w], "lr": 5e-33, "initial_lr": 0.05}])
        'lr_cut'
        >>> plateau = {"params": [w], "lr": 5e-7}
        >>> still_reason(w, [plateau], rates_set={id(plateau): 0.05})
        'lr_cut'
    """
    if not weight.requires_grad:
        return "no_grad"
    if groups is None:
        return "no_update"
    held = [g for g in groups if any(p is weight for p in g["params"])]
    if not held:
        return "not_optimised"
    rates = [g.get("lr") if g.get("lr") is not None else 1.0 for g in held]  # None: its own
    if all(r == 0 for r in rates):
        return "lr_zero"
    starts = [g.get("initial_lr") or (rates_set or {}).get(id(g)) or 0.0 for g in held]
    if all(r * LR_CUT_STILL <= s for s, r in zip(starts, rates, strict=True)):
        return "lr_cut"  # a schedule's doing (hunt 18: StepLR per batch, 0.05 -> 5e-33)
    if tiny_rate(weight, groups) is not None:
        return "lr_tiny"
    return "detached" if grads_kept and weight.grad is None else "no_gradient"
