"""The module globals a function's code reads that hold the user's own state.

Nothing here knows about Lightning. A collate (or what it builds: a dataclass batch whose
``__post_init__`` standardises by a running mean) may keep state in an object at module
level, which a call moves. ``read_globals`` finds those objects, so that what reads the
data without side effects (``random_state.rng_untouched``) puts them back too: objects of
any kind (a generator, a counter, a metric: what cannot be put back makes the reader leave
the collate alone); modules, builtins and the code installed libraries define are left
out; a user's class is followed into its own functions (``methods``).

Example::

    >>> import types
    >>> stats = types.SimpleNamespace(n=0)
    >>> module = {"stats": stats, "types": types}
    >>> collate = types.FunctionType(compile("stats.n += 1", "<user>", "exec"), module)
    >>> read_globals(collate) == [stats]
    True
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
import types
from typing import Any

__all__ = ["methods", "read_globals", "users"]


def read_globals(fn: types.FunctionType) -> list[Any]:
    """The user's objects, functions and classes' functions that ``fn``'s code names globally."""
    names = _global_names(fn.__code__)
    found: list[Any] = []
    for name in names:
        if name not in fn.__globals__:
            continue  # a builtin
        value = fn.__globals__[name]
        if isinstance(value, types.ModuleType):
            continue
        if isinstance(value, type | types.FunctionType):  # code: the user's own only
            found += methods(value) if isinstance(value, type) else [value] if users(value) else []
        else:  # an object of any kind: a generator, a counter, a metric (setups hunt 73)
            found.append(value)
    return found


def methods(cls: type) -> list[types.FunctionType]:
    """The functions the user's classes in ``cls``'s order define (whose globals a call reads).

    Example::

        >>> methods(dict)  # a library's class: none followed
        []
    """
    found = [v.fget if isinstance(v, property) else v for c in cls.__mro__ if users(c)
             for v in vars(c).values()]  # fmt: skip
    return [f for f in found if isinstance(f, types.FunctionType)]


@functools.cache  # read at every item a probe reads: the code does not change
def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """The names ``code`` (and the functions inside it) read as globals or attributes of them."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _global_names(const)
    return tuple(dict.fromkeys(names))


def users(value: Any) -> bool:
    """Whether ``value`` (a function, a class, or an object by its class) is the user's code.

    Not the standard library's or an installed package's, nor this package's.

    Example::

        >>> import collections
        >>> users(collections.OrderedDict()), users(print), users(users)
        (False, False, False)
    """
    code = getattr(value, "__code__", None)
    if isinstance(value, types.FunctionType) and code is not None:
        where: str | None = code.co_filename
    else:
        cls = value if isinstance(value, type) else type(value)
        module = sys.modules.get(getattr(cls, "__module__", "") or "")
        if module is None:
            return False
        where = getattr(module, "__file__", None)
        if where is None:  # a notebook's or `python -c`'s own classes, or a built-in module
            return module.__name__ == "__main__"
    if where.startswith("<"):  # code compiled from a string, a notebook cell
        return True
    return not os.path.realpath(where).startswith(_installed())


@functools.cache
def _installed() -> tuple[str, ...]:
    """The folders of the standard library, installed packages and this package."""
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    folders = {os.path.realpath(paths[k]) for k in keys if k in paths}
    folders.add(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # ours
    return tuple(folder + os.sep for folder in folders)
