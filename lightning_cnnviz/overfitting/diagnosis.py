"""Pure parts of the overfitting diagnosis: calibration, per-class accuracy, onset detection, text.

Nothing here knows about Lightning. The ``OverfittingMonitor`` feeds one
``Evaluation`` per validation into an ``OverfittingDetector``; the detector says
when (and since when) the model started to overfit, and ``diagnosis_text`` turns
that into plain words.

Example::

    >>> import torch
    >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 0.5]])
    >>> labels = torch.tensor([0, 1, 1, 0])
    >>> round(float(expected_calibration_error(logits, labels)), 4)
    0.4908
    >>> per_class_accuracy(logits, labels).tolist()
    [0.5, 0.5]
    >>> detector = OverfittingDetector(tolerance=0.1, patience=2)
    >>> for epoch, (train, val) in enumerate([(1.0, 0.8), (0.6, 0.5), (0.4, 0.6), (0.2, 0.7)]):
    ...     onset = detector.update(Evaluation(step=10 * (epoch + 1), epoch=epoch,
    ...                                        train_loss=train, val_loss=val))
    >>> onset.signal, onset.detected.epoch, onset.since.epoch, onset.best.epoch
    ('val_loss', 3, 2, 1)
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from lightning_cnnviz.core import rendering
from lightning_cnnviz.core.findings import Finding

__all__ = [
    "Evaluation",
    "Onset",
    "OverfittingDetector",
    "custom_scalars_layout",
    "diagnosis_text",
    "expected_calibration_error",
    "figures",
    "headline",
    "missing_text",
    "per_class_accuracy",
    "per_class_image",
    "pick_metric",
    "summary_text",
]


def expected_calibration_error(logits: Tensor, labels: Tensor, n_bins: int = 15) -> Tensor:
    """Expected calibration error of softmax confidences, on the logits' device (0-dim float32).

    Confidence is the top softmax probability; samples fall into ``n_bins`` equal
    bins ``(k/n, (k+1)/n]`` of it; ECE is ``sum_b |acc_b - conf_b| * n_b / N``
    (Guo et al., 2017). An empty input gives 0.
    """
    probs = torch.softmax(logits.detach().float(), dim=1)
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels.to(predicted.device)).float()
    if confidence.numel() == 0:
        return confidence.new_zeros(())
    bins = (confidence * n_bins).ceil().long().clamp(1, n_bins) - 1
    count = torch.zeros(n_bins, device=confidence.device).index_add_(
        0, bins, torch.ones_like(correct)
    )
    conf_sum = torch.zeros_like(count).index_add_(0, bins, confidence)
    acc_sum = torch.zeros_like(count).index_add_(0, bins, correct)
    return (acc_sum - conf_sum).abs().sum() / confidence.numel()


def per_class_accuracy(logits: Tensor, labels: Tensor, num_classes: int | None = None) -> Tensor:
    """Accuracy per class: ``(K,)`` float32 on the logits' device, NaN for an absent class."""
    num_classes = num_classes or logits.shape[1]
    labels = labels.to(logits.device).long()
    correct = (logits.argmax(dim=1) == labels).float()
    total = torch.zeros(num_classes, device=logits.device).index_add_(
        0, labels, torch.ones_like(correct)
    )
    hits = torch.zeros_like(total).index_add_(0, labels, correct)
    return torch.where(total > 0, hits / total.clamp_min(1), torch.full_like(total, math.nan))


def figures(
    logged: Mapping[str, Tensor | None],
    logits: Mapping[str, Tensor | None],
    labels: Mapping[str, Tensor | None],
) -> tuple[dict[str, float], list[float]]:
    """Logged values plus ``ece_{split}`` per probe, and per-class val accuracy, on the host.

    Everything is reduced where the logits live and moved to the host in one transfer.
    A ``None`` entry (not logged, no usable logits) is left out.

    Example::

        >>> logits = {"val": torch.tensor([[2.0, 0.0], [0.0, 1.0]]), "train": None}
        >>> host, per_class = figures({"val_loss": torch.tensor(0.5)}, logits,
        ...                           {"val": torch.tensor([0, 0]), "train": None})
        >>> sorted(host), per_class
        (['ece_val', 'val_loss'], [0.5, nan])
    """
    values = {name: value for name, value in logged.items() if value is not None}
    for split, out in logits.items():
        if out is not None and labels[split] is not None:
            values[f"ece_{split}"] = expected_calibration_error(out, labels[split])
    device = next((v.device for v in values.values()), torch.device("cpu"))
    parts = [
        torch.stack([*(v.to(device) for v in values.values()), torch.zeros((), device=device)])
    ]
    if logits.get("val") is not None and labels.get("val") is not None:
        parts.append(per_class_accuracy(logits["val"], labels["val"]).to(device))
    flat = torch.cat(parts).tolist()
    return dict(zip(values, flat, strict=False)), flat[len(values) + 1 :]


@dataclass(frozen=True)
class Evaluation:
    """What one validation showed. Any figure may be ``None`` (not logged)."""

    step: int
    epoch: int
    train_loss: float | None = None
    val_loss: float | None = None
    train_acc: float | None = None
    val_acc: float | None = None
    ece_train: float | None = None
    ece_val: float | None = None

    @property
    def gap_loss(self) -> float | None:
        """``val_loss - train_loss``."""
        return _minus(self.val_loss, self.train_loss)

    @property
    def gap_acc(self) -> float | None:
        """``train_acc - val_acc`` (positive when the model does better on what it trained on)."""
        return _minus(self.train_acc, self.val_acc)

    @property
    def ece_gap(self) -> float | None:
        """``ece_val - ece_train`` (over-confidence on unseen data)."""
        return _minus(self.ece_val, self.ece_train)


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


@dataclass(frozen=True)
class Onset:
    """A detected overfitting onset.

    Attributes:
        signal: ``"val_loss"`` (val loss upturn while train loss falls) or ``"ece_gap"``.
        detected: the evaluation at which the rule fired.
        since: the first evaluation of the run that made it fire.
        best: the evaluation with the lowest validation loss so far (``None`` without val loss).
    """

    signal: str
    detected: Evaluation
    since: Evaluation
    best: Evaluation | None


class OverfittingDetector:
    """State machine over the sequence of evaluations.

    Two rules; the first to fire is the onset (reported once):

    * ``val_loss``: the validation loss is more than ``tolerance`` (relative) above
      its running minimum for ``patience`` consecutive evaluations, and at each of
      them the training loss is below its value at that minimum (training keeps
      improving while validation gets worse). An evaluation that fails either
      condition resets the count; the onset is the first evaluation of the run.
    * ``ece_gap``: ``ece_val - ece_train`` rose at each of the last ``patience``
      evaluations and was above ``ece_margin`` at each of them (the model grows
      over-confident on unseen data while staying calibrated on what it memorised);
      the onset is the first of those evaluations.

    Args:
        tolerance: relative margin above the best validation loss (0.1 = 10%).
        patience: consecutive evaluations a rule must hold.
        ece_margin: smallest ECE gap (absolute) the ``ece_gap`` rule reports.
    """

    def __init__(self, tolerance: float = 0.1, patience: int = 2, ece_margin: float = 0.05) -> None:
        self.tolerance, self.patience, self.ece_margin = tolerance, patience, ece_margin
        self.history: list[Evaluation] = []
        self.best: Evaluation | None = None
        self.streak: list[Evaluation] = []
        self.onset: Onset | None = None

    def update(self, ev: Evaluation) -> Onset | None:
        """Add one evaluation; returns the ``Onset`` when a rule fires for the first time."""
        self.history.append(ev)
        found = self._loss_rule(ev)
        found = found or self._ece_rule()
        if found is not None and self.onset is None:
            self.onset = found
            return found
        return None

    def _loss_rule(self, ev: Evaluation) -> Onset | None:
        if ev.val_loss is None or not math.isfinite(ev.val_loss):
            return None
        best = self.best
        if best is None or ev.val_loss < best.val_loss:
            self.best, self.streak = ev, []
            return None
        above = ev.val_loss - best.val_loss > self.tolerance * abs(best.val_loss)
        # the train loss to beat: the best evaluation's, or (when the best came before any
        # train epoch loss existed, e.g. at epoch 0) the first one seen since
        start = next(i for i, e in enumerate(self.history) if e is best)
        earlier = (e.train_loss for e in self.history[start:-1] if e.train_loss is not None)
        reference = next(earlier, None)
        falling = ev.train_loss is not None and (reference is None or ev.train_loss < reference)
        self.streak = [*self.streak, ev] if above and falling else []
        if len(self.streak) >= self.patience:
            return Onset("val_loss", ev, self.streak[0], best)
        return None

    def _ece_rule(self) -> Onset | None:
        recent = self.history[-(self.patience + 1) :]
        gaps = [ev.ece_gap for ev in recent]
        if len(recent) <= self.patience or any(g is None for g in gaps):
            return None
        rising = all(b > a for a, b in itertools.pairwise(gaps))
        if rising and all(g > self.ece_margin for g in gaps[1:]):
            return Onset("ece_gap", recent[-1], recent[1], self.best)
        return None

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state for checkpoints."""
        index = {id(ev): i for i, ev in enumerate(self.history)}
        onset = None
        if self.onset is not None:
            o = self.onset
            onset = [o.signal, index[id(o.detected)], index[id(o.since)]]
            onset.append(index[id(o.best)] if o.best is not None else None)
        return {
            "history": [asdict(ev) for ev in self.history],
            "best": index[id(self.best)] if self.best is not None else None,
            "streak": [index[id(ev)] for ev in self.streak],
            "onset": onset,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.history = [Evaluation(**ev) for ev in state.get("history", [])]
        at = self.history.__getitem__
        self.best = at(state["best"]) if state.get("best") is not None else None
        self.streak = [at(i) for i in state.get("streak", [])]
        onset = state.get("onset")
        self.onset = None
        if onset:
            best = at(onset[3]) if onset[3] is not None else None
            self.onset = Onset(onset[0], at(onset[1]), at(onset[2]), best)


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
    text = f.message.strip().splitlines()[0] if f.message.strip() else f.kind
    return f"- **{f.source}** ({f.kind}, epoch {f.epoch}, step {f.step}): {text}"


_WHY = {  # what another monitor's finding means for generalisation, by source
    "activations": "dead units lower the capacity the model has left to generalise",
    "gradcam": "Grad-CAM leaving the object means the model relies on a shortcut or the "
    "background rather than the digit",
    "kernels": "kernels gaining high-frequency energy are fitting pixel noise",
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


def summary_text(findings: Sequence[Finding]) -> str:
    """The end-of-fit console summary: one line per finding, or "no problems found"."""
    if not findings:
        return "lightning-cnnviz: no problems found in this run."
    lines = [f"lightning-cnnviz: {len(findings)} finding(s) in this run:"]
    for f in findings:
        text = f.message.strip().splitlines()[0] if f.message.strip() else ""
        text = text.replace("**", "")
        text = text if len(text) <= 200 else text[:197] + "..."
        lines.append(f"  - [{f.source}/{f.kind}] epoch {f.epoch}, step {f.step}: {text}")
    return "\n".join(lines)


def pick_metric(metrics: Mapping[str, Any], key: str, epoch_level: bool) -> Tensor | None:
    """A logged value as a 0-dim float tensor, or ``None``.

    ``self.log(key, on_step=True, on_epoch=True)`` logs ``key_step`` and ``key_epoch``;
    ``epoch_level`` prefers ``key_epoch`` (current once the training epoch ended),
    else the latest value (``key``, ``key_step``).

    Example::

        >>> float(pick_metric({"a": 1.0, "a_step": 1.0, "a_epoch": 2.0}, "a", epoch_level=True))
        2.0
        >>> float(pick_metric({"a": 1.0, "a_epoch": 2.0}, "a", epoch_level=False))
        1.0
    """
    order = ("_epoch", "", "_step") if epoch_level else ("", "_step", "_epoch")
    value = next((metrics[key + s] for s in order if key + s in metrics), None)
    return None if value is None else torch.as_tensor(value).detach().float().reshape(())


def custom_scalars_layout(
    train_loss: str, val_loss: str, train_acc: str, val_acc: str, tag: Callable[[str], str]
) -> dict[str, dict[str, list[Any]]]:
    """TensorBoard custom-scalars layout: train vs val overlaid per metric (regex tag sets)."""

    def pair(a: str, b: str) -> list[Any]:
        return ["Multiline", [rf"^{re.escape(k)}(_epoch)?$" for k in (a, b)]]

    return {
        tag("train vs val"): {
            "loss": pair(train_loss, val_loss),
            "accuracy": pair(train_acc, val_acc),
            "calibration error (ECE)": pair(tag("ece_train"), tag("ece_val")),
            "generalisation gap": pair(tag("gap_loss"), tag("gap_acc")),
        }
    }


def per_class_image(per_class: Tensor, epoch: int, max_bars: int = 40) -> Tensor:
    """uint8 bar chart of per-class accuracy (the ``max_bars`` worst classes if more)."""
    per_class = per_class.detach().float().cpu()
    order = torch.arange(len(per_class))
    if len(per_class) > max_bars:
        order = torch.nan_to_num(per_class, nan=2.0).argsort()[:max_bars].sort().values
    chart = rendering.bar_chart(per_class[order], [str(int(k)) for k in order])
    title = f"val accuracy per class (%), epoch {epoch}"
    return rendering.upscale(rendering.caption(chart, title), 2)


def missing_text(missing: Sequence[str], probes: bool, logged: Iterable[str]) -> str:
    """The one message saying which metrics (or probe labels) the monitor cannot find."""
    parts = [f"`{key}`" for key in missing]
    if not probes:
        parts.append("class labels or (N, classes) logits on the probes (ECE, per_class)")
    return (
        f"OverfittingMonitor cannot find {', '.join(parts)} (logged: {sorted(logged)}); "
        "what needs them is skipped. Log them with `self.log(...)` or pass their names "
        "(`train_loss_key=`, `val_loss_key=`, `train_acc_key=`, `val_acc_key=`)."
    )
