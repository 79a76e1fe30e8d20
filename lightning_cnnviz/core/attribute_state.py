"""Putting a Python object's own attributes back, with what they hold.

A model's modules and a datamodule keep state of their own beside torch's: a random
generator (test-time noise drawn in eval mode), a list a ``forward`` appends to, a tensor
attribute updated in place, a counter in a ``SimpleNamespace`` or dataclass. A monitor's
pass or a call of the user's hook out of the run's order moves them, and the run then
trains differently (setups hunt 23). ``attributes_as_now`` takes what puts them back;
``attributes_kept`` wraps a block in it. ``core.model_state.kept_state`` does the same for
every module of a model, beside its buffers.

Example::

    >>> from types import SimpleNamespace
    >>> class Counter:
    ...     def __init__(self):
    ...         self.seen = SimpleNamespace(calls=0, log=[])
    >>> c = Counter()
    >>> with attributes_kept(c):
    ...     c.seen.calls += 1
    ...     c.seen.log.append("probe")
    ...     c.extra = 1
    >>> c.seen.calls, c.seen.log, hasattr(c, "extra")
    (0, [], False)
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from lightning_cnnviz.core.generators import GENERATORS, generator_state, set_generator_state
from lightning_cnnviz.core.put_back import all_of, contents_as_now

__all__ = [
    "KEPT_NUMEL",
    "attributes_as_now",
    "attributes_kept",
    "held_inside",
    "put_back_attributes",
]

KEPT_NUMEL = 1 << 26
"""Buffers and tensor attributes up to this many elements are put back (statistics,
observers, power-iteration vectors, contrastive queues: MoCo's 65536 x 128); a larger
buffer is taken for a constant table no forward writes (a mask, an embedding), and said
once where a pass wrote it."""


@contextlib.contextmanager
def attributes_kept(*objects: Any) -> Iterator[None]:
    """Each object's own attributes, and what they hold, as they were on leaving.

    For a user's hook the monitors call outside the run's own order (a datamodule's
    ``val_dataloader`` that counts its calls or keeps what it built).

    Example::

        >>> class Data:
        ...     calls = 0
        ...     def loader(self):
        ...         self.calls += 1
        ...         self.cached = [1, 2]
        >>> data = Data()
        >>> with attributes_kept(data):
        ...     data.loader()
        >>> data.calls, hasattr(data, "cached")
        (0, False)
    """
    puts = [attributes_as_now(obj) for obj in objects if hasattr(obj, "__dict__")]
    try:
        yield
    finally:
        for put in puts:
            put()


def attributes_as_now(obj: Any) -> Callable[[], None]:
    """What puts ``obj``'s own attributes (not torch's or Lightning's) and their insides back."""
    own = _torch_attributes()
    now = vars(obj)
    before = {k: v for k, v in now.items() if k not in own}
    insides = [put for v in before.values() if (put := _inside(v))]

    def put() -> None:
        put_back_attributes(now, before, own)
        for inside in insides:
            inside()

    return put


_GONE = object()


def put_back_attributes(
    now: dict[str, object], before: dict[str, object], own: frozenset[str] = frozenset()
) -> None:
    """An object's own attributes (``now``, its ``__dict__``) as ``before``, those added removed.

    ``own``: names left as they are (torch's and Lightning's, on a module).

    A ``forward`` that keeps ``self._feats = out`` for a hook of the module's (a memory bank
    updated in ``on_train_batch_end``, after the monitors' probe passes) then reads the
    training batch's, not the probe's.
    """
    for name in [k for k in now if k not in before and k not in own]:
        del now[name]
    for name, value in before.items():
        if now.get(name, _GONE) is not value:
            now[name] = value


def held_inside(value: object) -> Callable[[], None] | None:
    """What puts a tensor written in place, or a random generator's state, back (else None)."""
    return _inside(value, nested=True) if isinstance(value, (Tensor, *GENERATORS)) else None


def _inside(value: object, nested: bool = False) -> Callable[[], None] | None:
    """What puts ``value``'s insides back as they are now, or None (nothing to keep).

    A random generator's state; a list's, deque's, dict's or set's entries (the same
    objects, one level down) and the states of the generators among them (a tuple's
    too); a tensor attribute (no buffer, no parameter) written in place, up to
    ``KEPT_NUMEL`` elements; the attributes of a ``SimpleNamespace`` or a dataclass
    instance, and what they hold in turn (``nested``: one level only); the generators an
    object of another class holds as attributes (setups hunt 55: a generator in a list,
    or held by a helper object, advanced by every pass of the monitors).
    """
    if isinstance(value, GENERATORS):
        with contextlib.suppress(Exception):  # a generator without state (SystemRandom)
            state = generator_state(value)
            return lambda: set_generator_state(value, state)
        return None
    if isinstance(value, Tensor):
        if isinstance(value, nn.Parameter) or nn.parameter.is_lazy(value):
            return None
        if value.numel() > KEPT_NUMEL:
            return None
        version, copy = value._version, value.detach().clone()

        def put_tensor() -> None:
            if value._version != version:  # written in place
                with torch.no_grad():
                    value.copy_(copy)

        return put_tensor
    if isinstance(value, tuple) and all(type(v) in _PLAIN for v in value):
        return None  # a kernel size, a stride: nothing to keep
    if isinstance(value, list | collections.deque | dict | set | tuple):
        entries = list(value.values() if isinstance(value, dict) else value)
        puts = [] if isinstance(value, tuple) else [contents_as_now(value)]
        return all_of(puts + _generator_states(entries))
    if nested:
        return None
    if isinstance(value, types.SimpleNamespace):
        names = list(vars(value))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in dataclasses.fields(value)]  # slots or not
    elif isinstance(getattr(value, "__dict__", None), dict) and not isinstance(value, _NOT_HELPERS):
        # a helper object of the user's (a noise sampler holding its generator): only the
        # generators it holds, its other attributes are its own business
        return all_of(_generator_states(vars(value).values()))
    else:
        return None
    before = {name: getattr(value, name) for name in names}
    inner = [put for v in before.values() if (put := _inside(v, nested=True))]

    def put_attrs() -> None:
        for name, kept in before.items():
            if getattr(value, name, None) is not kept:
                object.__setattr__(value, name, kept)  # frozen dataclasses too
        for put in inner:
            put()

    return put_attrs


_NOT_HELPERS = (type, types.ModuleType, types.FunctionType, types.MethodType, nn.Module)


_PLAIN = frozenset({int, float, bool, str, bytes, type(None)})  # no generator: skipped fast


def _generator_states(values: Iterable[object]) -> list[Callable[[], None]]:
    """What puts back the state of each random generator among ``values``."""
    return [
        put
        for v in values
        if type(v) not in _PLAIN and isinstance(v, GENERATORS) and (put := _inside(v))
    ]


@functools.cache
def _torch_attributes() -> frozenset[str]:
    """The attributes ``nn.Module`` and ``LightningModule`` keep for themselves (left alone)."""
    from lightning.pytorch import LightningModule

    return frozenset(vars(nn.Module())) | frozenset(vars(LightningModule()))
