"""The random generators a run draws from: their state read and put back.

Nothing here knows about Lightning. ``GENERATORS``: Python's, NumPy's (both APIs) and
torch's generator types; ``generator_state`` / ``set_generator_state`` read and put back
one of them; ``global_rng_kept`` leaves the global ones (torch's CPU and CUDA, Python's,
NumPy's) as they were around a block. ``random_state.rng_untouched`` builds on them for
the generators a dataset or collate holds.

Example::

    >>> g = torch.Generator().manual_seed(0)
    >>> state = generator_state(g)
    >>> _ = torch.rand(1, generator=g)
    >>> set_generator_state(g, state)
    >>> torch.equal(generator_state(g), state)
    True
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "GENERATORS",
    "class_generators",
    "generator_state",
    "global_rng_kept",
    "set_generator_state",
]

GENERATORS = (random.Random, np.random.Generator, np.random.RandomState, torch.Generator)


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


def class_generators(objects: Iterable[Any]) -> list[Any]:
    """The random generators (``GENERATORS``) the classes of ``objects`` hold, each once.

    Shared by every instance, so no object's own attributes (setups hunt 70: noise drawn
    from a module class's generator trained differently with the monitors).

    Example::

        >>> class Noisy:
        ...     rng = torch.Generator().manual_seed(0)
        >>> len(class_generators([Noisy(), Noisy()]))
        1
    """
    found: dict[int, Any] = {}
    for cls in {type(obj) for obj in objects}:
        for klass in cls.__mro__:
            for value in vars(klass).values():
                if isinstance(value, GENERATORS):
                    found[id(value)] = value
    return list(found.values())
