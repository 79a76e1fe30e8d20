"""Training and validation images preprocessed differently: every val figure measures that.

Nothing here knows about Lightning. ``Measures`` compares the two probes' images once per
fit (``core.input_shift.split_shift``: per-channel mean and spread) and carries the result in
each ``Evaluation`` (``input_shift``). Validation digits left unnormalised while training
digits were normalised gave 64-77% val accuracy against 91% train without BatchNorm (no
finding), and with BatchNorm eval mode at 10-48% against 85-98% with batch statistics,
told as a BatchNorm mismatch whose remedies fix nothing. The rule names the inputs.

Example::

    >>> shift = {"channel": 0.0, "train_mean": 0.0, "train_std": 1.0, "val_mean": 0.13,
    ...          "val_std": 0.31, "mean_gap": 0.18, "scale_ratio": 3.2}
    >>> e = Evaluation(46, 0, input_shift=shift)
    >>> inputs_differ([Evaluation(23, 0, input_shift={}), e], bn=None) is None
    False
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning_cnnviz.overfitting import bn_levels, gap
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.levels import _trailing
from lightning_cnnviz.overfitting.verdict import Verdict

__all__ = ["inputs_differ", "noise_costs", "restandardised", "with_bn_gap"]


def inputs_differ(
    history: Sequence[Evaluation], bn: Verdict | None, patience: int = 2
) -> Verdict | None:
    """The probes' inputs differ (``input_shift`` not empty) at the latest evaluation.

    No patience: the probes are fixed, so the comparison is the same at every evaluation.
    Or they differ past milder bars (``mild_shift``) and BatchNorm tells the same
    (``bn_levels.bn_mismatch``: eval mode, on running statistics gathered from training
    images, far below the val probe's own batch statistics): held out (hunt 20), val
    digits normalised with other constants (0.9 standard deviations apart, 1.6x in
    spread) or with noise added (1.3x) read 82% in eval mode against 94.5% with batch
    statistics, and running statistics recomputed on training data changed nothing.
    ``bn`` is ``bn_levels.bn_mismatch``'s verdict on the same ``history``.
    """
    if not history:
        return None
    now = history[-1]
    if (now.input_shift or {}).get("moved_train") and not _worse(history):
        return None  # a training pipeline changed on purpose (a curriculum) and did no harm
    if now.input_shift and _after_train_moved(history) and not _worse(history):
        return None  # ... the probes parting since the train probe read the changed items
    if now.input_shift and (harmed := _items_harmed(history)) is not None:
        since = next(e for e in history if e.input_shift)
        figures = _train_side(now, {**now.input_shift, **harmed})
        return Verdict("inputs_differ", since, now, None, figures)
    if not now.mild_shift:
        # the screen saw nothing, yet eval mode keeps training images and loses val ones that
        # their own batch statistics get back: the val images differ (held-out hunt 117);
        # or only part of them, a cue on training images only (held-out hunt 125), where no
        # train/val gap tells it (hunt 109: ``generalisation_gap``, ``precedence``)
        shifted = bn is not None and gap.kept_on_train_images(now)
        return with_bn_gap(bn, now) if shifted else None  # type: ignore[arg-type]
    if bn is not None and not gap.failed_on_train_images(now) and (v := with_bn_gap(bn, now)):
        # ... not where eval mode fails the training images too: the gap is the running
        # statistics' then, and no evidence about the inputs (hunt 115)
        return v
    evs, streak = _trailing(history, restandardised)
    if streak >= patience:
        figures = {**now.mild_shift, "given_acc": now.given_acc,  # type: ignore[dict-item]
                   "restandardised_acc": now.restd_acc}  # fmt: skip
        return Verdict("inputs_differ", evs[-streak], now, None, _train_side(now, figures))
    evs, streak = _trailing(history, noise_costs)
    if streak < patience:
        return None
    figures = {**now.mild_shift, "noisy_acc": now.noisy_acc,  # type: ignore[dict-item]
               "clean_acc": now.clean_acc, "noisy_val_acc": now.val_accuracy}  # fmt: skip
    return Verdict("inputs_differ", evs[-streak], now, None, _train_side(now, figures))


def _after_train_moved(history: Sequence[Evaluation]) -> bool:
    """Whether the probes parted only once the train probe read changed training items.

    Example::

        >>> shift = {"channel": 0.0, "mean_gap": 2.0, "scale_ratio": 1.0}
        >>> h = [Evaluation(10, 0, input_shift={}), Evaluation(20, 1, input_shift=shift,
        ...                                                    train_moved_at=20)]
        >>> before = Evaluation(10, 0, input_shift=shift)  # parted before the change
        >>> _after_train_moved(h), _after_train_moved([before, h[1]])
        (True, False)
    """
    at = history[-1].train_moved_at
    return at is not None and not any(e.input_shift for e in history if e.step < at)


WORSE = 1.1  # val loss this many times its best before: the change did harm


def _worse(history: Sequence[Evaluation]) -> bool:
    """Whether the val loss now is ``WORSE`` x its best before (``False``: not known)."""
    now, before = history[-1].val_loss, [e.val_loss for e in history[:-1]]
    best = min((b for b in before if b is not None), default=None)
    return now is not None and best is not None and now > WORSE * best


JUMP = 1.5  # val loss this many times the one before the val items changed: they did harm
DROP = 0.25  # ... or this share of the val accuracy lost with a val loss ``WORSE`` x that one


def _items_harmed(history: Sequence[Evaluation]) -> dict[str, float] | None:
    """The val loss and accuracy before and at the val items' change, if they did harm.

    The items changing (``items_moved``) is no harm in itself (a val set re-drawn), and
    a val loss that was rising already is the model's (overfitting): only a val loss
    ``JUMP`` x the evaluation's before, or ``WORSE`` x it with ``DROP`` of the val accuracy
    lost, at the change, tells it. ``{}`` for any other shift; ``None`` where the items
    changed and validation did not get worse with them.

    Example::

        >>> moved = {"items_moved": 1.0}
        >>> h = [Evaluation(32, 0, val_loss=1.8, val_acc=0.4)]
        >>> h.append(Evaluation(64, 1, val_loss=2.4, val_acc=0.1, input_shift=moved))
        >>> _items_harmed(h)
        {'before_loss': 1.8, 'moved_loss': 2.4, 'before_acc': 0.4, 'moved_acc': 0.1}
        >>> _items_harmed([Evaluation(32, 0, val_loss=2.3, val_acc=0.4), h[1]]) is None
        True
    """
    if not (history[-1].input_shift or {}).get("items_moved"):
        return {}
    i = next(i for i, e in enumerate(history) if (e.input_shift or {}).get("items_moved"))
    if i == 0:
        return None
    before, at = history[i - 1], history[i]
    if before.val_loss is None or at.val_loss is None:
        return None
    accs = (before.val_accuracy, at.val_accuracy)
    fell = None not in accs and accs[1] < (1 - DROP) * accs[0]  # type: ignore[operator]
    if not (
        at.val_loss > JUMP * before.val_loss or (fell and at.val_loss > WORSE * before.val_loss)
    ):
        return None
    figures = {"before_loss": before.val_loss, "moved_loss": at.val_loss}
    return figures | ({"before_acc": accs[0], "moved_acc": accs[1]} if None not in accs else {})


def restandardised(e: Evaluation) -> bool | None:
    """Whether the val probe reads far better re-standardised to the training images' statistics.

    The same images, moved per channel to the train probe's mean and spread
    (``Evaluation.restd_acc``), against as given: better by more than
    ``bn_levels.part_threshold`` (5 points, or 3 paired standard errors). Held out (hunts
    20, 21): val digits normalised with other constants on nets without BatchNorm
    (GroupNorm; plain) read 71-89% against 96% normalised alike, and nothing was said.
    ``None``: not measured (no milder shift).
    """
    if e.restd_acc is None or e.given_acc is None:
        return None
    gap = e.restd_acc - e.given_acc
    discordant = (e.restd_only or 0.0) + (e.given_only or 0.0)
    return gap > bn_levels.part_threshold(e.restd_acc, e.restd_size, discordant, gap)


def noise_costs(e: Evaluation) -> bool | None:
    """Whether the val images' extra spread, as noise on training images, costs what val loses.

    The train probe with each channel's extra spread added as noise (``noisy_acc``)
    below itself as given (``clean_acc``) by more than ``bn_levels.part_threshold``, and
    the val accuracy (logged over the val set, else the val probe's) at least half as far
    below it: the val images' noise explains their lower score, which re-standardising
    cannot undo. Held out (hunt 91): val digits with noise of sd 0.8 on a CNN without
    BatchNorm, 82.6% against 93.4% clean, 1.28x in spread, told nothing. ``None``: not
    measured.

    Example::

        >>> noisy = dict(noisy_acc=0.83, clean_acc=0.97, noisy_only=0.01, clean_only=0.15,
        ...              noisy_size=128.0)
        >>> noise_costs(Evaluation(64, 1, probe_acc_val=0.84, **noisy))
        True
        >>> noise_costs(Evaluation(64, 1, probe_acc_val=0.96, **noisy))  # val does not lose it
        False
    """
    val = e.val_accuracy
    if e.noisy_acc is None or e.clean_acc is None or val is None:
        return None
    cost = e.clean_acc - e.noisy_acc
    discordant = (e.noisy_only or 0.0) + (e.clean_only or 0.0)
    if not cost > bn_levels.part_threshold(e.clean_acc, e.noisy_size, discordant, cost):
        return False
    return e.clean_acc - val >= cost / 2


def with_bn_gap(bn: Verdict, now: Evaluation) -> Verdict | None:
    """``inputs_differ`` from a BatchNorm gap ``bn`` where ``now`` has a ``mild_shift``.

    Or none, where eval mode keeps the training images (``gap.kept_on_train_images``).
    Also at the end of fit, where the last validation's gap waits for no confirmation
    (``bn_levels.bn_mismatch_at_end``): the unlike inputs are the cause there too.

    ``None`` where the val probe holds classes no training label has (``missing``, told by
    ``class_imbalance``) or the train probe has no image of (``val_only``: drawn before a
    class curriculum reached them): eval mode on the train probe then reads other classes
    than on the val probe, and running statistics gathered on fewer classes than a val
    batch holds, so neither says anything of the images (held-out hunt 126: digits 0-4
    first, all ten from epoch 2, val 25% in eval mode and 46% on batch statistics against
    46% on the train probe, was told "validation images differ" and kept to the end).

    Example::

        >>> bn = Verdict("bn_mismatch", None, None, None, {"eval_acc": 0.25})
        >>> with_bn_gap(bn, Evaluation(32, 1)).figures["eval_acc"]
        0.25
        >>> with_bn_gap(bn, Evaluation(64, 2, val_only=[5, 6, 7, 8, 9])) is None
        True
    """
    if now.missing or now.val_only:
        return None
    levels = ("eval_acc", "batch_stats_acc", "eval_rank", "batch_stats_rank")  # AUCs: multi-hot
    figures = {**(now.mild_shift or {}), **{k: bn.figures[k] for k in levels if k in bn.figures}}
    if now.probe_acc_train is not None:  # eval mode on training images: the statistics fit
        figures["train_eval_acc"] = now.probe_acc_train
    return Verdict("inputs_differ", bn.since, now, None, _train_side(now, figures))


def _train_side(now: Evaluation, figures: dict[str, float]) -> dict[str, float]:
    """``figures``, with the step the training items were read changed at, where they were.

    The train probe then holds the training images as they are now
    (``train_items.TrainItems``), and the probes part because the training images
    changed mid-run (held-out hunt 125: a cue on training images only), not because the
    val set was prepared otherwise; a change on the val side (``moved``, ``items_moved``)
    or in the steps' own code speaks for itself.

    Example::

        >>> _train_side(Evaluation(160, 4, train_moved_at=128), {"eval_acc": 0.8})
        {'eval_acc': 0.8, 'train_items_moved': 128.0}
        >>> _train_side(Evaluation(160, 4), {"eval_acc": 0.8})
        {'eval_acc': 0.8}
    """
    own = ("moved", "items_moved", "moved_train", "in_steps", "as_loaded")
    if now.train_moved_at is None or any(figures.get(k) for k in own):
        return figures
    return {**figures, "train_items_moved": float(now.train_moved_at)}
