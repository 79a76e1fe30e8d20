"""Where a dataset item keeps its input and its label: dict keys and named fields.

Nothing here knows about Lightning. ``items.parts`` reads an item through these: the usual
image and label keys of a dict item (``IMAGE_KEYS``, ``LABEL_KEYS``), its input under a
key of its own (``unnamed_input``: never one that names a target, a mask or a label), a
label one level down or by a dotted path (``keyed``), and the fields of a named item (a
namedtuple, a dataclass, a ``SimpleNamespace``: ``named_fields``), read as a dict's.

Example::

    >>> import torch
    >>> item = {"id": 3, "mask": torch.zeros(8, 8), "pixels": torch.ones(1, 8, 8), "cls": 1}
    >>> image_key(item), keyed({"image": 0, "targets": {"digit": 7}}, "targets.digit")
    ('pixels', 7)
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from lightning_cnnviz.core.random_state import rng_untouched

__all__ = [
    "IMAGE_KEYS",
    "LABEL_KEYS",
    "image_key",
    "keyed",
    "named_fields",
    "unnamed_input",
]

IMAGE_KEYS = ("image", "images", "img", "input", "inputs", "x", "pixel_values")
LABEL_KEYS = ("label", "labels", "target", "targets", "y", "class")


def image_key(sample: Any) -> Any:
    """The key of a dict item's image (``None``: not a dict, or no image found in it).

    A usual image key, else that of its ``unnamed_input`` (setups hunt 67: a `forward`
    taking the batch dict under `"rgb"` was never probed).

    Example::

        >>> import torch
        >>> image_key({"image": 0, "label": 1}), image_key((0, 1))
        ('image', None)
        >>> image_key({"depth": torch.zeros(1, 4, 4), "rgb": torch.zeros(3, 4, 4), "label": 1})
        'rgb'
    """
    if not isinstance(sample, Mapping):
        return None
    if (key := next((k for k in IMAGE_KEYS if k in sample), None)) is not None:
        return key
    x = unnamed_input(sample)
    return next((k for k, v in sample.items() if x is not None and v is x), None)


# a key's word that begins or ends so names a target stored beside the input (a mask, a
# label): never taken for the image
_TARGET_WORDS = ("mask", "seg", "label", "target", "truth", "gt", "box", "heatmap", "annot")


def _names_target(key: str) -> bool:
    """Whether a dict key names a target (``_TARGET_WORDS``): ``seg_mask``, ``gt_depth``."""
    words = re.split(r"[^a-z0-9]+", key.lower())
    return key in LABEL_KEYS or any(
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

        >>> import torch
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
        >>> import types
        >>> keyed(types.SimpleNamespace(meta=types.SimpleNamespace(cls=4)), "meta.cls")
        4
    """
    if isinstance(key, str) and (fields := named_fields(entries)) is not None:
        entries = fields  # a named item's fields by name (setups hunt 72: a dataclass inside)
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
        >>> class Slotted:  # attrs' classes keep their fields so
        ...     __slots__ = ("pixels", "_cls")
        ...     def __init__(self):
        ...         self.pixels, self._cls = 0, 3
        ...     @property
        ...     def label(self):
        ...         return self._cls
        >>> named_fields(Slotted())
        {'pixels': 0, '_cls': 3, 'label': 3}
    """
    if isinstance(sample, tuple) and hasattr(sample, "_fields"):
        return dict(zip(sample._fields, sample, strict=False))
    if dataclasses.is_dataclass(sample) and not isinstance(sample, type):
        return {f.name: getattr(sample, f.name) for f in dataclasses.fields(sample)}
    plain = (Tensor, np.ndarray, Mapping, Sequence, numbers.Number, bytes, type(None))
    if isinstance(sample, (*plain, type)):
        return None
    cls = type(sample)
    # attributes in slots too (attrs' classes, `__slots__` of one's own), and the usual
    # image and label names where a property gives them (setups hunt 72: both unread)
    slots = [n for c in cls.__mro__ for n in _slot_names(c) if hasattr(sample, n)]
    named = [n for n in (*IMAGE_KEYS, *LABEL_KEYS) if isinstance(getattr(cls, n, None), property)]
    with rng_untouched(sample):  # a property may draw, count or load (setups hunt 73)
        found = {n: getattr(sample, n) for n in slots + named}
    if not found and not hasattr(sample, "__dict__"):
        return None
    return {**getattr(sample, "__dict__", {}), **found}  # a SimpleNamespace, a class of one's own


def _slot_names(cls: type) -> list[str]:
    slots = vars(cls).get("__slots__", ())
    slots = [slots] if isinstance(slots, str) else list(slots)
    return [n for n in slots if n not in ("__dict__", "__weakref__")]
