"""Hooks the package sets on a user's modules, left behind in no copy of them.

Nothing here knows about Lightning. A monitor's hook sits in a module's hook dict while a
training step runs (the first layer read at the first batches, the layers captured just
before an event), so a copy the step makes holds it too: ``deepcopy(self.net)`` for a
mean teacher kept three of the package's hooks after the fit, run at every teacher
forward, and ``torch.save(self.net)`` in the step failed to pickle the hook's closure
(setups hunt 39). ``own_hook`` wraps a hook so that a copy of its module, deep or
pickled, holds a stand-in that does nothing and removes itself the first time it runs;
``drop_copied_hooks`` takes them out of deep copies (a copy of a copy too) at the end of
the training or validation batch that made them, run or not: ``torch.jit.script``
compiles every hook a module holds, and ``torch.compile(fullgraph=True)`` cannot trace
one that edits its module's hooks (setups hunt 42: a teacher copied in the step failed
both after the fit).

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
    >>> twin = copy.deepcopy(net)
    >>> drop_copied_hooks()  # at the end of the batch: gone, never run
    >>> len(twin._forward_hooks), len(net._forward_hooks)
    (0, 1)
"""

from __future__ import annotations

import gc
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["drop_copied_hooks", "own_hook"]

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
        return _StandIn(memo)

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (_StandIn, ())


class _StandIn:
    """A copied module's stand-in for a package hook: does nothing and removes itself.

    ``memo``: the ``deepcopy`` making it, whose module copies under construction (their
    attributes not set yet) are the ones it will sit in: kept weakly, for
    ``drop_copied_hooks`` (a copy the step drops at once is freed at once: setups hunt
    44, eight copies of a 100 MB model a step kept alive to the batch's end). None for an
    unpickled one.
    """

    def __init__(self, memo: dict[int, Any] | None = None) -> None:
        if memo is None:
            return
        making: list[weakref.ref[Any]] = [
            weakref.ref(m) for m in memo.values()
            if isinstance(m, nn.Module) and "_forward_hooks" not in vars(m)
        ]  # fmt: skip
        if not making:  # a module's own `__deepcopy__` copying its hook dicts, a fresh memo
            making = [weakref.ref(d) for d in memo.values() if isinstance(d, OrderedDict)]
        if making:
            _copied.append((weakref.ref(self), making))
        else:
            _unplaced.add(self)

    def __call__(self, module: Any, *_: Any, **__: Any) -> None:
        _remove(vars(module), {id(self)})

    def __deepcopy__(self, memo: dict[int, Any]) -> _StandIn:
        return _StandIn(memo)  # a copy of a copy: another stand-in, dropped alike

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return (_StandIn, ())


# the stand-ins ``deepcopy`` made since the last ``drop_copied_hooks``, with the module
# copies (or hook dicts) they may sit in, weakly; those made where neither was in the making
_copied: list[tuple[weakref.ref[_StandIn], list[weakref.ref[Any]]]] = []
_unplaced: weakref.WeakSet[_StandIn] = weakref.WeakSet()


def _remove(attributes: dict[str, Any], standins: set[int]) -> None:
    """Take the stand-ins of ids ``standins`` out of the hook dicts of a module's ``__dict__``."""
    for name in _HOOKS:
        hooks = attributes.get(name)
        if not isinstance(hooks, dict):
            continue
        for key in [k for k, hook in hooks.items() if id(hook) in standins]:
            del hooks[key]  # torch iterates a snapshot of the dict: safe mid-call
            for kept in _BY_ID:
                by_id = attributes.get(kept)
                if isinstance(by_id, dict):
                    by_id.pop(key, None)
                elif isinstance(by_id, set):
                    by_id.discard(key)


def drop_copied_hooks() -> None:
    """Take every stand-in ``deepcopy`` made since the last call out of the copy holding it.

    Each looks in the module copies that were in the making when it was made (a few: the
    copy's root and the submodules down to it), or, made by a module's own
    ``__deepcopy__`` that copies its hook dicts with a fresh memo (setups hunt 44), in
    the dicts of that memo (setups hunt 45: the heap searched for them made such a step
    4x slower). Any other is found by the garbage collector, whose search of the heap
    is kept to those (setups hunt 43: searching it for every stand-in made a step that
    copies the net 22-29x slower).
    """
    made, _copied[:] = list(_copied), []
    for standin_ref, making in made:
        standin = standin_ref()
        for held in (ref() for ref in making) if standin is not None else ():
            if isinstance(held, nn.Module):
                _remove(vars(held), {id(standin)})
            elif held is not None:  # a hook dict copied on its own
                for key in [k for k, hook in held.items() if hook is standin]:
                    del held[key]
    while _unplaced:
        standin = _unplaced.pop()
        for hooks in gc.get_referrers(standin):
            if not isinstance(hooks, dict):
                continue
            for owner in gc.get_referrers(hooks):
                if isinstance(owner, dict) and any(owner.get(n) is hooks for n in _HOOKS):
                    _remove(owner, {id(standin)})
