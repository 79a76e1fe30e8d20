"""The leaf parameters behind a layer's weight: the tensors whose ``.grad`` training fills.

A parametrized weight (``torch.nn.utils.parametrize``: weight norm, spectral norm, LoRA)
is computed on every access and holds no gradient; ``torch.nn.utils.prune`` keeps the
original as ``weight_orig``; a weight that is a property may draw at random when read.
``weight_param`` gives the one leaf that stands for the weight without computing it;
``trained_leaves`` all those training moves (LoRA's two factors).

Example::

    >>> from torch.nn.utils.parametrizations import spectral_norm
    >>> conv = spectral_norm(nn.Conv2d(1, 2, 3))
    >>> weight_param(conv) is conv.parametrizations.weight.original
    True
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = ["held_by", "trained_leaves", "weight_param"]


def weight_param(module: nn.Module) -> Tensor | None:
    """The leaf parameter behind ``module.weight``, without computing a parametrized one.

    A weight that is a property is not read (setups hunt 35: a Bayes-by-backprop conv
    sampling ``mu + sigma * eps`` there drew from torch's stream when asked, and training
    was no longer bit-identical). A parametrized weight is computed on access (its
    ``.grad`` stays empty); its largest original (``original``, or ``weight_norm``'s
    direction ``original1``) carries the gradient, and where that is frozen, the largest
    trained parameter of the parametrization (a LoRA adapter's). So does
    ``torch.nn.utils.prune``'s ``weight_orig`` (Lightning's ``ModelPruning``): the pruned
    weight is the original times a mask.

    Example::

        >>> from torch.nn.utils import prune
        >>> layer = prune.l1_unstructured(nn.Linear(4, 2), "weight", amount=0.5)
        >>> weight_param(layer) is layer.weight_orig
        True
        >>> import warnings
        >>> import torch
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")  # deprecated for `parametrizations.weight_norm`
        ...     old = torch.nn.utils.weight_norm(nn.Linear(4, 2))
        >>> weight_param(old) is old.weight_v
        True
    """
    if parametrize.is_parametrized(module, "weight"):
        chain = module.parametrizations.weight  # type: ignore[union-attr]
        originals = list(chain.parameters(recurse=False))
        original = max(originals, key=Tensor.numel) if originals else None
        if original is None or original.requires_grad:
            return original
        # the original frozen and the parametrization's own parameters trained (a LoRA
        # adapter, `weight + A @ B`; setups hunt 48: told frozen while the weight moved 65%)
        trained = [p for p in chain.parameters() if p.requires_grad]
        return max(trained, key=Tensor.numel) if trained else original
    params = dict(module.named_parameters(recurse=False))  # a ScriptModule's too
    # `weight_v`: the direction of the older `torch.nn.utils.weight_norm`, whose `weight`
    # is recomputed on every forward (no leaf: reading its `.grad` warns)
    weight = params.get("weight_orig", params.get("weight", params.get("weight_v")))
    if isinstance(weight, Tensor):
        return weight
    if isinstance(inspect.getattr_static(module, "weight", None), property):
        return None  # computed on access (a sampled weight): reading it may draw at random
    weight = getattr(module, "weight", None)
    return weight if isinstance(weight, Tensor) and weight.is_leaf else None


def trained_leaves(module: nn.Module) -> list[Tensor]:
    """The leaves behind ``module.weight`` that training moves.

    ``weight_param``'s, or all of a parametrization's trained ones (LoRA's ``A`` and ``B``
    behind a frozen original).

    Example::

        >>> import torch
        >>> class LoRA(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.A = nn.Parameter(torch.randn(1, 4))
        ...         self.B = nn.Parameter(torch.zeros(2, 1))
        ...     def forward(self, w):
        ...         return w + self.B @ self.A
        >>> layer = nn.Linear(4, 2)
        >>> _ = parametrize.register_parametrization(layer, "weight", LoRA())
        >>> _ = layer.parametrizations.weight.original.requires_grad_(False)
        >>> [tuple(p.shape) for p in trained_leaves(layer)]
        [(1, 4), (2, 1)]
    """
    if parametrize.is_parametrized(module, "weight"):
        chain = module.parametrizations.weight  # type: ignore[union-attr]
        trained = [p for p in chain.parameters() if p.requires_grad]
        if len(trained) > 1:
            return trained
    leaf = weight_param(module)
    return [] if leaf is None else [leaf]


def held_by(
    optimizers: Iterable[Any] = (), groups: Iterable[Mapping[str, Any]] = (), moved: bool = False
) -> set[int]:
    """The ids of the parameters ``optimizers`` hold (or their parameter ``groups``).

    ``moved``: only those that require a gradient, the ones a step can move (setups hunt
    63: ``SGD(self.parameters())`` lists a frozen EMA teacher too, which it never steps).

    Example::

        >>> import torch
        >>> layer = torch.nn.Linear(2, 2)
        >>> held_by([torch.optim.SGD([layer.weight], lr=0.1)]) == {id(layer.weight)}
        True
        >>> held_by(groups=[{"params": [layer.bias]}]) == {id(layer.bias)}
        True
        >>> _ = layer.bias.requires_grad_(False)
        >>> held_by(groups=[{"params": [layer.bias]}], moved=True)
        set()
    """
    every = itertools.chain(groups, (g for o in optimizers for g in getattr(o, "param_groups", ())))
    return {id(p) for g in every for p in g.get("params", ()) if p.requires_grad or not moved}
