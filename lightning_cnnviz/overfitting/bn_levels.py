"""The BatchNorm level rules: eval mode against the same val probe on batch statistics.

Nothing here knows about Lightning. Like the other level rules (``levels.py``), these
read levels at each evaluation and how many of the latest ones hold them: eval mode far
below batch statistics on the same images (``parted``, confirmed by ``bn_mismatch``, or
at the end of fit by ``bn_mismatch_at_end``), and the evaluations whose eval-mode val
figures measure BatchNorm's running statistics rather than the model (``stale``), which
the curve rules leave out. Thresholds and why: ``docs/diagnosis.md``.

Example::

    >>> e = Evaluation(0, 0, probe_acc_val=0.6, probe_acc_bn=0.9, bn_only=0.3,
    ...                eval_only=0.0, probe_size=128.0)
    >>> parted(e), bn_mismatch([e]), round(bn_mismatch([e, e]).figures["gap_acc"], 2)
    (True, None, 0.3)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from lightning_cnnviz.overfitting import bn_ranks, learnt
from lightning_cnnviz.overfitting.bn_cause import raised_cause
from lightning_cnnviz.overfitting.bn_lag import frozen, lags_long, settling
from lightning_cnnviz.overfitting.bn_ranks import gap, ranked
from lightning_cnnviz.overfitting.chance_levels import chance_band
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.levels import _trailing
from lightning_cnnviz.overfitting.verdict import Verdict

__all__ = [
    "CLOSING",
    "STALE_LOSS",
    "bn_mismatch",
    "bn_mismatch_at_end",
    "discordant",
    "gap",
    "learns_on_batch_stats",
    "no_training_norms",
    "part_threshold",
    "parted",
    "stale",
]


def discordant(e: Evaluation) -> float | None:
    """Share of the val probe right in one of its two passes only (``None``: not counted)."""
    return None if e.bn_only is None or e.eval_only is None else e.bn_only + e.eval_only


def part_threshold(
    acc: float, probe_size: float | None, discordant: float | None = None, gap: float = 0.0
) -> float:
    """The accuracy gap ``parted`` calls a mismatch: ``max(5 points, 3 standard errors)``.

    With ``discordant`` (the share of images right in one pass only) the error is the
    paired one, ``sqrt((discordant - gap^2) / n)``; without it, that of two independent
    accuracies near ``acc`` (larger: 18 points instead of 10 at 61% on 128 images).

    Example::

        >>> round(part_threshold(0.5, 128), 4), part_threshold(0.99, 128)
        (0.1875, 0.05)
        >>> round(part_threshold(0.61, 128, discordant=0.15, gap=0.11), 4)
        0.0985
    """
    n = max(1.0, probe_size or 0.0)
    if discordant is not None:
        spread = max(discordant - gap * gap, 1.0 / n)  # one flip at least
    else:
        spread = 2 * max(acc * (1 - acc), 0.01)
    return max(0.05, 3 * math.sqrt(spread / n))


def parted(e: Evaluation) -> bool | None:
    """Whether eval mode is far worse than batch statistics (``None``: not measured).

    Both passes read the same images, so the gap's standard error is the paired one
    (McNemar: from the images right in one pass only, ``part_threshold``). An
    evaluation whose batch-statistics pass the screen skipped (``bn_screen`` set,
    ``passes.py``: the gap cannot be near the threshold) counts as not parted. Multi-hot
    targets, which have no class accuracy, part by the labels' AUC (``bn_ranks``, hunt 110).
    """
    if e.probe_acc_val is None:
        return bn_ranks.rank_parted(e)
    if e.probe_acc_bn is None:
        return None if e.bn_screen is None else False
    # accuracy only: early in a run the running statistics always lag (a higher eval loss
    # at equal accuracy), which harms nothing and passes within a few dozen steps
    return e.bn_gap_acc > _bar(e)  # type: ignore[operator]


def learns_on_batch_stats(e: Evaluation) -> bool:
    """Whether batch statistics show a model that learns where eval mode does not.

    ``parted``, and the val probe on batch statistics clearly past chance itself
    (``learnt.clearly_learnt``'s bar, on that pass's images): eval mode far below a
    probe still at chance is a constant wrong answer, not learning (held-out hunt 119:
    training labels randomised, 15.6% with batch statistics against 6.2% in eval mode
    on 10 classes, inside the 18% band, told "the model learns").

    Example::

        >>> row = dict(probe_size=128.0, classes=10.0, eval_only=0.0)
        >>> e = Evaluation(423, 8, probe_acc_val=0.062, probe_acc_bn=0.156, bn_only=0.094,
        ...                probe_loss_bn=2.32, **row)
        >>> bool(parted(e)), learns_on_batch_stats(e)
        (True, False)
        >>> learns_on_batch_stats(Evaluation(0, 0, probe_acc_val=0.25, probe_acc_bn=0.55,
        ...                                  bn_only=0.3, **row))
        True
    """
    if not parted(e):
        return False
    if e.probe_acc_val is None:  # multi-hot targets: the labels' AUC parted
        return True
    bn = dataclasses.replace(  # the batch-statistics pass read as the val probe
        e, probe_acc_val=e.probe_acc_bn, probe_loss_val=e.probe_loss_bn,
        probe_size=e.bn_size or e.probe_size,
    )  # fmt: skip
    return learnt.clearly_learnt(bn, uniform=True)  # (its confidence is eval mode's)


STALE_LOSS = 2.0
"""Eval-mode probe loss over this many times the batch-statistics one on the same images."""


def stale(e: Evaluation) -> bool:
    """Whether eval mode's val figures measure BatchNorm's running statistics, not the model.

    ``parted``, or the eval-mode val probe's loss over ``STALE_LOSS`` x its loss with
    batch statistics (same images). The curve rules (overfitting, memorisation) leave
    such evaluations out: a BatchNorm CNN under mixup, whose running statistics come from
    mixed images, went 0.094 -> 0.229 in val loss at 96% eval-mode accuracy (batch
    statistics: probe loss 0.049, 100%), and both curve rules fired. Overfitting raises
    the loss in both modes alike.

    Example::

        >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
        >>> e = Evaluation(0, 0, probe_acc_val=0.97, probe_loss_val=0.214, probe_acc_bn=1.0,
        ...                probe_loss_bn=0.049, bn_only=0.03, eval_only=0.0, classes=4,
        ...                probe_size=128, bn_size=96)
        >>> bool(parted(e)), stale(e)
        (False, True)
    """
    if parted(e):
        return True
    eval_loss, bn_loss = e.probe_loss_val, e.probe_loss_bn
    return eval_loss is not None and bn_loss is not None and eval_loss > STALE_LOSS * bn_loss


def _bar(e: Evaluation) -> float:
    """``part_threshold`` of an evaluation with a batch-statistics pass, on its images."""
    if e.probe_acc_val is None:  # multi-hot targets: the AUC bar
        return bn_ranks.RANK_PART
    gap = e.bn_gap_acc
    return part_threshold(e.probe_acc_bn, e.bn_size or e.probe_size, discordant(e), gap)  # type: ignore[arg-type]


CLOSING = 0.5
"""A gap under this share of the one before is closing: BatchNorm's statistics catching up."""


def bn_mismatch(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """Eval-mode val probe far worse than the same probe with batch statistics.

    The running statistics BatchNorm uses in eval mode no longer match the batch
    statistics the model trains with: eval accuracy more than
    ``max(5 points, 3 paired standard errors)`` below (``parted``) for ``patience``
    evaluations, or parted again, by twice that bar, one evaluation after it last was
    (``_recurs``; the losses are reported as evidence). A gap that shrank to under
    ``CLOSING`` of the one before waits one more: in a resnet18's first steps under SGD,
    validated every 15 steps, eval mode trailed batch statistics by 25 points at step 15
    and 9 at step 30, and was level at step 45. So does a mismatch whose eval mode has
    never left chance (``_eval_never_learnt``): the running statistics have not caught up
    with the run's first, fastest moves yet, unless they still hold much of their initial
    values (``init_held``) or their momentum is small (``_lags_long``), whose lag lasts
    (torchvision's MobileNetV3, momentum 0.01: eval mode at chance at steps 47, 94 and
    141 while batch statistics read 46-78%; running statistics recomputed on training
    data gave 76%). Running statistics holding NaN/Inf (``bn_nonfinite``) are told at
    once (hunt 36: NaN written into a ``running_var``, val NaN from the next validation,
    told as a mismatch two validations on, the NaN never named), and so are statistics
    frozen or as initialised (``bn_lag.frozen``: hunt 86, frozen at step 150, eval mode
    41% against 94% at step 200, told at 250), and so is one that a setting raised right
    before it set off (``bn_cause.raised_cause``, named in ``figures["raised"]``).
    """
    if history and history[-1].bn_nonfinite and not _diverged(history[-1]):
        # no waiting: eval mode reads NaN from now on
        since = next(e for e in history if e.bn_nonfinite)
        figures = {**_mismatch(history, 1).figures, "nonfinite": list(history[-1].bn_nonfinite)}
        return Verdict("bn_mismatch", since, history[-1], None, figures)
    if history and (no_training_norms(history[-1]) or _diverged(history[-1])):
        return None
    evs, streak = _trailing(history, parted)
    if streak and frozen(evs[-1]):  # nothing to catch up: told at its first evaluation
        return _mismatch(evs, streak)
    if streak and (cause := raised_cause(evs, streak)) is not None:
        # a setting raised right before it: that is the cause, and no waiting closes it;
        # since the raise (a lag before it was the run's own)
        found, (after, said) = _mismatch(evs, streak), cause
        since = max(found.since, after, key=lambda e: e.step)
        return dataclasses.replace(found, since=since, figures={**found.figures, "raised": said})
    if streak >= patience and gap(evs[-1]) < CLOSING * gap(evs[-2]):  # type: ignore[operator]
        return None  # closing fast: the running statistics catching up; one more evaluation
    if streak == patience and _eval_never_learnt(history) and not lags_long(evs[-1]):
        return None
    if streak < patience:
        streak = _recurs(evs)
        if not streak:
            return None
    found = _mismatch(evs, streak)
    if settling(evs[-1]) and not lags_long(evs[-1]):
        return dataclasses.replace(found, figures={**found.figures, "early": True}, severity="note")
    return found


def _eval_never_learnt(history: Sequence[Evaluation]) -> bool:
    """Whether eval mode has been at chance on the val probe at every evaluation so far.

    Early in a run the running statistics trail weights that move fast, most in deep
    nets: a timm RepVGG-A0 under Adam, validated every 16 steps, read 10% in eval mode at
    steps 16 and 32 (46% and 73% with batch statistics), then 74% against 85% at step 63
    and level at 79. A mismatch that stays waits one evaluation longer; the eval mode of
    a lagging ResNet already read 20-29% (chance band 18%) at its first validation and
    52-69% at its second, where it is confirmed.

    Example::

        >>> def ev(acc):
        ...     return Evaluation(0, 0, probe_acc_val=acc, classes=10.0, probe_size=128.0)
        >>> _eval_never_learnt([ev(0.1), ev(0.12)]), _eval_never_learnt([ev(0.1), ev(0.4)])
        (True, False)
    """
    if history and all(ranked(e) for e in history):  # multi-hot targets: the labels' AUC
        return all(bn_ranks.rank_never_learnt(e) for e in history)
    accs = [(e.probe_acc_val, e.classes, e.probe_size) for e in history]
    return all(
        acc is not None and k and acc <= chance_band(int(k), int(n or 0)) for acc, k, n in accs
    )


def bn_mismatch_at_end(history: Sequence[Evaluation]) -> Verdict | None:
    """At the end of fit: the last evaluation parted, confirmed or not (``bn_mismatch``).

    No later evaluation can confirm it or see it close, and the model that fit hands
    back is that much worse in eval mode: a BatchNorm CNN under mixup ended at 52% val
    probe accuracy in eval mode vs 100% with batch statistics, its mismatch of the last
    validation still waiting for a second one.
    """
    if history and no_training_norms(history[-1]):
        return None
    evs, streak = _trailing(history, parted)
    return _mismatch(evs, streak) if streak else None


def no_training_norms(e: Evaluation) -> bool:
    """Whether no BatchNorm layer trains in training mode at ``e`` (none, or all in eval mode).

    No batch-statistics pass and no screen at an evaluation with val logits: the model held
    no BatchNorm layer in training mode as the training steps resumed (none at all, or put
    in eval mode by a callback, frozen on purpose). It trains on its running statistics
    then, the mode it is validated in: an earlier pass's mismatch no longer describes it
    (held out, hunt 89: every BatchNorm put in eval mode from step 300, val 84% -> 96%,
    told at the end of fit from a pass at step 282, before the freeze).

    Example::

        >>> no_training_norms(Evaluation(300, 3, probe_acc_val=0.9))
        True
        >>> no_training_norms(Evaluation(300, 3, probe_acc_val=0.9, bn_screen=0.01))
        False
    """
    return (e.probe_acc_val is not None or ranked(e)) and parted(e) is None


def _diverged(e: Evaluation) -> bool:
    """Whether training itself gives NaN/Inf: batch statistics too, else the loss returned.

    Running statistics hold NaN then because everything does: no mismatch of the two
    modes (hunt 101: a diverged Conv1d+BN net, every training loss NaN from step 5, was
    also told "BatchNorm running statistics hold NaN/Inf ... while training goes on").
    """
    loss = e.probe_loss_bn if e.probe_loss_bn is not None else e.returned_loss
    return loss is not None and not math.isfinite(loss)


def _mismatch(evs: Sequence[Evaluation], streak: int) -> Verdict:
    now = evs[-1]
    if now.probe_acc_val is None and ranked(now):  # multi-hot targets: the labels' AUC
        return Verdict("bn_mismatch", evs[-streak], now, None, bn_ranks.mismatch_figures(now))
    figures = {
        "eval_acc": now.bn_eval_acc,
        "batch_stats_acc": now.probe_acc_bn,
        "eval_loss": now.probe_loss_val,
        "batch_stats_loss": now.probe_loss_bn,
        "gap_acc": now.bn_gap_acc,
    }
    return Verdict("bn_mismatch", evs[-streak], now, None, figures)


def _recurs(evs: Sequence[Evaluation], window: int = 3, strength: float = 2.0) -> int:
    """A mismatch that came back: the evaluations since it first parted, else 0.

    The latest evaluation parted by ``strength`` x its bar and another of the last
    ``window`` parted too. A small ResNet under SGD 0.1 parted at its first validation
    (16 points, bar 14), came within 5 points at its second and parted by 26 (bar 12.5)
    at its third and last: a streak rule never confirmed it.

    Example::

        >>> def ev(val, bn, disc):
        ...     return Evaluation(0, 0, probe_acc_val=val, probe_acc_bn=bn, bn_only=disc,
        ...                       eval_only=0.0, probe_size=128.0)
        >>> _recurs([ev(0.46, 0.62, 0.3), ev(0.76, 0.80, 0.12), ev(0.65, 0.91, 0.29)])
        3
        >>> _recurs([ev(0.46, 0.62, 0.3), ev(0.76, 0.80, 0.12), ev(0.75, 0.91, 0.2)])
        0
    """
    if not evs or not parted(evs[-1]):
        return 0
    if gap(evs[-1]) < strength * _bar(evs[-1]):  # type: ignore[operator]
        return 0
    earlier = [i for i, e in enumerate(evs[-window:-1]) if parted(e)]
    return len(evs[-window:]) - earlier[0] if earlier else 0
