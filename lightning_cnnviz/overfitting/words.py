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

__all__ = ["above", "finite", "num", "train_words", "when"]


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


def train_words(
    e: Evaluation, value: float | None = None, name: str = "train accuracy", verb: str = ""
) -> str:
    """``value`` (``e.train_accuracy`` by default) as a train accuracy, saying what it reads.

    The logged one where it is one batch's says how many images (mid-epoch, or logged per
    step only); the train probe's says so (a short last batch's is never quoted:
    ``Evaluation.short_batch_acc``).

    Example::

        >>> e = Evaluation(9, 0, train_acc=1.0, train_acc_images=64.0, probe_acc_train=0.8)
        >>> train_words(e), train_words(e, 0.8, verb=" climbed to")
        ('train accuracy 100.0% (one batch of 64 images)', 'train probe accuracy climbed to 80.0%')
    """
    value = e.train_accuracy if value is None else value
    logged = e.train_acc is not None and not e.short_batch_acc
    if value is None or not logged or float(value) != float(e.train_acc):  # type: ignore[arg-type]
        probe = name.replace("train", "train probe", 1) if value is not None else name
        return f"{probe}{verb} {num(value, True)}"
    images = e.train_acc_images
    batch = f" (one batch of {images:.0f} images)" if images else ""
    return f"{name}{verb} {num(value, True)}{batch}"
