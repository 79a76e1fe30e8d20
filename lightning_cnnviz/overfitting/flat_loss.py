"""Not learning read from the loss alone, for runs whose targets are no class labels.

Nothing here knows about Lightning. ``levels.not_learning`` reads the val probe's accuracy
against chance; a regression, a multi-label or a segmentation run has no such level, and
held out (hunt 78) each of them at SGD 1e-6 (val MSE flat at 0.403, BCE at 0.731, per-pixel
cross-entropy at 2.34 for 300 steps) was told nothing. What every task shares is the loss
``training_step`` returns: a model that learns brings it down from where it began.

``not_moving``: at every evaluation so far (``patience`` at least), the mean loss since the
evaluation before within ``START_BAND`` of the run's first steps' mean (one batch is too
noisy: that run's first read 0.431, its means 0.384-0.389), within ``FLAT`` of the first
evaluation's mean, the logged val loss within ``FLAT`` of its first (or only not below
it, with BatchNorm's running statistics settling), and the optimiser's last update at
most ``TINY_UPDATE`` of the weights: a loss that stays put while the weights move
normally is a model that has converged or a target it cannot fit, not one held still.
The same waits as at chance: the run's first steps, a warm-up still raising
the rate, and a note (not yet a problem) in the run's first quarter unless a setting
explains the tiny steps (``small_steps.tiny_steps``).

Example::

    >>> def ev(step, loss, update=3e-8):
    ...     return Evaluation(step, 0, start_loss=0.39, returned_loss=loss, val_loss=0.4029,
    ...                       run_share=step / 300, update_ratio=update, lr=1e-6)
    >>> not_moving([ev(100, 0.389), ev(200, 0.384)]).severity
    'problem'
    >>> not_moving([ev(100, 0.389), ev(200, 0.384, update=1e-3)]) is None  # weights move
    True
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning_cnnviz.overfitting.blind_level import learnt
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.small_steps import TINY_UPDATE
from lightning_cnnviz.overfitting.too_soon import (
    early,
    fell,
    stalled,
    warming_up,
    warmup_outlasts,
)
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import finite

__all__ = ["FLAT", "START_BAND", "flat", "judged", "not_moving"]

FLAT = 0.03
"""The mean loss moved less than this share between evaluations: it has not moved."""
START_BAND = 0.1  # ... and this share of the first steps' mean (ten batches, noisier)


def flat(e: Evaluation) -> bool | None:
    """Whether the mean loss since the evaluation before ``e`` sits where the run began.

    Example::

        >>> flat(Evaluation(50, 0, start_loss=2.34, returned_loss=2.35)), flat(Evaluation(50, 0))
        (True, None)
    """
    moved = fell(e.start_loss, e.returned_loss)
    return None if moved is None else abs(moved) < START_BAND


def judged(e: Evaluation) -> bool:
    """Whether ``not_moving`` reads ``e``: no class labels read, the loss and update known."""
    return e.probe_acc_val is None and flat(e) is not None and e.update_ratio is not None


def not_moving(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """The loss flat from the start at every evaluation, where no class labels are read.

    Figures: ``start_loss`` (the first steps' mean), ``fell`` (the share the mean moved
    from the first evaluation's, down or up),
    ``val_first`` / ``val_now`` (the logged val loss), ``evaluations``.
    """
    if not history or any(e.probe_acc_val is not None for e in history):
        return None  # class labels read: ``levels.not_learning`` judges at chance
    evs = [e for e in history if flat(e) is not None]
    if len(evs) < patience or not all(flat(e) for e in evs):
        return None
    first, now = evs[0], evs[-1]
    if now.update_ratio is None or now.update_ratio > TINY_UPDATE:
        return None  # the weights move: converged, or a target it cannot fit
    if learnt(now):
        return None  # far under what a blind model scores: learnt (a converged fine-tune)
    moved = fell(first.returned_loss, now.returned_loss) or 0.0
    vals = [e.val_loss for e in evs if e.val_loss is not None and finite(e.val_loss)]
    val_fell = (fell(vals[0], vals[-1]) or 0.0) if len(vals) >= 2 else 0.0
    if now.bn_momentum is not None:  # BatchNorm's running statistics settling raise it
        val_fell = max(val_fell, 0.0)  # (hunt 79: an autoencoder at SGD 1e-6, 0.143 -> 0.170)
    if abs(moved) >= FLAT or abs(val_fell) >= FLAT or early(now):
        return None
    if warming_up(evs) and not warmup_outlasts(now):
        return None
    figures = {
        "loss_only": True,
        "from_start": True,
        "non_finite": False,
        "start_loss": now.start_loss,
        "fell": moved,
        "val_first": vals[0] if vals else None,
        "val_now": vals[-1] if vals else None,
        "evaluations": len(evs),
        "warmup_outlasts": warming_up(evs) and warmup_outlasts(now),
    }
    return stalled(first, now, figures, young_note=not figures["warmup_outlasts"])
