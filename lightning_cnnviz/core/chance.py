"""The chance level of a K-class loss: one definition for every rule that reads it.

A model that predicts the class shares, and nothing of the image, has a cross-entropy of
``ln K`` on balanced classes. Rules in both the activation and the overfitting packages
ask whether a loss sits there (labels lost from the batches, a collapse, a model that
never learnt); they share the one tolerance.

Example::

    >>> at_chance(2.29, 10), at_chance(1.9, 10)
    (True, False)
"""

from __future__ import annotations

import math

__all__ = ["AT_CHANCE", "at_chance"]

AT_CHANCE = 0.03  # within 3% of ln K: a CNN on shuffled labels sits at 2.29-2.31 (ln 10 = 2.303)


def at_chance(loss: float, classes: int) -> bool:
    """Whether ``loss`` is within ``AT_CHANCE`` of ``ln classes`` (``classes >= 2``)."""
    return abs(loss / math.log(classes) - 1) < AT_CHANCE
