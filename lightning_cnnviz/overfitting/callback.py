"""``OverfittingMonitor``: generalisation gap, calibration, per-class accuracy and a diagnosis."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch import Tensor
from typing_extensions import override

from lightning_cnnviz.core.checks import check_int, check_key, check_number
from lightning_cnnviz.core.findings import (
    Finding,
    findings_of,
    record_skipped,
    report,
    summary_text,
)
from lightning_cnnviz.core.monitor import Monitor, with_probe
from lightning_cnnviz.core.probe import (
    Probe,
    draw_probe,
    find_dataset,
    generator_for,
    has_val_data,
)
from lightning_cnnviz.overfitting.detector import OverfittingDetector
from lightning_cnnviz.overfitting.draw import custom_scalars_layout, per_class_image
from lightning_cnnviz.overfitting.metrics import Evaluation, figures, pick_metric
from lightning_cnnviz.overfitting.text import diagnosis_text, headline, missing_text

_KEYS = ("train_loss", "val_loss", "train_acc", "val_acc")


class OverfittingMonitor(Monitor, section="overfitting"):
    """Tells in plain words when and why a model starts to overfit.

    At each validation end (training steps never carry anything) it reads the train
    and val loss/accuracy the module logs, runs the model on a val and a train probe
    (eval mode, no gradients, no hooks) for calibration and per-class accuracy, and
    feeds an ``OverfittingDetector``. Epoch-level train values are read once the
    training epoch ends (``train/loss_epoch`` is current only then). At the end of fit
    it prints the summary of every monitor's findings. Tags, rules and how to read
    the diagnosis: ``docs/overfitting.md``.

    Its work on the training thread is timed in ``timings``: ``total`` per evaluation
    (within it ``probe``, drawing the probes once, ``capture``, the forward pass,
    ``compute``, ``render`` and ``write``), and outside the evaluations ``setup``,
    ``summary`` (the end-of-fit summary) and
    ``flush`` (waiting for the sink's thread at the end of fit).

    Args:
        train_loss_key, val_loss_key, train_acc_key, val_acc_key: logged metric names
            (``name_epoch``/``name_step`` variants are found too).
        tolerance: val loss more than this fraction above its best counts as worse.
        patience: consecutive evaluations a detection rule must hold.
        ece_margin: smallest ``ece_val - ece_train`` the growing-ECE-gap rule reports.
        num_samples: images per probe (val and train), class-balanced; the whole set when
            it is smaller. The probe pass (2 x ``num_samples`` images forward, no gradients)
            is most of an evaluation's cost; ``ece_margin`` suits 256: a smaller probe
            biases the ECE of the val probe upward, so the calibration rule fires sooner.
        **kwargs: the shared arguments of ``Monitor`` (schedule, ``tag_prefix``, ``strict``,
            ``seed``, ``budget``). Evaluations happen at validation ends only:
            ``every_n_steps=n`` takes the first validation of the run and the first after
            each multiple of ``n`` steps, ``every_n_epochs=n`` the validations of every n-th
            epoch (automatic, the default: every validation). No ``layers``: the monitor
            reads the model's outputs only.

    Example::

        >>> from lightning_cnnviz import OverfittingMonitor
        >>> monitor = OverfittingMonitor(tolerance=0.1, patience=2)
        >>> monitor.tag("gap_loss")
        'overfitting/gap_loss'
    """

    needs_call_sites = watches_layers = False

    def __init__(
        self,
        train_loss_key: str = "train/loss",
        val_loss_key: str = "val/loss",
        train_acc_key: str = "train/acc",
        val_acc_key: str = "val/acc",
        tolerance: float = 0.1,
        patience: int = 2,
        ece_margin: float = 0.05,
        num_samples: int = 256,
        **kwargs: Any,
    ) -> None:
        if "layers" in kwargs:
            raise TypeError(
                "OverfittingMonitor reads the model's outputs only: it takes no `layers`"
            )
        super().__init__("auto", num_samples=num_samples, **kwargs)
        keys = (train_loss_key, val_loss_key, train_acc_key, val_acc_key)
        for name, key in zip(_KEYS, keys, strict=True):
            check_key(f"{name}_key", key)
        check_number("tolerance", tolerance, low=0.0)
        check_int("patience", patience)
        check_number("ece_margin", ece_margin, low=0.0, high=1.0)
        self.keys = dict(zip(_KEYS, keys, strict=True))
        self.tolerance, self.patience, self.ece_margin = tolerance, patience, ece_margin
        self.reset()

    @override
    def reset(self) -> None:
        self.detector = OverfittingDetector(self.tolerance, self.patience, self.ece_margin)
        self._pending = self._epoch_end = self._layout = False
        self._others_told = 0

    @override
    def describe_layers(self) -> str:
        keys = ", ".join(f"`{k}`" for k in self.keys.values())
        return f"**OverfittingMonitor** (overfitting): reads {keys}; model outputs on the probes"

    @override
    def probe(self, trainer: Trainer, split: str = "val") -> Probe:
        if split in self._probes:
            return self._probes[split]
        with self.phase("probe"):  # once per fit: `dataset[i]` for every probe image
            if not self._probe_indices.get(split):
                data = find_dataset(trainer, split)  # a small set: use all of it
                gen = generator_for(self.seed, f"probe/{split}")
                size, key = min(self.num_samples, len(data)), self.probe_label_key(data)
                self._probes[split] = draw_probe(data, size, gen, label_key=key)
                self._probe_indices[split] = self._probes[split].indices
            return super().probe(trainer, split)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        with self.phase("setup"):
            super().setup(trainer, pl_module, stage)

    # ------------------------------------------------ schedule: validation ends only
    @override
    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:  # never on train steps
        self.budget.step_ended()

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or self.disabled:
            return
        step, last = trainer.global_step, self.last_logged_step
        # automatic: every validation (which costs far more than this check)
        due = self.schedule.automatic or self.schedule.due_on_step(step, last, first_chance=True)
        # evaluated once the train metrics are current (the next batch or the epoch end)
        self._pending = self._pending or due or self._due_on_epoch(trainer)

    def _flush(self, trainer: Trainer, pl_module: LightningModule, epoch_end: bool) -> None:
        if self._pending:
            self._pending, self._epoch_end = False, epoch_end
            self._fire(trainer, pl_module)

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *_: Any) -> None:
        self._flush(trainer, pl_module, epoch_end=False)  # after a mid-epoch validation

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer, pl_module, epoch_end=True)

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer, pl_module, epoch_end=False)
        if self.events == 0 and not self.disabled and trainer.is_global_zero:
            why = "no validation ran" if has_val_data(trainer) else "the run has no validation data"
            record_skipped(trainer, self.section, f"train vs val comparison ({why})")
        with self.phase("summary"):
            summary = summary_text(findings_of(trainer))
            rank_zero_info(summary)
            if not self.disabled:  # also in TensorBoard's Text tab, so a clean run says so there
                self.sink.text(self.tag("summary"), summary, trainer.global_step)
        with self.phase("flush"):  # what the sink's thread still has to write
            super().on_fit_end(trainer, pl_module)

    # ------------------------------------------------ one evaluation
    def _logits(self, trainer: Trainer, pl_module: LightningModule, split: str) -> Tensor | None:
        labels = self.probe(trainer, split).labels
        x = self.probe_input(trainer, pl_module, split)
        with self.phase("capture"):
            self.logits_key(trainer, pl_module)
        with self.phase("capture"), with_probe(pl_module):
            outputs = [self.logits_of(pl_module(c), image_level=False) for c in x.split(128)]
            logits = torch.cat([o.float() for o in outputs])
        if logits.dim() != 2:
            self.warn_once("dense", "calibration (ECE) and per-class accuracy need one score "
                           f"per class per sample; the model's logits have shape "
                           f"{tuple(logits.shape[1:])} per sample (per-position scores, as a "
                           "segmentation net gives): they are skipped")  # fmt: skip
            return None
        ok = labels is not None and logits.shape[1] > int(labels.max())
        return logits if ok else None

    def _measure(self, trainer: Trainer, pl_module: LightningModule) -> tuple[Any, ...]:
        """Logged metrics and probe figures, moved to the host in one transfer."""
        logged = trainer.callback_metrics  # read once: each read recomputes Lightning's results
        found = {
            n: pick_metric(logged, k, self._epoch_end or n[:3] == "val")
            for n, k in self.keys.items()
        }
        logits = {s: self._logits(trainer, pl_module, s) for s in ("val", "train")}
        missing = [self.keys[n] for n, v in found.items() if v is None]
        probes = logits["val"] is not None and logits["train"] is not None
        if missing or not probes:
            self.warn_once("missing", missing_text(missing, probes, logged))
        labels = {s: self.probe(trainer, s).labels for s in logits}
        with self.phase("compute"):
            host, per_class = figures(found, logits, labels)  # one transfer to the host
        return Evaluation(trainer.global_step, trainer.current_epoch, **host), per_class

    @override
    def log_event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        ev, per_class = self._measure(trainer, pl_module)
        step, epoch = ev.step, ev.epoch
        scalars = {k: getattr(ev, k) for k in ("gap_loss", "gap_acc", "ece_val", "ece_train")}
        image = None
        if per_class:
            with self.phase("render"):
                image = per_class_image(torch.tensor(per_class), epoch)
        with self.phase("write"):
            self.sink.scalars({self.tag(k): v for k, v in scalars.items() if v is not None}, step)
            if image is not None:
                self.sink.image(self.tag("per_class"), image, step)
            self._write_layout()
        if (onset := self.detector.update(ev)) is not None:
            message = headline(onset, self.tolerance)
            rank_zero_warn(f"{message} See `{self.tag('diagnosis')}`.")
            numbers = {k: v for k, v in vars(ev).items() if v is not None}
            report(trainer, Finding(self.section, "overfitting", step, epoch, message, numbers))
        others = [f for f in findings_of(trainer) if f.source != self.section]
        if self.detector.onset and (onset or len(others) > self._others_told):
            self._others_told = len(others)  # rewritten when other monitors add findings
            text = diagnosis_text(
                self.detector.onset, others, tolerance=self.tolerance, val_key=self.keys["val_loss"]
            )
            self.sink.text(self.tag("diagnosis"), text, step)

    def _write_layout(self) -> None:
        if not self._layout and self.sink.writer is not None:
            self._layout = True
            keys = self.keys.values()
            self.sink.writer.add_custom_scalars(custom_scalars_layout(*keys, tag=self.tag))

    @override
    def extra_state(self) -> dict[str, Any]:
        return self.detector.state_dict()

    @override
    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.detector.load_state_dict(state)
