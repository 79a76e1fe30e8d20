"""A class-balanced probe of one size, where a dataset's images come at several sizes.

A probe is one batch, so its images share one size; ``probe.draw_probe`` keeps the
commonest among those it drew, then reads each class's turn again for images of that size
(``of_shape``, ``SIZE_READS`` items a class at most), and says once per dataset which
classes none of those had (``say_classes_left``): a class photographed at its own size is
in no probe, and what the monitors show per class leaves it out.

Example::

    >>> in_turns({0: [4, 8], 1: [5], 2: [6, 10]}, 4)
    [4, 5, 6, 8]
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from lightning_cnnviz.core.items import split_sample
from lightning_cnnviz.core.say import say

__all__ = ["SIZE_READS", "in_turns", "of_shape", "say_classes_left"]


def say_classes_left(
    dataset: Any, held: set[int], classes: list[int], size: tuple[int, ...]
) -> None:
    """Say once per dataset which ``classes`` a probe of one ``size`` leaves out.

    ``held``: the classes it holds (setups hunt 61: every probe without class 3, unsaid).
    """
    left = [c for c in classes if c not in held]
    try:
        if not left or dataset in _sizes_told:
            return
        _sizes_told.add(dataset)
    except TypeError:  # unhashable: said each time
        pass
    side = "x".join(map(str, size))
    say(
        f"lightning-cnnviz: the images of {type(dataset).__name__} ({len(dataset)} items) come "
        f"at several sizes and a probe is one batch of one size ({side}, the commonest), "
        f"which none of the images of class(es) {', '.join(map(str, left))} read for it had: "
        f"the probes hold {len(held)} of the {len(classes)} classes, and what the monitors show "
        "per class leaves those out. Resize the images to one size in the dataset to have "
        "every class in the probes."
    )


_sizes_told: weakref.WeakSet[Any] = weakref.WeakSet()


SIZE_READS = 64
"""Items read per class for a probe of one size, where the dataset's images have several
(setups hunt 60: a probe of 8 shrank to 4 images of 2 classes of the 4, unsaid)."""


def in_turns(by_class: dict[int, list[int]], count: int) -> list[int]:
    """Up to ``count`` indices, the classes taking turns (0, 1, ..., 0, 1, ...)."""
    count = min(count, sum(map(len, by_class.values())))
    picked: list[int] = []
    turn = 0
    while len(picked) < count:
        for queue in by_class.values():
            if turn < len(queue) and len(picked) < count:
                picked.append(queue[turn])
        turn += 1
    return picked


def of_shape(
    dataset: Any, queue: list[int], shape: tuple[int, ...], need: int, label_key: Any
) -> list[int]:
    """Up to ``need`` of ``queue``'s items whose image has ``shape`` (``SIZE_READS`` read)."""
    found: list[int] = []
    for i in queue[:SIZE_READS]:
        item = dataset[i]
        image = None if item is None else torch.as_tensor(split_sample(item, label_key)[0])
        if image is not None and tuple(image.shape) == shape:
            found.append(i)
            if len(found) == need:
                break
    return found
