"""A loss fed outputs it is not made for (softmax into CE, scores into NLL), negated, or blind.

Nothing here knows about Lightning. ``F.cross_entropy`` applies log-softmax itself, so
``F.cross_entropy(logits.softmax(1), y)`` (or ``nn.CrossEntropyLoss`` on a softmax) reads
probabilities as logits: the loss cannot fall below ``ln(1 + (K - 1) / e)``, its gradient
vanishes as the softmax saturates, and learning stalls. Digits under Adam with that bug
stalled at 57-79% val accuracy (95% with the fix), four classes at 0% recall, while the
logged val loss (1.9) said little: it matched the softmax's cross-entropy on the val
probe to 1-3%, while the outputs' own was 1.7-3.7x higher.

The monitor has the val probe's outputs, so it computes both candidates
(``softmax_match.candidates``): the loss the outputs are made for (their cross-entropy as
logits) and what a loss fed probabilities logs (the cross-entropy of their softmax). A model that
ends in a softmax itself is read the other way round: its outputs are probabilities, so
``cross_entropy`` on them is the bug and their negative log-likelihood the loss they are
made for. A logged val loss that matches the second within ``MATCH`` while the first is
``FAR`` from it is the bug, named. Legitimate
losses do not match it: label smoothing and focal losses sit near the outputs' own
cross-entropy early and move away from the softmax's floor as the model learns.

The other way round, ``F.nll_loss`` (``NLLLoss``) expects log-probabilities and logs
``-mean(out[y])`` of whatever it gets: fed raw scores (no ``log_softmax``) or a softmax's
probabilities, that is negative, a cross-entropy never is, and on raw scores it falls
without bound as the model inflates the label's score (held out: -18 at step 23, -3.6e6
at step 138, val accuracy at chance throughout). A negative logged val loss that matches
``-mean(out[y])`` on the val probe (``probe_nll_raw_val``, within a factor ``FAR``) is
that bug (``fed_scores``).

A loss returned with its sign flipped (``return -loss``) trains the model to be wrong:
the returned training loss falls below 0 without bound while the model's own
cross-entropy on the training probe climbs past chance (held out: -46 at step 20 and
the probe's cross-entropy 2.5e5 by step 126, val accuracy at chance, read as "not
learning" without a cause). A negative returned loss with the own cross-entropy over
``WORSE`` x ``ln K`` is that bug (``returned_loss.maximised``).

Example::

    >>> rows = [dict(val_loss=1.885, probe_loss_val=3.914, probe_ce_probs_val=1.878)] * 2
    >>> evs = [Evaluation(10 * (i + 1), i, **row) for i, row in enumerate(rows)]
    >>> loss_mismatch(evs).figures["own_loss"]
    3.914
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lightning_cnnviz.overfitting.chance_levels import wide
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.returned_loss import (
    RANKED,
    at_floor,
    below_floor,
    maximised,
    outputs_scaled,
    own_loss,
    probability_floor,
    unbounded_term,
)
from lightning_cnnviz.overfitting.softmax_match import smoothing_alike, softmax_exact
from lightning_cnnviz.overfitting.verdict import Verdict

__all__ = [
    "CLEAR",
    "CLOSER",
    "FAR",
    "MATCH",
    "SAMPLED",
    "fed_scores",
    "fed_scores_in_step",
    "loss_mismatch",
    "misfed",
    "reads_logits",
]

MATCH = 0.1  # the logged val loss within 10% of the softmax's cross-entropy on the probe
FAR = 1.5  # ...and the outputs' own cross-entropy at least 1.5x away from it
# or, the candidates closer than FAR: the logged loss 10x closer to the softmax's cross-
# entropy than to the own one, which is at least 5% away from it
CLOSER, CLEAR = 0.1, 0.05
SAMPLED = 3.0  # ...and that one this many standard errors of the probe's mean away


OTHER_MODEL = 0.25
"""The logged val accuracy this far from the val probe's: the logged loss is another model's."""


def reads_logits(ev: Evaluation) -> bool | None:
    """Whether the logged val loss reads the outputs as logits (None: cannot tell).

    False where it matches the cross-entropy of their softmax (within ``MATCH``) while
    the outputs' own cross-entropy is ``FAR`` x away; None without a logged val loss or
    the probe's figures, or while the two candidates are too close to tell apart (an
    untrained model's logits near 0 give both about ``ln K``), unless the logged loss is
    ``CLOSER`` x nearer the softmax's than the own one, which is ``CLEAR`` away from it:
    held out (hunt 22), a model ending in a softmax trained through the bug kept its
    probabilities near uniform (88% accuracy, its own NLL 2.10) while the logged val loss
    was the cross-entropy of its probabilities to 4 decimals (1.58), on 2 of 3 seeds unsaid.
    True where the model ranks its labels ``RANKED`` right and the loss is ``FAR`` over the
    own cross-entropy (a label-smoothed loss's level), unless ``softmax_exact``.

    Example::

        >>> reads_logits(Evaluation(10, 0, val_loss=1.885, probe_loss_val=3.914,
        ...                         probe_ce_probs_val=1.878))
        False
        >>> reads_logits(Evaluation(10, 0, val_loss=0.12, probe_loss_val=0.1,
        ...                         probe_ce_probs_val=1.5))
        True
        >>> reads_logits(Evaluation(10, 0, val_loss=1.5825, probe_loss_val=2.102,
        ...                         probe_ce_probs_val=1.5824))  # near-uniform probabilities
        False
    """
    loss, own, soft = ev.val_loss, ev.probe_loss_val, ev.probe_ce_probs_val
    if loss is None or own is None or soft is None:
        return None
    if not all(math.isfinite(v) and v > 0 for v in (loss, own, soft)):
        return None
    other = ev.val_acc is not None and ev.probe_acc_val is not None
    if other and abs(ev.val_acc - ev.probe_acc_val) >= OTHER_MODEL:  # type: ignore[operator]
        # a loss fed probabilities keeps the model's ranking, and its logged accuracy; one
        # this far from the model's own is another model's (hunt 80: Lightning's
        # `EMAWeightAveraging` validated, its near-uniform val loss at the model's softmax
        # cross-entropy early on, told "fed probabilities")
        return None
    acc = ev.val_acc if ev.val_acc is not None else ev.probe_acc_val
    if acc is not None and acc >= RANKED and own * FAR <= loss:
        # the model ranks its labels right and the loss sits far above its own cross-
        # entropy: the loss's own level (hunt 40: label smoothing 0.5 logs 1.79 at 93% val,
        # the outputs' own 0.82, within 10% of the softmax's 1.95), unless it is the
        # softmax's to the probe's sampling error: then the bug, at any accuracy, where
        # smoothing at this confidence could not log it too
        if not softmax_exact(ev):
            return True
        if smoothing_alike(ev):
            return None
    matches_softmax = abs(loss - soft) <= MATCH * soft
    if max(own, soft) / min(own, soft) < FAR:  # the candidates close: unless unmistakable
        off = abs(loss - own)
        told = matches_softmax and off >= CLEAR * own and abs(loss - soft) <= CLOSER * off
        # and the logged loss far outside the probe's sampling error of its own: a noisy-
        # label model's per-image losses run 0-10, and a 128-image probe read 1.564 where
        # the val set logged 1.853, within 0.011 of the softmax's (1.842) by chance
        se = ev.probe_loss_se_val
        sampled = se is None or off > SAMPLED * se
        return False if told and (sampled or at_floor(ev)) else None
    return not (matches_softmax and max(own, loss) / min(own, loss) >= FAR)


def fed_scores(ev: Evaluation) -> bool:
    """Whether the logged val loss is ``nll_loss`` of outputs that are no log-probabilities.

    Negative (no cross-entropy is) and within a factor ``FAR`` of ``-mean(out[y])`` on
    the val probe (``probe_nll_raw_val``), of a model that does not classify (its own
    cross-entropy at least ``ln K``, as ``fed_scores_in_step`` asks): a confidence
    penalty logged as the val loss (`CE - 1.5 * entropy`, negative by design at 100% val)
    was told "learns nothing that classifies (val accuracy 100.0%)" (hunt 94).

    Example::

        >>> fed_scores(Evaluation(23, 0, val_loss=-101.9, probe_nll_raw_val=-98.4))
        True
        >>> fed_scores(Evaluation(23, 0, val_loss=0.31, probe_nll_raw_val=-4.2))
        False
        >>> fed_scores(Evaluation(94, 2, val_loss=-0.9, probe_nll_raw_val=-0.95,
        ...                       probe_loss_train=0.73, classes=4.0))  # it classifies
        False
    """
    loss, raw, own, k = ev.val_loss, ev.probe_nll_raw_val, own_loss(ev), ev.classes
    if loss is None or raw is None or not (math.isfinite(loss) and math.isfinite(raw)):
        return False
    if own is not None and k is not None and k >= 2 and own < math.log(k):
        return False
    return loss < 0 and raw < 0 and min(loss, raw) / max(loss, raw) <= FAR  # |ratio|


def fed_scores_in_step(ev: Evaluation) -> bool:
    """Whether ``training_step`` returns ``nll_loss`` of raw scores (the val loss may be right).

    The returned loss negative, and the val probe's ``-mean(out[y])``
    (``probe_nll_raw_val``) negative too and at least ``1 / FAR`` of it: the model
    inflates the label's output, and does not classify (its own cross-entropy at least
    ``ln K``). A loss returned with its sign flipped (``maximised``) drives that output
    down instead. Held out (hunt 25): ``F.nll_loss(logits, y)`` in
    ``training_step`` alone returned -772 on average since the last validation while the
    val probe read -2318; it was told as a loss with its sign flipped.

    Example::

        >>> fed_scores_in_step(Evaluation(64, 1, returned_loss=-772.3, probe_nll_raw_val=-2317.5))
        True
        >>> fed_scores_in_step(Evaluation(64, 1, returned_loss=-46.0, probe_nll_raw_val=1.2e3))
        False
    """
    loss, raw, own, k = ev.returned_loss, ev.probe_nll_raw_val, own_loss(ev), ev.classes
    if loss is None or raw is None or not (math.isfinite(loss) and math.isfinite(raw)):
        return False
    # a model whose own cross-entropy is under ln K classifies: the negative loss is a term
    # added to a cross-entropy (hunt 29: a confidence penalty, a penalty's sign flipped)
    learns = own is not None and k is not None and k >= 2 and own < math.log(k)
    return loss < 0 and raw <= loss / FAR and not learns


def misfed(ev: Evaluation) -> str | bool | None:
    """What the loss was fed instead of what it is made for.

    ``"scores"`` (``nll_loss`` on raw scores or probabilities: ``fed_scores``),
    ``"scores_in_step"`` (the same in ``training_step`` only: ``fed_scores_in_step``),
    ``"negated"`` (the training loss returned with its sign flipped: ``maximised``),
    ``"unbounded"`` (a term the model drives down without limit: ``unbounded_term``),
    ``"scaled"`` (a loss at ``ln K`` while the outputs score under it: ``outputs_scaled``),
    ``"probabilities"`` (``cross_entropy`` on a softmax: ``reads_logits`` False), ``False``
    (it reads the outputs right), ``None`` (cannot tell).
    """
    if fed_scores(ev):  # first: nll_loss on raw scores returns a negative loss too
        return "scores"
    if fed_scores_in_step(ev):
        return "scores_in_step"
    if maximised(ev):
        return "negated"
    if unbounded_term(ev):
        return "unbounded"
    if outputs_scaled(ev):
        return "scaled"
    reads = reads_logits(ev)
    if reads is False and wide(ev):
        # outputs twice as wide as the labels' classes score no classes of these labels:
        # their softmax is flat, its cross-entropy ln K, where a contrastive loss sits too
        # (setups hunt 76: NT-Xent 3.478 on a 32-wide embedding, told "fed probabilities")
        return None
    if reads is False and below_floor(ev):
        # the loss training returns is one no loss fed probabilities reaches: training reads
        # the outputs right, and the logged val loss is another one (hunt 28: a temperature
        # in `validation_step`, told "fed probabilities ... learning stalls" at 95% val)
        return False
    return None if reads is None else ("probabilities" if reads is False else False)


def loss_mismatch(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """The logged val loss misreads the outputs (``misfed``) at the last ``patience`` evaluations.

    Figures: ``fed`` (``misfed``'s answer now), ``val_loss`` (logged), ``returned_loss``
    (what ``training_step`` returned), ``own_train_loss`` (the own cross-entropy on the
    training probe, else the val probe's), ``softmax_loss``
    (the cross-entropy of the outputs' softmax on the val probe), ``own_loss`` (of the
    outputs themselves), ``raw_nll`` (``nll_loss`` of the outputs as they are),
    ``floor_loss`` (``ln(1 + (K - 1) / e)``, the lowest a loss fed probabilities can
    reach), ``val_acc``, ``train_probe_acc`` (the train probe's, else the logged one).
    """
    if len(history) < patience or not all(misfed(e) for e in history[-patience:]):
        return None
    since = history[-patience]
    for ev in reversed(history[:-patience]):
        if not misfed(ev):
            break
        since = ev
    now = history[-1]
    k = now.classes or 2.0
    figures = {
        "fed": misfed(now),
        "val_loss": now.val_loss,
        "returned_loss": now.returned_loss,
        "own_train_loss": (
            now.probe_loss_train if now.probe_loss_train is not None else now.probe_loss_val
        ),
        "softmax_loss": now.probe_ce_probs_val,
        "own_loss": now.probe_loss_val,
        "raw_nll": now.probe_nll_raw_val,
        "in_model": bool(now.probe_simplex_val),
        "floor_loss": probability_floor(k),
        "val_acc": now.val_accuracy,
        "train_probe_acc": (
            now.probe_acc_train if now.probe_acc_train is not None else now.train_acc
        ),
    }
    return Verdict("loss_mismatch", since, now, None, figures)
