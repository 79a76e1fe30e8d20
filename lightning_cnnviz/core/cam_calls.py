"""Which call of a layer Grad-CAM reads, where ``forward`` calls it more than once.

Nothing here knows about Lightning. A module reused down the network (one ``MaxPool2d``
after every block) is read at its deepest call, as Captum reads a module; a call whose
input does not come from the read one (a parallel branch: test-time augmentation's
flipped copy, a Siamese pair's second image) is passed over, and ``parallel_calls`` says
how many were, for the monitor to tell.

Example::

    >>> import torch
    >>> from torch import nn
    >>> pool = nn.MaxPool2d(2)
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), pool, pool, nn.Flatten())
    >>> parallel_calls(net, pool, torch.zeros(1, 1, 8, 8))  # a chain: none passed over
    0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from lightning_cnnviz.core.capture import first_tensor, not_a_forward
from lightning_cnnviz.core.grad_graph import comes_from
from lightning_cnnviz.core.own_hooks import own_hook
from lightning_cnnviz.core.probe_pass import probe_mode

__all__ = ["layer_gradients", "parallel_calls"]


def layer_gradients(
    score: Callable[[Tensor], Tensor], layer: nn.Module, x: Tensor
) -> tuple[Tensor, Tensor]:
    """The score's gradient w.r.t. the layer's output, and that output, at the call read.

    As Captum's ``compute_layer_gradients_and_eval`` (a copy of the output stands in for
    it downstream, so in-place steps after the layer leave it as it was), at the last
    call of the chain that starts at the module's first call: a module reused down the
    network (one ``MaxPool2d`` after every block) is read at its deepest call, as Captum
    reads it; a call whose input does not come from the read one, a parallel branch, is
    passed over. A ``forward`` averaging over a flipped copy (test-time augmentation)
    runs the layer on the mirror last, whose map, laid over the image as given, was
    mirrored (setups hunt 29: 0.013 of the CAM on the digit against 0.25).
    """
    kept: list[Tensor] = []
    handle = layer.register_forward_hook(own_hook(_chain_reader(kept, [])))
    try:
        scores = score(x)
    finally:
        handle.remove()
    if not kept:
        raise ValueError("the selected layer is not called by the model's forward()")
    (grads,) = torch.autograd.grad(scores.sum(), kept[-1])
    return grads, kept[-1].detach()


def _chain_reader(kept: list[Tensor], passed: list[int]) -> Callable[..., Any]:
    """A forward hook keeping the chain of calls from the first (``layer_gradients``).

    Each call whose input comes from the last kept output is kept (a copy stands in for
    its output); the index of each call passed over, a parallel one, goes to ``passed``.
    """
    calls = [0]

    def read(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        if not_a_forward(output):
            return None
        calls[0] += 1
        if kept and not _input_from(args, kept[-1]):
            passed.append(calls[0] - 1)
            return None
        if not isinstance(output, Tensor):  # a tuple whose first tensor is the map
            kept.append(first_tensor(output))
            return None
        kept.append(output.clone())
        return kept[-1]

    return read


def parallel_calls(model: nn.Module, layer: nn.Module, x: Tensor) -> int:
    """How many calls of ``layer`` in one forward pass Grad-CAM passes over as parallel.

    Example::

        >>> conv = nn.Conv2d(1, 2, 3)
        >>> net = nn.Sequential(conv, nn.Flatten(), nn.LazyLinear(2))
        >>> class Flipped(nn.Module):
        ...     def forward(self, x):
        ...         return (net(x) + net(x.flip(-1))) / 2
        >>> parallel_calls(net, conv, torch.zeros(1, 1, 5, 5))
        0
        >>> parallel_calls(Flipped(), conv, torch.zeros(1, 1, 5, 5))
        1
    """
    kept: list[Tensor] = []
    passed: list[int] = []
    with probe_mode(model, grad=True):
        handle = layer.register_forward_hook(own_hook(_chain_reader(kept, passed)))
        try:
            model(x.detach().clone().requires_grad_(x.is_floating_point()))
        finally:
            handle.remove()
    return len(passed)


def _input_from(args: tuple[Any, ...], earlier: Tensor) -> bool:
    """Whether the first tensor of a call's ``args`` is computed from ``earlier``."""
    try:
        return comes_from(first_tensor(args), earlier)
    except TypeError:  # no tensor in the arguments
        return False
