"""The training loss climbing back at an unchanged learning rate, and what drives it.

Nothing here knows about Lightning. A healthy run's training loss (the mean of the steps
between two evaluations) keeps falling, or wiggles a few percent once flat. When it
climbs back well above its lowest while the learning rate is no higher than it was
there, training has turned against itself, and no curve rule sees it: the train loss
does not fall (no overfitting), train accuracy does not climb (no memorisation), the
model is above chance. Two causes, two findings:

- ``decay_too_strong`` (``decay_rule.py``): decoupled weight decay (AdamW, SGD) takes
  ``lr * weight_decay`` off every weight each step (``decay_per_step``); at 1% a step or more
  (``core.decay.DECAY_STALLS``) it undoes what the gradients build. Held out (hunt 11): a
  plain CNN under AdamW ``weight_decay=20`` at lr 1e-3 (2% a step) fell to a train loss
  of 0.73 by epoch 3, then went 0.78, 0.87, 0.93, 0.92 with val accuracy 85% -> 47%, and
  the run ended "no problems found". The same setting on a BatchNorm net did no harm
  (BatchNorm undoes the weights' scale): its train loss climbed 0.22 -> 0.29 with train
  accuracy held at 99.6-100%.
- ``unstable``: without such a decay, a climb past ``ALONE`` (2x) or one that costs
  ``DROP`` of train accuracy: the updates have grown too large for where the model now
  is (a momentum of 0.999 adds up ~1,000 gradients into each step; a rate that was fine
  at the start overshoots the sharper minimum the model reached). Held out (hunt 13):
  SGD lr 0.01 with momentum 0.999 fell to a train loss of 0.25, then climbed 0.41, 0.63,
  1.27 while val accuracy went 92% -> 66%, and the run ended with notes only.

Example::

    >>> rows = [1.79, 0.99, 0.38, 0.25, 0.41, 0.63]  # SGD momentum 0.999, no decay
    >>> evs = [Evaluation(32 * (i + 2), i + 1, train_loss=t, lr=0.01, momentum=0.999,
    ...                   classes=10.0) for i, t in enumerate(rows)]
    >>> v = unstable(evs)
    >>> v.best.epoch, round(v.figures["rise"], 2)
    (4, 1.52)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lightning_cnnviz.core.chance import at_chance
from lightning_cnnviz.core.decay import heavy_decay
from lightning_cnnviz.core.raised_settings import lowest_settings
from lightning_cnnviz.overfitting import bn_levels
from lightning_cnnviz.overfitting.chance_levels import below_chance
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.memorisation import train_acc_error
from lightning_cnnviz.overfitting.verdict import Verdict

__all__ = [
    "ALONE",
    "DROP",
    "FLOOR",
    "RISE",
    "STEEP",
    "acc_fell",
    "climb",
    "climb_verdict",
    "loss_doubled",
    "recovered",
    "train_below_val",
    "unstable",
]

RISE = 0.15
"""The train loss this share above its lowest evaluation: climbing back (a healthy run's
interval means keep falling; a flat one wiggles a few percent)."""
DROP = 0.05
"""...and train accuracy this far below its value there, where known: it hurts. A timm
ResNet (BatchNorm) under heavy decay went 0.22 -> 0.29 in train loss at 99.6-100% train
accuracy, val accuracy still rising to 94%."""
STEEP = 0.3
"""Without a decay to name, the climb must be this steep at each of the evaluations..."""
ALONE = 1.0
"""...and the latest this far above the lowest (2x), where train accuracy did not fall
``DROP``: a run near its floor doubles its loss by noise only when that floor is tiny
(``FLOOR``)."""
FLOOR = 0.05
"""...and the rise this share of the chance level ``ln K`` at least: 0.01 -> 0.02 late in a
run is a few hard batches, not a climb."""


def climb(
    history: Sequence[Evaluation], patience: int, rise: float
) -> tuple[list[Evaluation], int] | None:
    """The finite train losses and the index of the lowest before the last ``patience``.

    ``None`` unless each of the last ``patience`` is more than ``rise`` above that lowest
    at a learning rate no higher than it was there (a rate raised since, a warm restart
    or a cycle, is a schedule's doing).
    """
    evs = [e for e in history if e.train_loss is not None and math.isfinite(e.train_loss)]
    if len(evs) < patience + 2:
        return None
    earlier, recent = evs[:-patience], evs[-patience:]
    low = min(range(len(earlier)), key=lambda i: earlier[i].train_loss)  # type: ignore[arg-type,return-value]
    best = earlier[low]
    bar = (1 + rise) * best.train_loss  # type: ignore[operator]
    if any(e.train_loss <= bar for e in recent):  # type: ignore[operator]
        return None
    # the rate the lowest loss was reached at: the loss is the interval's before the
    # evaluation, the rate read at it may be the next interval's (held out, hunt 18: a rate
    # raised 30x at the evaluation of the lowest loss, reached at 1e-3, read as 0.03)
    rates = [e.lr for e in earlier[max(0, low - 1) : low + 1]]
    if None in rates or any(e.lr is None or e.lr > min(rates) * (1 + 1e-6) for e in recent):  # type: ignore[type-var,operator]
        return None
    return evs, low


def acc_fell(best: Evaluation, now: Evaluation) -> bool | None:
    """Whether train accuracy fell ``DROP`` since ``best``, or val accuracy (``None``: unknown).

    The train accuracy by ``DROP`` or, read from one batch each time, ``Z_BATCH`` of its
    errors (``memorisation.train_acc_error``); the val accuracy by ``DROP`` or 3 standard
    errors of the val set's, whichever is more:
    held out (hunt 29), a gradient-reversal layer took the train loss 0.47 -> 1.14 at
    constant Adam 1e-3 and val accuracy 88% -> 67% while train accuracy fell 4 points.
    """
    then, acc = best.train_accuracy, now.train_accuracy
    # a reading of one training batch each time moves by batches alone (hunt 92: 29/32 ->
    # 26/32 read as "train accuracy 90.6% -> 81.2%" on a healthy run validated every 8 steps)
    fall = max(DROP, train_acc_error(now, best))
    train = None if then is None or acc is None else acc <= then - fall
    v_then, v_now, n = best.val_accuracy, now.val_accuracy, now.val_images
    if v_then is None or v_now is None or not n or bn_levels.stale(now):
        return train  # (eval mode reading BatchNorm's lagging statistics: hunt 92)
    noise = 3.0 * math.sqrt(max(v_then * (1 - v_then), 1e-4) / n)
    return bool(train) or v_now <= v_then - max(DROP, noise)


def loss_doubled(best: Evaluation, now: Evaluation) -> bool:
    """Whether the train loss rose ``ALONE`` above ``best``'s, by ``FLOOR`` x ln K where known."""
    rise = now.train_loss - best.train_loss  # type: ignore[operator]
    if now.classes is not None and now.classes >= 2 and rise < FLOOR * math.log(now.classes):
        return False
    return rise >= ALONE * best.train_loss  # type: ignore[operator]


def climb_verdict(kind: str, evs: list[Evaluation], low: int) -> Verdict:
    """The ``kind`` finding of a ``climb``: from the lowest evaluation ``evs[low]`` to now."""
    best, now = evs[low], evs[-1]
    figures = {
        "weight_decay": now.weight_decay,
        "lr": now.lr,
        "decay_per_step": now.decay_per_step,
        "momentum": now.momentum,
        "best_epoch": best.epoch,
        "best_train_loss": best.train_loss,
        "train_loss": now.train_loss,
        "rise": now.train_loss / best.train_loss - 1 if best.train_loss else math.inf,  # type: ignore[operator]
        "train_acc_at_best": best.train_accuracy,
        "val_acc": now.val_accuracy,
        "val_acc_at_best": best.val_accuracy,
        "settings_before": lowest_settings(evs[: low + 1]),  # a setting raised before the best too
    }
    return Verdict(kind, evs[low + 1], now, best, figures)


def unstable(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """The train loss climbing back with no decay to blame: the updates are too large.

    Each of the last ``patience`` train losses more than ``STEEP`` above the lowest before
    them (at a learning rate no higher than there), the latest ``ALONE`` above it or the
    train accuracy ``DROP`` below its value there, and the rise ``FLOOR`` x ``ln K`` or
    more where the class count ``K`` is known (without it, both the doubling and the
    accuracy's fall); not while the val accuracy holds (``_val_held``). Not where
    ``decay_too_strong`` could speak (decay of
    ``DECAY_STALLS`` or more: its finding names the cause).
    """
    now = history[-1]
    if heavy_decay(now.decay_per_step, now.weight_decay):
        return None
    found = climb(history, patience, STEEP)
    if found is None:
        return None
    evs, low = found
    best = evs[low]
    doubled, fell = loss_doubled(best, now), acc_fell(best, now)
    known = now.classes is not None and now.classes >= 2
    floor = not known or now.train_loss - best.train_loss >= FLOOR * math.log(now.classes)  # type: ignore[arg-type,operator]
    if not floor or not ((doubled or fell) if known else (doubled and fell)):
        return None
    if _val_held(best, now):
        return None  # nothing learnt was undone: the training target got harder instead
    if known and at_chance(now.train_loss, now.classes):  # type: ignore[arg-type]
        return None  # at its chance level: the batches lost the label, no overshoot (hunt 19)
    if train_below_val(best, now) or below_chance(now):
        return None  # the batches or the labels changed, not the model (``labels_turned``)
    return climb_verdict("unstable_training", evs, low)


VAL_HELD = 0.03  # a val accuracy no more than this below its value at the lowest train loss
BN_HELD = 0.1  # ... or on batch statistics no more than this below it (BatchNorm's lag)


def _val_held(best: Evaluation, now: Evaluation) -> bool:
    """Whether the val accuracy holds where it was at the lowest train loss (``VAL_HELD``).

    A climb of the training loss alone is then the training target turning harder (label
    smoothing, CutMix or an augmentation switched on, by design or by a pipeline bug), not
    updates that undo what the model learnt. Held out (hunt 19): label smoothing 0.2
    switched on at epoch 2 took the train loss 0.29 -> 1.03 with train accuracy 91% -> 97%
    and val accuracy 93% -> 95%, told "the updates have grown too large ... and undo what
    it learnt (val accuracy 95.2%)".
    """
    if now.val_accuracy is None or best.val_accuracy is None:
        return False
    if now.val_accuracy >= best.val_accuracy - VAL_HELD:
        return True
    # eval mode fell, the val probe on its own batch statistics did not (by half as much,
    # and BN_HELD at most): BatchNorm's running statistics describe the harder training
    # inputs (``bn_mismatch`` tells it), the weights were not undone (hunt 93: noise and
    # shifts switched on in `training_step` of a BN CNN, eval-mode val 93% -> 70-82%, 89-95%
    # on batch statistics, told "the updates have grown too large")
    bn = now.probe_acc_bn
    lost, kept = best.val_accuracy - now.val_accuracy, best.val_accuracy - (bn or 0.0)
    return bn is not None and kept <= min(BN_HELD, lost / 2)


APART = 0.15  # train accuracy this far below val accuracy, from level with it...
LEVEL = 0.05  # ...where it was no more than this below at the lowest train loss


def train_below_val(best: Evaluation, now: Evaluation) -> bool:
    """Whether train accuracy fell ``APART`` below val accuracy, from ``LEVEL`` with it at ``best``.

    Updates that undo what the model learnt cost both; the training batches alone turning
    harder (noisy labels, corrupted inputs, from a step on) cost train accuracy only.
    Held out (hunt 23): 50% of the labels random from step 64, train accuracy 90% -> 46%
    with val accuracy 88% -> 82%, told "the updates have grown too large".

    Example::

        >>> best = Evaluation(step=64, epoch=3, train_acc=0.899, val_acc=0.877)
        >>> now = Evaluation(step=96, epoch=5, train_acc=0.461, val_acc=0.821)
        >>> train_below_val(best, now), train_below_val(best, best)
        (True, False)
    """
    accs = (best.train_accuracy, best.val_accuracy, now.train_accuracy, now.val_accuracy)
    if None in accs:
        return False
    train_then, val_then, train_now, val_now = accs
    return train_then >= val_then - LEVEL and train_now <= val_now - APART


def recovered(verdict: Verdict, ev: Evaluation) -> bool:
    """Whether the train loss at ``ev`` is back within ``RISE`` of the verdict's lowest."""
    best = verdict.best
    if best is None or best.train_loss is None or ev.train_loss is None:
        return False
    return ev.train_loss <= (1 + RISE) * best.train_loss
