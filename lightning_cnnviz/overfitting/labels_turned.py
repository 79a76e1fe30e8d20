"""Training labels turned noisy during the run: the loss steps up, train accuracy below val.

Nothing here knows about Lightning. Updates that undo what a model learnt cost train and
val accuracy alike (``loss_climb.unstable``); training batches whose labels turned wrong
from a step on cost the train accuracy most, and the val accuracy some, which the model
then loses further as it memorises them. Held out (hunt 61): 40% of the labels random
from step 150 (train accuracy 97% -> 44-63%, val 96% -> 88%) was told nothing for 9
validations, then "training unstable: the updates have grown too large". Told as
``memorisation`` (noisy labels), with its own sentence (``headline``).

Example::

    >>> rows = [(0.2, 0.9, 0.9), (0.05, 0.97, 0.96), (2.4, 0.44, 0.61), (1.8, 0.62, 0.88)]
    >>> evs = [Evaluation(25 * i, i, train_loss=loss, train_acc=t, val_acc=v, lr=1e-3,
    ...                   classes=10.0, val_images=1000.0) for i, (loss, t, v) in enumerate(rows)]
    >>> v = labels_turned(evs)
    >>> v.kind, v.since.step, v.best.step
    ('memorisation', 50, 25)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lightning_cnnviz.core.chance import at_chance
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.loss_climb import DROP, STEEP, climb, train_below_val
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import num, when

__all__ = ["headline", "labels_turned", "seen_on_batch_stats", "turning"]


def labels_turned(
    history: Sequence[Evaluation], patience: int = 2, to_chance: bool = False
) -> Verdict | None:
    """``memorisation`` where the training labels turned noisy during the run.

    The training loss ``STEEP`` above its lowest at each of the last ``patience``
    evaluations at a learning rate no higher (``loss_climb.climb``), the train accuracy
    from level with the val accuracy to far below it (``loss_climb.train_below_val``), and
    the val accuracy ``DROP`` (or 3 standard errors of the val set's) below its value at
    the lowest loss at each of those evaluations: a val accuracy that holds is a training
    target turned harder on purpose (MixUp, label smoothing, an augmentation switched on).
    Not at the loss's chance level (but with ``to_chance``): batches that lost the label
    altogether are not learning.
    """
    found = climb(history, patience, STEEP)
    if found is None:
        return None
    evs, low = found
    best, now = evs[low], evs[-1]
    if not train_below_val(best, now) or best.val_accuracy is None or now.val_accuracy is None:
        return None
    n, then = now.val_images, best.val_accuracy
    noise = 3.0 * math.sqrt(max(then * (1 - then), 1e-4) / n) if n else 0.0
    recent = [e.val_accuracy for e in evs[-patience:]]
    if any(v is None or v > then - max(DROP, noise) for v in recent):
        return None  # at each of them: one dip is noise (hunt 63: CutMix switched on)
    chance = bool(now.classes and now.classes >= 2 and at_chance(now.train_loss, now.classes))  # type: ignore[arg-type]
    if chance and not to_chance:
        return None
    figures = {
        "turned": True,
        "best_epoch": best.epoch,
        "best_step": best.step,
        "best_val_acc": then,
        "val_acc": now.val_accuracy,
        "drop": then - now.val_accuracy,
        "train_acc": now.train_accuracy,
        "train_acc_at_best": best.train_accuracy,
        "best_train_loss": best.train_loss,
        "train_loss": now.train_loss,
    }
    return Verdict("memorisation", evs[low + 1], now, best, figures)


def seen_on_batch_stats(v: Verdict, history: Sequence[Evaluation], patience: int = 2) -> bool:
    """Whether ``v``'s val fall (``labels_turned``'s) shows on the probe with batch statistics.

    While BatchNorm's running statistics are off, eval mode's val figures may fall for them
    alone: MixUp switched on mid-run steps the training loss up and gathers the running
    statistics on mixed images (a BatchNorm CNN at 96% eval mode, 100% on batch statistics).
    The val probe with batch statistics ``DROP`` below its value at the lowest loss at each
    of the last ``patience`` evaluations is the model losing what it learnt, which
    ``labels_turned`` tells beside a BatchNorm gap (held-out hunt 125: 50% wrong labels from
    step 128, batch statistics 93% -> 77% -> 87%, told as a BatchNorm lag alone).
    ``False`` where batch statistics were not read at those evaluations.

    Example::

        >>> evs = [Evaluation(10 * i, i, probe_acc_bn=a) for i, a in enumerate((.93, .77, .87))]
        >>> v = Verdict("memorisation", evs[1], evs[2], evs[0], {})
        >>> seen_on_batch_stats(v, evs), seen_on_batch_stats(v, evs[:2] + [evs[0]])
        (True, False)
    """
    then = v.best.probe_acc_bn if v.best is not None else None
    recent = [e.probe_acc_bn for e in history[-patience:]]
    return then is not None and all(a is not None and a <= then - DROP for a in recent)


def turning(history: Sequence[Evaluation]) -> Verdict | None:
    """``labels_turned`` at the latest evaluation alone, its val fall seen on batch statistics.

    What a BatchNorm mismatch beside it waits on (``bn_cause.data_cause``) where
    ``labels_turned`` cannot tell yet: at the first evaluation after the turn, or one whose
    val fall came back for a single evaluation. Also where the training loss stepped up to its
    chance level: half the labels wrong took a digit CNN's from 0.47 to 2.26 (ln 10 = 2.30)
    at the first validation after (held-out hunt 125), 2.01 at the second.

    Example::

        >>> rows = [(0.4, 0.9, 0.88, 0.95), (0.3, 0.92, 0.9, 0.96), (2.26, 0.33, 0.61, 0.77)]
        >>> evs = [Evaluation(32 * i, i, train_loss=loss, train_acc=t, val_acc=v,
        ...                   probe_acc_bn=b, lr=3e-3, classes=10.0, val_images=500.0)
        ...        for i, (loss, t, v, b) in enumerate(rows)]
        >>> labels_turned(evs, 1), turning(evs).since.step
        (None, 64)
    """
    v = labels_turned(history, 1, to_chance=True)
    return v if v is not None and seen_on_batch_stats(v, history, 1) else None


def headline(v: Verdict) -> str:
    """``labels_turned``'s finding in one sentence."""
    f, best = v.figures, v.best
    assert best is not None
    return (
        f"Training labels turned noisy since {when(v.since)}: the training loss stepped up "
        f"from {num(f['best_train_loss'])} ({when(best)}) to {num(f['train_loss'])} at an "
        f"unchanged learning rate, and train accuracy fell to {num(f['train_acc'], True)}, "
        f"below val accuracy ({num(f['val_acc'], True)}; {num(f['best_val_acc'], True)} "
        "then): the training batches changed from then on, not the model. A share of their "
        "labels (or images) wrong or random from that step: a label map or noise applied "
        "during the run, a corrupted file read from then on? The model will memorise them, "
        "and val accuracy falls as it does."
    )
