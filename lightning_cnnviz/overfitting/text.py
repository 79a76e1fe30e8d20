"""The validation diagnosis in words: the Markdown entry, calibration, what is missing.

Nothing here knows about Lightning. ``diagnosis_text`` is the ``overfitting/diagnosis``
entry: each finding's headline (``headlines.py``) with its evidence and what to try, the
calibration (signed) and the most confused classes as supporting evidence, and what the
other monitors noticed; ``finding_of`` makes the ``Finding`` of a change;
``missing_text`` says which metrics the monitor cannot find.

Example::

    >>> print(calibration_text(Evaluation(step=1, epoch=0, conf_val=0.97, probe_acc_val=0.8)))
    over-confident on validation images: mean confidence 0.97 at 80.0% accuracy (+0.170)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lightning_cnnviz.core.findings import Finding
from lightning_cnnviz.overfitting.detector import NOTE_KINDS, Change
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.metric_names import DEFAULT_KEYS, suggested
from lightning_cnnviz.overfitting.remedies import remedies
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import finite, num, train_words, when

__all__ = ["calibration_text", "diagnosis_text", "finding_of", "missing_text"]


def calibration_text(ev: Evaluation) -> str:
    """Signed calibration of the val probe in words (confidence minus accuracy).

    Example::

        >>> calibration_text(Evaluation(step=1, epoch=0, conf_val=0.52, probe_acc_val=0.925))
        'under-confident on validation images: mean confidence 0.52 at 92.5% accuracy (-0.405)'
    """
    over = ev.overconfidence_val
    if over is None:
        return "calibration: n/a (no class labels or logits on the probe)"
    if not finite(over, ev.conf_val, ev.probe_acc_val):
        return "calibration: n/a (the probe's outputs are not finite)"
    if abs(over) < 0.03:
        words = "well calibrated on validation images"
    else:
        words = f"{'over' if over > 0 else 'under'}-confident on validation images"
    return (
        f"{words}: mean confidence {num(ev.conf_val)} at {num(ev.probe_acc_val, True)} "
        f"accuracy ({over:+.3f})"
    )


def _section(v: Verdict, keys: Mapping[str, str]) -> list[str]:
    now, best = v.detected, v.best
    head = headline(v)
    if v.severity == "note" and not (v.figures.get("early") or v.kind in NOTE_KINDS):
        return [f"**Note**: {head}", ""]  # a finding gone: nothing to try
    if v.severity == "note":
        head = f"Note: {head}"
    lines = [f"**{head}**", ""]
    if best is not None and v.kind in ("overfitting", "memorisation"):
        lines.append(
            f"- Best so far: **{when(best)}**: val loss {num(best.val_loss)}, val acc "
            f"{num(best.val_accuracy, True)}, train loss {num(best.train_loss)}."
        )
    lines.append(
        f"- Now, {when(now)}: train loss {num(now.train_loss)}, val loss "
        f"{num(now.val_loss)}; {train_words(now, name='train acc')}, val acc "
        f"{num(now.val_accuracy, True)}."
    )
    if "noise" in v.figures:
        lines.append(
            f"- Noise of the curve (per validation): {num(v.figures['noise'])}; a change counts "
            f"beyond {num(v.figures['margin'])}."
        )
    lines += ["", "What to try:", ""]
    best_text = when(best) if best is not None else "the best epoch"
    names = {"best": best_text, "val_key": keys["val_loss"], "acc_key": keys["val_acc"]}
    # a checkpoint on an accuracy the module does not log would fail at its first save
    on_acc = f'`ModelCheckpoint(monitor="{keys["val_acc"]}", mode="max")`'
    unlogged = (
        f" (this module logs no `{keys['val_acc']}`: log it first, e.g. torchmetrics' "
        "`MulticlassAccuracy` in `validation_step`)"
    )
    for i, remedy in enumerate(remedies(v), 1):
        text = remedy.format(**names)
        if v.detected.val_acc is None:
            text = text.replace(on_acc, on_acc + unlogged)
        lines.append(f"{i}. {text}")
    return [*lines, ""]


def _other_line(f: Finding) -> str:
    text = f.first_line or f.kind
    return f"- **{f.source}** ({f.kind}, {f.severity}, epoch {f.epoch}, step {f.step}): {text}"


def diagnosis_text(
    verdicts: Sequence[Verdict],
    now: Evaluation,
    others: Sequence[Finding] = (),
    *,
    confusion: str = "",
    keys: Mapping[str, str] = DEFAULT_KEYS,
) -> str:
    """The ``overfitting/diagnosis`` entry (Markdown): findings first, then the evidence.

    ``keys`` names the logged metrics (``val_loss``, ``val_acc``) the remedies monitor.
    """
    lines: list[str] = []
    for v in verdicts:
        lines += _section(v, keys)
    if not verdicts:
        lines += [f"No validation problem found up to {when(now)}.", ""]
    if now.overconfidence_val is None or finite(
        now.overconfidence_val, now.conf_val, now.probe_acc_val
    ):  # a diverged model's confidence is NaN: nothing to say about its calibration
        lines.append(f"Calibration (val probe, {when(now)}): {calibration_text(now)}.")
    if now.ece_val is not None and math.isfinite(now.ece_val):
        train = num(now.ece_train) if now.ece_train is not None else "not measured this time"
        lines.append(f"ECE (15 bins): val {num(now.ece_val)}, train {train}.")
    if confusion:
        lines += ["", "Most confused classes (val probe):", "", confusion]
    if others:
        lines += ["", "Other monitors noticed:", "", *map(_other_line, others)]
    return "\n".join(lines)


def finding_of(section: str, change: Change, ev: Evaluation, pairs: Sequence[Any]) -> Finding:
    """The ``Finding`` of one change: the headline, every figure of ``ev`` and the verdict's."""
    v = change.verdict
    numbers: dict[str, Any] = {k: x for k, x in vars(ev).items() if x is not None}
    numbers.update(v.figures)
    numbers.update(since_epoch=v.since.epoch, since_step=v.since.step, change=change.change)
    if ev.overconfidence_val is not None:
        numbers["overconfidence_val"] = ev.overconfidence_val
    if pairs:
        numbers["confused_pairs"] = [(p.true, p.predicted, p.count) for p in pairs]
    return Finding(section, v.kind, ev.step, ev.epoch, headline(v), numbers, v.severity)  # type: ignore[arg-type]


def missing_text(
    missing: Mapping[str, str], probes: bool, logged: Iterable[str], target: str = ""
) -> str:
    """The one message saying which metrics (or probe labels) the monitor cannot find.

    ``missing`` maps each argument (``"val_loss"`` for ``val_loss_key``) to the key not
    found; a logged key with the same words (``metric_names.suggested``) is offered in
    the call that would use it. ``target``: what the probes'
    targets are when they are no class indices (``Probe.target``): then no key would
    help, and the message says what they are instead.

    Example::

        >>> text = missing_text({"train_loss": "train/loss"}, True, ["train_loss_step"])
        >>> print(text.split(";")[0])
        cannot find `train/loss` (logged: ['train_loss_step'])
        >>> print(text.split(": ")[-1])
        `callbacks("standard", train_loss_key="train_loss")`, or the same to `OverfittingMonitor`.
        >>> print(missing_text({}, False, [], "tensors of shape (1, 28, 28)")[135:201])
        (if the item holds a mask or a second input before its label, `lab
    """
    logged = sorted(logged)
    parts = [f"`{key}`" for key in missing.values()]
    if not probes and target:
        parts.append(f"class labels on the probes (ECE, per_class): their targets are {target}, "
                     "not one class index per image")  # fmt: skip
        if target.startswith("tensors of shape"):  # a mask read where the label sits?
            parts[-1] += (
                " (if the item holds a mask or a second input before its label, "
                "`label_key` names where the label sits: `label_key=2` for "
                "`(image, mask, label)`)"
            )
    elif not probes:
        parts.append("class labels or (N, classes) logits on the probes (ECE, per_class)")
    text = f"cannot find {', '.join(parts)}"
    text += f" (logged: {logged}); what needs them is skipped." if missing else "; skipped."
    if missing:
        names = {arg: suggested(key, logged) or f"<{arg}>" for arg, key in missing.items()}
        call = ", ".join(f'{arg}_key="{name}"' for arg, name in names.items())
        text += (
            " Log them with `self.log(...)` or pass the names you log: "
            f'`callbacks("standard", {call})`, or the same to `OverfittingMonitor`.'
        )
    if not probes and not target:
        text += (
            " For the probes: name the label of a data item with `label_key` and the "
            "logits in the model's output with `output_key`."
        )
    return text
