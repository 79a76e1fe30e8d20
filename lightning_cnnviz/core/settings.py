"""What the run is set to: learning rate, momentum, weight decay, dropout, clipping, BatchNorm.

A finding's remedies should follow the evidence: "lower the learning rate" is the
opposite of the fix when a scheduler already cut it 100x. These are read from the
first optimiser's main parameter group (the one holding most of the weights,
``main_group``) and the model's dropout and BatchNorm modules, on the host, at an
evaluation (no device work).

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.9))
    >>> opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=50.0)
    >>> s = read_settings([opt], net)
    >>> s.lr, s.decay_per_step, s.dropout, s.momentum
    (0.001, 0.05, 0.9, 0.9)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lightning_cnnviz.core.gradient_hooks import (
    GLOBAL_HOOK,
    global_backward_hooked,
    gradient_hooked,
)
from lightning_cnnviz.core.main_group import fastest_group, main_group
from lightning_cnnviz.core.update_size import carried_shrink

__all__ = [
    "CARRIED_FROM",
    "DROPOUT_LAYERS",
    "HIGH_MOMENTUM",
    "LR_CUT",
    "Settings",
    "read_settings",
    "settings_of",
]

DROPOUT_LAYERS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)

CARRIED_FROM = 1e-2
"""A SGD ``weight_decay`` from which its momentum's carry counts in ``decay_per_step``."""


@dataclass(frozen=True)
class Settings:
    """The run's settings at one moment (``None``: not known).

    Attributes:
        lr: the learning rate now (of the first optimiser's ``main_group``).
        lr_initial: the rate a scheduler started from (``initial_lr``), else the rate at
            the start of training where known, else ``lr``.
        weight_decay: that group's weight decay.
        decay_per_step: ``lr * weight_decay``, the share of each weight that weight decay
            takes off per step where it is decoupled from the gradient's scale (SGD,
            AdamW, ``decoupled_weight_decay=True``); ``None`` elsewhere (Adam's L2). Under
            SGD with momentum ``m`` the momentum carries about ``(1 - dampening) / (1 - m)``
            times it (``update_size.carried_shrink``: exactly, never past
            ``1 - sqrt(m)``), counted where ``weight_decay`` is ``CARRIED_FROM`` or more, 20x a
            usual SGD decay (counted always, a rate far too high, SGD warmed up to 4.0 at
            the usual 5e-4, read as a decay too strong: hunt 60).
        dropout: the largest dropout probability among the model's dropout modules.
        grad_clip: the trainer's ``gradient_clip_val`` (``None``: no clipping).
        clip_algorithm: the trainer's ``gradient_clip_algorithm`` by name (``"norm"``,
            ``"value"``; ``None``: not given).
        bn_momentum: the smallest ``momentum`` among the model's BatchNorm layers that keep
            running statistics (``None``: none, or a cumulative average, ``momentum=None``).
        momentum: that group's ``momentum`` (SGD, RMSprop) or first beta (Adam and its kin):
            how much of the past gradients each update carries.
        cyclic_lr: whether a scheduler of the run raises the rate again and again (warm
            restarts, cyclic): a rise is then its cycle, never a warm-up.
        eps: that group's ``eps`` (Adam and its kin; ``None``: none).
        half_weights: whether the model's weights are float16 (``precision="16-true"``).
        warmup: whether a scheduler of the run warms the rate up (``OneCycleLR``, a rising
            ``LinearLR``, one named for a warmup; inside a ``SequentialLR`` too).
        hooked: the model's modules whose own gradients pass through a hook
            (``gradient_hooked``): what the optimiser steps on is what the hook returns.
        lr_peak: the rate a one-cycle schedule warms up to (its ``max_lr``; its
            ``initial_lr`` is where the warm-up starts), else ``None``.
        maximize: the optimisers with a parameter group set ``maximize=True`` holding the
            weights of the model's layers (they climb the loss they are handed: right for
            a negated objective only). One holding only the model's own parameters (an
            adversary's perturbation, ``self.delta``) climbs it by design (setups hunt 36:
            told "drop the flag" for adversarial training, where the rate cut 1000x was
            the cause).
        dampening: that group's SGD ``dampening`` (``None``: none): a share of each
            gradient its momentum leaves out, which shrinks the step as much.
        lr_top: the highest rate among the first optimiser's groups (``fastest_group``):
            what a divergence reads, a rate raised on a small group included; ``lr`` where
            there is one group.
        lr_top_initial: that group's ``initial_lr`` (else ``lr_top``).
        lr_default: the rate the optimiser's class takes by default (Adadelta 1.0, Adam
            1e-3; ``None``: none given), against which a rate is small.
    """

    lr: float | None = None
    lr_initial: float | None = None
    weight_decay: float | None = None
    decay_per_step: float | None = None
    dropout: float | None = None
    grad_clip: float | None = None
    bn_momentum: float | None = None
    momentum: float | None = None
    cyclic_lr: bool = False
    clip_algorithm: str | None = None
    eps: float | None = None
    half_weights: bool = False
    warmup: bool = False
    hooked: tuple[str, ...] = ()
    lr_peak: float | None = None
    maximize: tuple[str, ...] = ()
    dampening: float | None = None
    lr_top: float | None = None
    lr_top_initial: float | None = None
    lr_default: float | None = None


def _warms_up(scheduler: Any) -> bool:
    """Whether ``scheduler`` raises the rate at the start (a warmup).

    Example::

        >>> opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
        >>> _warms_up(torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=5))
        True
    """
    name = type(scheduler).__name__
    if name == "OneCycleLR" or "warmup" in name.lower():
        return True
    if name == "LinearLR":
        return scheduler.start_factor < scheduler.end_factor
    return any(_warms_up(s) for s in getattr(scheduler, "_schedulers", ()))


_CYCLIC = ("CosineAnnealingWarmRestarts", "CyclicLR")  # schedulers that raise the rate again
LR_CUT = 10
"""A learning rate this many times below the one set has been cut (a scheduler): updates
that small explain a model that stalls, and never units silenced by too large a step."""
HIGH_MOMENTUM = 0.99
"""A momentum (or Adam's first beta) this high carries 100 or more past gradients in each
update: held out, SGD at 0.999 climbed from a train loss of 0.25 to 1.27 in three epochs."""


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):  # a tensor lr on another device, a schedule object
        return None


def _first_beta(betas: Any) -> Any:
    """Adam's first beta (its momentum) from ``betas``: a pair, or one number kept as it is.

    Example::

        >>> _first_beta((0.9, 0.999)), _first_beta(0.9), _first_beta(None), _first_beta(())
        (0.9, 0.9, None, None)
    """
    if isinstance(betas, tuple | list):
        return betas[0] if betas else None
    if isinstance(betas, torch.Tensor):
        return betas.flatten()[0] if betas.numel() else None
    return betas


def read_settings(
    optimizers: Sequence[Any],
    model: nn.Module,
    grad_clip: Any = None,
    start_lr: float | None = None,
    schedulers: Sequence[Any] = (),
    clip_algorithm: Any = None,
) -> Settings:
    """The ``Settings`` of ``optimizers`` (Lightning's ``trainer.optimizers``) and ``model``.

    ``grad_clip``: the trainer's ``gradient_clip_val`` (0 or ``None``: no clipping);
    ``clip_algorithm``: its ``gradient_clip_algorithm`` (an enum or a name).
    ``start_lr``: the rate read when training started, the start where no scheduler
    recorded ``initial_lr`` (``ReduceLROnPlateau`` sets none: stepped per batch, it cut
    a rate 0.05 -> 5e-9 within 21 steps, unseen). ``schedulers``: the run's (Lightning's
    ``trainer.lr_scheduler_configs``' ``scheduler``), read for ``cyclic_lr`` and ``warmup``.

    Example::

        >>> net = nn.Linear(2, 2)
        >>> opt = torch.optim.SGD(net.parameters(), lr=5e-9)  # cut by a plateau scheduler
        >>> [read_settings([opt], net, start_lr=s).lr_initial for s in (None, 0.05)]
        [5e-09, 0.05]
    """
    lr = initial = decay = per_step = momentum = eps = None
    optimizer = optimizers[0] if optimizers else None
    group = main_group(optimizer)
    if group is not None:
        lr = _number(group.get("lr"))
        initial = _number(group.get("initial_lr", lr if start_lr is None else start_lr))
        decay = _number(group.get("weight_decay"))
        momentum = _number(group.get("momentum", _first_beta(group.get("betas"))))
        eps = _number(group.get("eps"))
        decoupled = isinstance(optimizer, torch.optim.SGD | torch.optim.AdamW)
        if (
            lr is not None
            and decay is not None
            and (decoupled or group.get("decoupled_weight_decay"))
        ):
            per_step = lr * decay
            if isinstance(optimizer, torch.optim.SGD) and decay >= CARRIED_FROM and momentum:
                # the momentum buffer carries the decay (1 - d) / (1 - m) times (hunt 71: SGD 0.1,
                # momentum 0.9, `weight_decay=0.08`, 8% a step, at 18% val against 88.7%,
                # unnamed at 0.8%); a usual decay not, so that a rate far too high is not
                # read as one (hunt 60: SGD warmed up to 4.0 at 5e-4)
                per_step = carried_shrink(per_step, group)
    rates = [float(m.p) for m in model.modules() if isinstance(m, DROPOUT_LAYERS)]
    clip = _number(grad_clip) or None  # Lightning's 0 means no clipping
    momenta = [  # statistics kept but no longer tracked (the flag off mid-run): frozen, 0
        float(m.momentum) if m.track_running_stats else 0.0
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase)
        and m.running_mean is not None
        and (m.momentum is not None or not m.track_running_stats)
    ]
    cyclic = any(type(s).__name__ in _CYCLIC for s in schedulers)
    algorithm = getattr(clip_algorithm, "value", clip_algorithm)  # Lightning's enum, or a name
    first = next(model.parameters(), None)
    return Settings(
        lr, initial, decay, per_step, max(rates) if rates else None, clip,
        min(momenta) if momenta else None, momentum, cyclic,
        str(algorithm) if algorithm is not None else None, eps,
        first is not None and first.dtype == torch.float16,
        any(_warms_up(s) for s in schedulers),
        tuple(name for name, m in model.named_modules() if gradient_hooked(m))
        + ((GLOBAL_HOOK,) if global_backward_hooked() else ()),
        _number(group.get("max_lr")) if group is not None else None,
        _maximizing(optimizers, model),
        _number(group.get("dampening")) if group is not None else None,
        *_top_rates(optimizer, lr, initial), _default_rate(optimizer),
    )  # fmt: skip


def _default_rate(optimizer: Any) -> float | None:
    """The ``lr`` default of ``optimizer``'s class (``None``: none, or not a number)."""
    try:
        default = inspect.signature(type(optimizer).__init__).parameters["lr"].default
    except (KeyError, TypeError, ValueError):
        return None
    return float(default) if isinstance(default, int | float) and default > 0 else None


def _top_rates(optimizer: Any, lr: float | None, initial: float | None) -> tuple[Any, Any]:
    """``(lr_top, lr_top_initial)``: the ``fastest_group``'s (the main group's if level)."""
    fast = fastest_group(optimizer)
    top = _number(fast.get("lr")) if fast is not None else None
    if top is None or top == lr:
        return lr, initial
    return top, _number(fast.get("initial_lr", top))


def _maximizing(optimizers: Sequence[Any], model: nn.Module) -> tuple[str, ...]:
    """The optimisers with a ``maximize=True`` group holding a weight of the model's layers."""
    layered = {id(p) for child in model.children() for p in child.parameters()}

    def climbs(group: dict) -> bool:
        return group.get("maximize") is True and any(id(p) in layered for p in group["params"])

    return tuple(
        type(o).__name__ for o in optimizers if any(map(climbs, getattr(o, "param_groups", [])))
    )


def settings_of(trainer: Any, model: nn.Module, start_lr: float | None = None) -> Settings:
    """``read_settings`` of a run now: ``trainer``'s optimisers, clipping and schedulers."""
    return read_settings(
        trainer.optimizers, model, trainer.gradient_clip_val, start_lr,
        [c.scheduler for c in trainer.lr_scheduler_configs], trainer.gradient_clip_algorithm,
    )  # fmt: skip
