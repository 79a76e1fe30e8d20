"""The BatchNorm train/eval check for multi-label targets: the labels' AUC in both modes.

Nothing here knows about Lightning. Multi-hot (N, K) targets give no class accuracy to
compare, so the check reads how well each mode ranks the labels (``label_prior.label_rank``,
the labels' mean AUC) on the same val probe images: eval mode (running statistics) against
batch statistics (``batch_stats.batch_stats_logits``). Held out (hunt 110): a multi-label
torchvision mobilenet_v3_small, BatchNorm momentum 0.01, gave every val image the same
outputs in eval mode (AUC 0.56) while its batch statistics ranked the labels (0.78), and was
told "it has learnt how common each answer is", the BatchNorm check not run ("needs class
labels"). ``bn_levels.parted`` reads ``rank_parted`` where there is no class accuracy.

Example::

    >>> truth = torch.tensor([[1, 0], [0, 1], [0, 0], [1, 1]]).bool()
    >>> eval_out, bn_out = torch.zeros(4, 2), truth.float()  # alike for all / each ranked
    >>> f = rank_figures(eval_out, bn_out, truth)
    >>> f["prior_rank_bn"], f["prior_rank_at_bn"]
    (1.0, 0.5)
    >>> f["prior_pred_at_bn"], f["label_acc_bn"], f["label_acc_at_bn"]  # one set; answers right
    (1.0, 1.0, 0.5)
    >>> e = Evaluation(0, 0, prior_task="labels", prior_rank=0.5, **f)
    >>> rank_parted(e), round(rank_gap(e), 2)
    (True, 0.5)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.label_prior import (
    ALIKE,
    commonest_share,
    label_accuracy,
    label_rank,
)
from lightning_cnnviz.overfitting.words import num

__all__ = [
    "ANSWERS_PART",
    "HITS_PART",
    "RANK_CHANCE",
    "RANK_LEARNT",
    "RANK_PART",
    "answers_parted",
    "gap",
    "hits_gap",
    "levels_words",
    "mismatch_figures",
    "rank_figures",
    "rank_gap",
    "rank_never_learnt",
    "rank_parted",
    "ranked",
]

RANK_PART = 0.1
"""The AUC gap (batch statistics over eval mode) past which the two modes part.

Measured (hunt 110) on the val probe's first 96 images of five labels: the same
mobilenet_v3_small at momentum 0.1 read the modes 0.20 apart at its first validation
under Adam (step 32, the running statistics still catching up: one evaluation, waited
for) and -0.01 to 0.02 apart at its five later ones, under SGD (momentum 0.9) -0.01 to
0.05 at all six; at momentum 0.01, 0.19-0.27 at every one. A small BatchNorm CNN on
three labels read within 0.01 at momentum 0.1 and 0.22-0.48 apart with its running
statistics held back. A few hundredths are noise there."""

HITS_PART = 0.1
"""The gap in the share of (image, label) answers right (batch statistics over eval mode)
past which the two modes part, whatever the AUC: a lag that moves every score past the
threshold keeps the ranking (hunt 112: a resnet18 at BatchNorm momentum 5e-4, eval-mode
BCE 4.3-13 against 0.001-0.013 on batch statistics, AUC 0.92-1.0 in both, was told
overfitting, "stop at epoch 0")."""

ANSWERS_PART = 0.2
"""Eval mode giving one set of labels to nearly every image (``label_prior.ALIKE``) while
batch statistics give it to this share fewer, and rank the labels no worse: the running
statistics shift the threshold, not the ranking (hunt 110: a lag of inputs offset by 10,
eval mode ranking 0.91 against 0.985 but giving every image the same labels, was told
`not_learning`). A blind model's batch statistics rank nothing (``RANK_LEARNT``)."""
RANK_LEARNT = 0.7  # ... batch statistics' AUC from which the labels are clearly read

RANK_CHANCE = 0.05
"""An eval-mode AUC within this of 0.5: the labels not ranked at all (``rank_never_learnt``)."""


def ranked(e: Evaluation) -> bool:
    """Whether ``e``'s val probe has multi-hot targets whose eval-mode AUC was read.

    Example::

        >>> ranked(Evaluation(0, 0, prior_task="labels", prior_rank=0.7)), ranked(
        ...     Evaluation(0, 0, prior_task="classes"))
        (True, False)
    """
    return e.prior_task == "labels" and e.prior_rank is not None


def rank_figures(eval_out: Tensor, bn_out: Tensor, truth: Tensor) -> dict[str, float]:
    """The labels' mean AUC with batch statistics and in eval mode, on the same images.

    ``bn_out`` may hold the probe's first images only (``passes.pass_images``): eval mode
    is read on those too, so the two are paired. ``{}`` where a mode ranks nothing (no
    label with images of both kinds, outputs of another shape, batch statistics giving
    NaN/Inf: training diverged).
    """
    n = len(bn_out)
    if eval_out.shape[1:] != bn_out.shape[1:] or len(eval_out) < n or len(truth) < n:
        return {}
    truth = truth[:n].to(bn_out.device).bool()
    if not bool(torch.isfinite(bn_out).all()):
        return {}
    bn, at = label_rank(bn_out.float(), truth), label_rank(eval_out[:n].float(), truth)
    if bn is None or at is None:
        return {}
    outs = bn_out.float(), eval_out[:n].float()
    return {
        "prior_rank_bn": bn,
        "prior_rank_at_bn": at,
        "prior_pred_bn": commonest_share(outs[0]),
        "prior_pred_at_bn": commonest_share(outs[1]),
        "label_acc_bn": label_accuracy(outs[0], truth),
        "label_acc_at_bn": label_accuracy(outs[1], truth),
    }


def rank_gap(e: Evaluation) -> float | None:
    """Batch statistics' AUC minus eval mode's, on the images the pass saw (``None``: unread)."""
    if e.prior_rank_bn is None or e.prior_rank_at_bn is None:
        return None
    return e.prior_rank_bn - e.prior_rank_at_bn


def hits_gap(e: Evaluation) -> float | None:
    """Batch statistics' share of (image, label) answers right minus eval mode's (``None``)."""
    if e.label_acc_bn is None or e.label_acc_at_bn is None:
        return None
    return e.label_acc_bn - e.label_acc_at_bn


def gap(e: Evaluation) -> float | None:
    """Batch statistics over eval mode: the accuracy gap, else the labels' larger gap.

    Of the labels' AUC and of the share of their answers right (``None``: unread).

    Example::

        >>> gap(Evaluation(0, 0, prior_task="labels", prior_rank=0.55, prior_rank_bn=0.8,
        ...                prior_rank_at_bn=0.55))
        0.25
    """
    if e.probe_acc_val is not None:
        return e.bn_gap_acc
    gaps = [g for g in (rank_gap(e), hits_gap(e)) if g is not None]
    return max(gaps) if gaps else None


def mismatch_figures(e: Evaluation) -> dict[str, float | None]:
    """A multi-label ``bn_mismatch``'s figures: the two modes' AUCs, their gap, how alike.

    ``same_labels``: the share of the val probe given eval mode's commonest set of labels.
    """
    return {
        "eval_rank": e.prior_rank_at_bn,
        "batch_stats_rank": e.prior_rank_bn,
        "gap_rank": rank_gap(e),
        "same_labels": e.prior_pred,
        "same_labels_bn": e.prior_pred_bn,
        "eval_label_acc": e.label_acc_at_bn,
        "batch_stats_label_acc": e.label_acc_bn,
    }


def rank_parted(e: Evaluation) -> bool | None:
    """Whether eval mode reads the labels far worse than batch statistics (``None``: unread).

    Ranks them ``RANK_PART`` worse (AUC), gets ``HITS_PART`` fewer of its (image, label)
    answers right, or answers alike where batch statistics do not (``answers_parted``).
    ``None`` for targets that are no multi-hot labels, and for a multi-label evaluation
    without the batch-statistics pass (no BatchNorm in training mode:
    ``bn_levels.no_training_norms``).
    """
    apart = rank_gap(e) if ranked(e) else None
    if apart is None:
        return None
    return apart > RANK_PART or answers_parted(e) or (hits_gap(e) or 0.0) > HITS_PART


def answers_parted(e: Evaluation) -> bool:
    """Whether eval mode answers alike where batch statistics tell the images apart.

    One set of labels for nearly every image in eval mode, ``ANSWERS_PART`` fewer with
    batch statistics, which get as many (image, label) answers right or more, the labels
    ranked in either mode (``RANK_LEARNT``: a blind model's batch statistics spread noise).
    Held out (hunt 113): momentum 0.01 and label smoothing, eval mode giving no label to
    every val image at an AUC of 0.85-0.89 and 87% of its answers right, batch statistics
    none to 58-68% at 0.60-0.76 and 92-97% right, was told `not_learning`.

    Example::

        >>> from dataclasses import replace
        >>> e = Evaluation(0, 0, prior_task="labels", prior_rank=0.9, prior_rank_bn=0.98,
        ...                prior_rank_at_bn=0.91, prior_pred_bn=0.4, prior_pred_at_bn=1.0)
        >>> blind = replace(e, prior_rank_bn=0.52, prior_rank_at_bn=0.5)  # ranked nowhere
        >>> answers_parted(e), answers_parted(blind)
        (True, False)
        >>> answers_parted(replace(e, label_acc_bn=0.8, label_acc_at_bn=0.9))  # fewer right
        False
    """
    eval_share, bn_share = e.prior_pred_at_bn, e.prior_pred_bn
    ranks = [r for r in (e.prior_rank_bn, e.prior_rank_at_bn) if r is not None]
    if eval_share is None or bn_share is None or not ranks:
        return False
    learnt = max(ranks) >= RANK_LEARNT and (hits_gap(e) or 0.0) >= 0
    return learnt and eval_share >= ALIKE and bn_share <= ALIKE - ANSWERS_PART


def rank_never_learnt(e: Evaluation) -> bool:
    """Whether eval mode ranks the labels no better than chance (``RANK_CHANCE`` of 0.5)."""
    return ranked(e) and e.prior_rank <= 0.5 + RANK_CHANCE  # type: ignore[operator]


def _auc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"  # a few hundredths are noise (RANK_PART)


def levels_words(f: Mapping[str, Any]) -> str:
    """The two modes' levels in a ``bn_mismatch`` finding's figures, in words.

    Example::

        >>> levels_words({"eval_rank": 0.56, "batch_stats_rank": 0.78})
        "the labels' mean AUC on the val probe 0.56 in eval mode vs 0.78 with batch statistics"
    """
    if "batch_stats_rank" in f:  # multi-hot targets (``bn_levels._mismatch``)
        hits = (f.get("eval_label_acc"), f.get("batch_stats_label_acc"))
        right = (
            f" ({num(hits[0], True)} vs {num(hits[1], True)} of its (image, label) answers right)"
            if None not in hits
            else ""
        )
        return (
            f"the labels' mean AUC on the val probe {_auc(f['eval_rank'])} in eval mode vs "
            f"{_auc(f['batch_stats_rank'])} with batch statistics{right}"
        )
    return (
        f"val probe accuracy {num(f['eval_acc'], True)} in eval mode vs "
        f"{num(f['batch_stats_acc'], True)} with batch statistics"
    )
