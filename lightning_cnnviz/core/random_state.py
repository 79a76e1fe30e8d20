"""Reading data without moving a random generator (global or a dataset's own) or a counter.

Nothing here knows about Lightning. Reading a training set's items runs its random
augmentation, which draws from the global generators (torchvision's transforms from
torch's, others from ``random`` or NumPy) or from one the dataset holds (a seeded
``np.random.default_rng`` or ``torch.Generator`` for reproducible augmentation). A
monitor that reads items moving any of them would shift every later draw of the run,
and the model would train differently with the monitors on; so would a dataset counting
its reads. ``rng_untouched`` puts them all back.

Example::

    >>> import numpy as np
    >>> class Noisy:
    ...     def __init__(self):
    ...         self.rng = np.random.default_rng(0)
    ...     def __getitem__(self, i):
    ...         return self.rng.normal()
    >>> data = Noisy()
    >>> with rng_untouched(data):
    ...     _ = data[0]
    >>> data[0] == np.random.default_rng(0).normal()  # the read left no trace
    True
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import decimal
import dis
import enum
import fractions
import functools
import itertools
import logging
import re
import types
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_cnnviz.core.code_globals import methods, read_globals, users
from lightning_cnnviz.core.generators import (
    GENERATORS,
    generator_state,
    global_rng_kept,
    set_generator_state,
)
from lightning_cnnviz.core.put_back import (
    PLAIN,
    array_as_now,
    attribute_names,
    attributes_as_now,
    cell_as_now,
    class_values_as_now,
    contents_as_now,
    filled,
)

__all__ = ["held_generators", "restorable", "rng_untouched"]

_DEPTH = 6  # attribute levels searched (a collate's dict of pipelines' transforms' values)
_WIDTH = 64  # entries of one list or dict searched (a file list holds no generator)
_LEAVES = (Tensor, np.ndarray, str, bytes, int, float, bool, complex, type(None), np.generic,
           types.ModuleType, type, torch.dtype, torch.device, types.CodeType, range, slice,
           types.BuiltinFunctionType, enum.Enum,
           # values that never change, and a logger's output, which no training reads
           # (setups hunt 39: a collate holding one was never called)
           np.dtype, re.Pattern, datetime.date, datetime.time, datetime.timedelta,
           datetime.tzinfo, decimal.Decimal, fractions.Fraction, uuid.UUID, weakref.ref,
           logging.Logger, logging.LoggerAdapter, logging.Handler)  # fmt: skip
_LONG = 1 << 16  # entries of a longer list or dict of plain values (class names) put back
# tensors and arrays of at most this many entries are put back (running statistics, a
# count per item, a small memory bank: setups hunt 39), while the copies of one read hold
# at most _COPIED entries; larger ones are taken for data nobody writes (an image set)
_SMALL, _COPIED = 1 << 20, 1 << 22


def held_generators(*owners: Any) -> list[Any]:
    """The random generators ``owners`` hold in their attributes, lists and dicts.

    Searched ``_DEPTH`` levels down (nested datasets, transforms and their parts), the first
    ``_WIDTH`` entries of each list or dict.

    Example::

        >>> class Data:
        ...     def __init__(self):
        ...         self.transform = [lambda x: x, torch.Generator()]
        >>> [type(g).__name__ for g in held_generators(Data())]
        ['Generator']
    """
    return _held(owners).generators


class _Held:
    """What ``_held`` found: generators, what puts the rest back, and whether all can be."""

    def __init__(self) -> None:
        self.generators: list[Any] = []
        self.puts: list[Callable[[], None]] = []  # each puts one object's insides back
        self.opaque = False  # state it cannot put back (an iterator), or beyond its reach
        self.copied = 0  # tensor and array entries copied to be put back

    def put_back(self) -> None:
        for put in self.puts:
            put()


def _held(owners: Sequence[Any]) -> _Held:
    """The generators ``owners`` hold, and what puts back the state on the way.

    Walked: attributes (``__dict__`` and slots, dataclasses too), lists, dicts, deques and
    sets (their entries put back as they were, the first ``_WIDTH``), closures' cells,
    ``functools.partial``'s arguments, bound methods' objects; small tensors and NumPy
    arrays are put back by value, numbers and strings by the slot holding them (setups
    hunts 36-37: a collate's generator in a closure, a partial, a dataclass with slots or
    a bound method's object; a counter in a dict or as a NumPy integer; running
    statistics in tensors or arrays; a deque of recent values: each moved by the probes'
    reads, and training differed; setups hunt 38: defaults, a function's own attributes, a
    class's counter). The user's functions, and the user's classes' methods, are followed
    into the module-level objects they read and the globals they rebind (``global n; n +=
    1``), put back too (setups hunts 72-73: a running mean, a count per item, a generator
    at module level, moved by a collate's or a dataset's reads). A larger tensor or array is
    taken for data nobody writes. Not searched: a Lightning object's ``trainer``,
    ``nn.Module``'s own bookkeeping (its submodules' and buffers' are). ``opaque``: state
    it cannot put back on the way (an iterator, a longer container, an object of no known
    kind, more than ``_OBJECTS`` objects or ``_DEPTH`` levels): a collate holding such is
    never called (``restorable``).
    """
    held = _Held()
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if isinstance(obj, _LEAVES) or id(obj) in seen:
            if isinstance(obj, Tensor | np.ndarray) and id(obj) not in seen:
                seen.add(id(obj))
                _array(obj)
            return
        if depth > _DEPTH or len(seen) > _OBJECTS:
            held.opaque = True
            return
        seen.add(id(obj))
        if isinstance(obj, GENERATORS):
            held.generators.append(obj)
            return
        if hasattr(obj, "__next__"):  # an iterator, a generator, a counter: no state to read
            held.opaque = True
            return
        for entry in itertools.islice(_entries(obj), _WIDTH):
            visit(entry, depth + 1)

    def _array(x: Tensor | np.ndarray) -> None:
        if isinstance(x, Tensor) and (x.requires_grad or x.is_inference()):
            return  # a parameter: the optimiser's; an inference tensor: nobody writes it
        if x.size == 0 if isinstance(x, np.ndarray) else x.numel() == 0:
            return
        n = x.size if isinstance(x, np.ndarray) else x.numel()
        if n > _SMALL or held.copied + n > _COPIED:
            return  # a table, an image set: taken for data nobody writes (not copied each read)
        held.copied += n
        held.puts.append(array_as_now(x))

    def _entries(obj: Any) -> Any:
        if isinstance(obj, list | dict | collections.deque | set):
            if len(obj) > _WIDTH and not _plain_entries(obj):
                held.opaque = True  # a long list of objects: its first entries searched only
            else:  # a short one, or class names or a class-to-index map (setups hunt 39)
                held.puts.append(contents_as_now(obj))
            return obj.values() if isinstance(obj, dict) else list(obj)
        if isinstance(obj, tuple | frozenset):
            return obj
        if isinstance(obj, functools.partial):
            return [obj.func, *obj.args, *obj.keywords.values()]
        if isinstance(obj, types.MethodType):
            return [obj.__self__, obj.__func__]
        if isinstance(obj, types.FunctionType):
            if written := _written_globals(obj.__code__):  # `global n; n += 1`: rebound after
                held.puts.append(_bindings_as_now(obj.__globals__, written))
            cells = [c for c in obj.__closure__ or () if filled(c)]
            held.puts.extend(cell_as_now(c) for c in cells)
            held.puts.append(attributes_as_now(obj, list(vars(obj))))  # `collate.calls += 1`
            defaults = [*(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values()]
            # and the module-level objects it reads (setups hunt 72: a running mean a batch
            # class's `__post_init__` kept at module level, moved by the probes' reads)
            own = read_globals(obj) if users(obj) else []
            return [c.cell_contents for c in cells] + defaults + list(vars(obj).values()) + own
        if isinstance(obj, Mapping):
            return obj.values()
        names = attribute_names(obj)
        if names is None:
            held.opaque = True  # an object of no known kind: its state cannot be read
            return []
        names = [n for n in names if n not in _AWAY]
        if isinstance(obj, torch.nn.Module):  # its own attributes, submodules and buffers
            names = [n for n in names if n not in _module_attributes()]
            inside = [*obj._modules.values(), *obj._buffers.values()]
        else:  # and its class's code: what it reads or binds at module level (setups hunt
            # 73: a dataset counting reads in a module's dict; a collate object's generator)
            inside = methods(type(obj))
            held.puts.append(class_values_as_now(type(obj)))  # `type(self).calls += 1`
        held.puts.append(attributes_as_now(obj, names))
        return [getattr(obj, n) for n in names if hasattr(obj, n)] + inside

    for owner in owners:
        visit(owner, 0)
    return held


_OBJECTS = 4096  # objects searched at most: more is state past the search's reach
_AWAY = frozenset({"trainer", "_trainer"})  # Lightning's objects' way back to the trainer


def _plain_entries(entries: Any) -> bool:
    """Whether a container holds at most ``_LONG`` plain values (keys too), or tuples of them.

    Judged by its first ``_SAMPLED`` keys and values: a module's table of 10,000 paths is
    read at every item a probe reads, and checking it whole cost 40x the read.
    """
    if len(entries) > _LONG:
        return False
    dict_ = isinstance(entries, dict)
    parts = (entries.keys(), entries.values()) if dict_ else (entries,)
    values = itertools.chain.from_iterable(itertools.islice(p, _SAMPLED) for p in parts)
    return all(
        isinstance(v, PLAIN) or (isinstance(v, tuple) and all(isinstance(e, PLAIN) for e in v))
        for v in values
    )


_SAMPLED = 256


@functools.cache
def _module_attributes() -> frozenset[str]:
    """The attributes ``nn.Module`` keeps for itself (its parameters, hooks, flags)."""
    return frozenset(vars(torch.nn.Module()))


@functools.cache  # read at every item a probe reads: the code does not change
def _written_globals(code: types.CodeType) -> frozenset[str]:
    """The module globals ``code`` (or a function inside it) assigns or deletes."""
    ops = ("STORE_GLOBAL", "DELETE_GLOBAL")
    names = {op.argval for op in dis.get_instructions(code) if op.opname in ops}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _written_globals(const)
    return frozenset(names)


def _bindings_as_now(module: dict[str, Any], names: frozenset[str]) -> Callable[[], None]:
    """What binds ``names`` in a module's globals to their values now (or unbinds them)."""
    missing = object()
    now = {name: module.get(name, missing) for name in names}

    def put() -> None:
        for name, value in now.items():
            if value is missing:
                module.pop(name, None)
            else:
                module[name] = value

    return put


def restorable(*owners: Any) -> bool:
    """Whether a read of ``owners`` can be undone by ``rng_untouched`` (nothing opaque held).

    Example::

        >>> import itertools
        >>> restorable(lambda x: x), restorable({"calls": itertools.count()})
        (True, False)
    """
    return not _held(owners).opaque


@contextlib.contextmanager
def rng_untouched(*owners: Any) -> Iterator[None]:
    """Leave the global random generators, and those ``owners`` hold, as they were.

    ``owners``: the datasets (or anything) read inside, whose own generators
    (``held_generators``) are put back too, and the plain values of their attributes (a
    read counter driving a curriculum: setups hunt 23, the probes' reads counted).
    """
    held = _held(owners)
    states = []
    for generator in held.generators:
        with contextlib.suppress(Exception):  # a generator without state (SystemRandom)
            states.append((generator, generator_state(generator)))
    try:
        with global_rng_kept():
            yield
    finally:
        for generator, state in states:
            set_generator_state(generator, state)
        held.put_back()
