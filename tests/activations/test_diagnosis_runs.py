"""Short real fits: each training-side rule fires on its failure, with its cause, and only there."""

import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
import torchvision
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from lightning_cnnviz.activations.callback import ActivationMonitor
from lightning_cnnviz.activations.sites import trace_sites
from lightning_cnnviz.core.findings import findings_of, problems
from lightning_cnnviz.reference import MNISTClassifier
from lightning_cnnviz.reference.synthetic import SyntheticDigitsDataModule
from tests.tb import events, texts


class Net(L.LightningModule):
    def __init__(self, net: nn.Module, lr: float, momentum: float = 0.9) -> None:
        super().__init__()
        self.net, self.lr, self.momentum = net, lr, momentum

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)


def leaky_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.LeakyReLU(0.01), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.LeakyReLU(0.01), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 49, 64), nn.LeakyReLU(0.01), nn.Linear(64, 10),
    )  # fmt: skip


def sigmoid_cnn(depth: int = 8) -> nn.Module:
    layers, channels = [], 1
    for i in range(depth):
        layers += [nn.Conv2d(channels, 16, 3, padding=1), nn.Sigmoid()]
        channels = 16
        if i in (2, 5):
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(16 * 49, 10))


def fit(tmp_path, model, steps, every=25):
    L.seed_everything(0, verbose=False)
    data = SyntheticDigitsDataModule(train_size=64 * steps, val_size=64, batch_size=64)
    monitor = ActivationMonitor(every_n_steps=every)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=steps, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
        logger=TensorBoardLogger(tmp_path, name="tb"), callbacks=[monitor],
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, data)
    return trainer, [str(w.message) for w in caught]


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
    assert diverged.figures["first_nonfinite_parameter"] == "net.0.weight"
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
