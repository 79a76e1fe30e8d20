"""The verdicts told: a part of ``ActivationMonitor``.

``Telling`` turns the training diagnosis's verdicts (``diagnose.py``) into findings: a
problem gets the cause another monitor found first (``root_causes.earlier_cause``) and,
on float16 weights, float32 as the first remedy of a divergence; a problem that grew
while it stood, or an episode that ended (its note), replaces the finding told before;
each log's verdicts become one ``activations/diagnosis`` text, and only problems are
said on the console. At the end of fit it tells what the last steps show (``conclude``)
and records a divergence check that read no loss.

It reads the monitor's ``diagnosis``, ``sink``, ``section``, ``_findings``, ``tag`` and
``warn_once``, and the window's ``_last_rate``, ``_batch_at`` and ``take_peak_rate``.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from torch import nn

from lightning_cnnviz.activations.diagnose import TrainingDiagnosis, Verdict
from lightning_cnnviz.activations.divergence import nonfinite_parameters
from lightning_cnnviz.activations.divergence_remedies import half_first
from lightning_cnnviz.activations.divergence_words import no_loss_text
from lightning_cnnviz.core.findings import Finding, record_check, replace, report
from lightning_cnnviz.core.root_causes import earlier_cause
from lightning_cnnviz.core.say import say
from lightning_cnnviz.core.selection import unwrap_model
from lightning_cnnviz.core.settings import read_settings, settings_of

__all__ = ["Telling"]


class Telling:
    """Verdicts told as findings, texts and warnings (see the module docstring)."""

    diagnosis: TrainingDiagnosis
    section: str
    sink: Any
    events: int
    fit_batches: int
    _findings: dict[str, Finding]  # the last reported finding of each kind
    _last_rate: float | None
    _batch_at: tuple[int, int]
    _backward_seen: bool

    def conclude(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """At the end of fit: what the last steps show, and a check that read no loss."""
        model = unwrap_model(pl_module)  # before the summary: what the last steps show
        # the rate the last step ran at: a scheduler stepped at the epoch's end already
        # holds the next epoch's, which no step used (setups hunt 49: a warm restart)
        lr = self._last_rate if self._last_rate is not None else settings_of(trainer, model).lr_top
        verdicts = self.diagnosis.conclude(
            lambda: nonfinite_parameters(list(model.named_parameters())),
            trainer.global_step, self._batch_at[1], lr=lr, lr_peak=self.take_peak_rate(),
        )  # fmt: skip
        self._tell(trainer, verdicts, self.diagnosis.last_step, self.diagnosis.last_epoch)
        if self.events and self.fit_batches and not self.diagnosis.loss.series:
            why = no_loss_text(len(trainer.optimizers), self._backward_seen)
            record_check(trainer, type(self).__name__, "divergence", False, why)
            self.warn_once("no_loss", f"the divergence check did not run: it {why}.")

    def _tell(self, trainer: Trainer, verdicts: list[Verdict], step: int, epoch: int) -> None:
        """Write the verdicts' text, warn the problems and report them as findings."""
        module = getattr(trainer, "lightning_module", None)
        settings = read_settings(getattr(trainer, "optimizers", []), module or nn.Identity())
        for v in verdicts:  # in order: a cause told at this log is named by what follows
            if v.severity == "problem" and (
                cause := earlier_cause(trainer, v.kind, figures=v.figures)
            ):
                v.message = f"{v.message} {cause}"
            if v.kind == "divergence" and v.severity == "problem" and settings.half_weights:
                v.message = half_first(v.message, settings.eps)
            finding = Finding(self.section, v.kind, step, epoch, v.message, v.figures,
                              severity=v.severity)  # fmt: skip
            old = self._findings.get(v.kind)
            # an episode that ended: its note replaces it; a problem that grew while it
            # stood (a spike, then NaN a log later) is one failure, told at its latest
            grew = old is not None and old.severity == v.severity == "problem"
            if old is not None and (v.change == "gone" or grew):
                replace(trainer, old, finding)
            else:
                report(trainer, finding)
            self._findings[v.kind] = finding
        if verdicts:  # one text per log: TensorBoard keeps one entry per tag and step
            self.sink.text(self.tag("diagnosis"), "\n\n".join(v.message for v in verdicts), step)
        for v in verdicts:
            if v.severity == "problem":  # notes go to the summary and the text only
                say(v.message)
