"""Reading autograd's graph behind a tensor: the steps it was computed by.

Nothing here knows about Lightning. Grad-CAM tells a layer's call that follows from its
first (a module reused down the network) from a parallel one (a flipped copy's) by
whether one's input comes from the other's output (``comes_from``); the probe-call check
finds reentrant activation checkpointing among the steps behind the scores
(``core.probe_call.checkpoints_reentrant``); the gradient passes to the input images ask
whether the scores depend on them at all (``reaches``: a stem under ``torch.no_grad()``
cuts them off).

Example::

    >>> import torch
    >>> a = torch.ones(2, requires_grad=True) * 2
    >>> comes_from(a.exp() + 1, a), comes_from(torch.ones(2, requires_grad=True) * 3, a)
    (True, False)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = ["MAX_NODES", "comes_from", "nodes_behind", "reaches"]

MAX_NODES = 100_000  # graph nodes read at most: a model's graph, not an unbounded walk


def nodes_behind(tensor: Tensor, limit: int = MAX_NODES) -> Iterator[Any]:
    """The autograd nodes ``tensor`` was computed by, each once (at most ``limit``).

    Example::

        >>> import torch
        >>> x = torch.ones(2, requires_grad=True)
        >>> [type(n).__name__ for n in nodes_behind((x * 2).sum())]
        ['SumBackward0', 'MulBackward0', 'AccumulateGrad']
    """
    nodes, seen = [tensor.grad_fn], set()
    while nodes and len(seen) < limit:
        node = nodes.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        yield node
        nodes.extend(n for n, _ in node.next_functions)


def comes_from(tensor: Tensor, earlier: Tensor) -> bool:
    """Whether ``tensor`` is computed from ``earlier`` (its graph holds ``earlier``'s step)."""
    target = earlier.grad_fn
    return target is not None and any(node is target for node in nodes_behind(tensor))


def reaches(output: Tensor, leaf: Tensor) -> bool:
    """Whether a gradient of ``output`` flows back to ``leaf`` (a tensor needing its gradient).

    Exact where a graph walk is not (``allow_unused``: autograd says where ``leaf`` takes no
    part); the graph is kept for the caller's own gradient pass. Nothing writes ``.grad``.

    Example::

        >>> x = torch.ones(2, requires_grad=True)
        >>> w = torch.ones(2, requires_grad=True)
        >>> reaches((x * w).sum(), x), reaches(x.detach() * w, x), reaches(x.detach(), x)
        (True, False, False)
    """
    if not output.requires_grad:
        return False
    (grad,) = torch.autograd.grad(output.sum(), [leaf], allow_unused=True, retain_graph=True)
    return grad is not None
