"""Whether a layer's map has room for a place: the one rule for CAM layers and drawn maps.

Nothing here knows about Lightning. A map of one position (1x1 for images, length 1 for
signals, 1x1x1 for volumes: after a global pool, or a conv whose kernel covers its whole
input) holds one value per channel and image: its Grad-CAM is one number per image, the
same colour over the whole tile, and a score of where that CAM lies (on the object, how
concentrated) measures the upsampling, not the model. Grad-CAM's ``layers="auto"``
(``core.target_layer.block_output``) picks only maps that ``has_places``, a named one is left out
with this reason (``core.cam``), and the feature-map view says so once. A map of 2 or
more positions (2x2, a 1xN strip) does show a place, coarsely: it is drawn, and the
checks that need a finer map say "too coarse" themselves (``gradcam/gates.py``).

Example::

    >>> one_place((8, 16, 1, 1)), one_place((8, 16, 1)), one_place((8, 16, 2, 2))
    ('1x1', '1', '')
    >>> one_place((8, 16, 1, 60)), one_place((8, 16))
    ('', '')
"""

from __future__ import annotations

import math

__all__ = ["has_places", "one_place"]


def has_places(shape: tuple[int, ...]) -> bool:
    """Whether ``shape`` (N, C, *positions) is a map of more than one position.

    Example::

        >>> has_places((1, 8, 2, 2)), has_places((1, 8, 1, 1)), has_places((1, 64))
        (True, False, False)
    """
    return len(shape) > 2 and not one_place(shape)


def one_place(shape: tuple[int, ...]) -> str:
    """The size of a map shaped ``shape`` (N, C, *positions) that has a single position.

    Returns:
        ``"1x1"`` (``"1"``, ``"1x1x1"``) where the map has one position, else ``""``
        (more positions, or no positions at all: a vector (N, C) is no map).
    """
    positions = tuple(int(s) for s in shape[2:])
    if not positions or math.prod(positions) > 1:
        return ""
    return "x".join(map(str, positions))
