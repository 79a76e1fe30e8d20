"""Ground truth for ``diagnosis.py``: what each run really did, measured on the side.

``Truth`` is a callback that records, independently of the monitors, the training loss of
every step, the epoch metrics at every validation, when each monitor logged, and the
scenario's own evidence (accuracy in eval mode vs with batch statistics; reliance on a
shortcut cue). ``onset`` turns those records into the step where the failure began.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from lightning_cnnviz import findings_of

CUE_EVERY = 10  # steps between cue-reliance measurements
BN_GAP = 0.10  # eval-mode accuracy this far below batch-statistics accuracy: the BN failure
CUE_RELIANCE = 0.5  # share of cue-swapped digits classified by the cue: a shortcut


class Truth(L.Callback):
    """Records of one run (see the module docstring)."""

    def __init__(self, monitors: list[Any], onset: str | None) -> None:
        self.monitors, self.kind = monitors, onset
        self.losses: list[float] = []  # per step
        self.validations: list[dict[str, float]] = []  # step, epoch, val/train loss and acc
        self.events: dict[str, list[int]] = {type(m).__name__: [] for m in monitors}
        self.cue: list[tuple[int, float]] = []
        self._counts = {type(m).__name__: 0 for m in monitors}
        # (source, kind, severity) -> the finding as first reported (rules update theirs)
        self.first_seen: dict[tuple[str, str, str], dict[str, Any]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))
        self._notice_events(trainer.global_step)
        self._notice_findings(trainer)
        if self.kind == "cue" and trainer.global_step % CUE_EVERY == 0:
            self.cue.append((trainer.global_step, cue_reliance(pl_module, trainer.datamodule)))

    def _notice_findings(self, trainer: L.Trainer) -> None:
        for f in findings_of(trainer):
            key = (f.source, f.kind, f.severity)
            if key not in self.first_seen:
                self.first_seen[key] = {"source": f.source, "kind": f.kind, "step": f.step,
                                        "severity": f.severity, "epoch": f.epoch,
                                        "message": f.first_line[:160]}  # fmt: skip

    def _notice_events(self, step: int) -> None:
        for m in self.monitors:
            name = type(m).__name__
            if m.events > self._counts[name]:
                self._counts[name] = m.events
                self.events[name].append(step)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._notice_events(trainer.global_step)
        self._notice_findings(trainer)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        if "val/loss" not in metrics:
            return
        record = {"step": trainer.global_step, "epoch": trainer.current_epoch,
                  "val_loss": metrics["val/loss"], "val_acc": metrics.get("val/acc", math.nan),
                  "train_acc": metrics.get("train/acc_epoch", math.nan)}  # fmt: skip
        if self.kind == "bn_gap":
            record["eval_acc"], record["batch_stat_acc"] = bn_accuracies(pl_module, trainer)
        self.validations.append(record)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._notice_findings(trainer)


def _val_batch(data: Any, n: int = 512) -> tuple[Tensor, Tensor]:
    ds = data.val_dataset
    return ds.images[:n], ds.labels[:n]


@torch.no_grad()
def bn_accuracies(pl_module: L.LightningModule, trainer: L.Trainer) -> tuple[float, float]:
    """Validation accuracy in eval mode vs with batch statistics (on a copy: buffers untouched)."""
    x, y = _val_batch(trainer.datamodule)
    twin = copy.deepcopy(pl_module).eval()
    eval_acc = float((twin(x).argmax(1) == y).float().mean())
    for module in twin.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.train()
    batch_acc = float((twin(x).argmax(1) == y).float().mean())
    return eval_acc, batch_acc


@torch.no_grad()
def cue_reliance(pl_module: L.LightningModule, data: Any, n: int = 500) -> float:
    """Share of val images that carry another class's cue and are classified as that class."""
    images, labels = data.clean_val[0][:n], data.clean_val[1][:n]
    k = data.num_classes
    wrong = (labels + 1 + torch.arange(len(labels)) % (k - 1)) % k  # never the true class
    x = data.with_cue(images, wrong)
    was = pl_module.training
    pl_module.eval()
    try:
        return float((pl_module(x).argmax(1) == wrong).float().mean())
    finally:
        pl_module.train(was)


def onset(truth: Truth, kind: str | None, onset_step: int | None) -> tuple[int | None, str]:
    """The step where the failure began, measured from ``truth``, and how it was found."""
    vals = truth.validations
    if kind is None:
        return None, "healthy"
    if kind == "start":
        chance = math.log(10)
        late = truth.losses[-20:]
        return (
            0,
            f"broken from step 0 (final loss {sum(late) / len(late):.3f}; chance {chance:.3f})",
        )
    if kind == "step":
        return onset_step, f"planted at step {onset_step}"
    if kind == "nonfinite":
        first = next((i for i, v in enumerate(truth.losses) if not math.isfinite(v)), None)
        start = truth.losses[0]
        spike = next((i for i, v in enumerate(truth.losses) if v > 3 * start), None)
        hits = [i for i in (first, spike) if i is not None]
        if not hits:
            return None, "never diverged (no NaN, no loss above 3x its start)"
        step = min(hits)
        what = "non-finite loss" if step == first else f"loss {truth.losses[step]:.3g} > 3x start"
        return step, f"{what} at step {step}"
    if kind == "val_loss_up":
        losses = [v["val_loss"] for v in vals]
        best = min(range(len(losses)), key=losses.__getitem__)
        for i in range(best + 1, len(losses)):  # risen 5% and never back near the best
            if losses[i] > 1.05 * losses[best] and min(losses[i:]) > 1.02 * losses[best]:
                return vals[i]["step"], (
                    f"val loss {losses[i]:.3f} at epoch {vals[i]['epoch']}, best "
                    f"{losses[best]:.3f} at epoch {vals[best]['epoch']}, never back"
                )
        return None, "val loss never rose for good"
    if kind == "val_acc_down":
        accs = [v["val_acc"] for v in vals]
        best = max(range(len(accs)), key=accs.__getitem__)
        for i in range(best + 1, len(accs)):  # 2 points down and never back
            if accs[i] < accs[best] - 0.02 and max(accs[i:]) < accs[best] - 0.01:
                return vals[i]["step"], (
                    f"val acc {accs[i]:.3f} at epoch {vals[i]['epoch']}, peak {accs[best]:.3f} "
                    f"at epoch {vals[best]['epoch']}; train acc {vals[i]['train_acc']:.3f}"
                )
        return None, "val accuracy never fell for good"
    if kind == "bn_gap":
        for v in vals:
            if v["batch_stat_acc"] - v["eval_acc"] > BN_GAP:
                return v["step"], (
                    f"eval-mode acc {v['eval_acc']:.3f} vs batch-statistics "
                    f"{v['batch_stat_acc']:.3f} at epoch {v['epoch']}"
                )
        return None, "no eval/batch-statistics gap"
    if kind == "cue":
        for step, share in truth.cue:
            if share > CUE_RELIANCE:
                return step, f"{share:.0%} of cue-swapped digits follow the cue at step {step}"
        return None, "the cue was never relied on"
    raise ValueError(f"unknown onset kind {kind!r}")
