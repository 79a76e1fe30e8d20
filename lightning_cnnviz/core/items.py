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
import dataclasses
import itertools
import numbers
import re
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_cnnviz.core.random_state import rng_untouched

__all__ = [
    "ITERABLE_HEAD",
    "LABEL_KEYS",
    "image_key",
    "integer_dtype",
    "iterable_head",
    "keyed",
    "label_key_misfit",
    "named_fields",
    "parts",
    "read_item",
    "split_sample",
]

_IMAGE_KEYS = ("image", "images", "img", "input", "inputs", "x", "pixel_values")
_LABEL_KEYS = ("label", "labels", "target", "targets", "y", "class")
LABEL_KEYS = _LABEL_KEYS  # the label keys known without `label_key`


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


def image_key(sample: Any) -> Any:
    """The key of a dict item's image (``None``: not a dict, or no image found in it).

    A usual image key, else that of its ``unnamed_input`` (setups hunt 67: a `forward`
    taking the batch dict under `"rgb"` was never probed).

    Example::

        >>> image_key({"image": 0, "label": 1}), image_key((0, 1))
        ('image', None)
        >>> image_key({"depth": torch.zeros(1, 4, 4), "rgb": torch.zeros(3, 4, 4), "label": 1})
        'rgb'
    """
    if not isinstance(sample, Mapping):
        return None
    if (key := next((k for k in _IMAGE_KEYS if k in sample), None)) is not None:
        return key
    x = unnamed_input(sample)
    return next((k for k, v in sample.items() if x is not None and v is x), None)


# a key's word that begins or ends so names a target stored beside the input (a mask, a
# label): never taken for the image
_TARGET_WORDS = ("mask", "seg", "label", "target", "truth", "gt", "box", "heatmap", "annot")


def _names_target(key: str) -> bool:
    """Whether a dict key names a target (``_TARGET_WORDS``): ``seg_mask``, ``gt_depth``."""
    words = re.split(r"[^a-z0-9]+", key.lower())
    return key in _LABEL_KEYS or any(
        w.startswith(t) or w.endswith(t) for w in words for t in _TARGET_WORDS
    )


def unnamed_input(sample: Mapping) -> Any:
    """The input of a dict item under no usual image key (``None``: no array of 2+ dims).

    Its tensor of the most dimensions (2 or more), then of the most values (setups hunt
    83: a 1-channel `"depth"` before the 3-channel `"rgb"` a model reads), the first of
    those in order, among those whose key names no target (a mask, a label): ``{"id",
    "mask", "pixels", "cls"}`` items had their 2-D masks read as the images (setups hunt
    82: a healthy run told "only 34 different images", its feature maps drawn on the masks).

    Example::

        >>> mask, pixels = torch.zeros(8, 8), torch.ones(1, 8, 8)
        >>> unnamed_input({"id": 3, "mask": mask, "pixels": pixels, "cls": 1}) is pixels
        True
        >>> unnamed_input({"signal": mask, "mask": torch.zeros(8)}) is mask
        True
    """
    arrays = [(str(k), v) for k, v in sample.items() if isinstance(v, Tensor) and v.dim() >= 2]
    inputs = [(k, v) for k, v in arrays if not _names_target(k)]
    return max(inputs or arrays, key=lambda kv: (kv[1].dim(), kv[1].numel()), default=(None, None))[
        1
    ]


def keyed(entries: Any, key: Any) -> Any:
    """``entries[key]``, a key one level down in a dict entry, or a dotted path (else None).

    ``{"image": x, "targets": {"digit": y}}`` (multi-task items) is read by ``"digit"`` or
    ``"targets.digit"`` (setups hunt 26: both were refused), as ``(x, {"cls": y})`` by ``"cls"``.

    Example::

        >>> item = {"image": 0, "targets": {"digit": 7, "parity": 1}}
        >>> keyed(item, "digit"), keyed(item, "targets.parity"), keyed((0, {"cls": 2}), "cls")
        (7, 1, 2)
    """
    if isinstance(entries, Mapping) and key in entries:
        return entries[key]
    if isinstance(key, str) and "." in key:
        head, rest = key.split(".", 1)
        inner = entries.get(head) if isinstance(entries, Mapping) else None
        return None if inner is None else keyed(inner, rest)
    if isinstance(key, int) or not isinstance(entries, Mapping | Sequence):
        return None
    values = entries.values() if isinstance(entries, Mapping) else entries
    return next((v[key] for v in values if isinstance(v, Mapping) and key in v), None)


def named_fields(sample: Any) -> dict[str, Any] | None:
    """A named item's fields by name: a namedtuple's, a dataclass's, an object's attributes.

    ``None`` for tensors, arrays, dicts, plain sequences and numbers (read as they are).

    Example::

        >>> import collections, dataclasses
        >>> Pair = collections.namedtuple("Pair", "image label")
        >>> named_fields(Pair(0, 1)), named_fields((0, 1))
        ({'image': 0, 'label': 1}, None)
        >>> @dataclasses.dataclass
        ... class Item:
        ...     image: int
        ...     label: int
        >>> named_fields(Item(0, 1))
        {'image': 0, 'label': 1}
    """
    if isinstance(sample, tuple) and hasattr(sample, "_fields"):
        return dict(zip(sample._fields, sample, strict=False))
    if dataclasses.is_dataclass(sample) and not isinstance(sample, type):
        return {f.name: getattr(sample, f.name) for f in dataclasses.fields(sample)}
    plain = (Tensor, np.ndarray, Mapping, Sequence, numbers.Number, bytes, type(None))
    if isinstance(sample, plain) or not hasattr(sample, "__dict__"):
        return None
    return dict(vars(sample))  # a SimpleNamespace, a class of the user's own


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
        x = next((sample[k] for k in _IMAGE_KEYS if k in sample), None)
        if isinstance(x, Mapping):  # {"inputs": {"image": x}, "label": y}: one level down
            x = parts(x)[0]
        if x is None:
            x = unnamed_input(sample)
        if label_key is not None:
            return x, keyed(sample, label_key)
        return x, next((sample[k] for k in _LABEL_KEYS if k in sample), None)
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
            f"array in it) or in a dict under one of the keys {_IMAGE_KEYS}"
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
