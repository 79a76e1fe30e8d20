"""Validation data that is the training data: the val loader handed the training set.

Nothing here knows about Lightning. ``trainer.fit(model, train_loader, train_loader)``,
or a val set built as a copy of the training set (held out, hunt 20: 300 digits and
their clone; the model reached 100% "val" accuracy while it memorised, and nothing was
said), makes every val figure measure memory: overfitting can never show. ``same_items``
reads a few items at the same positions of both sets, once per fit (random generators
untouched): all equal, images and labels, is the same data. Sets whose training items
are augmented at random never read equal, and are not told.

Example::

    >>> import torch
    >>> items = [(torch.full((1, 2, 2), float(i)), i % 3) for i in range(40)]
    >>> same_items(items, list(items)), same_items(items, items[20:])
    (8, 0)
    >>> same_items(items[:4], items[:4]) is None  # too few to tell a copy from chance
    True
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from lightning_cnnviz.core.image_keys import image_keys
from lightning_cnnviz.core.items import read_item, split_sample

__all__ = [
    "COMPARED",
    "LEAKED_IMAGES",
    "LEAKED_SHARE",
    "leaked_share",
    "leaked_text",
    "same_items",
    "shared_images",
    "val_is_train_text",
]

COMPARED = 8  # positions read in both sets
LEAKED_IMAGES = 3  # val probe images equal to train probe images: more than chance
LEAKED_SHARE = 0.05  # ...where they make this share of the val set, estimated


def same_items(train: Any, val: Any, label_key: Any = None) -> int | None:
    """How many of ``COMPARED`` positions hold the same item in both sets (0: they differ).

    The positions are spread over the shorter set; any that differ make it 0: a few
    equal items are chance (two blank images), all of them a copy. ``None``: the sets
    could not be compared (fewer than ``COMPARED`` items, no positions, or items that do not read as
    an image and a label), so the check did not run.
    """
    try:
        size = min(len(train), len(val))
    except TypeError:  # an iterable set: positions cannot be read
        return None
    if size < COMPARED:
        return None
    at = torch.linspace(0, size - 1, COMPARED).long().tolist()
    for i in at:
        try:
            (x, y), (x2, y2) = (split_sample(read_item(d, i), label_key) for d in (train, val))
        except Exception:  # items the probes read otherwise: nothing to compare here
            return None
        if y != y2 or x.shape != x2.shape or x.dtype != x2.dtype or not torch.equal(x, x2):
            return 0
    return COMPARED


def val_is_train_text(same: bool, compared: int) -> str:
    """The finding's sentence: the val loader's set is the training set (``same``) or a copy.

    Example::

        >>> val_is_train_text(False, 8)[:61]
        'The validation data are the training data: the val set holds '
    """
    how = (
        "the val loader reads the training set itself"
        if same
        else f"the val set holds the training set's items at the same positions ({compared} "
        "compared, images and labels equal)"
    )
    return (
        f"The validation data are the training data: {how}. Every val figure then measures "
        "how well the model remembers its training images, not how it does on new ones: "
        "overfitting cannot show, and the val accuracy reads as high as the training "
        "accuracy. Hold out a validation split (`torch.utils.data.random_split`), or pass "
        "the val loader you meant."
    )


FLOODED = 3  # a train probe image read this many times is one image the set repeats


def shared_images(train: torch.Tensor, val: torch.Tensor) -> int:
    """How many ``val`` images equal one of ``train``'s (images of one value left out).

    Not those equal to an image the train probe holds ``FLOODED`` times or more: a class
    that is one image by design (a background class in both splits) is no training item
    leaked, one each (hunt 107: "about 100% of the val set are training items" of a val
    set whose matches, 20% of it, were all one background image).

    Example::

        >>> train = torch.arange(24.0).view(4, 1, 2, 3)
        >>> shared_images(train, torch.stack([train[1], train[3], train[1] + 1]))
        2
        >>> shared_images(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.zeros(2, 1, 2, 2))
        0
        >>> shared_images(train.bfloat16(), train[:2].bfloat16())
        2
        >>> shared_images(train[[0, 0, 0, 1]], train[[0, 1]])  # image 0 three times: a class
        1
    """
    counts = Counter(image_keys(train, plain=False))
    seen = {key for key, n in counts.items() if key is not None and n < FLOODED}
    return sum(1 for key in image_keys(val, plain=False) if key is not None and key in seen)


def leaked_share(shared: int, val_n: int, train_n: int, train_size: int) -> float:
    """The val set's share estimated to be training items, from ``shared`` probe images.

    The train probe holds ``train_n`` of the ``train_size`` training items, so a training
    item in the val probe matches one of them with chance ``train_n / train_size``.

    Example::

        >>> round(leaked_share(14, 128, 128, 600), 2)
        0.51
    """
    return min(1.0, shared / val_n / (train_n / max(train_size, train_n)))


def leaked_text(shared: int, val_n: int, train_n: int, train_size: int, share: float) -> str:
    """The finding's sentence for a val set of which a part are training items.

    Example::

        >>> leaked_text(14, 128, 128, 600, 0.51)[:61]
        'The validation data hold training images: 14 of the val probe'
    """
    return (
        f"The validation data hold training images: {shared} of the val probe's {val_n} "
        f"images equal images of the train probe ({train_n} of the {train_size} training "
        f"items), so about {share:.0%} of the val set are training items. Every val figure "
        "is then partly how well the model remembers its training images: val accuracy "
        "reads high and overfitting shows late. Hold out a validation split that shares no "
        "items with training (`torch.utils.data.random_split` of one set), or drop the "
        "duplicates."
    )
