"""Which images are the same image: one key per image, read on the images' device.

Nothing here knows about Lightning. A key is an image's shape, dtype and its projections
on ``DIRECTIONS`` fixed random directions (drawn from their own seeded generator: no
random stream moves), to ``DIGITS`` significant digits, computed in float64 as one
matrix product and read in one host transfer. Two images share a key only where they
are equal (to rounding): a key of sums alone took every binarised digit with as many
lit pixels for one image (held out, hunt 34: 256 different binarised digits a batch told
"the same few images at every step").

Example::

    >>> import torch
    >>> a = torch.zeros(3, 1, 4, 4)
    >>> a[0, 0, 0, :2] = a[1, 0, 1, :2] = 1  # two lit pixels each, in other places
    >>> a[2] = a[0]
    >>> keys = image_keys(a)
    >>> keys[0] == keys[2], keys[0] == keys[1]
    (True, False)
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from lightning_cnnviz.core.real_values import real_values

__all__ = ["DIGITS", "DIRECTIONS", "ImageKey", "image_keys"]

DIRECTIONS = 4  # random directions an image is projected on
DIGITS = 9  # significant digits kept: float64 sums of equal images agree far beyond

ImageKey = tuple[object, ...]


@functools.lru_cache(maxsize=4)
def _directions(size: int, device: torch.device) -> Tensor:
    """``(size, DIRECTIONS)`` fixed random directions (the same in every run)."""
    g = torch.Generator().manual_seed(0)
    return torch.randn(size, DIRECTIONS, generator=g, dtype=torch.float64).to(device)


def image_keys(images: Tensor, plain: bool = True) -> list[ImageKey | None]:
    """One key per image of ``images`` ``(N, ...)``: equal keys, equal images.

    ``plain=False``: ``None`` for an image of one value (blank), which says nothing of
    whether two items are one (one host read more).
    """
    x = images.detach()
    x = real_values(x, torch.float64).flatten(1)
    rows = (x @ _directions(x.shape[1], x.device)).tolist() if x.numel() else [[]] * len(x)
    head = (tuple(images.shape[1:]), str(images.dtype))
    keys: list[ImageKey | None] = [
        (*head, *(float(f"{v:.{DIGITS}g}") for v in row)) for row in rows
    ]
    if not plain and x.numel():
        varies = (x != x[:, :1]).any(1).tolist()
        keys = [key if v else None for key, v in zip(keys, varies, strict=True)]
    return keys
