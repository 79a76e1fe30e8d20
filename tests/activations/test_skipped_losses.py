"""Isolated non-finite losses whose steps were skipped: a note, not a divergence (hunt 115)."""

import math

import torch

from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
from lightning_cnnviz.core.findings import findings_of, problems
from tests.activations.diagnosis_nets import Net, fit, leaky_cnn
from tests.tb import events, texts


class Overflows(Net):
    """The returned loss overflows to inf on ``steps``; ``skip``: their updates are dropped.

    As a scaled fp16 loss overflows and GradScaler skips the step: the hook finds the
    non-finite gradients and sets them to None, so the optimiser leaves the weights be.
    """

    def __init__(self, steps: set[int], skip: bool) -> None:
        super().__init__(leaky_cnn(), lr=0.02)
        self.steps, self.skip, self.skipped = steps, skip, []

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * 1e38 * 1e10 if self.global_step in self.steps else loss

    def on_before_optimizer_step(self, optimizer):
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if self.skip and not all(torch.isfinite(g).all() for g in grads):
            self.skipped.append(self.global_step)
            for p in self.parameters():
                p.grad = None


def _fit(tmp_path, model):
    """36 steps of synthetic digits, ActivationMonitor every 10 steps."""
    return fit(tmp_path, model, 36, every=10)[0]


def _divergence(trainer):
    return [f for f in findings_of(trainer) if f.kind == "divergence"]


def test_skipped_losses_isolated_overflows_skipped_are_a_note(tmp_path):
    # hunt 115: every 25th loss inf, its step skipped (6 of 160), val 94% and every weight
    # finite, was told a standing problem "the logged loss ... is broken from there"
    model = Overflows({5, 19, 20}, skip=True)  # two in a row, the first just before a log
    trainer = _fit(tmp_path, model)
    assert model.skipped == [5, 19, 20]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert problems(findings_of(trainer)) == []
    (note,) = _divergence(trainer)
    assert note.severity == "note" and note.figures["nonfinite_steps"] == 3
    assert note.figures["steps"] == 36 and note.figures["first_nonfinite_step"] == 5
    assert note.message.startswith("3 of the 36 training steps up to step 36")
    assert "the model took no harm" in note.message and "GradScaler" in note.message
    assert "broken from there" not in note.message and "withdrawn" not in note.message
    said = "\n".join(texts(events(tmp_path), "activations/diagnosis"))
    assert "1 of the 10 training steps up to step 10" in said  # told at the first log


def test_skipped_losses_a_problem_told_early_is_withdrawn_once_they_are_few(tmp_path):
    # 2 of the first 10 losses inf: more than ``SHARE`` then, told; 2 of 20 a log later
    model = Overflows({3, 6}, skip=True)
    trainer = _fit(tmp_path, model)
    assert problems(findings_of(trainer)) == []
    (note,) = _divergence(trainer)
    assert note.message.startswith("The divergence told at step 10 is withdrawn")
    assert note.figures["nonfinite_steps"] == 2
    said = "\n".join(texts(events(tmp_path), "activations/diagnosis"))
    assert "The loss became non-finite (NaN or Inf) at step 3" in said  # the problem at 10


def test_skipped_losses_an_overflow_a_plain_optimiser_steps_on_stays_a_divergence(tmp_path):
    # no step skipped: the inf loss's gradient writes NaN into every weight
    model = Overflows({5}, skip=False)
    trainer = _fit(tmp_path, model)
    assert not all(torch.isfinite(p).all() for p in model.parameters())
    (found,) = _divergence(trainer)
    assert found.severity == "problem" and found.figures["first_nonfinite_step"] == 5
    assert found.message.startswith("Training diverged") and "took no harm" not in found.message


def test_skipped_losses_a_nan_batch_whose_step_was_skipped_names_the_data():
    # the model finite after a NaN batch's loss: its step skipped; the batch is named first
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    for step in range(30):
        bad = step == 12
        inputs = torch.full((2, 3), math.nan if bad else 0.5)
        diagnosis.loss.add(step, torch.tensor(math.nan if bad else 2.3 - 0.03 * step), inputs)
    verdicts = diagnosis.review(30, 0, {}, {}, [], list)
    (note,) = [v for v in verdicts if v.kind == "divergence"]
    assert note.severity == "note" and note.figures["first_nonfinite_step"] == 12
    assert "1 of the 30 training steps" in note.message
    assert "1 of them had NaN/Inf values in their batch's inputs" in note.message
