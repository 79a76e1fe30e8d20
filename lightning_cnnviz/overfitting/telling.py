"""The findings told: a part of ``OverfittingMonitor``.

``Telling`` feeds each evaluation to the ``Detector`` (``detector.py``) and tells what
changed: a new finding reported (a problem with a warning), a worse one updated in
place, one gone turned into a note. It writes the ``overfitting/diagnosis`` entry
(``text.py``), again when other monitors add findings, and at the end of fit tells what
the last evaluation shows and no later one can confirm (``Detector.conclude``) and
records which checks could look at the run, and why the others could not.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lightning.pytorch import Trainer

from lightning_cnnviz.core.findings import Finding, findings_of, record_check, replace, report
from lightning_cnnviz.core.root_causes import earlier_cause
from lightning_cnnviz.core.run_datasets import has_val_data, no_val_why
from lightning_cnnviz.core.say import say
from lightning_cnnviz.overfitting import chance_levels
from lightning_cnnviz.overfitting.confusion import pairs_text
from lightning_cnnviz.overfitting.detector import CHECKS, Change, Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.rules import MIN_VAL_IMAGES
from lightning_cnnviz.overfitting.text import diagnosis_text, finding_of

__all__ = ["Telling"]

# the checks that read a val curve, which a val set under MIN_VAL_IMAGES cannot carry
_VAL_CURVES = ("overfitting", "memorisation", "train/val gap")
_ELSEWHERE = (
    "the model's {} outputs do not score its labels' classes: on most val probe images the "
    "largest lies past every label, and the loss training returns is far below their "
    "cross-entropy (an embedding trained by a metric loss?)"
)


class Telling:
    """Tells the detector's changes as findings (a part of ``OverfittingMonitor``).

    Uses the monitor's ``detector``, ``keys``, ``section``, ``sink``, ``tag``, ``disabled``,
    ``aside_reason``, ``never_logged_reason``, ``_bn_why``, ``_probes``, ``_steps`` and
    ``_step_why``; keeps
    ``_findings`` (the finding told per kind) and ``_others_told``.
    """

    detector: Detector
    keys: dict[str, str]
    section: str
    _bn_why: str
    scores_misfit: str
    _probes: dict[str, Any]
    _findings: dict[str, Finding]
    _others_told: int  # the other monitors' findings the diagnosis text last named

    def _diagnose(self, trainer: Trainer, ev: Evaluation, pairs: list[Any]) -> None:
        """Run the rules on ``ev`` and tell what changed; rewrite the diagnosis if needed."""
        changes = self.detector.update(ev)
        for change in changes:
            self._tell(trainer, change, ev, pairs)
        others = [f for f in findings_of(trainer) if f.source != self.section]
        if changes or (self.detector.reported and len(others) > self._others_told):
            self._write_diagnosis(trainer, ev, pairs)  # rewritten when others add findings

    def _conclude(self, trainer: Trainer) -> None:
        """The last evaluation's BatchNorm mismatch, confirmed or not (``Detector.conclude``)."""
        changes, ev = self.detector.conclude(trainer.global_step), self.detector.history[-1:]
        for change in changes:
            self._tell(trainer, change, ev[0], [])
        if changes:
            self._write_diagnosis(trainer, ev[0], [])

    def _record_checks(self, trainer: Trainer) -> None:
        """Say which of the rules could look at this run, and why the others could not."""
        h = self.detector.history
        for name, did in self.detector.checks_ran().items():
            if did:
                why = ""
            elif self.disabled:
                why = self.aside_reason or "the monitor stepped aside"
            elif not h:
                why = self.never_logged_reason(trainer)
            elif name == "BatchNorm train/eval" and self._bn_why:
                why = self._bn_why
            elif name == "weight decay" and not any(e.weight_decay for e in h):
                why = "the optimiser uses no weight decay"
            elif name in _VAL_CURVES and (h[-1].val_images or 1e9) < MIN_VAL_IMAGES:
                why = f"the val set holds {int(h[-1].val_images)} images, under {MIN_VAL_IMAGES}"
            elif name == "not learning" and any(chance_levels.scores_elsewhere(e) for e in h):
                why = _ELSEWHERE.format(int(h[-1].classes or 0))
            elif name == "not learning" and (few := _few_probe_images(h)):
                n, k = few  # (setups hunt 71: images of several sizes, the probe of one)
                why = f"the val probe holds {n} images, too few to tell chance on {k} classes"
                if n < min(self.num_samples, h[-1].val_images or self.num_samples):
                    why += " (a probe is one batch of one size: the commonest had these)"
                elif n < (h[-1].val_images or 0):
                    why += " (raise `num_samples`)"
            elif name == "overfitting" and any(e.val_loss is not None for e in h):
                key = self.keys["val_loss"]
                why = f"the validation loss `{key}` was NaN or Inf at every validation"
            elif name == "overfitting" and getattr(trainer, "barebones", False):
                why = "`Trainer(barebones=True)` turns `self.log` off"
            elif name == "overfitting":  # name the key it looked for, and how to change it
                key = self.keys["val_loss"]
                why = f"needs a validation loss: none logged as `{key}` (set `val_loss_key=`)"
            elif self.scores_misfit and "logits" in CHECKS[name]:
                why = self.scores_misfit
            else:
                why = f"needs {CHECKS[name]}" + self._targets_said(name)
            record_check(trainer, type(self).__name__, name, did, why)
        did = len(self._steps) == 2  # ``step_inputs.py``: one batch of each split read
        record_check(trainer, type(self).__name__, "inputs in the steps", did,
                     "" if did else self._steps_why(trainer))  # fmt: skip

    def _steps_why(self, trainer: Trainer) -> str:
        """Why the steps' inputs were not compared (``step_inputs.py``)."""
        if self.disabled:
            return self.aside_reason or "the monitor stepped aside"
        if not has_val_data(trainer):
            return no_val_why(trainer)
        split = "training" if "train" not in self._steps else "validation"
        return self._step_why or f"no {split} batch reached the model's first layer"

    def _targets_said(self, check: str) -> str:
        """Where ``check`` needs class labels and the probes carry other targets, what they are."""
        probe = self._probes.get("val")
        target = probe.target if probe is not None else ""
        if "class labels" not in CHECKS[check] or not target:
            return ""
        return f" (the probes' targets are {target})"

    def _write_diagnosis(self, trainer: Trainer, ev: Evaluation, pairs: list[Any]) -> None:
        """The ``diagnosis`` text: this monitor's findings, the others', the evidence."""
        others = [f for f in findings_of(trainer) if f.source != self.section]
        self._others_told = len(others)
        text = diagnosis_text(self.detector.active, ev, others, confusion=pairs_text(pairs),
                              keys=self.keys)  # fmt: skip
        self.sink.text(self.tag("diagnosis"), text, ev.step)

    def _tell(self, trainer: Trainer, change: Change, ev: Evaluation, pairs: list[Any]) -> None:
        """Report a new finding (with a warning), or update the one reported before."""
        finding, v = finding_of(self.section, change, ev, pairs), change.verdict
        since = v.since.step if v.since is not None else None
        if v.severity == "problem" and (cause := earlier_cause(trainer, v.kind, since)):
            finding = dataclasses.replace(finding, message=f"{finding.message} {cause}")
        message = finding.message
        old = self._findings.get(v.kind)
        self._findings[v.kind] = finding
        if old is None:
            report(trainer, finding)
        else:
            replace(trainer, old, finding)
        if change.change == "new" and v.severity == "problem":  # notes: summary and text only
            say(f"{message} See `{self.tag('diagnosis')}`.")


def _few_probe_images(history: list[Evaluation]) -> tuple[int, int] | None:
    """``(images, classes)`` where the val probe read labels but was too small to tell chance."""
    for e in reversed(history):
        if e.probe_acc_val is None or not e.classes or e.classes < 2:
            continue
        k, n = chance_levels.chance_classes(e), int(e.probe_size or 0)
        return (n, k) if chance_levels.too_small(k, chance_levels.chance_band(k, n)) else None
    return None
