"""Reading a model without changing it: parametrizations held still, buffers put back.

Two things change a model merely by reading it or passing images through it, in eval
mode as well: a parametrized weight recomputes itself on every access, and
``spectral_norm``'s parametrization runs a power-iteration step (updating its ``_u`` /
``_v`` buffers) on each access in training mode; quantization-aware training's observers
(``FakeQuantize``) update their statistics on every forward, whatever the mode. Either
way the next training step differs from the one a run without monitors takes.
``kept_state`` wraps every event and probe pass: parametrizations in eval mode for its
duration, and each buffer as it was afterwards. ``weight_param`` gives the leaf parameter
behind a (parametrized) weight, whose ``.grad`` training fills.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from torch.nn.utils.parametrizations import spectral_norm
    >>> conv = spectral_norm(nn.Conv2d(1, 2, 3))
    >>> u = conv.parametrizations.weight[0]._u.clone()
    >>> with kept_state(conv):
    ...     _ = conv.weight  # training mode: a power-iteration step, undone
    >>> torch.equal(conv.parametrizations.weight[0]._u, u), conv.training
    (True, True)
    >>> weight_param(conv) is conv.parametrizations.weight.original
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = ["KEPT_NUMEL", "kept_state", "weight_param"]

KEPT_NUMEL = 1 << 22
"""Buffers up to this many elements are put back (statistics, observers, power-iteration
vectors); a larger one is a constant table no forward writes (a mask, an embedding)."""


_KEEPING: set[int] = set()  # models inside a ``kept_state`` now: a nested one is a no-op


@contextlib.contextmanager
def kept_state(model: nn.Module) -> Iterator[None]:
    """Parametrizations in eval mode inside, every buffer as it was on leaving.

    Re-entrant: a probe pass inside an event keeps nothing twice (the outer one restores).
    """
    if id(model) in _KEEPING:
        yield
        return
    lists = [m for m in model.modules() if isinstance(m, parametrize.ParametrizationList)]
    flags = [(m, m.training) for p in lists for m in p.modules()]
    saved = [
        (module, name, buffer, buffer.detach().clone())
        for module in model.modules()
        for name, buffer in module._buffers.items()
        if isinstance(buffer, Tensor) and buffer.numel() <= KEPT_NUMEL
    ]
    _KEEPING.add(id(model))
    try:
        for p in lists:
            p.eval()
        yield
    finally:
        _KEEPING.discard(id(model))
        for module, flag in flags:
            module.training = flag
        with torch.no_grad():
            for module, name, buffer, copy in saved:
                module._buffers[name] = buffer  # the same tensor: optimisers, DDP hold it
                buffer.copy_(copy)


def weight_param(module: nn.Module) -> Tensor | None:
    """The leaf parameter behind ``module.weight``, without computing a parametrized one.

    A parametrized weight is computed on access (its ``.grad`` stays empty); its largest
    original (``original``, or ``weight_norm``'s direction ``original1``) carries the
    gradient. So does ``torch.nn.utils.prune``'s ``weight_orig`` (Lightning's
    ``ModelPruning``): the pruned weight is the original times a mask.

    Example::

        >>> from torch.nn.utils import prune
        >>> layer = prune.l1_unstructured(nn.Linear(4, 2), "weight", amount=0.5)
        >>> weight_param(layer) is layer.weight_orig
        True
    """
    if parametrize.is_parametrized(module, "weight"):
        originals = list(module.parametrizations.weight.parameters(recurse=False))  # type: ignore[union-attr]
        return max(originals, key=Tensor.numel) if originals else None
    params = dict(module.named_parameters(recurse=False))  # a ScriptModule's too
    weight = params.get("weight_orig", params.get("weight"))
    return weight if isinstance(weight, Tensor) else getattr(module, "weight", None)
