"""OverfittingMonitor on targets that are no class index: it says what they are, once."""

import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import checks_of
from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from tests.tb import events


class MultiLabel(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 5))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        loss = F.binary_cross_entropy_with_logits(self(batch[0]), batch[1])
        self.log("train/loss", loss, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", F.binary_cross_entropy_with_logits(self(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), 1e-3)


def test_overfitting_multi_label_targets_named_not_asked_for(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 8, 8, generator=g), (torch.rand(64, 5, generator=g) < 0.4).float()
    trainer = L.Trainer(
        max_epochs=2, logger=TensorBoardLogger(tmp_path, name="tb", version=0),
        callbacks=[OverfittingMonitor(num_samples=8)], enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=1,
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = DataLoader(TensorDataset(x, y), batch_size=16)
        trainer.fit(MultiLabel(), loader, loader)
    (said,) = [str(w.message) for w in caught if "cannot find" in str(w.message)]
    assert (
        "their targets are multi-hot vectors (multi-label), not one class index per image" in said
    )
    assert "label_key" not in said  # no key would find a class label that is not there
    assert "overfitting/gap_loss" in events(tmp_path / "tb").Tags()["scalars"]  # the loss rule runs
    unrun = checks_of(trainer)[("OverfittingMonitor", "class imbalance")]
    assert not unrun.ran
    assert unrun.why.endswith("(the probes' targets are multi-hot vectors (multi-label))")
    # the model's answers against the multi-hot targets: one label set for every image?
    assert checks_of(trainer)[("OverfittingMonitor", "not learning")].ran


class OneLogit(MultiLabel):
    """A binary classifier with one logit and ``BCEWithLogitsLoss``; labels stay 0/1 ints."""

    def __init__(self) -> None:
        super().__init__()
        self.net[-1] = nn.Linear(144, 1)

    def training_step(self, batch, batch_idx):
        logit = self(batch[0])[:, 0]
        loss = F.binary_cross_entropy_with_logits(logit, batch[1].float())
        self.log("train/loss", loss, on_epoch=True)
        self.log("train/acc", ((logit > 0).long() == batch[1]).float().mean(), on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        logit = self(batch[0])[:, 0]
        self.log("val/loss", F.binary_cross_entropy_with_logits(logit, batch[1].float()))
        self.log("val/acc", ((logit > 0).long() == batch[1]).float().mean())


def test_overfitting_one_binary_logit_read_as_two_classes(tmp_path):
    # held out: a healthy BCEWithLogits digit classifier got "cannot find class labels or
    # (N, classes) logits" and no calibration, accuracy or not-learning check at all
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > 0).long()  # learnable: the top half's brightness
    trainer = L.Trainer(
        max_epochs=3, logger=TensorBoardLogger(tmp_path, name="tb", version=0),
        callbacks=[OverfittingMonitor(num_samples=64)], enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, log_every_n_steps=1,
    )  # fmt: skip
    model = OneLogit()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = DataLoader(TensorDataset(x, y), batch_size=32)
        trainer.fit(model, loader, loader)
    said = [str(w.message) for w in caught]
    assert not [s for s in said if "cannot find class labels" in s]
    assert any("one logit per sample and the labels are 0/1" in s for s in said)
    for check in ("not learning", "train/val gap"):
        assert checks_of(trainer)[("OverfittingMonitor", check)].ran
    acc = events(tmp_path / "tb")
    # the signed calibration read back equals the sigmoid's on the same images
    probe = trainer.callbacks[0].probe(trainer, "val")
    with torch.no_grad():
        p = torch.sigmoid(model(probe.images)[:, 0])
    right = ((p > 0.5).long() == probe.labels).float().mean()
    expected = float(torch.maximum(p, 1 - p).mean() - right)
    got = acc.Scalars("overfitting/overconfidence_val")[-1].value
    assert got == pytest.approx(expected, abs=1e-4)
