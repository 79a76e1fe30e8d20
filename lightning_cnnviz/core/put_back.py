"""What puts one piece of state back as it was, after a read that may have changed it.

Nothing here knows about Lightning. ``core.random_state`` walks what a dataset or a
collate holds and keeps one of these for each piece it finds: a container's entries, a
closure cell, an object's attributes, a user class's own plain values, a small tensor's
or array's values. Each puts back the same objects (a user's references stay valid) and
writes only where something changed.

Example::

    >>> class Reads:
    ...     calls = 0
    >>> r = Reads()
    >>> put = attributes_as_now(r, [])
    >>> r.calls += 1  # an attribute added on the object
    >>> put()
    >>> r.calls
    0
"""

from __future__ import annotations

import collections
import itertools
import operator
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "PLAIN",
    "all_of",
    "array_as_now",
    "attribute_names",
    "attributes_as_now",
    "cell_as_now",
    "class_values_as_now",
    "contents_as_now",
    "filled",
]

PLAIN = (int, float, bool, str, bytes, type(None), np.generic)  # put back by the slot holding them
_GONE = object()


def class_values_as_now(cls: type) -> Callable[[], None]:
    """What puts back a user class's own plain values (a counter kept on the class)."""
    if cls.__module__.split(".")[0] in ("builtins", "torch", "numpy", "lightning"):
        return lambda: None
    kept = {n: v for n, v in vars(cls).items() if isinstance(v, PLAIN) and not n.startswith("__")}

    def put() -> None:
        for name, value in kept.items():
            if vars(cls).get(name, _GONE) is not value:
                setattr(cls, name, value)

    return put


def array_as_now(x: Tensor | np.ndarray) -> Callable[[], None]:
    """What puts a tensor's or NumPy array's values back (in place, only where they changed)."""
    copy = x.copy() if isinstance(x, np.ndarray) else x.detach().clone()

    def put() -> None:
        if isinstance(x, np.ndarray):
            if not np.array_equal(x, copy, equal_nan=x.dtype.kind in "fc"):
                np.copyto(x, copy)
        elif not torch.equal(x, copy):
            with torch.no_grad():
                x.copy_(copy)

    return put


def contents_as_now(value: Any) -> Callable[[], None]:
    """What puts a list's, dict's, deque's or set's entries back (the same objects).

    Only where they changed, and a dict's by item (``Counter.update`` would count the
    pairs: setups hunt 38, a label counter corrupted at every put-back).

    Example::

        >>> counts = collections.Counter({"a": 2})
        >>> put = contents_as_now(counts)
        >>> counts["b"] += 1
        >>> put()
        >>> counts
        Counter({'a': 2})
    """
    entries = list(value.items()) if isinstance(value, dict) else list(value)

    def unchanged() -> bool:
        now = list(value.items()) if isinstance(value, dict) else list(value)
        if len(now) != len(entries):
            return False
        if isinstance(value, dict):  # the same key and value objects, pair by pair
            return all(map(operator.is_, itertools.chain.from_iterable(now),
                           itertools.chain.from_iterable(entries)))  # fmt: skip
        return all(map(operator.is_, now, entries))

    def put() -> None:
        if unchanged():
            return
        if isinstance(value, list):
            value[:] = entries
            return
        value.clear()
        if isinstance(value, dict):
            for key, item in entries:
                value[key] = item
        elif isinstance(value, collections.deque):
            value.extend(entries)
        else:
            value.update(entries)

    return put


def cell_as_now(cell: types.CellType) -> Callable[[], None]:
    """What puts a closure cell's value back."""
    kept = cell.cell_contents

    def put() -> None:
        if cell.cell_contents is not kept:
            cell.cell_contents = kept

    return put


def attribute_names(obj: Any) -> list[str] | None:
    """An object's attribute names: its ``__dict__``'s, or its slots' (``None``: neither)."""
    if hasattr(obj, "__dict__") and isinstance(vars(obj), dict):
        return list(vars(obj))
    slots = [n for c in type(obj).__mro__ for n in getattr(c, "__slots__", ())]
    slots = [slots] if isinstance(slots, str) else slots
    return [n for n in slots if n not in ("__dict__", "__weakref__")] or None


def attributes_as_now(obj: Any, names: list[str]) -> Callable[[], None]:
    """What puts ``obj``'s attributes ``names`` back (the same objects; those added since removed).

    Attributes not in ``names`` but there now (torch's bookkeeping, a ``trainer``) are
    left as they are.
    """
    kept = {n: getattr(obj, n) for n in names if hasattr(obj, n)}
    own = vars(obj) if isinstance(getattr(obj, "__dict__", None), dict) else None
    present = set(own) if own is not None else set()

    def put() -> None:
        if own is not None:
            for name in [n for n in own if n not in present]:
                delattr(obj, name)
        for name, value in kept.items():
            if getattr(obj, name, _GONE) is not value:
                object.__setattr__(obj, name, value)  # frozen dataclasses too

    return put


def filled(cell: types.CellType) -> bool:
    """Whether a closure cell holds a value (an empty one raises on reading)."""
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def all_of(puts: list[Callable[[], None]]) -> Callable[[], None] | None:
    """One call making each of ``puts`` in turn (``None`` where there is none).

    Example::

        >>> done = []
        >>> all_of([lambda: done.append(1), lambda: done.append(2)])()
        >>> done, all_of([]) is None
        ([1, 2], True)
    """
    if not puts:
        return None
    if len(puts) == 1:
        return puts[0]

    def put_each() -> None:
        for put in puts:
            put()

    return put_each
