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

import contextlib
import functools
import itertools
import random
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "GENERATORS",
    "generator_state",
    "global_rng_kept",
    "held_generators",
    "restorable",
    "rng_untouched",
    "set_generator_state",
]

_DEPTH = 4  # attribute levels searched below a dataset (a Subset's dataset's transform's rng)
_WIDTH = 64  # entries of one list or dict searched (a file list holds no generator)
GENERATORS = (random.Random, np.random.Generator, np.random.RandomState, torch.Generator)
_LEAVES = (Tensor, np.ndarray, str, bytes, int, float, bool, type(None), types.ModuleType, type)
_PLAIN = (int, float, bool, str, type(None))  # attribute values put back after a read
_SMALL = 4096  # tensors of at most this many entries are put back (running statistics)


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
    """What ``_held`` found: generators, slots to put back, and whether all can be."""

    def __init__(self) -> None:
        self.generators: list[Any] = []
        self.slots: list[tuple[Any, Any, Any]] = []  # (container, key, value) to put back
        self.tensors: list[tuple[Tensor, Tensor]] = []  # (a small tensor, its copy)
        self.opaque = False  # state it cannot put back (an iterator), or beyond its reach

    def put_back(self) -> None:
        for container, key, value in self.slots:
            if isinstance(container, types.CellType):
                if container.cell_contents is not value:
                    container.cell_contents = value
            elif container[key] is not value:
                container[key] = value
        with torch.no_grad():
            for tensor, copy in self.tensors:
                if not torch.equal(tensor, copy):
                    tensor.copy_(copy)


def _held(owners: Sequence[Any]) -> _Held:
    """The generators ``owners`` hold, and the plain values of the objects on the way.

    Plain values: an attribute, a dict or list entry, a closure's cell holding a number,
    a string or ``None`` (a read counter that drives a curriculum), and small tensors
    (running statistics updated in place). Looked for in attributes, lists, dicts,
    closures, ``functools.partial``'s arguments and bound methods' objects (setups hunt
    36: a collate's generator in a closure or a partial, a counter in a dict, running
    statistics in tensors moved by the probes' reads). ``opaque``: an iterator on the way
    (an ``itertools.count``), whose state cannot be put back, or objects past ``_DEPTH``.
    """
    held = _Held()
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if isinstance(obj, Tensor) and obj.numel() <= _SMALL and not obj.requires_grad:
            if id(obj) not in seen and not obj.is_inference():
                seen.add(id(obj))
                held.tensors.append((obj, obj.detach().clone()))
            return
        if isinstance(obj, _LEAVES) or id(obj) in seen:
            return
        if depth > _DEPTH:
            held.opaque = True
            return
        seen.add(id(obj))
        if isinstance(obj, GENERATORS):
            held.generators.append(obj)
            return
        if hasattr(obj, "__next__"):  # an iterator, a generator, a counter: no state to read
            held.opaque = True
            return
        entries: Any
        if isinstance(obj, list):
            held.slots.extend((obj, i, v) for i, v in enumerate(obj[:_WIDTH]) if _plain(v))
            entries = obj
        elif isinstance(obj, tuple | set | frozenset):
            entries = obj
        elif isinstance(obj, functools.partial):
            entries = [obj.func, *obj.args, *obj.keywords.values()]
        elif isinstance(obj, types.FunctionType):
            cells = [c for c in obj.__closure__ or () if _filled(c)]
            held.slots.extend((c, None, c.cell_contents) for c in cells if _plain(c.cell_contents))
            entries = [c.cell_contents for c in cells]
        elif callable(obj) and not hasattr(obj, "__dict__") and hasattr(obj, "__self__"):
            entries = [obj.__self__]  # a bound method: what its object holds
        elif isinstance(obj, Mapping):
            if isinstance(obj, dict):
                items = itertools.islice(obj.items(), _WIDTH)
                held.slots.extend((obj, k, v) for k, v in items if _plain(v))
            entries = obj.values()
        else:
            attrs = getattr(obj, "__dict__", {})
            held.slots.extend((attrs, k, v) for k, v in attrs.items() if _plain(v))
            entries = attrs.values()
        for entry in itertools.islice(entries, _WIDTH):  # a million file names: the first few
            visit(entry, depth + 1)

    for owner in owners:
        visit(owner, 0)
    return held


def _plain(value: Any) -> bool:
    return isinstance(value, _PLAIN)


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def restorable(*owners: Any) -> bool:
    """Whether a read of ``owners`` can be undone by ``rng_untouched`` (nothing opaque held).

    Example::

        >>> import itertools
        >>> restorable(lambda x: x), restorable({"calls": itertools.count()})
        (True, False)
    """
    return not _held(owners).opaque


def generator_state(generator: Any) -> Any:
    """The state of one of ``GENERATORS`` (Python's, NumPy's or torch's)."""
    if isinstance(generator, random.Random):
        return generator.getstate()
    if isinstance(generator, np.random.Generator):
        return generator.bit_generator.state
    return generator.get_state()  # RandomState, torch.Generator


def set_generator_state(generator: Any, state: Any) -> None:
    """Put ``generator_state``'s ``state`` back into ``generator``."""
    if isinstance(generator, random.Random):
        generator.setstate(state)
    elif isinstance(generator, np.random.Generator):
        generator.bit_generator.state = state
    else:
        generator.set_state(state)


@contextlib.contextmanager
def global_rng_kept(devices: Sequence[Any] = ()) -> Iterator[None]:
    """Leave the global generators as they were: torch's (CPU, CUDA ``devices``), Python's, NumPy's.

    A ``forward`` may draw from any of them, in eval mode too (``np.random.rand`` in a
    noise layer): a probe pass that moved one would shift the run's later draws.

    Example::

        >>> before = np.random.get_state()[1][:3].tolist()
        >>> with global_rng_kept():
        ...     _ = np.random.rand(), random.random(), torch.rand(1)
        >>> np.random.get_state()[1][:3].tolist() == before
        True
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=list(devices)):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


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
