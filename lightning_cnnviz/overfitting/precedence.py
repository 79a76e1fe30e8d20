"""Which rules' verdicts stand at one evaluation, and which wait for another finding.

Nothing here knows about Lightning. ``verdicts`` runs every rule on the whole history
(``rules.py``, ``levels.py``, ``bn_levels.py`` and the others) and sets aside those whose
figures another finding explains: eval-mode val figures while BatchNorm's running
statistics are off, the val curves of a model at chance, everything eval mode reads
while the val images are unlike the training ones. A finding that stands (reported and
not gone) never waits. The ``Detector`` (``detector.py``) compares what is left with
what it reported before.

Example::

    >>> e = Evaluation(60, 1, probe_acc_val=0.11, probe_loss_val=2.3, probe_size=128.0,
    ...                classes=10.0)
    >>> [kind for kind, v in verdicts([e, e], {}).items() if v is not None]
    ['not_learning']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from lightning_cnnviz.overfitting import (
    blind_level,
    bn_cause,
    bn_levels,
    chance_levels,
    class_fading,
    decay_rule,
    flat_loss,
    gap,
    imbalance,
    label_prior,
    levels,
    loss_climb,
    loss_reads,
    lr_decay,
    memorisation,
    rules,
    same_output,
    split_inputs,
    val_source,
)
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.labels_turned import labels_turned, seen_on_batch_stats, turning
from lightning_cnnviz.overfitting.verdict import Verdict

__all__ = [
    "CURVE_KINDS",
    "EVAL_KINDS",
    "beside_inputs",
    "bn_leaves_out",
    "split_now",
    "standing",
    "train_moved",
    "verdicts",
]

CURVE_KINDS = ("memorisation", "overfitting")  # read the eval-mode val curves
EVAL_KINDS = ("not_learning", "generalisation_gap", *CURVE_KINDS)  # read eval-mode val figures


def standing(reported: Mapping[str, Verdict], kind: str) -> bool:
    """Whether ``kind`` was reported and is still a problem."""
    old = reported.get(kind)
    return old is not None and old.severity != "note"


def bn_leaves_out(e: Evaluation) -> bool:
    """Whether every class eval mode leaves out is recognised on batch statistics.

    The running statistics leave them out then, not the loss or the data (hunt 52:
    BatchNorm momentum 0.001, class 9 at 14% val recall in eval mode and 93% on batch
    statistics, told "not taught: a `weight=` of 0").

    Example::

        >>> bn_leaves_out(Evaluation(0, 0, ignored=[9], recognised_bn=[9]))
        True
    """
    return bool(e.recognised_bn) and set(e.ignored or ()) <= set(e.recognised_bn or ())


def train_moved(shift: Verdict | None) -> bool:
    """Whether ``shift`` (an ``inputs_differ``) is the training images changed mid-run.

    BatchNorm's running statistics follow the changed batches then: eval mode failing the
    train probe's images (as they were) is that change, never a lag beside it (held-out
    hunt 119: inputs zeroed from epoch 5, told "let the running statistics catch up").

    Example::

        >>> e = Evaluation(282, 5)
        >>> train_moved(Verdict("inputs_differ", e, e, None, {"moved_train": 1.0}))
        True
        >>> train_moved(Verdict("inputs_differ", e, e, None, {"train_items_moved": 128.0}))
        True
    """
    if shift is None:
        return False
    # a batch's statistics moved, or the train probe's items read changed (at a step: 0 too)
    return bool(shift.figures.get("moved_train")) or "train_items_moved" in shift.figures


def beside_inputs(bn: Verdict) -> Verdict:
    """``bn`` (a ``bn_mismatch``) told beside unlike inputs: with the train probe's eval mode.

    Example::

        >>> e = Evaluation(60, 1, train_acc=0.91, probe_acc_train=0.09)
        >>> beside_inputs(Verdict("bn_mismatch", e, e, None, {})).figures["train_eval_acc"]
        0.09
    """
    now = bn.detected
    figures = {**bn.figures, "train_eval_acc": now.probe_acc_train,
               "train_acc": levels.train_accuracy(now), "beside_inputs": True}  # fmt: skip
    return dataclasses.replace(bn, figures=figures)


def split_now(history: Sequence[Evaluation]) -> bool:
    """Whether the latest evaluation that measured split classes found any (``class_gap``).

    Example::

        >>> split_now([Evaluation(10, 0, split_classes=[2]), Evaluation(20, 1),
        ...            Evaluation(30, 2, split_classes=[])])
        False
    """
    measured = [e.split_classes for e in history if e.split_classes is not None]
    return bool(measured and measured[-1])


def verdicts(
    history: Sequence[Evaluation],
    reported: Mapping[str, Verdict],
    tolerance: float = 0.05,
    patience: int = 2,
) -> dict[str, Verdict | None]:
    """Each rule's verdict on ``history`` (in ``detector.KINDS`` order), the waiting ones ``None``.

    ``reported``: what the detector reported so far; a kind that stands there is never
    made to wait. ``tolerance`` and ``patience`` are the ``Detector``'s.
    """
    h, p = history, patience
    # the curves without the evaluations whose eval mode BatchNorm's statistics broke: a
    # Conv3d net at 99.5% val accuracy had its val loss 0.016 -> 1.98 -> 0.022 at one
    # such evaluation (batch statistics: 99%), then "overfitting" from that jump
    curve = [e for e in h if not bn_levels.stale(e)]
    bn = bn_levels.bn_mismatch(h, p)
    turned = labels_turned(h, p)
    found = {
        "val_metrics_differ": val_source.val_metrics_differ(h, p),
        "loss_mismatch": loss_reads.loss_mismatch(h, p),
        "inputs_differ": split_inputs.inputs_differ(h, bn, p),
        "class_imbalance": imbalance.class_imbalance(h, p),
        "not_learning": levels.not_learning(h, p)
        or flat_loss.not_moving(h, p)
        or label_prior.one_answer(h, p)
        or blind_level.at_mean(h, p)
        or same_output.same_output(h, p),
        "weight_decay_too_strong": decay_rule.decay_too_strong(h, p),
        "unstable_training": loss_climb.unstable(h, p),
        "bn_mismatch": bn,
        "generalisation_gap": gap.generalisation_gap(h, p),
        "memorisation": memorisation.memorisation(curve, p) or turned,
        "overfitting": rules.overfitting(curve, tolerance, p),
        "lr_decayed_early": lr_decay.decayed_early(h, p),
    }
    waiting: set[str] = set()
    parted = bn_levels.parted(h[-1])
    if bn_levels.learns_on_batch_stats(h[-1]):
        # the probe with batch statistics well above eval mode and clearly past chance:
        # the model learns, and eval mode's chance-level figures are BatchNorm's running
        # statistics (a torchvision MNASNet, momentum 3e-4: 25% in eval mode, 55% with
        # batch statistics). Even a told "not learning" ends here (`Detector._gone`).
        found["not_learning"] = None
    if found["bn_mismatch"] is not None or parted:
        # eval-mode val figures now measure BatchNorm's stale running statistics, not
        # generalisation (also at a single validation whose own BatchNorm gap is past
        # the bar): nothing new from them; nor a common class left out in eval mode (a
        # U-Net's class 8 at 5% recall in eval mode, 98% with batch statistics)
        waiting.update(EVAL_KINDS)
        if found["class_imbalance"] is not None and found["class_imbalance"].figures["common"]:
            waiting.add("class_imbalance")
        if found["generalisation_gap"] is not None and (
            gap.gapped_on_batch_stats(h[-1]) or gap.held_on_train_images(h[-1])
        ):
            # ... but a gap as wide on batch statistics, or one beside eval mode right on
            # training images, is the splits' (a cue only training images carry), and eval
            # mode's statistics parted with them: told as the gap
            waiting.discard("generalisation_gap")
            if not gap.failed_on_train_images(h[-1]):
                waiting.add("bn_mismatch")  # ... unless eval mode fails training images too:
                # the running statistics' as well, told beside (hunt 115)
    if bn_leaves_out(h[-1]):
        waiting.add("class_imbalance")
    if bn_levels.stale(h[-1]):
        waiting.update(CURVE_KINDS)  # the curves did not move: nothing new from them
    if turned is not None and "memorisation" in waiting and seen_on_batch_stats(turned, h):
        # ... but training labels turned noisy read the training loss and accuracy, which
        # BatchNorm's running statistics do not touch, and a val fall the model shows with
        # batch statistics too (held-out hunt 125: 50% wrong labels from step 128 were told
        # as a BatchNorm lag, and never as the labels)
        found["memorisation"] = turned
        waiting.discard("memorisation")
    # a mismatch the changed training data explain is theirs, folded into their finding
    # (held-out hunt 125: told "raise momentum" beside labels turned noisy); where the
    # labels turn at the latest evaluation alone (``turning``), it waits on them
    data = ("memorisation", "class_imbalance")
    held = [found[k] for k in data if k not in waiting] + [reported.get(k) for k in data]
    cause = bn_cause.data_cause(found["bn_mismatch"], [*held, turning(h)])
    if cause is not None:
        waiting.add("bn_mismatch")
        if found[cause.kind] is cause:
            found[cause.kind] = bn_cause.fold(cause, found["bn_mismatch"])  # type: ignore[arg-type]
    if found["not_learning"] is not None or chance_levels.stuck(h[-1]):
        waiting.update(CURVE_KINDS)  # a model at chance learnt nothing to overfit

    def told(kind: str) -> bool:  # standing, or found now and not waiting itself
        return standing(reported, kind) or (found[kind] is not None and kind not in waiting)

    if h[-1].val_elsewhere:
        # another module validated (an EMA's copy): while its logged accuracy trails the
        # model's, that is no gap (hunt 79: a lagging EMA was told "the splits differ"; a
        # misfed loss is not read from another model's figures, ``loss_reads``); once it
        # caught up, its figures are read (hunt 81: a real misfed loss held all run)
        if val_source.trails(h[-1]):
            waiting.add("generalisation_gap")
    elif told("val_metrics_differ"):
        # the logged val figures are not the model's: the curves and the gap read them
        waiting.update(("loss_mismatch", "generalisation_gap", "lr_decayed_early", *CURVE_KINDS))
    if told("loss_mismatch"):
        # a loss that misreads the outputs or rewards wrong answers: a model at chance or
        # below it is that (hunt 29: a focal loss minimised by wrong answers was told "not
        # learning ... may follow from a scaled loss")
        waiting.add("not_learning")
    if told("inputs_differ"):
        # val images unlike the training ones: every eval-mode val figure measures that;
        # not a BatchNorm gap whose eval mode fails the training images too: that is the
        # running statistics' beside the inputs (hunt 115: momentum 0.01 and noisy val
        # digits, eval mode at 7-9% on training images, told as the inputs alone)
        waiting.update(("class_imbalance", *EVAL_KINDS))
        moved = train_moved(found["inputs_differ"] or reported.get("inputs_differ"))
        if moved:
            waiting.add("unstable_training")  # the training loss climbs on its new images
        if moved or found["bn_mismatch"] is None or not gap.failed_on_train_images(h[-1]):
            waiting.add("bn_mismatch")  # ... nor where the training images changed
        else:
            found["bn_mismatch"] = beside_inputs(found["bn_mismatch"])
    if told("class_imbalance") and split_now(h):
        # ... beside classes learnt on training images and left out on val ones: the splits
        # differ too, and the rising val curve is that (hunt 27: training labels moved for
        # classes 5-9, 5 lost from training; "overfitting, stop at epoch 0" followed)
        waiting.update(("not_learning", *CURVE_KINDS))
    elif told("class_imbalance"):
        # rare classes left out: a balanced val probe at chance or far below training
        # accuracy says that, not "not learning" or splits that differ
        waiting.update(("not_learning", "generalisation_gap"))
        if imbalance.explains_val_loss(h, found["class_imbalance"] or reported["class_imbalance"]):
            waiting.update(CURVE_KINDS)  # ... and a class not taught, a rising val loss
    elif class_fading.fading(h):
        # a class learnt and fading while the others hold, at one evaluation so far: its
        # images taken for another class raise the val loss (hunt 57: "overfitting, stop
        # at epoch 2" for a class given `ignore_index` during the run); the next one tells
        waiting.update(("generalisation_gap", *CURVE_KINDS))
    elif imbalance.leaves_out(h[-1]):
        # ... and while it waits for its second evaluation (hunt 24: a long-tailed
        # training set was "the splits differ" one validation before its classes were named)
        waiting.add("generalisation_gap")
    noisy = found["memorisation"] or reported.get("memorisation")
    if told("memorisation") and noisy is not None and noisy.figures.get("turned"):
        # training labels turned noisy: the training loss climbs on them, not on updates
        # grown too large (hunt 61: "training unstable" 7 validations after it was told)
        waiting.add("unstable_training")
    if told("not_learning"):
        # its remedies name the rate's cut and a decay too strong first
        waiting.update(("lr_decayed_early", "weight_decay_too_strong", "unstable_training"))
    gap_now = told("generalisation_gap") or standing(reported, "generalisation_gap")
    if gap_now and split_now(h):
        # classes learnt on training images and left out on val ones: the splits differ,
        # and a val curve rising with it is that (a BGR val set: "overfitting" at 225);
        # as the latest train probe reads them, not as first told (held out, hunt 26: a
        # 3-D net on 80 volumes had class 2 at 1% val recall at one early validation, 40-78%
        # for every class from then on, and its rising val loss was never told)
        waiting.update(CURVE_KINDS)
    if any(told(k) for k in CURVE_KINDS):
        # the gap is theirs, with their cause; not when they wait themselves: val labels
        # mapped differently kept a model at chance on val (stuck: the curves wait) while
        # the val loss rose 2.5 -> 11, and neither was told
        waiting.add("generalisation_gap")
    for kind in waiting:
        if not standing(reported, kind):
            found[kind] = None
    return found
