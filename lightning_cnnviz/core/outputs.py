"""Which entry of a model's output holds the logits, and which entry of a data item the label.

A model may return ``(features, logits)`` or ``{"logits": ..., "aux": ...}``; a dataset may
yield ``{"pixels": x, "cls": y}``. Monitors read them through the shared ``output_key`` and
``label_key`` arguments; when those are not given, the functions here guess, and say what
they guessed and why (the monitor warns it once). What the logits are read as (a softmax's
probabilities, one binary logit): ``logits.py``.

Example::

    >>> import torch
    >>> out = (torch.zeros(2, 64), torch.zeros(2, 10))
    >>> guess_output_key(out, num_classes=10)
    (1, 'shape (2, 10): its last dim equals the 10 classes')
    >>> guess_label_key({"pixels": torch.zeros(1, 4, 4), "cls": torch.tensor(3)})
    ('cls', 'the only integer scalar entry')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_cnnviz.core.capture import first_tensor
from lightning_cnnviz.core.logits import SingleLogit, two_class

__all__ = [
    "NotApplicable",
    "guess_label_key",
    "guess_output_key",
    "key_name",
    "logits_from",
    "no_class_scores",
    "one_row_per_image",
    "tensor_entries",
]

_LOGIT_NAMES = ("logits", "logit", "out", "output", "pred", "preds", "scores", "y_hat")


class NotApplicable(Exception):
    """The model or data has a shape this monitor cannot read: it steps aside, saying why.

    Not a failure of the monitor: it steps aside with a warning even under ``strict=True``.
    """


def one_row_per_image(layer: str, output: Tensor, images: int) -> Tensor:
    """``output``, where a layer's maps hold one row per probe image (``layer``: in words).

    Raises:
        NotApplicable: other rows: ``forward`` stacks copies of the batch (batched
            test-time augmentation, ``torch.cat([x, x.flip(-1)])``), whose maps cannot be
            matched to the images (setups hunt 30: three monitors failed on raw errors).

    Example::

        >>> one_row_per_image("`conv`", torch.zeros(4, 2), 4).shape
        torch.Size([4, 2])
    """
    if output.dim() and output.shape[0] != images:
        raise NotApplicable(
            f"`forward` runs {layer} on {output.shape[0]} rows for {images} images (it "
            "stacks copies of the batch, as batched test-time augmentation does): its maps "
            "cannot be matched to the images"
        )
    return output


def tensor_entries(output: Any) -> list[tuple[Any, Tensor]]:
    """The top-level ``(key, tensor)`` entries of a tuple, list, namedtuple, dict or dataclass.

    A namedtuple's and a dataclass's entries go by their field names.

    Example::

        >>> import dataclasses, torch
        >>> @dataclasses.dataclass
        ... class Out:
        ...     logits: torch.Tensor
        ...     features: torch.Tensor
        >>> [k for k, _ in tensor_entries(Out(torch.zeros(2, 3), torch.zeros(2, 8)))]
        ['logits', 'features']
    """
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        items = [(f.name, getattr(output, f.name)) for f in dataclasses.fields(output)]
    elif isinstance(output, tuple) and hasattr(output, "_fields"):  # a namedtuple: its names
        items = list(zip(output._fields, output, strict=True))
    elif isinstance(output, Mapping):
        items = list(output.items())
    elif isinstance(output, Sequence) and not isinstance(output, str | bytes):
        items = list(enumerate(output))
    else:
        return []
    return [(k, v) for k, v in items if isinstance(v, Tensor)]


def guess_output_key(output: Any, num_classes: int | None = None) -> tuple[Any, str]:
    """The key of the logits in a tuple/dict ``output``, and why (``(None, "")`` for a tensor).

    In order: the one 2-D entry whose last dim equals ``num_classes`` (for two classes, else
    the one (N, 1) entry: a single logit; else the one at least as wide: the labels seen may
    miss classes); a dict entry named like logits
    (``"logits"``, ``"out"``, ...); the first tensor.

    Example::

        >>> import torch
        >>> guess_output_key({"aux": torch.zeros(2, 3), "out": torch.zeros(2, 3)})
        ('out', 'named like logits')
        >>> guess_output_key(torch.zeros(2, 3))
        (None, '')
        >>> guess_output_key((torch.zeros(2, 3), torch.zeros(2, 10)), num_classes=8)[0]
        1
        >>> guess_output_key((torch.zeros(2, 1), torch.zeros(2, 32)), num_classes=2)[0]
        0
    """
    entries = tensor_entries(output)
    if not entries:
        return None, ""
    if num_classes is not None:
        fits = [(k, v) for k, v in entries if v.dim() >= 2 and v.shape[1] == num_classes]
        fits = [(k, v) for k, v in fits if v.dim() == 2] or fits
        one = [(k, v) for k, v in entries if v.dim() == 2 and v.shape[1] == 1]
        if not fits and num_classes == 2 and len(one) == 1:
            # one logit per image for labels 0/1 (BCE's form; hunt 116: `(logit, features)`
            # had its (N, 32) features read as the logits, "the one entry with room")
            return one[0][0], f"shape {tuple(one[0][1].shape)}: one logit for labels 0/1"
        if len(fits) == 1:
            k, v = fits[0]
            dim = "last" if v.dim() == 2 else "second"
            return k, f"shape {tuple(v.shape)}: its {dim} dim equals the {num_classes} classes"
        # the labels seen may not show every class: the one entry wide enough for them
        wide = [(k, v) for k, v in entries if v.dim() == 2 and v.shape[1] >= num_classes]
        if not fits and len(wide) == 1:
            k, v = wide[0]
            room = f"the one entry with room for labels 0-{num_classes - 1}"
            return k, f"shape {tuple(v.shape)}: {room}"
    named = [k for k, _ in entries if isinstance(k, str) and k.lower() in _LOGIT_NAMES]
    if named:
        return named[0], "named like logits"
    k, v = entries[0]
    return k, f"shape {tuple(v.shape)}: the first tensor"


def no_class_scores(output: Any, key: Any, num_classes: int | None) -> str:
    """Why entry ``key`` of ``output`` holds no classes' scores ("": it may).

    Where ``guess_output_key`` fell back to the first tensor and that has no dim for the
    ``num_classes`` the labels hold, no entry of the output is the logits (setups hunt
    80: a `forward` returning timm `features_only` maps, the head applied in the steps;
    a (N, 64, 8, 8) map was read as four classes' scores, its Grad-CAMs drawn as classes').

    Example::

        >>> import torch
        >>> maps = [torch.zeros(2, 64, 8, 8), torch.zeros(2, 128, 4, 4)]
        >>> no_class_scores(maps, 0, 4)[:53]
        'none of the 2 tensors the model returns is the logits'
        >>> no_class_scores((torch.zeros(2, 10),), 0, 4)
        ''
    """
    entries = tensor_entries(output)
    if not entries or not num_classes or key != entries[0][0]:
        return ""
    if guess_output_key(output, num_classes)[1].endswith("the first tensor"):
        first = entries[0][1]
        width = first.shape[1] if first.dim() >= 2 else 0
        if width < num_classes or (first.dim() > 2 and width != num_classes):
            shapes = ", ".join(str(tuple(v.shape)) for _, v in entries[:4])
            return (
                f"none of the {len(entries)} tensors the model returns is the logits of the "
                f"{num_classes} classes its labels hold ({shapes}: features, the head applied "
                "outside `forward`?): pass `output_key`, or return the logits from `forward`"
            )
    return ""


def key_name(key: Any) -> str:
    """How a message names an output or item entry: ``entry 1`` or ``'logits'``."""
    if isinstance(key, SingleLogit):
        return "the output" if key.key is None else key_name(key.key)
    return f"entry {key}" if isinstance(key, int) else repr(key)


def guess_label_key(item: Any) -> tuple[Any, str]:
    """The key of the class label in one dict data item, and why (``(None, "")`` if none).

    The label is the one integer entry holding a single value (``cls``: ``tensor(3)``).
    """
    if not isinstance(item, Mapping):
        return None, ""
    found = [
        k
        for k, v in item.items()
        if (isinstance(v, int) and not isinstance(v, bool))
        or (
            isinstance(v, Tensor)
            and v.numel() == 1
            and not v.is_floating_point()
            and v.dtype is not torch.bool
        )
    ]
    if len(found) == 1:
        return found[0], "the only integer scalar entry"
    return None, ""


def logits_from(output: Any, key: Any = None, raw: bool = False) -> Tensor:
    """The logits in a model's ``output``: ``output[key]`` (``core.capture.first_tensor``).

    A ``SingleLogit`` key gives its logit as ``two_class``'s two classes (``raw``: as the
    model returned it).

    Example::

        >>> out = {"aux": torch.zeros(2, 8), "logit": torch.tensor([[3.0], [-3.0]])}
        >>> logits_from(out, SingleLogit("logit")).argmax(1).tolist()
        [1, 0]
        >>> logits_from(torch.zeros(2, 10, 1, 1)).shape
        torch.Size([2, 10])
    """
    if isinstance(key, SingleLogit):
        picked = first_tensor(output, key.key)
        return picked if raw else two_class(picked)
    if key is None and _per_image(output):
        raise NotApplicable(
            f"the model's eval-mode output is a list of {len(output)} dicts, one per image (a "
            "detector's?): no class scores per image to read (`output_key` names them where "
            "the output holds them)"
        )
    logits = first_tensor(output, key)
    if logits.dim() > 2 and all(size == 1 for size in logits.shape[2:]):
        return logits.flatten(1)  # a 1x1-conv head's (N, classes, 1, 1): one score per class
    return logits


def _per_image(output: Any) -> bool:
    """Whether ``output`` is a list of one mapping per image (torchvision's detectors)."""
    return (
        isinstance(output, list | tuple)
        and len(output) > 1
        and all(isinstance(item, Mapping) for item in output)
    )
