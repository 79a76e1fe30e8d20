"""Short real fits: each training-side rule fires on its failure, with its cause, and only there."""

import math
import warnings

import lightning as L
import pytest
import torch
import torchvision
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from lightning_cnnviz.activations.callback import ActivationMonitor
from lightning_cnnviz.activations.sites import trace_sites
from lightning_cnnviz.core.findings import findings_of, problems
from lightning_cnnviz.reference import MNISTClassifier
from lightning_cnnviz.reference.synthetic import SyntheticDigitsDataModule
from tests.activations.diagnosis_nets import Net, fit, leaky_cnn, scaled_cnn, sigmoid_cnn
from tests.tb import events, texts


def test_diagnosis_runs_reference_model_with_adam_is_healthy(tmp_path):
    trainer, said = fit(tmp_path, MNISTClassifier(), steps=50)
    assert problems(findings_of(trainer)) == []
    assert not [m for m in said if "dead" in m.lower() or "diverged" in m]
    # relu3 (flatten -> fc -> ReLU) keeps a third of its units silent: a note at most
    for finding in findings_of(trainer):
        assert finding.severity == "note" and finding.kind == "dead_units"
        assert "A note, not a problem" in finding.message


def test_diagnosis_runs_leaky_relu_divergence_not_advised_leaky_relu(tmp_path):
    trainer, said = fit(tmp_path, Net(leaky_cnn(), lr=2.0), steps=25)
    found = findings_of(trainer)
    assert [(f.kind, f.severity) for f in found] == [("divergence", "problem")]
    (diverged,) = found
    assert diverged.step == 25 and 1 <= diverged.figures["first_nonfinite_step"] < 25
    assert diverged.figures["first_nonfinite_parameter"] == "*"  # NaN spread to every weight
    assert "lower the learning rate" in diverged.message and "LeakyReLU" not in diverged.message
    assert [m for m in said if m.startswith("Training diverged")] == [diverged.message]
    assert texts(events(tmp_path), "activations/diagnosis") == [diverged.message]


def test_diagnosis_runs_deep_sigmoid_cnn_vanishing_gradients(tmp_path):
    trainer, _ = fit(tmp_path, Net(sigmoid_cnn(), lr=0.01), steps=25)
    (vanishing,) = [f for f in findings_of(trainer) if f.kind == "vanishing_gradients"]
    assert vanishing.severity == "problem" and vanishing.step == 25
    acc = events(tmp_path)
    first, last = (acc.Scalars(f"activations/net.{i}/grad_rms")[-1].value for i in (0, 19))
    assert vanishing.figures["first_rms"] == pytest.approx(first)
    assert vanishing.figures["depth_ratio"] < 1e-3 and first < 1e-3 * last
    assert "`net.0`" in vanishing.message and "Sigmoid" in vanishing.message
    assert not [f for f in findings_of(trainer) if f.kind == "dead_units"]  # sigmoids never die


def test_diagnosis_runs_frozen_first_layers_are_no_vanishing_gradients(tmp_path):
    # the same net with its first convolutions frozen: the profile starts at the first
    # trainable layer, which says nothing about gradients reaching the first layers
    net = sigmoid_cnn()
    for layer in list(net)[:6]:
        layer.requires_grad_(False)
    trainer, _ = fit(tmp_path, Net(net, lr=0.01), steps=25)
    assert not [f for f in findings_of(trainer) if f.kind == "vanishing_gradients"]
    acc = events(tmp_path)
    assert "activations/net.0/grad_rms" not in acc.Tags()["scalars"]  # frozen: no gradient
    assert len(acc.Scalars("activations/net.7/grad_rms")) > 0


class FunctionalTanh(nn.Module):
    """Four convs each read by ``torch.tanh`` (no activation module); half of the first
    conv's channels start never positive (bias -5)."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(1 if i == 0 else 8, 8, 3, padding=1) for i in range(4))
        self.fc = nn.Linear(8, 10)
        with torch.no_grad():
            self.convs[0].bias[:4] = -5.0

    def forward(self, x):
        for conv in self.convs:
            x = torch.tanh(conv(x))
        return self.fc(x.mean((2, 3)))


def test_diagnosis_runs_conv_outputs_read_by_tanh_are_never_dead(tmp_path):
    # hunt 19: 12 convs each followed by `torch.tanh`: "`model.convs.9`: 44% of units dead"
    # with label and optimiser remedies; a negative input to tanh is no dead unit
    trainer, _ = fit(tmp_path, Net(FunctionalTanh(), lr=0.05), steps=10, every=5)
    monitor = trainer.callbacks[0]
    assert monitor.fallback and {i.kind for i in monitor._rec.sites.values()} == {"leaky"}
    assert not [f for f in findings_of(trainer) if f.kind == "dead_units"]


def test_diagnosis_runs_residual_activation_belongs_to_the_main_path():
    """After `out += downsample(x)` the block's ReLU reads conv2's output, not the shortcut's."""
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    relus = {n: m for n, m in model.named_modules() if isinstance(m, nn.ReLU)}
    order: list[str] = []
    x = torch.randn(1, 3, 64, 64)
    _, sites = trace_sites(model, relus, lambda: model(x), order)
    for stage in ("layer2", "layer3", "layer4"):
        assert sites[f"{stage}.0.relu#1"].producer == f"{stage}.0.conv2"
        assert order.index(f"{stage}.0.downsample.0") > order.index(f"{stage}.0.conv2")
    assert sites["layer1.0.relu#1"].producer == "layer1.0.conv2"
    assert order[0] == "conv1" and order[-1] == "fc"


def test_diagnosis_runs_weights_too_large_at_init_exploding_with_the_chance_level(tmp_path):
    L.seed_everything(0, verbose=False)
    trainer, said = fit(tmp_path, Net(scaled_cnn(2.0), lr=1e-4), steps=10, every=5)
    (found,) = [f for f in findings_of(trainer) if f.kind == "exploding_gradients"]
    assert found.severity == "problem" and found.step == 5
    assert found.figures["classes"] == 10 and found.figures["over_chance"] > 10
    assert found.figures["first_loss"] > 10 * math.log(10) < found.figures["probe_loss"]
    assert f"chance level ln 10 = {math.log(10):.2f}" in found.message
    assert "initial weights are too large" in found.message
    assert found.message in texts(events(tmp_path), "activations/diagnosis")[0]
    assert [m for m in said if "Exploding activations at initialisation" in m] == [found.message]


def test_diagnosis_runs_standard_init_starts_at_chance_quietly(tmp_path):
    L.seed_everything(0, verbose=False)
    trainer, _ = fit(tmp_path, Net(scaled_cnn(1.0), lr=1e-2), steps=10, every=5)
    assert not [f for f in findings_of(trainer) if f.kind == "exploding_gradients"]


class SwitchUnits(L.Callback):
    """Bias -50 on 12 of the first conv's 16 channels at the ``off`` steps, restored at ``on``."""

    def __init__(self, off: tuple[int, ...], on: tuple[int, ...]) -> None:
        self.off, self.on, self.saved = off, on, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        bias = pl_module.net[0].bias
        with torch.no_grad():
            if trainer.global_step in self.off:
                self.saved = bias[:12].clone()
                bias[:12] = -50.0
            elif trainer.global_step in self.on and self.saved is not None:
                bias[:12] = self.saved


def test_diagnosis_runs_dead_units_recover_to_a_note_and_die_again_as_new(tmp_path):
    # past the first steps (``episodes.SETTLED``), where most of a layer silent while the
    # loss moves waits a log
    L.seed_everything(0, verbose=False)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
        nn.Flatten(), nn.Linear(16 * 49, 10),
    )  # fmt: skip
    data = SyntheticDigitsDataModule(train_size=64 * 80, val_size=64, batch_size=64)
    monitor = ActivationMonitor(every_n_steps=5, layers=["net.1"])
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=80, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[monitor, SwitchUnits(off=(45, 65), on=(55,))],
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(Net(net, lr=0.01), data)
    found = [(f.kind, f.severity, f.step) for f in findings_of(trainer)]
    # the first episode's problem was replaced by its recovery note; the second is new
    assert found == [("dead_units", "note", 60), ("dead_units", "problem", 70)]
    recovered = findings_of(trainer)[0]
    assert recovered.message.startswith("Dead units recovered by step 60 (epoch 0): `net.1` 0%")
    assert "Reported at step 50 as a problem" in recovered.message
    assert recovered.figures["reported_step"] == 50 and recovered.figures["net.1"] == 0.0
    said = [str(w.message) for w in caught if str(w.message).startswith("Dead units")]
    assert len(said) == 2 and all("`net.1`: 75% of units dead" in m for m in said)
    text = texts(events(tmp_path), "activations/diagnosis")
    assert [t.split(":")[0] for t in text] == [
        "Dead units at step 50 (epoch 0)", "Dead units recovered by step 60 (epoch 0)",
        "Dead units at step 70 (epoch 0)",
    ]  # fmt: skip
