"""A training loader that hands the same few items at every step, whatever its length says.

Nothing here knows about Lightning. Held out (hunt 33): a dataset whose ``__getitem__``
ignored most of the index served the same 64 digits at every step of a 2,000-item set;
val sat at 73-75% from the start and it was told as overfitting three validations late,
"stop at epoch 0". The first ``BATCHES`` training batches are read as per-image keys
(``core.image_keys``): where they hold no more distinct images than one batch while the
set is many batches long, the loader repeats them.

Example::

    >>> import torch
    >>> from lightning_cnnviz.core.image_keys import image_keys
    >>> x = torch.rand(8, 1, 4, 4)
    >>> keys = [image_keys(x), image_keys(x.flip(0)), image_keys(x[[0, 1] * 4])]
    >>> found = repeated_items(keys, batch_size=8, set_size=800)
    >>> found["distinct"], found["read"]
    (8.0, 24.0)
    >>> repeated_items([image_keys(torch.rand(8, 1, 4, 4)) for _ in range(3)], 8, 800)
    {}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning_cnnviz.core.image_keys import ImageKey

__all__ = ["BATCHES", "repeated_items", "repeated_text"]

BATCHES = 3  # training batches read
SPAN = 4  # the set must be this many batches long: a one-batch set repeats by design


def repeated_items(
    keys: Sequence[list[ImageKey]], batch_size: int, set_size: int
) -> dict[str, Any]:
    """Figures where ``BATCHES`` batches hold no more distinct images than one (``{}``: fine)."""
    read = sum(len(k) for k in keys)
    if len(keys) < BATCHES or set_size < SPAN * batch_size or read < BATCHES * 2:
        return {}
    distinct = len({key for batch in keys for key in batch})
    if distinct > max(len(k) for k in keys):
        return {}
    return {"distinct": float(distinct), "read": float(read), "set_size": float(set_size)}


def repeated_text(f: dict[str, Any]) -> str:
    """The finding's sentence."""
    return (
        f"The training loader hands the same few images at every step: its first "
        f"{BATCHES} batches hold {f['read']:.0f} images but only {f['distinct']:.0f} "
        f"different ones, of a training set of {f['set_size']:.0f}. The model learns those "
        "and never sees the rest, so val accuracy stays where those take it. Check the "
        "dataset's `__getitem__` (an index ignored or wrapped, a cached batch), a sampler "
        "that draws the same indices, and a loader made anew at every step "
        "(`next(iter(loader))`)."
    )
