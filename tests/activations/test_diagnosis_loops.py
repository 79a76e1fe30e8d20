"""Short fits with loops of their own: zero_grad forgotten, manual steps, closures, GANs."""

import math
import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_cnnviz.activations.callback import ActivationMonitor
from lightning_cnnviz.core.findings import checks_of, findings_of, problems
from lightning_cnnviz.reference.synthetic import SyntheticDigitsDataModule
from tests.activations.diagnosis_nets import Net, fit, leaky_cnn
from tests.tb import events, texts


class NoZeroGrad(Net):
    """``optimizer_zero_grad`` overridden to do nothing: gradients pile up step after step."""

    def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
        pass


class ManualNet(Net):
    """Manual optimisation, gradients accumulated over 2 batches on purpose."""

    def __init__(self, net: nn.Module, lr: float) -> None:
        super().__init__(net, lr)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self(batch[0]), batch[1])
        self.manual_backward(loss)
        if batch_idx % 2 == 1:
            self.optimizers().step()
            self.optimizers().zero_grad()
        return loss


def test_diagnosis_runs_forgotten_zero_grad_is_found_at_the_first_log(tmp_path):
    trainer, said = fit(tmp_path, NoZeroGrad(leaky_cnn(), lr=0.01), steps=12, every=5)
    found = [f for f in findings_of(trainer) if f.kind == "gradients_not_reset"]
    assert [(f.step, f.severity) for f in found] == [(5, "problem")]
    assert found[0].figures["leftover_grad"] > 0
    (text,) = [t for t in texts(events(tmp_path / "tb"), "activations/diagnosis")
               if "gradients were not reset" in t]  # fmt: skip
    assert "optimizer_zero_grad" in text and "accumulate_grad_batches" in text
    assert any("gradients were not reset" in m for m in said)


@pytest.mark.parametrize("how", ["automatic", "accumulate", "manual"])
def test_diagnosis_runs_gradients_reset_or_accumulated_on_purpose_are_quiet(tmp_path, how):
    model = ManualNet(leaky_cnn(), lr=0.01) if how == "manual" else Net(leaky_cnn(), lr=0.01)
    L.seed_everything(0, verbose=False)
    monitor = ActivationMonitor(every_n_steps=3)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=9, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
        logger=False, callbacks=[monitor], accumulate_grad_batches=2 if how == "accumulate" else 1,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, SyntheticDigitsDataModule(train_size=64 * 20, val_size=64))
    assert monitor.events == 3
    assert [f for f in findings_of(trainer) if f.kind == "gradients_not_reset"] == []


class QuietManual(Net):
    """Manual optimisation whose ``training_step`` returns nothing (a GAN-like loop)."""

    def __init__(self, net: nn.Module, lr: float, optimizers: int = 1) -> None:
        super().__init__(net, lr, momentum=0.0)
        self.automatic_optimization, self.count = False, optimizers

    def training_step(self, batch, batch_idx):
        for opt in self.optimizers() if self.count > 1 else [self.optimizers()]:
            opt.zero_grad()
            self.manual_backward(F.cross_entropy(self(batch[0]), batch[1]))
            opt.step()

    def configure_optimizers(self):
        return [torch.optim.SGD(self.parameters(), lr=self.lr) for _ in range(self.count)]


def test_diagnosis_runs_manual_loop_returning_nothing_still_finds_divergence(tmp_path):
    trainer, _ = fit(tmp_path, QuietManual(leaky_cnn(), lr=8.0), steps=40, every=10)
    assert "divergence" in [f.kind for f in problems(findings_of(trainer))]


class TwoBackwards(QuietManual):
    """Manual optimisation: the loss's backward, then a small logit penalty's (no return)."""

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        logits = self(batch[0])
        self.manual_backward(F.cross_entropy(logits, batch[1]), retain_graph=True)
        self.manual_backward(1e-3 * logits.pow(2).mean())
        opt.step()


def test_diagnosis_runs_a_steps_backwards_are_read_as_one_loss(tmp_path):
    # setups hunt 40: the penalty's backward, read as the whole loss, was told as a
    # divergence ("the loss spiked to 0.00212") while the cross-entropy fell 2.28 -> 1.25
    trainer, _ = fit(tmp_path, TwoBackwards(leaky_cnn(), lr=0.05), steps=40, every=10)
    assert problems(findings_of(trainer)) == []
    monitor = next(c for c in trainer.callbacks if isinstance(c, ActivationMonitor))
    losses = [loss for _, loss in monitor.diagnosis.loss.read()]
    assert min(losses) > 0.1  # the cross-entropy's level, not the penalty's (~1e-3)


class ClosureSteps(QuietManual):
    """Manual optimisation under LBFGS: its closure evaluated several times a step."""

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(self(batch[0]), batch[1])
            self.manual_backward(loss)
            return loss

        opt.step(closure=closure)

    def configure_optimizers(self):
        return torch.optim.LBFGS(self.parameters(), lr=0.1, max_iter=5)


def test_diagnosis_runs_a_closures_evaluations_are_read_as_its_first_loss(tmp_path):
    # setups hunt 41: each evaluation's backward summed, "the training loss is ~11x the
    # model's own cross-entropy ... summed over the batch instead of averaged"
    trainer, _ = fit(tmp_path, ClosureSteps(leaky_cnn(), lr=0.1), steps=10, every=5)
    monitor = next(c for c in trainer.callbacks if isinstance(c, ActivationMonitor))
    losses = [loss for _, loss in monitor.diagnosis.loss.read()]
    losses.sort()  # one evaluation's cross-entropy, not max_iter of them
    assert losses and losses[len(losses) // 2] < 1.5 * math.log(10)
    assert not [f for f in findings_of(trainer) if "summed over the batch" in f.message]


class PerItemBackward(QuietManual):
    """Manual optimisation whose backward sees a loss per item (``gradient=`` given)."""

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        opt.zero_grad()
        losses = F.cross_entropy(self(batch[0]), batch[1], reduction="none")
        self.manual_backward(losses, gradient=torch.full_like(losses, 1 / len(losses)))
        opt.step()


def test_diagnosis_runs_a_loss_per_item_says_why_divergence_did_not_run(tmp_path):
    # setups hunt 41: the reason given was "no `manual_backward` ran" though one ran each step
    trainer, _ = fit(tmp_path, PerItemBackward(leaky_cnn(), lr=0.01), steps=10, every=5)
    check = checks_of(trainer)[("ActivationMonitor", "divergence")]
    assert not check.ran and "the loss its backward saw is not one value" in check.why


def test_diagnosis_runs_two_optimizers_without_a_loss_say_divergence_did_not_run(tmp_path):
    gan_like = QuietManual(leaky_cnn(), lr=0.01, optimizers=2)
    trainer, said = fit(tmp_path, gan_like, steps=10, every=5)
    check = checks_of(trainer)[("ActivationMonitor", "divergence")]
    assert not check.ran and "returned none" in check.why and "2 optimizers" in check.why
    assert len([m for m in said if "the divergence check did not run" in m]) == 1


class WithGenerator(Net):
    """A GAN-like module: ``G`` is trained elsewhere, ``forward`` runs the discriminator."""

    def __init__(self) -> None:
        super().__init__(leaky_cnn(), lr=0.01)
        self.G = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 28 * 28))


def test_diagnosis_runs_layers_forward_never_calls_are_said_once(tmp_path):
    _, said = fit(tmp_path, WithGenerator(), steps=10, every=5)
    told = [m for m in said if "not called by the model's forward()" in m]
    assert len(told) == 1 and "`G.1`" in told[0]
