"""Hooks the package sets on a user's modules, left behind in no copy of them.

Nothing here knows about Lightning. A monitor's hook sits in a module's hook dict while a
training step runs (the first layer read at the first batches, the layers captured just
before an event), so a copy the step makes holds it too: ``deepcopy(self.net)`` for a
mean teacher kept three of the package's hooks after the fit, run at every teacher
forward, and ``torch.save(self.net)`` in the step failed to pickle the hook's closure
(setups hunt 39). ``own_hook`` wraps a hook so that a copy of its module, deep or
pickled, holds a stand-in that does nothing and removes itself the first time it runs.

Example::

    >>> import copy
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Linear(2, 2)
    >>> handle = net.register_forward_hook(own_hook(lambda m, a, o: print("seen")))
    >>> _ = net(torch.zeros(1, 2))
    seen
    >>> twin = copy.deepcopy(net)
    >>> _ = twin(torch.zeros(1, 2))  # nothing seen, and the stand-in is gone
    >>> len(twin._forward_hooks), len(net._forward_hooks)
    (0, 1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["own_hook"]

_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_BY_ID = (  # the sets and dicts torch keeps beside them, keyed by the hook's id
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks_with_kwargs",
)


def own_hook(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` as a module hook whose copies (``deepcopy``, pickling) are inert stand-ins."""
    return _Own(fn)


class _Own:
    """A hook of the package's: calls ``fn``; copied, it becomes a ``_StandIn``."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> _StandIn:
        return _StandIn()

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (_StandIn, ())


class _StandIn:
    """A copied module's stand-in for a package hook: does nothing and removes itself."""

    def __call__(self, module: Any, *_: Any, **__: Any) -> None:
        for name in _HOOKS:
            hooks = getattr(module, name, None) or {}
            for key in [k for k, hook in hooks.items() if hook is self]:
                del hooks[key]  # torch iterates a snapshot of the dict: safe mid-call
                for kept in _BY_ID:
                    by_id = getattr(module, kept, None)
                    if isinstance(by_id, dict):
                        by_id.pop(key, None)
                    elif isinstance(by_id, set):
                        by_id.discard(key)
