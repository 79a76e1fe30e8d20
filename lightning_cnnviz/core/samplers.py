"""Which items a loader reads: its sampler, and the indices it holds where it holds some.

Nothing here knows about Lightning or iterates a loader (that draws from the global
generator). ``loader_sampler`` finds the sampler choosing a loader's items (its batch
sampler's where one was given); ``sampled_indices``, the item positions a sampler
restricted to part of a dataset reads; ``sampler_known``, whether the items a loader
reads are known at all (a sampler of one's own may hold them under any name).

Example::

    >>> from torch.utils.data import DataLoader, SubsetRandomSampler
    >>> loader = DataLoader(range(10), sampler=SubsetRandomSampler([4, 5]))
    >>> sampled_indices(loader_sampler(loader), 10), sampler_known(loader, 10)
    ([4, 5], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

__all__ = [
    "MASS",
    "first_loader",
    "loader_order",
    "loader_sampler",
    "read_indices",
    "sampled_indices",
    "sampler_known",
    "weighted_reach",
]


def loader_sampler(loader: Any) -> Any:
    """The sampler choosing a loader's items: its batch sampler's where one was given.

    A loader given ``batch_sampler=BatchSampler(SubsetRandomSampler(...))`` keeps a
    default ``SequentialSampler`` over the whole set as its ``sampler`` (setups hunt 36: a
    train/val split by batch samplers read as the training set itself).

    Example::

        >>> from torch.utils.data import BatchSampler, DataLoader, SubsetRandomSampler
        >>> picks = SubsetRandomSampler([1, 2])
        >>> loader = DataLoader(range(4), batch_sampler=BatchSampler(picks, 2, False))
        >>> loader_sampler(loader) is picks
        True
    """
    batching = getattr(loader, "batch_sampler", None)
    if batching is None:
        return getattr(loader, "sampler", None)
    if isinstance(batching, BatchSampler):
        return batching.sampler
    return getattr(batching, "sampler", batching)  # a batch sampler of one's own


def first_loader(loaders: Any) -> Any:
    """The first of a list or tuple of loaders (Lightning's several training loaders), else it."""
    return loaders[0] if isinstance(loaders, list | tuple) and loaders else loaders


def _unwrapped(sampler: Any) -> Any:
    """The sampler Lightning's ``DistributedSamplerWrapper`` shards under DDP, else ``sampler``.

    Its ``dataset`` holds the run's own sampler as ``_sampler`` (setups hunt 26); a plain
    ``DistributedSampler`` over the set is returned as it is.
    """
    if isinstance(sampler, DistributedSampler):
        inner = getattr(sampler.dataset, "_sampler", None)
        return sampler if inner is None else inner
    return sampler


def sampler_known(loader: Any, size: int) -> bool:
    """Whether the items a loader reads are known: its whole set, or ``sampled_indices``'."""
    sampler = _unwrapped(loader_sampler(loader))
    whole = (SequentialSampler, RandomSampler, WeightedRandomSampler, DistributedSampler)
    return isinstance(sampler, whole) or sampled_indices(sampler, size) is not None


def sampled_indices(sampler: Any, size: int) -> list[int] | None:
    """The item indices a sampler restricted to part of a dataset of ``size`` reads, else None.

    A ``SubsetRandomSampler``, a sampler of one's own that holds its ``indices`` (the
    usual ``SubsetSequentialSampler``), or a plain sequence of indices passed as
    ``sampler=`` (a list, a range, a 1-D integer tensor: ``DataLoader`` takes any
    iterable), or a ``WeightedRandomSampler`` weighting some items 0 (those it never
    draws left out). ``None`` for samplers over the whole set (``SequentialSampler``,
    ``RandomSampler``, ``WeightedRandomSampler``) or whose indices are not item positions.
    Under DDP, Lightning's ``DistributedSamplerWrapper`` is read through to the sampler
    it shards (each rank's probe drawn from the whole split).

    Example::

        >>> from torch.utils.data import SequentialSampler, SubsetRandomSampler
        >>> sampled_indices([4, 5, 6], 10), sampled_indices(SubsetRandomSampler([1, 2]), 10)
        ([4, 5, 6], [1, 2])
        >>> sampled_indices(SequentialSampler(range(10)), 10) is None
        True
    """
    if isinstance(sampler, DistributedSampler):  # Lightning's wrapper of the run's sampler
        inner = _unwrapped(sampler)
        return None if inner is sampler else sampled_indices(inner, size)
    if isinstance(sampler, SubsetRandomSampler):
        held = sampler.indices
    elif isinstance(sampler, WeightedRandomSampler):
        drawn = torch.as_tensor(sampler.weights) > 0
        if len(drawn) != size or bool(drawn.all()):
            return None
        held = drawn.nonzero().flatten().tolist()
    elif isinstance(sampler, list | tuple | range) or (
        isinstance(sampler, Tensor) and sampler.dim() == 1
    ):
        held = sampler
    elif isinstance(sampler, Sampler) and not isinstance(
        sampler, SequentialSampler | RandomSampler | WeightedRandomSampler
    ):
        held = getattr(sampler, "indices", None)
    else:
        return None
    if isinstance(held, Tensor):
        if held.dim() != 1 or held.dtype.is_floating_point or held.dtype == torch.bool:
            return None
        held = held.tolist()
    if not isinstance(held, list | tuple | range):
        return None
    indices = [int(i) for i in held if isinstance(i, Integral) and not isinstance(i, bool)]
    if len(indices) != len(held) or not all(0 <= i < size for i in indices):
        return None
    return indices


def _fixed_order(sampler: Any, size: int) -> bool:
    """Whether ``sampler`` hands its items in one order every epoch, read: in order or a list."""
    if isinstance(sampler, SequentialSampler):
        return True
    listed = isinstance(sampler, list | tuple | range | Tensor)
    return listed and sampled_indices(sampler, size) is not None


def read_indices(loader: Any, size: int) -> Sequence[int] | None:
    """The positions of the items a loader ever reads, where not all ``size`` (else None).

    ``sampled_indices``' (a sampler over part of the set), less the last part-batch a
    loader reading in a fixed order drops every epoch (``drop_last=True``): the same items,
    never read (hunt 41: a rare class's 40 digits stored last, cut every epoch, never
    trained, and nothing told). In the loader's order.

    Example::

        >>> from torch.utils.data import DataLoader
        >>> read_indices(DataLoader(range(10), 4, drop_last=True), 10)
        range(0, 8)
        >>> read_indices(DataLoader(range(10), 4, sampler=[9, 8, 7, 1], drop_last=True), 10)
        [9, 8, 7, 1]
        >>> read_indices(DataLoader(range(10), 4, shuffle=True, drop_last=True), 10) is None
        True
    """
    sampler = loader_sampler(loader)
    indices = sampled_indices(sampler, size)
    read = range(size) if indices is None else indices
    cut = len(read) - dropped_tail(loader, size)
    return read[:cut] if 0 < cut < len(read) else indices


def dropped_tail(loader: Any, size: int) -> int:
    """How many items a loader reading in a fixed order drops every epoch (its last part-batch).

    0 where it shuffles, keeps its last batch, or batches by a batch sampler of one's own.

    Example::

        >>> from torch.utils.data import DataLoader
        >>> dropped_tail(DataLoader(range(10), 4, drop_last=True), 10)
        2
    """
    batching = getattr(loader, "batch_sampler", None)
    sampler = loader_sampler(loader)
    if not (isinstance(batching, BatchSampler) and batching.drop_last):
        return 0
    if not _fixed_order(sampler, size):
        return 0
    held = sampled_indices(sampler, size)
    return (size if held is None else len(held)) % batching.batch_size


def loader_order(loader: Any, size: int) -> tuple[Tensor | None, bool]:
    """The order a loader reads the items of its dataset's view in, where it is fixed.

    ``size`` counts the items of the view ``run_datasets.find_dataset`` gives: those the
    loader reads (``read_indices``), held in its order. Returns ``(order, known)``:
    ``(0..size-1, True)`` for a ``SequentialSampler``, a ``DistributedSampler`` that does
    not shuffle (Lightning's, under DDP, of an unshuffled loader) or a plain sequence of
    indices passed as the sampler; ``(None, True)`` for torch's random samplers;
    ``(None, False)`` for a sampler of one's own, whose order nobody can read (setups hunt
    41: an own in-order sampler, a list, `shuffle=False` under DDP, each left the
    class-order check silent while listing it as run).

    Example::

        >>> from torch.utils.data import DataLoader
        >>> loader_order(DataLoader(range(4)), 4)[0].tolist()
        [0, 1, 2, 3]
        >>> loader_order(DataLoader(range(4), shuffle=True), 4)
        (None, True)
    """
    sampler = _unwrapped(loader_sampler(loader))  # a batch sampler's own sampler too
    if isinstance(sampler, DistributedSampler):
        return (None, True) if sampler.shuffle else (torch.arange(size), True)
    if isinstance(sampler, RandomSampler | WeightedRandomSampler | SubsetRandomSampler):
        return None, True
    if _fixed_order(sampler, len(loader.dataset)):  # the view holds a list's items in order
        return torch.arange(size), True
    return None, False


# the share of a weighted sampler's draws its reach holds: 5% left to the items that class
# balancing weighs least leaves half a class of 10% of the draws in, however common it is
MASS = 0.95


def weighted_reach(sampler: WeightedRandomSampler) -> list[int] | None:
    """The items holding ``MASS`` of a weighted sampler's draws (``None``: not read).

    Weights near 0 on most items leave them undrawn as surely as 0 (hunt 37: 1e-7 on 90%
    of a set, about 200 digits ever read; hunt 39: 3e-3 on them, 97% of the draws from
    200 digits, val 85-89% against 95%).

    Example::

        >>> w = torch.cat([torch.ones(10), torch.full((90,), 1e-7)])
        >>> len(weighted_reach(WeightedRandomSampler(w, 100)))
        10
    """
    weights = torch.as_tensor(sampler.weights, dtype=torch.float64).flatten()
    if weights.numel() == 0 or not bool((weights >= 0).all()) or float(weights.sum()) <= 0:
        return None
    order = weights.argsort(descending=True)
    held = weights[order].cumsum(0) / weights.sum()
    return order[: int(torch.searchsorted(held, MASS)) + 1].tolist()
