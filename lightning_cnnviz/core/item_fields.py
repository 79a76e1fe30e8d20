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
