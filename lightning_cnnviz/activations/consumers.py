"""Which function reads a layer's output: a functional activation told by its name.

A model without activation modules (``torch.tanh(self.conv(x))``, ``F.gelu(...)``) is
watched at its conv/BN/linear outputs (``sites.fallback_layers``), read as the input of a
ReLU: a unit never positive is "dead". That holds for ``F.relu``; for ``torch.tanh`` or
``F.gelu`` a negative input is no dead unit. ``first_consumers`` runs one pass under a
``TorchFunctionMode`` and names the first torch function each watched layer's output is
passed to; ``consumer_kind`` says what it computes.

Example::

    >>> import torch
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.a, self.b = nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)
    ...     def forward(self, x):
    ...         return self.b(torch.tanh(self.a(x))).relu()
    >>> net = Net()
    >>> found = first_consumers({"a": net.a, "b": net.b}, lambda: net(torch.zeros(1, 1, 6, 6)))
    >>> found, consumer_kind(found["a"]), consumer_kind(found["b"])
    ({'a': 'tanh', 'b': 'relu'}, 'saturating', 'rectifier')
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from lightning_cnnviz.core.own_hooks import own_hook

__all__ = ["consumer_kind", "first_consumers"]

_RECTIFIERS = {"relu", "relu_", "relu6", "threshold", "threshold_"}
_SATURATING = {"tanh", "tanh_", "sigmoid", "sigmoid_", "hardtanh", "hardtanh_", "hardsigmoid",
               "softsign", "logsigmoid"}  # fmt: skip
_LEAKY = {"gelu", "silu", "silu_", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu",
          "mish", "hardswish", "softplus", "prelu", "rrelu"}  # fmt: skip
# reads of a tensor's form, not a computation on it
_LOOKS = {"dim", "size", "numel", "__get__", "stride", "is_contiguous", "is_floating_point",
          "is_complex", "__len__", "ndimension", "nelement", "element_size", "data_ptr",
          "get_device", "__format__", "__repr__", "__hash__"}  # fmt: skip
_NORMS = {"batch_norm", "group_norm", "layer_norm", "instance_norm", "rms_norm",
          "local_response_norm"}  # fmt: skip


def consumer_kind(name: str | None) -> str | None:
    """``"rectifier"``, ``"saturating"`` or ``"leaky"`` for an activation function's name.

    ``"linear"`` for a normalisation (``F.batch_norm``, ``F.group_norm``, ...): it re-centres
    its input, so the sign of a conv's output before it says nothing about dead units.
    ``None`` for anything else (a pooling, a sum, a reshape: what follows is unknown).
    """
    if name in _RECTIFIERS:
        return "rectifier"
    if name in _SATURATING:
        return "saturating"
    if name in _NORMS:
        return "linear"
    return "leaky" if name in _LEAKY else None


class _FirstUse(TorchFunctionMode):
    """Records the first torch function each watched tensor is passed to."""

    def __init__(self) -> None:
        super().__init__()
        self.watched: dict[int, tuple[str, Tensor]] = {}  # the tensor kept: ids stay unique
        self.first: dict[str, str] = {}

    def watch(self, name: str, _module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, Tensor) and name not in self.first:
            self.watched[id(output)] = (name, output)

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: Any = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        for arg in itertools.chain(args, kwargs.values()):
            held = self.watched.get(id(arg)) if isinstance(arg, Tensor) else None
            name = getattr(func, "__name__", "")  # F.batch_norm reads `input.dim()` first
            new = held is not None and held[1] is arg and held[0] not in self.first
            if new and name not in _LOOKS:
                self.first[held[0]] = name
        return func(*args, **kwargs)


def first_consumers(layers: Mapping[str, nn.Module], run: Callable[[], Any]) -> dict[str, str]:
    """``{layer: name of the first function its output went to}`` over one pass ``run``.

    ``run`` performs the pass (the caller sets probe mode); layers whose output went to
    no torch function (a module call, or nothing) are left out.
    """
    recorder = _FirstUse()
    handles = [
        module.register_forward_hook(own_hook(functools.partial(recorder.watch, name)))
        for name, module in layers.items()
    ]
    try:
        with recorder, torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return recorder.first
