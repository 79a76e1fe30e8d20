"""Weight decay too strong: the training loss climbs back while the decay takes its share.

Nothing here knows about Lightning. Decoupled weight decay (AdamW, SGD) takes
``lr * weight_decay`` off every weight each step (``decay_per_step``). At 1% a step or
more (``remedies.DECAY_PER_STEP``) it undoes what the gradients build faster than they
build it: once the model has learnt what the decay allows, the training loss climbs back
at a constant learning rate while accuracy falls. No other rule sees it: the train loss
does not fall (no overfitting), train accuracy does not climb (no memorisation), and
the model is above chance. Held out (hunt 11): a plain CNN under AdamW
``weight_decay=20`` at lr 1e-3 (2% a step) fell to a train loss of 0.73 by epoch 3, then
went 0.78, 0.87, 0.93, 0.92 with val accuracy 85% -> 47%, and the run ended "no problems
found". The same setting on a BatchNorm net did no harm (BatchNorm undoes the weights'
scale), and its train loss never climbed back.

Example::

    >>> rows = [(1.28, 0.001), (0.89, 0.001), (0.76, 0.001), (0.73, 0.001), (0.78, 0.001),
    ...         (0.87, 0.001), (0.93, 0.001)]
    >>> evs = [Evaluation(46 * (i + 1), i, train_loss=t, lr=lr, weight_decay=20.0,
    ...                   decay_per_step=lr * 20.0) for i, (t, lr) in enumerate(rows)]
    >>> v = decay_too_strong(evs)
    >>> v.best.epoch, round(v.figures["rise"], 2)
    (3, 0.27)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.remedies import DECAY_PER_STEP
from lightning_cnnviz.overfitting.rules import Verdict

__all__ = ["DROP", "RISE", "decay_too_strong", "recovered"]

RISE = 0.15
"""The train loss this share above its lowest evaluation: climbing back (a healthy run's
interval means keep falling; a flat one wiggles a few percent)."""
DROP = 0.05
"""...and train accuracy this far below its value there, where known: it hurts. A timm
ResNet (BatchNorm) under the same decay went 0.22 -> 0.29 in train loss at 99.6-100% train
accuracy, val accuracy still rising to 94%."""


def decay_too_strong(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """Heavy decay, and the train loss ``RISE`` above its lowest for ``patience`` evaluations.

    The decay at ``DECAY_PER_STEP`` or more now; the last ``patience`` train losses (the
    mean of the steps since the evaluation before, where ``training_step`` returns it)
    all more than ``RISE`` above the lowest one before them, at a learning rate no higher
    than it was then (a rate raised since is a divergence's cause, not the decay's), and
    the train accuracy, where known, ``DROP`` below its value there.
    ``best`` is that lowest evaluation, ``since`` the one after it.
    """
    now = history[-1]
    if now.decay_per_step is None or now.decay_per_step < DECAY_PER_STEP:
        return None
    evs = [e for e in history if e.train_loss is not None and math.isfinite(e.train_loss)]
    if len(evs) < patience + 2:
        return None
    earlier, recent = evs[:-patience], evs[-patience:]
    low = min(range(len(earlier)), key=lambda i: earlier[i].train_loss)  # type: ignore[arg-type,return-value]
    best = earlier[low]
    bar = (1 + RISE) * best.train_loss  # type: ignore[operator]
    if any(e.train_loss <= bar for e in recent):  # type: ignore[operator]
        return None
    if best.lr is None or any(e.lr is None or e.lr > best.lr * (1 + 1e-6) for e in recent):
        return None
    then, acc = best.train_accuracy, now.train_accuracy
    if then is not None and acc is not None and acc > then - DROP:
        return None  # the loss climbs, the accuracy holds: no harm done
    figures = {
        "weight_decay": now.weight_decay,
        "lr": now.lr,
        "decay_per_step": now.decay_per_step,
        "best_epoch": best.epoch,
        "best_train_loss": best.train_loss,
        "train_loss": now.train_loss,
        "rise": now.train_loss / best.train_loss - 1 if best.train_loss else math.inf,  # type: ignore[operator]
        "val_acc": now.val_accuracy,
    }
    return Verdict("weight_decay_too_strong", evs[low + 1], now, best, figures)


def recovered(verdict: Verdict, ev: Evaluation) -> bool:
    """Whether the train loss at ``ev`` is back within ``RISE`` of the verdict's lowest."""
    best = verdict.best
    if best is None or best.train_loss is None or ev.train_loss is None:
        return False
    return ev.train_loss <= (1 + RISE) * best.train_loss
