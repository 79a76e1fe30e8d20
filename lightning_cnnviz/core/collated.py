"""Datasets seen as the model gets them: through the loader's ``collate_fn``, or row by row.

Datasets of PIL images (or dicts of them) whose loader converts them in a ``collate_fn``
(an image processor, ``ToTensor`` applied to the batch) hold no input tensor that
``items.split_sample`` could find. ``collated_view`` puts such a dataset behind a view whose
items are what the model gets: one item collated alone, then taken out of its batch of
one. Datasets whose items already split are returned as they are (a mixing
``collate_fn``, MixUp or CutMix, would blend probe images with each other).
``unbatched_view``: a loader that does not batch (``batch_size=None``) over a dataset of
whole batches, read one sample at a time. Images stored otherwise than the model's
convolutions see them: ``stored_form.py``.

Example::

    >>> import torch
    >>> items = [([1.0, 2.0], 3), ([4.0, 5.0], 6)]  # lists, no tensors
    >>> collate = lambda batch: (torch.tensor([x for x, _ in batch]).view(-1, 1, 2, 1),
    ...                          torch.tensor([y for _, y in batch]))
    >>> view = collated_view(items, collate)
    >>> x, y = view[1]
    >>> tuple(x.shape), int(y), len(view)
    ((1, 2, 1), 6, 2)
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import default_collate

from lightning_cnnviz.core.item_fields import named_fields
from lightning_cnnviz.core.items import read_item, split_sample
from lightning_cnnviz.core.random_state import restorable, rng_untouched

__all__ = [
    "Collated",
    "Unbatched",
    "View",
    "collated_view",
    "source_dataset",
    "unbatched_view",
]


class View:
    """A view of ``dataset``; its other attributes (``targets``, ``classes``) the dataset's."""

    dataset: Any

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)


class Collated(View):
    """``dataset`` read through ``collate`` one item at a time."""

    def __init__(self, dataset: Any, collate: Callable[[list[Any]], Any]) -> None:
        self.dataset, self.collate = dataset, collate

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return _row(self.collate([self.dataset[index]]), 0)  # the batch of one's item


def _cached(cache: weakref.WeakKeyDictionary[Any, Any], dataset: Any, decide: Any) -> Any:
    """``decide(dataset)``, once per dataset (each time for an unhashable one).

    What is kept holds no reference to the dataset, its key (a view of it would keep
    every fit's dataset alive: setups hunt 31).
    """
    try:
        found = cache.get(dataset)
    except TypeError:  # unhashable (a list of an iterable dataset's first items)
        return decide(dataset)
    if found is None:
        found = decide(dataset)
        with contextlib.suppress(TypeError):
            cache[dataset] = found
    return found


_collated: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_unbatched: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def collated_view(dataset: Any, collate: Callable[[list[Any]], Any] | None) -> Any:
    """``dataset``, or a ``Collated`` view of it where only ``collate`` makes its items tensors.

    Decided once per dataset from its first item (read with the random generators
    untouched); a dataset without items, or one that ``collate`` does not help, stays as
    it is (the monitors then say why they cannot read it).
    """
    if collate is None or collate is default_collate or not _has_items(dataset):
        return dataset
    helps = _cached(_collated, dataset, lambda data: _collate_helps(data, collate))
    return Collated(dataset, collate) if helps else dataset


def _has_items(dataset: Any) -> bool:
    try:
        return len(dataset) > 0
    except TypeError:
        return False


CALLS = 8  # calls of a collate on one item that must agree before its values are followed


def _collate_helps(dataset: Any, collate: Callable[[list[Any]], Any]) -> bool:
    """Whether items read through ``collate`` are what the model gets, and the raw ones not.

    Where the collate makes the tensors (PIL images; HWC bytes it permutes and scales), or
    changes their values alike at every call (a normalisation: held out, setups hunt 34,
    probes on raw digits while the model trained on normalised ones, and nothing said). A
    collate that draws anew at every call (augmentation) is left to the loader: ``CALLS``
    calls must agree (a random flip agrees in 1 of 128; setups hunt 35: two calls agreed
    on one split, and its probe alone was read normalised). The calls put back the random
    generators, plain values and small tensors the dataset and the collate hold (a seeded
    generator of its own, a call counter, running statistics); a collate holding state
    they cannot put back (an iterator, state past the search's depth:
    ``random_state.restorable``) is never called (setups hunt 36: training changed).
    """
    if not restorable(collate):
        return False
    item = read_item(dataset, 0)
    try:
        raw: Tensor | None = split_sample(item)[0]
    except TypeError:
        raw = None  # not tensors (PIL images): only the collate makes them
    try:
        with rng_untouched(dataset, collate):  # put back after all: a draw differs between
            made, *again = (split_sample(_row(collate([item]), 0))[0] for _ in range(CALLS))
    except Exception:  # the collate needs a real batch, or yields no image either
        return False
    # tensors as the model gets them: the collate is left to the loader; else PIL images,
    # or HWC uint8 arrays the collate permutes and scales
    if raw is None or raw.shape != made.shape or raw.dtype != made.dtype:
        return True
    return not torch.equal(raw, made) and all(torch.equal(made, x) for x in again)


class Unbatched(View):
    """A dataset whose items are whole batches (a loader with ``batch_size=None``).

    Seen one sample at a time: item ``i`` is row ``i % per`` of batch ``i // per``.
    """

    def __init__(self, dataset: Any, per: int, size: int) -> None:
        self.dataset, self.per, self.size = dataset, per, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < self.size:
            raise IndexError(index)
        return _row(self.dataset[index // self.per], index % self.per)


def _row(batch: Any, i: int) -> Any:
    """Row ``i`` of every tensor in a batch, containers kept."""
    if isinstance(batch, Tensor):
        return batch[i] if batch.dim() else batch
    if isinstance(batch, Mapping):
        return {k: _row(v, i) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(_row(v, i) for v in batch))
    if (fields := named_fields(batch)) is not None:  # a dataclass batch, its class kept
        rows = {k: _row(v, i) for k, v in fields.items()}
        try:  # a copy with the rows set, its `__init__` not run again (setups hunt 72: a
            row = copy.copy(batch)  # `__post_init__` dividing by 255 divided the probes twice)
            for name, value in rows.items():
                object.__setattr__(row, name, value)  # frozen dataclasses too
        except (TypeError, AttributeError):
            return rows
        return row
    if isinstance(batch, Sequence) and not isinstance(batch, str):
        rows = [_row(v, i) for v in batch]
        return tuple(rows) if isinstance(batch, tuple) else rows
    return batch


def unbatched_view(dataset: Any) -> Any:
    """``dataset`` seen sample by sample where its items are batches, else as it is.

    For a loader that does not batch (``batch_size=None``), which hands the model its
    dataset's items as they are: an item whose tensors share a first axis of 2 or more is
    a batch. Decided once per dataset from its first and last items.

    Example::

        >>> import torch
        >>> batches = [(torch.zeros(4, 1, 2, 2), torch.arange(4)) for _ in range(3)]
        >>> view = unbatched_view(batches)
        >>> len(view), tuple(view[5][0].shape), int(view[5][1])
        (12, (1, 2, 2), 1)
    """
    if not _has_items(dataset):
        return dataset
    batched = _cached(_unbatched, dataset, _batches)
    return Unbatched(dataset, *batched) if batched else dataset


def _batches(dataset: Any) -> tuple[int, int] | tuple[()]:
    """Samples per item and in all where the items are batches; ``()`` where they are not."""
    first = read_item(dataset, 0)
    tensors = [t for t in _tensors(first) if t.dim() >= 1]
    per = int(tensors[0].shape[0]) if tensors else 0
    if per < 2 or any(int(t.shape[0]) != per for t in tensors):
        return ()
    last = read_item(dataset, len(dataset) - 1)
    tail = [t for t in _tensors(last) if t.dim() >= 1]
    return per, (len(dataset) - 1) * per + (int(tail[0].shape[0]) if tail else per)


def _tensors(item: Any) -> list[Tensor]:
    if isinstance(item, Tensor):
        return [item]
    if (fields := named_fields(item)) is not None:  # a dataclass batch (setups hunt 72)
        item = fields
    if isinstance(item, Mapping):
        item = list(item.values())
    if isinstance(item, Sequence) and not isinstance(item, str):
        return [t for v in item for t in _tensors(v)]
    return []


def source_dataset(data: Any) -> Any:
    """The dataset itself behind a ``Collated`` or ``Unbatched`` view (else ``data``)."""
    return data.dataset if isinstance(data, View) else data
