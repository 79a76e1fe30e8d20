"""Dataset items: where the input and the label sit, and reading them without side effects.

Nothing here knows about Lightning. ``split_sample`` splits one item (tuple, dict, a named
item such as a dataclass, or bare tensor) into input and class label (``batches.py``: a
collated batch's; ``dataset_labels.py``: every label without loading items). Class labels
are integers only: a float target (regression, soft labels) is none. ``read_item``: reading an
item runs the dataset's random augmentation, which must move no random generator
(``random_state.rng_untouched``). ``iterable_head``: an iterable dataset (no ``len``,
no ``[i]``) stands in through its first items.

Example::

    >>> import torch
    >>> split_sample((torch.zeros(1, 2, 2), torch.tensor(3)))[1]
    3
    >>> split_sample((torch.zeros(1, 2, 2), torch.tensor(0.7)))[1] is None
    True
"""

from __future__ import annotations

import contextlib
import itertools
import numbers
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_cnnviz.core.item_fields import (
    IMAGE_KEYS,
    LABEL_KEYS,
    keyed,
    named_fields,
    unnamed_input,
)
from lightning_cnnviz.core.random_state import rng_untouched

__all__ = [
    "ITERABLE_HEAD",
    "integer_dtype",
    "iterable_head",
    "label_key_misfit",
    "parts",
    "read_item",
    "split_sample",
]


def read_item(dataset: Any, index: int) -> Any:
    """``dataset[index]``, with every random generator left as it was (``rng_untouched``)."""
    with rng_untouched(dataset):
        return dataset[index]


# An iterable dataset (no ``len``, no ``[i]``) stands in through its first items, read
# once per dataset: enough for class-balanced probes, bounded in memory.
ITERABLE_HEAD = 256
_heads: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


def iterable_head(dataset: Any) -> list[Any]:
    """The first ``ITERABLE_HEAD`` items of an iterable dataset, read once (RNG untouched).

    Example::

        >>> class Stream(torch.utils.data.IterableDataset):
        ...     def __iter__(self):
        ...         return iter([(torch.zeros(1, 2, 2), i % 3) for i in range(1000)])
        >>> head = iterable_head(Stream())
        >>> len(head), head[4][1]
        (256, 1)
    """
    try:
        head = _heads.get(dataset)
    except TypeError:  # unhashable: read again each time
        head = None
    if head is None:
        with rng_untouched(dataset):
            head = list(itertools.islice(iter(dataset), ITERABLE_HEAD))
        with contextlib.suppress(TypeError):
            _heads[dataset] = head
    return head


def parts(sample: Any, label_key: Any = None) -> tuple[Any, Any]:
    """One dataset item's input and its target as stored (either may be ``None``).

    Named items are read by their fields' names, as dicts are (setups hunt 71: dataclass
    items stepped four monitors aside; a namedtuple ``(image, mask, label)`` had its mask
    read as the target); a namedtuple whose names say neither, by position.
    """
    if isinstance(sample, Tensor):
        return sample, None
    fields = named_fields(sample)
    if fields is not None and not (isinstance(label_key, int) and isinstance(sample, tuple)):
        x, y = parts(fields, label_key)
        if not isinstance(sample, tuple) or (x is not None and (y is not None or label_key)):
            return x, y
    if isinstance(sample, Mapping):
        x = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
        if isinstance(x, Mapping):  # {"inputs": {"image": x}, "label": y}: one level down
            x = parts(x)[0]
        if x is None:
            x = unnamed_input(sample)
        if label_key is not None:
            return x, keyed(sample, label_key)
        return x, next((sample[k] for k in LABEL_KEYS if k in sample), None)
    if isinstance(sample, Sequence) and not isinstance(sample, str) and sample:
        # the input first, or the first array of 2 or more dimensions: (name, image, label),
        # (index, image, label): a scalar first is an index or an id, never the input
        first = next((i for i, v in enumerate(sample) if _array(v) and v.ndim >= 2), 0)
        first = 0 if _array(sample[0]) and sample[0].ndim >= 1 else first
        if isinstance(label_key, str):  # a key of the target dict: (image, {"cls": y, ...})
            return sample[first], keyed(sample, label_key)
        at = label_key if isinstance(label_key, int) else first + 1
        return sample[first], (sample[at] if len(sample) > at else None)
    return None, None


def label_key_misfit(sample: Any, label_key: Any) -> str:
    """Why ``label_key`` finds no label in a data item, in words ("" where it does).

    Example::

        >>> x = torch.zeros(1, 2, 2)
        >>> label_key_misfit({"image": x, "label": 3}, "target")
        "is no key of the data items (their keys: 'image', 'label')"
        >>> label_key_misfit((x, 3), 5), label_key_misfit((x, {"cls": 1}), "cls")
        ('is past the 2 entries of the data items', '')
    """
    fields = named_fields(sample)
    if fields is not None and not (isinstance(label_key, int) and isinstance(sample, tuple)):
        sample = fields  # read by name, as ``parts`` reads it
    if isinstance(sample, Mapping):
        if keyed(sample, label_key) is not None:
            return ""
        return f"is no key of the data items (their keys: {', '.join(map(repr, sample))})"
    if isinstance(sample, Sequence) and not isinstance(sample, str):
        if isinstance(label_key, int):
            return (
                ""
                if -len(sample) <= label_key < len(sample)
                else (f"is past the {len(sample)} entries of the data items")
            )
        if keyed(sample, label_key) is not None:
            return ""
        return (
            f"names a key, and the data items are {type(sample).__name__}s of "
            f"{len(sample)} entries, none a dict holding it (give an index)"
        )
    return f"finds nothing in data items of type {type(sample).__name__}"


def _array(value: Any) -> bool:
    """Whether ``value`` is a tensor or a NumPy array of numbers."""
    return isinstance(value, Tensor) or (
        isinstance(value, np.ndarray) and value.dtype.kind in "biuf"
    )


def split_sample(sample: Any, label_key: Any = None) -> tuple[Tensor, int | None]:
    """Split one dataset item into (input tensor, label or None).

    Handles ``(x, y)`` tuples/lists (or ``(name, x, y)``, ``(index, x, y)``: the first
    array of two or more dimensions), dicts with usual keys (or ``label_key``) and bare
    tensors; NumPy arrays are read as tensors, as the default collate reads them.

    Example::

        >>> split_sample((torch.zeros(1, 2, 2), 3))[1]
        3
        >>> x, y = split_sample(("0001.png", np.zeros((2, 2, 3), np.uint8), np.int64(4)))
        >>> tuple(x.shape), x.dtype, y
        ((2, 2, 3), torch.uint8, 4)
        >>> x, y = split_sample((torch.tensor(17), torch.zeros(1, 2, 2), 4))  # index first
        >>> tuple(x.shape), y
        ((1, 2, 2), 4)
        >>> split_sample({"image": torch.zeros(1, 2, 2), "label": torch.tensor(5)})[1]
        5
        >>> x, y = split_sample({"inputs": {"image": torch.zeros(1, 2, 2)}, "label": 5})
        >>> tuple(x.shape), y
        ((1, 2, 2), 5)
        >>> split_sample(torch.zeros(1, 2, 2))[1] is None
        True
        >>> split_sample((torch.zeros(1, 2, 2), torch.tensor([1.0])))[1]  # a BCE target
        1
        >>> split_sample((torch.zeros(1, 2, 2), torch.tensor(0.7)))[1] is None  # regression
        True
    """
    x, y = parts(sample, label_key)
    if _array(x) and not isinstance(x, Tensor):  # NumPy items: as the default collate reads them
        x = torch.as_tensor(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        found = "" if x is None else f" (its input is a {type(x).__name__})"
        raise TypeError(
            f"cannot find the input tensor in a dataset item of type {type(sample).__name__}"
            f"{found}; expected a tensor or NumPy array, alone, first in a tuple (or the first "
            f"array in it) or in a dict under one of the keys {IMAGE_KEYS}"
        )
    if isinstance(y, np.ndarray) and y.ndim == 0:
        y = y.item()
    if isinstance(y, Tensor):  # a float target (regression, soft labels) is no class ...
        y = y.item() if y.numel() == 1 else None
    integral = isinstance(y, numbers.Integral)  # NumPy's too
    binary = isinstance(y, numbers.Real) and y in (0.0, 1.0)  # ... but a BCE target 0. / 1. is
    y = int(y) if (integral or binary) and not isinstance(y, bool) else None  # type: ignore[arg-type]
    return x, y


def integer_dtype(t: Tensor) -> bool:
    """Whether ``t`` holds class indices: an integer dtype (not float, complex or bool)."""
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)
