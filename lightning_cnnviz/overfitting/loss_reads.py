"""A loss fed probabilities: the logged loss is the cross-entropy of the outputs' softmax.

Nothing here knows about Lightning. ``F.cross_entropy`` applies log-softmax itself, so
``F.cross_entropy(logits.softmax(1), y)`` (or ``nn.CrossEntropyLoss`` on a softmax) reads
probabilities as logits: the loss cannot fall below ``ln(1 + (K - 1) / e)``, its gradient
vanishes as the softmax saturates, and learning stalls. Digits under Adam with that bug
stalled at 57-79% val accuracy (95% with the fix), four classes at 0% recall, while the
logged val loss (1.9) said little: it matched the softmax's cross-entropy on the val
probe to 1-3%, while the outputs' own was 1.7-3.7x higher.

The monitor has the val probe's outputs, so it computes both candidates
(``candidates``): the loss the outputs are made for (their cross-entropy as logits) and
what a loss fed probabilities logs (the cross-entropy of their softmax). A model that
ends in a softmax itself is read the other way round: its outputs are probabilities, so
``cross_entropy`` on them is the bug and their negative log-likelihood the loss they are
made for. A logged val loss that matches the second within ``MATCH`` while the first is
``FAR`` from it is the bug, named. Legitimate
losses do not match it: label smoothing and focal losses sit near the outputs' own
cross-entropy early and move away from the softmax's floor as the model learns.

Example::

    >>> rows = [dict(val_loss=1.885, probe_loss_val=3.914, probe_ce_probs_val=1.878)] * 2
    >>> evs = [Evaluation(10 * (i + 1), i, **row) for i, row in enumerate(rows)]
    >>> loss_mismatch(evs).figures["own_loss"]
    3.914
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_cnnviz.core.outputs import is_simplex
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.rules import Verdict

__all__ = ["FAR", "MATCH", "candidates", "loss_mismatch", "reads_logits"]

MATCH = 0.1  # the logged val loss within 10% of the softmax's cross-entropy on the probe
FAR = 1.5  # ...and the outputs' own cross-entropy at least 1.5x away from it


def candidates(outputs: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """What a loss fed probabilities logs on the outputs, 0-dim tensors (no host transfer).

    ``probe_ce_probs_val``: ``F.cross_entropy(p, y)`` with ``p`` the outputs' softmax, or
    the outputs themselves where they are probabilities already; ``probe_simplex_val``:
    1 where they are. The loss the outputs are made for is the probe's own cross-entropy
    (``probe_loss_val``: read through ``core.outputs.as_logits``, the negative
    log-likelihood of a softmax model's probabilities).

    Example::

        >>> import torch
        >>> round(float(candidates(torch.tensor([[50.0, 0.0, 0.0]]), torch.tensor([0]))[
        ...     "probe_ce_probs_val"]), 3)
        0.551
    """
    out, labels = outputs.float(), labels.to(outputs.device).long()  # probe labels: on the CPU
    simplex = is_simplex(out)  # a softmax's rows: non-negative, summing to one
    return {
        "probe_ce_probs_val": F.cross_entropy(torch.where(simplex, out, out.softmax(1)), labels),
        "probe_simplex_val": simplex.float(),
    }


def reads_logits(ev: Evaluation) -> bool | None:
    """Whether the logged val loss reads the outputs as logits (None: cannot tell).

    False where it matches the cross-entropy of their softmax (within ``MATCH``) while
    the outputs' own cross-entropy is ``FAR`` x away; None without a logged val loss or
    the probe's figures, or while the two candidates are too close to tell apart (an
    untrained model's logits near 0 give both about ``ln K``).

    Example::

        >>> reads_logits(Evaluation(10, 0, val_loss=1.885, probe_loss_val=3.914,
        ...                         probe_ce_probs_val=1.878))
        False
        >>> reads_logits(Evaluation(10, 0, val_loss=0.12, probe_loss_val=0.1,
        ...                         probe_ce_probs_val=1.5))
        True
    """
    loss, own, soft = ev.val_loss, ev.probe_loss_val, ev.probe_ce_probs_val
    if loss is None or own is None or soft is None:
        return None
    if not all(math.isfinite(v) and v > 0 for v in (loss, own, soft)):
        return None
    apart = max(own, soft) / min(own, soft) >= FAR
    if not apart:
        return None
    matches_softmax = abs(loss - soft) <= MATCH * soft
    return not (matches_softmax and max(own, loss) / min(own, loss) >= FAR)


def loss_mismatch(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """The logged val loss is the softmax's cross-entropy at the last ``patience`` evaluations.

    Figures: ``val_loss`` (logged), ``softmax_loss`` (the cross-entropy of the outputs'
    softmax on the val probe), ``own_loss`` (of the outputs themselves), ``floor_loss``
    (``ln(1 + (K - 1) / e)``, the lowest the logged loss can reach), ``val_acc``.
    """
    if len(history) < patience or any(reads_logits(e) is not False for e in history[-patience:]):
        return None
    since = history[-patience]
    for ev in reversed(history[:-patience]):
        if reads_logits(ev) is not False:
            break
        since = ev
    now = history[-1]
    k = now.classes or 2.0
    figures = {
        "val_loss": now.val_loss,
        "softmax_loss": now.probe_ce_probs_val,
        "own_loss": now.probe_loss_val,
        "in_model": bool(now.probe_simplex_val),
        "floor_loss": math.log(1.0 + (k - 1.0) / math.e),
        "val_acc": now.val_accuracy,
    }
    return Verdict("loss_mismatch", since, now, None, figures)
