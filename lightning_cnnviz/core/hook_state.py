"""What the user's hook callables hold, put back after a monitor's pass.

Nothing here knows about Lightning. A monitor's probe pass calls the hooks a model's
modules hold, and a hook that counts its calls, keeps a schedule or fills a bank then acts
on other training batches (setups hunts 69 and 70: a pruning schedule on the hook object,
in a helper object a closure holds, in a ``functools.partial``'s arguments; a MoCo-style
queue written in place; records in a ``defaultdict(list)``: weights differed).
``user_callables`` finds the hooks that are the user's (not the package's, torch's,
Lightning's or Captum's); ``callables_as_now`` takes what puts back what they hold: a
callable object's attributes, a closure's cells, a partial's arguments, and, ``DEPTH``
levels down, the containers, tensors, generators and helper objects among them. A
module-level ``global`` a hook writes is not reached: such a hook skips the passes with
``in_probe_pass()``.

Example::

    >>> import collections
    >>> class Schedule:
    ...     def __init__(self):
    ...         self.calls, self.seen = 0, collections.defaultdict(list)
    >>> def hook_of(schedule):
    ...     def hook(*args):
    ...         schedule.calls += 1
    ...         schedule.seen["conv"].append(schedule.calls)
    ...     return hook
    >>> Schedule.__module__ = "__main__"  # the user's (a doctest's takes the package's name)
    >>> schedule = Schedule()
    >>> hook = hook_of(schedule)
    >>> put = callables_as_now([hook])
    >>> hook(), hook()
    (None, None)
    >>> put()
    >>> schedule.calls, dict(schedule.seen)
    (0, {})
"""

from __future__ import annotations

import collections
import functools
import os
import sys
import types
from collections.abc import Callable, Iterable

from torch import nn

from lightning_cnnviz.core.attribute_state import held_inside, put_back_attributes
from lightning_cnnviz.core.put_back import all_of, contents_as_now

__all__ = ["DEPTH", "callables_as_now", "user_callables", "user_code"]

DEPTH = 3  # levels below a hook's own state: a helper's dict of lists of tensors
_LIBRARIES = ("lightning_cnnviz", "torch", "lightning", "pytorch_lightning", "captum")


def user_callables(hooks: Iterable[object]) -> list[object]:
    """The objects behind ``hooks`` that are the user's and hold state of their own.

    A function, a callable object, a ``functools.partial``, the object a bound method
    belongs to; not a module (kept as modules are), nor the package's, torch's,
    Lightning's or Captum's.
    """
    found = []
    for hook in hooks:
        owner = hook.__self__ if isinstance(hook, types.MethodType) else hook
        if not _library(owner) and not isinstance(owner, nn.Module):
            found.append(owner)
    return found


def user_code(hooks: Iterable[object]) -> bool:
    """Whether any of ``hooks`` runs the user's code (a method of the user's module too).

    Such a hook may write a weight at any call (a pruning mask at its tenth): a pass then
    copies every parameter it may write (``kept_parameters.parameter_copies``).
    """
    for hook in hooks:
        fn = hook.func if isinstance(hook, functools.partial) else hook
        fn = fn.__func__ if isinstance(fn, types.MethodType) else fn
        if not _library(fn if hasattr(fn, "__code__") else type(fn)):
            return True
    return False


def callables_as_now(owners: Iterable[object]) -> Callable[[], None]:
    """What puts back what the user's hook callables (``user_callables``) hold."""
    puts: list[Callable[[], None]] = []
    for owner in owners:
        if isinstance(owner, functools.partial):
            puts += [p for p in (_held(owner.args), _held(owner.keywords)) if p]
            owner = owner.func
        if isinstance(owner, types.FunctionType):
            puts += [_cell_as_now(cell) for cell in owner.__closure__ or ()]
        if (put := _attributes(owner, DEPTH)) is not None:
            puts.append(put)
    return all_of(puts) or _nothing


def _library(owner: object) -> bool:
    """Whether ``owner`` is the package's, torch's, Lightning's or Captum's.

    A function by the file its code is in (a notebook's own function keeps the name of the
    module it runs in); a class by its module; an object by its class's.
    """
    code = getattr(owner, "__code__", None)
    if code is None:
        where = owner.__module__ if isinstance(owner, type) else type(owner).__module__
        return (where or "").split(".")[0] in _LIBRARIES
    roots = [sys.modules[name].__file__ for name in _LIBRARIES if name in sys.modules]
    folders = [os.path.dirname(root) + os.sep for root in roots if root]
    return code.co_filename.startswith(tuple(folders))


def _cell_as_now(cell: types.CellType) -> Callable[[], None]:
    """What puts a closure cell's value, and what it holds, back."""
    try:
        value = cell.cell_contents
    except ValueError:  # empty until the enclosing function assigns it
        return lambda: None
    inner = _held(value)

    def put() -> None:
        if cell.cell_contents is not value:
            cell.cell_contents = value
        if inner is not None:
            inner()

    return put


def _held(value: object, depth: int = DEPTH) -> Callable[[], None] | None:
    """What puts back what ``value`` holds, ``depth`` levels down (None: nothing to keep)."""
    if depth < 0:
        return None
    if (put := held_inside(value)) is not None:  # a tensor, a generator
        return put
    if isinstance(value, list | collections.deque | dict | set):
        entries = list(value.values() if isinstance(value, dict) else value)
        return all_of([contents_as_now(value), *_all_held(entries, depth - 1)])
    if isinstance(value, tuple):
        return all_of(_all_held(value, depth - 1))
    return _attributes(value, depth)


def _attributes(value: object, depth: int) -> Callable[[], None] | None:
    """A helper object's attributes as they are now, and what they hold (its class the user's)."""
    own = getattr(value, "__dict__", None)
    if not isinstance(own, dict) or not own or _skipped(value):
        return None
    before = dict(own)
    inner = _all_held(before.values(), depth - 1)

    def put() -> None:
        put_back_attributes(own, before)
        for each in inner:
            each()

    return put


def _skipped(value: object) -> bool:
    """Objects whose state is not a hook's own: modules, classes, functions, libraries'."""
    kinds = (nn.Module, type, types.ModuleType, types.FunctionType, types.MethodType)
    return isinstance(value, kinds) or _library(value)


def _all_held(values: Iterable[object], depth: int) -> list[Callable[[], None]]:
    return [put for v in values if (put := _held(v, depth)) is not None]


def _nothing() -> None:
    """Where the user's hooks hold nothing to put back."""
