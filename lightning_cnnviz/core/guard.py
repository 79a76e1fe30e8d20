"""A guard for passes that differentiate w.r.t. inputs only: ``param.grad`` must stay as it was.

Activation maximisation and adversarial attacks take ``torch.autograd.grad``
w.r.t. their own input tensors, which never writes ``param.grad``. The guard
checks that promise cheaply (the ``.grad`` object and its version counter, no
copy) and fails loudly if a model's forward (or a library) breaks it.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Linear(2, 1)
    >>> x = torch.ones(1, 2, requires_grad=True)
    >>> with grads_untouched(net):
    ...     (g,) = torch.autograd.grad(net(x).sum(), [x])
    >>> net.weight.grad is None
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["grads_untouched"]


@contextlib.contextmanager
def grads_untouched(model: nn.Module) -> Iterator[None]:
    """Raise ``RuntimeError`` if a ``param.grad`` of ``model`` is replaced or written in the block.

    A ``.grad`` that appeared is set back to ``None`` before raising.
    """
    before = [(p, p.grad, None if p.grad is None else p.grad._version) for p in model.parameters()]
    yield
    changed = []
    for param, grad, version in before:
        if param.grad is not grad or (grad is not None and grad._version != version):
            changed.append(param)
            if grad is None:
                param.grad = None
    if changed:
        raise RuntimeError(
            f"{len(changed)} parameter gradient(s) were written during a pass that must "
            "only differentiate w.r.t. its inputs (does the model call backward() itself?)"
        )
