"""How ``OverfittingMonitor``'s texts write numbers and moments, in one place.

Example::

    >>> num(0.91234), num(0.9, percent=True), num(None), when(Evaluation(step=40, epoch=3))
    ('0.9123', '90.0%', 'n/a', 'epoch 3 (step 40)')
    >>> above(0.4), above(22.46)
    ('40% above', '23.5 times')
    >>> finite(0.5, 1.0), finite(0.5, None), finite(float("nan"))
    (True, False, False)
"""

from __future__ import annotations

import math

from lightning_cnnviz.overfitting.evaluation import Evaluation

__all__ = ["above", "finite", "num", "when"]


def num(value: float | None, percent: bool = False) -> str:
    """A figure in four significant digits, or a percentage with one decimal."""
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if percent else f"{value:.4g}"


def above(rise: float) -> str:
    """A relative rise in words: ``40% above`` or, past doubling, ``23.5 times``.

    A percentage past 100 reads badly ("climbed back 2246%"); a factor does not.
    """
    return f"{rise:.0%} above" if rise < 1 else f"{1 + rise:.3g} times"


def finite(*values: float | None) -> bool:
    """Whether every value is a finite number (a diverged model's confidence is NaN)."""
    return all(v is not None and math.isfinite(v) for v in values)


def when(ev: Evaluation) -> str:
    """The moment of an evaluation: its epoch and step."""
    return f"epoch {ev.epoch} (step {ev.step})"
