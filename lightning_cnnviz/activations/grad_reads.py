"""The gradients read at a logging step: the producers' norms and the depth profile.

``GradReads`` keeps, from ``p.grad`` alone (nothing computed in the model, no sync), the
weight-gradient norm of each watched site's producer (logged as its ``grad_norm``) and
the depth profile: the RMS of each weight layer's weight gradient in forward order
(``grad_rms``, read by the vanishing/exploding rule, ``gradients.py``). ``take`` hands
both to ``recorder.gather`` as extras and clears them; ``split_profile`` takes the
profile back out of the gathered floats.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    >>> net(torch.ones(1, 2)).sum().backward()
    >>> reads = GradReads()
    >>> reads.read(net, producers={"1"}, depth=["0", "1"])
    >>> extras = {k: float(v) for k, v in reads.take().items()}
    >>> sorted(extras), [name for name, _ in GradReads.split_profile(extras)], list(extras)
    (['1', 'rms:0', 'rms:1'], ['0', '1'], ['1'])
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from lightning_cnnviz.core.real_values import real_values
from lightning_cnnviz.core.selection import named_layers
from lightning_cnnviz.core.weight_leaves import trained_leaves, weight_param

__all__ = ["GradReads", "frozen_head", "weight_grad_norm"]

_RMS = "rms:"  # the depth profile's keys among gather's extras (module names hold no ':')


def weight_grad_norm(module: nn.Module) -> Tensor | None:
    """L2 norm of the gradients of ``module``'s own parameters (read only), or None.

    Example::

        >>> lin = nn.Linear(2, 1, bias=False)
        >>> weight_grad_norm(lin) is None
        True
        >>> lin.weight.grad = torch.tensor([[3.0, 4.0]])
        >>> weight_grad_norm(lin).item()
        5.0
    """
    grads = [p.grad.detach() for p in module.parameters(recurse=False) if p.grad is not None]
    if not grads:
        return None
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(real_values(g)) for g in grads])
    )


def frozen_head(model: nn.Module, depth: list[str]) -> str | None:
    """The first weight layer in forward order (``depth[0]``) where its weight is frozen.

    Example::

        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
        >>> frozen_head(net, ["0", "1"]) is None
        True
        >>> _ = net[0].requires_grad_(False)
        >>> frozen_head(net, ["0", "1"])
        '0'
    """
    if not depth:
        return None
    module = named_layers(model).get(depth[0])
    weight = None if module is None else weight_param(module)
    frozen = isinstance(weight, Tensor) and not weight.requires_grad
    return depth[0] if frozen else None


class GradReads:
    """The producers' weight-gradient norms and the depth profile, until ``take``n."""

    def __init__(self) -> None:
        self.norms: dict[str, Tensor] = {}
        self.rms: dict[str, Tensor] = {}
        self.before_update = False  # read before the fit's first update

    def read(self, model: nn.Module, producers: Iterable[str], depth: list[str]) -> None:
        """Keep the weight-gradient norm of each producer and the depth profile.

        The profile: the RMS of each weight-matrix layer's weight gradient (``||g|| /
        sqrt(numel)``), in forward order. Reads ``p.grad`` only, no sync.
        """
        modules = named_layers(model)
        for name in producers:
            if name not in modules:  # renamed mid-fit: traced anew at the event
                continue
            norm = weight_grad_norm(modules[name])
            if norm is not None:
                self.norms[name] = norm
        for name in depth:
            module = modules.get(name)
            leaves = trained_leaves(module) if module is not None else []
            rms = [
                torch.linalg.vector_norm(real_values(p.grad.detach())) / p.grad.numel() ** 0.5
                for p in leaves
                if p.grad is not None and p.grad.numel()
            ]
            if rms:  # LoRA's factors: A's gradient is B's scale of the weight's (0 at first)
                self.rms[name] = rms[0] if len(rms) == 1 else torch.stack(rms).max()
            elif any(p.requires_grad for p in leaves):  # trained, yet no gradient reached it
                self.rms[name] = torch.zeros((), device=leaves[0].device)  # (a `.detach()`)

    def take(self) -> dict[str, Tensor]:
        """Both, as ``gather``'s extras (the profile's keys marked), then cleared."""
        extras = {**self.norms, **{f"{_RMS}{name}": value for name, value in self.rms.items()}}
        self.norms, self.rms = {}, {}
        return extras

    @staticmethod
    def split_profile(extras: dict[str, float]) -> list[tuple[str, float]]:
        """Take the depth profile out of ``gather``'s extras: ``[(layer, rms)]`` in order."""
        keys = [key for key in extras if key.startswith(_RMS)]
        return [(key.removeprefix(_RMS), extras.pop(key)) for key in keys]
