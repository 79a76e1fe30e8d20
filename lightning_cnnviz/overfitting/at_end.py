"""What the last evaluation shows at the end of fit, which no later one can confirm.

Nothing here knows about Lightning. ``Detector.conclude`` reports these: the model fit
hands back is that much worse than the notes said. ``end_verdicts`` is the rule;
``early`` reads a note told before its problem.

Example::

    >>> early(Verdict("class_imbalance", None, None, None, {"early": True}, severity="note"))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from lightning_cnnviz.overfitting import bn_cause, bn_levels, gap, imbalance, split_inputs
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.precedence import (
    beside_inputs,
    bn_leaves_out,
    standing,
    train_moved,
)
from lightning_cnnviz.overfitting.verdict import Verdict

__all__ = ["early", "end_verdicts"]


def early(v: Verdict) -> bool:
    """Whether ``v`` is a note told before its problem (``class_imbalance``'s first one)."""
    return v.severity == "note" and bool(v.figures.get("early"))


def end_verdicts(
    history: Sequence[Evaluation],
    reported: Mapping[str, Verdict],
    current: Callable[[], Mapping[str, Verdict | None]],
    patience: int,
    end_step: int | None = None,
) -> dict[str, Verdict | None]:
    """The verdicts the last evaluation gives at the end of fit (``history`` not empty).

    A BatchNorm mismatch (``bn_levels.bn_mismatch_at_end``), rare classes still left
    out after the note that told them (``imbalance.class_imbalance``) and a model still
    at chance after its flat start's note (``current()``'s ``not_learning``), each a
    problem. ``end_step``: the fit's last step; a BatchNorm reading from the first half of
    the steps before it is not the model handed back (setups hunt 73: the val set emptied
    after epoch 0, step 3's reading told at step 9). Unlike inputs or a gap told before
    keep the mismatch back unless eval mode fails the training images too
    (``gap.failed_on_train_images``, hunt 115); so do training data changed, told
    (``bn_cause.data_cause``).
    """
    now = history[-1]
    stale = end_step is not None and end_step - now.step > now.step
    end = None if stale else bn_levels.bn_mismatch_at_end(history)
    if bn_cause.data_cause(end, [reported.get("memorisation"), reported.get("class_imbalance")]):
        end = None  # the training data changed, told: theirs (held-out hunt 125)
    found: dict[str, Verdict | None] = {"bn_mismatch": end}
    lag = end is not None and gap.failed_on_train_images(now)
    # not where the training images changed: the running statistics follow them
    lag = lag and not train_moved(reported.get("inputs_differ"))
    if standing(reported, "inputs_differ") and lag:  # ... failing training images too
        found = {"bn_mismatch": beside_inputs(end)}  # type: ignore[arg-type]
    elif standing(reported, "inputs_differ"):  # eval mode meets unlike inputs: that, told
        found = {}
    elif standing(reported, "generalisation_gap") and gap.gapped_on_batch_stats(now) and not lag:
        found = {}  # the splits differ on batch statistics too: that, told
    elif end is not None and (now.mild_shift or gap.kept_on_train_images(now)) and not lag:
        found = {"inputs_differ": split_inputs.with_bn_gap(end, now)}  # the same, told now
    told = reported.get("class_imbalance")
    left = imbalance.class_imbalance(history, patience)
    broken = found.get("bn_mismatch") is not None or standing(reported, "bn_mismatch")
    if left is not None and left.figures["common"] and (broken or bn_leaves_out(now)):
        left = None  # eval mode's stale statistics leave the class out, not the loss
    if told is not None and told.figures.get("early") and left is not None:
        figures = {**left.figures, "early": False, "at_end": True}
        found["class_imbalance"] = replace(left, figures=figures, severity="problem")
    flat = reported.get("not_learning")  # a run ended within its flat start's note
    still = current().get("not_learning") if flat is not None else None
    if flat is not None and early(flat) and still is not None:
        figures = {**still.figures, "early": False, "at_end": True}
        found["not_learning"] = replace(still, figures=figures, severity="problem")
    return found
