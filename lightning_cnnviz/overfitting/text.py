"""The overfitting diagnosis in words: the warning's headline and the Markdown entry.

Nothing here knows about Lightning. ``headline`` is the one sentence of the
warning, the ``Finding`` and the end-of-fit summary; ``diagnosis_text`` is the
``overfitting/diagnosis`` entry: since when, the numbers, the best epoch, what to
do, and what the other monitors noticed; ``missing_text`` says which metrics the
monitor cannot find.

Example::

    >>> from lightning_cnnviz.overfitting.detector import Onset
    >>> from lightning_cnnviz.overfitting.metrics import Evaluation
    >>> best = Evaluation(step=20, epoch=1, train_loss=0.5, val_loss=0.5)
    >>> since = Evaluation(step=30, epoch=2, train_loss=0.3, val_loss=0.6)
    >>> now = Evaluation(step=40, epoch=3, train_loss=0.2, val_loss=0.7)
    >>> print(headline(Onset("val_loss", now, since, best)))
    Overfitting since epoch 2 (step 30): val loss 0.7 is more than 10% above its best
    (0.5 at epoch 1) while train loss fell to 0.2.
    >>> diagnosis_text(Onset("val_loss", now, since, best)).splitlines()[2]
    '- Best epoch so far: **epoch 1 (step 20)**: val loss 0.5, val acc n/a, train loss 0.5.'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from lightning_cnnviz.core.findings import Finding
from lightning_cnnviz.overfitting.detector import Onset
from lightning_cnnviz.overfitting.metrics import Evaluation

__all__ = ["diagnosis_text", "headline", "missing_text"]


def _num(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if percent else f"{value:.4g}"


def _points(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} points"


def _when(ev: Evaluation) -> str:
    return f"epoch {ev.epoch} (step {ev.step})"


_REMEDIES = (
    '**Stop at the best epoch**: {best}; add `EarlyStopping(monitor="{val_key}", '
    'patience=...)` and `ModelCheckpoint(monitor="{val_key}")` to keep those weights '
    "(or train for fewer epochs).",
    "**Augment the training data** (random shifts, small rotations, crops, noise) so the "
    "model cannot memorise exact images.",
    "**Add weight decay** (e.g. `weight_decay=5e-4`; with Adam prefer AdamW).",
    "**Add dropout** before the classifier (e.g. 0.25-0.5).",
    "**Use more training data** if you can: overfitting is a small data set's symptom.",
)


def _other_line(f: Finding) -> str:
    text = f.first_line or f.kind
    return f"- **{f.source}** ({f.kind}, epoch {f.epoch}, step {f.step}): {text}"


_WHY = {  # what another monitor's finding means for generalisation, by source
    "activations": "dead units lower the capacity the model has left to generalise",
    "gradcam": "Grad-CAM leaving the object means the model relies on a shortcut or the "
    "background rather than the digit",
}


def _others_note(others: Sequence[Finding]) -> str:
    why = [_WHY[s] for s in dict.fromkeys(f.source for f in others) if s in _WHY]
    if not why:
        return ""
    return "How this relates: " + "; ".join(why) + " (weight decay and augmentation help here too)."


def headline(onset: Onset, tolerance: float = 0.1) -> str:
    """One plain sentence for the warning, the ``Finding`` and the end-of-fit summary."""
    now, since, best = onset.detected, onset.since, onset.best
    if onset.signal == "val_loss" and best is not None:
        return (
            f"Overfitting since {_when(since)}: val loss {_num(now.val_loss)} is more than "
            f"{tolerance:.0%} above its best ({_num(best.val_loss)} at epoch {best.epoch}) "
            f"while train loss fell to {_num(now.train_loss)}."
        )
    return (
        f"Overfitting (calibration) since {_when(since)}: the gap between validation and "
        f"training ECE rose to {_num(now.ece_gap)}."
    )


def diagnosis_text(
    onset: Onset,
    others: Sequence[Finding] = (),
    *,
    tolerance: float = 0.1,
    val_key: str = "val/loss",
) -> str:
    """The ``overfitting/diagnosis`` entry (Markdown) for an onset and what other monitors saw."""
    now, since, best = onset.detected, onset.since, onset.best
    if onset.signal == "val_loss":
        assert best is not None and best.val_loss is not None and now.val_loss is not None
        rise = (now.val_loss - best.val_loss) / abs(best.val_loss) if best.val_loss else math.inf
        head = (
            f"**Overfitting since {_when(since)}** (detected at {_when(now)}): the validation "
            f"loss has stayed more than {tolerance:.0%} above its best while the training loss "
            f"keeps falling. The model is memorising the training set instead of learning what "
            f"generalises. Val loss now {_num(now.val_loss)}, {rise:+.0%} above its best."
        )
    else:
        head = (
            f"**Overfitting (calibration) since {_when(since)}** (detected at {_when(now)}): "
            f"the model grows over-confident on validation images while staying calibrated "
            f"on training images; the ECE gap rose from {_num(since.ece_gap)} to "
            f"{_num(now.ece_gap)}."
        )
    lines = [head, ""]
    if best is not None:
        lines.append(
            f"- Best epoch so far: **{_when(best)}**: val loss {_num(best.val_loss)}, "
            f"val acc {_num(best.val_acc, True)}, train loss {_num(best.train_loss)}."
        )
    lines += [
        f"- Now, {_when(now)}: train loss {_num(now.train_loss)}, val loss {_num(now.val_loss)} "
        f"(gap {_num(now.gap_loss)}); train acc {_num(now.train_acc, True)}, val acc "
        f"{_num(now.val_acc, True)} (gap {_points(now.gap_acc)}).",
        f"- Calibration (ECE, 15 bins, probe images): val {_num(now.ece_val)}, train "
        f"{_num(now.ece_train)}, gap {_num(now.ece_gap)}.",
        "",
        "What to do:",
        "",
    ]
    best_text = f"{_when(best)} had the lowest val loss" if best else "the best epoch"
    lines += [
        f"{i}. {r.format(best=best_text, val_key=val_key)}" for i, r in enumerate(_REMEDIES, 1)
    ]
    if others:
        lines += ["", "Other monitors noticed:", "", *map(_other_line, others)]
        if note := _others_note(others):
            lines += ["", note]
    return "\n".join(lines)


def missing_text(missing: Sequence[str], probes: bool, logged: Iterable[str]) -> str:
    """The one message saying which metrics (or probe labels) the monitor cannot find.

    Example::

        >>> print(missing_text(["val/acc"], True, ["val/loss"]).split(";")[0])
        cannot find `val/acc` (logged: ['val/loss'])
    """
    parts = [f"`{key}`" for key in missing]
    if not probes:
        parts.append("class labels or (N, classes) logits on the probes (ECE, per_class)")
    text = f"cannot find {', '.join(parts)}"
    text += f" (logged: {sorted(logged)}); what needs them is skipped." if missing else "; skipped."
    if missing:
        text += (
            " Log them with `self.log(...)` or pass their names "
            "(`train_loss_key=`, `val_loss_key=`, `train_acc_key=`, `val_acc_key=`)."
        )
    if not probes:
        text += (
            " For the probes: name the label of a data item with `label_key` and the "
            "logits in the model's output with `output_key`."
        )
    return text
