import io
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.callbacks.activations import ActivationMonitor
from lightning_cnnviz.capture import hook_count
from lightning_cnnviz.findings import findings_of
from lightning_cnnviz.stats import all_reduce_states, new_state
from tests.tb import events, texts

ROOT = Path(__file__).resolve().parents[1]

# Planted dead channels, per watched call site (module ReLU, functional ReLU read from its
# producing conv, a shared ReLU module at two call sites, a functional ReLU after a linear).
PLANTED = {
    "relu1": [1, 4],
    "conv2": [0, 5, 6],
    "act#0": [2],
    "act#1": [3, 7, 8, 15],
    "fc2": [0, 11],
}
WIDTH = {"relu1": 8, "conv2": 8, "act#0": 8, "act#1": 16, "fc2": 12}


class Planted(L.LightningModule):
    """Fixed weights: every unit's output is its bias (+1 alive, -100 planted dead) +- 0.3."""

    def __init__(self, lr: float = 0.0) -> None:
        super().__init__()
        self.lr = lr
        self.conv1, self.relu1 = nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)  # followed by F.relu
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU(inplace=True)  # shared: after conv3 (act#0) and after fc1 (act#1)
        self.fc1 = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 12)  # followed by F.relu
        self.head = nn.Linear(12, 4)
        self.hook_log: list[tuple[int, int, int]] = []
        g = torch.Generator().manual_seed(0)
        planted = {"conv1": [1, 4], "conv2": [0, 5, 6], "conv3": [2], "fc1": [3, 7, 8, 15]}
        planted["fc2"] = [0, 11]
        with torch.no_grad():
            for name, dead in planted.items():
                layer = getattr(self, name)
                layer.weight.copy_(0.001 * torch.randn(layer.weight.shape, generator=g))
                layer.bias.fill_(1.0)
                layer.bias[dead] = -100.0

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(self.relu1(self.conv1(x)))), 2)
        x = self.act(self.fc1(self.act(self.conv3(x)).flatten(1)))
        return self.head(F.relu(self.fc2(x)))

    def training_step(self, batch, batch_idx):
        self.hook_log.append((self.trainer.global_step, batch_idx, sum(hook_count(self).values())))
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def loaders(n=64, nan=False):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 4
    if nan:
        x[3, 0, 0, 0] = float("nan")
    val = TensorDataset(torch.randn(16, 1, 8, 8, generator=g), torch.arange(16) % 4)
    return DataLoader(TensorDataset(x, y), batch_size=8), DataLoader(val, batch_size=8)


def fit(tmp_path, monitor, model=None, *, nan=False, **trainer_args):
    model = model or Planted()
    args = {"max_epochs": 1, "limit_val_batches": 0, "enable_checkpointing": False, **trainer_args}
    trainer = L.Trainer(
        default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
        logger=TensorBoardLogger(tmp_path, name="tb"), callbacks=[monitor], **args,
    )  # fmt: skip
    train, val = loaders(nan=nan)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, train, val)
    return trainer, model, [str(w.message) for w in caught]


def scalars(tmp_path, tag):
    return {e.step: e.value for e in events(tmp_path).Scalars(tag)}


def strip_rows(tmp_path, tag, rows):
    """Per-row brightness of the last dead-strip image (rows sampled at their centres)."""
    encoded = events(tmp_path).Images(tag)[-1].encoded_image_string
    image = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"), dtype=np.float64)
    height = image.shape[0]
    return [image[int((i + 0.5) * height / rows)].mean() for i in range(rows)]


def test_activations_planted_dead_channels_exact(tmp_path):
    monitor = ActivationMonitor(layers=["relu1", "conv2", "act", "fc2"], every_n_steps=4, window=3)
    trainer, model, said = fit(tmp_path, monitor, max_steps=8)
    assert monitor.sites() == ["relu1", "conv2", "act#0", "act#1", "fc2"]
    assert monitor.dead_channels == PLANTED
    for site, dead in PLANTED.items():
        assert scalars(tmp_path, f"activations/{site}/dead_fraction") == {
            4: pytest.approx(len(dead) / WIDTH[site]),
            8: pytest.approx(len(dead) / WIDTH[site]),
        }
        assert scalars(tmp_path, f"activations/{site}/dormant_fraction")[8] == pytest.approx(
            len(dead) / WIDTH[site]
        )
        brightness = strip_rows(tmp_path, f"activations/{site}/dead_strip", WIDTH[site])
        dark = [i for i, b in enumerate(brightness) if b < 40]
        assert dark == dead, (site, brightness)
    # relu1 (2/8), conv2 (3/8) and act#1 (4/16) reach the 0.25 threshold: one warning, once
    dead_warnings = [m for m in said if m.startswith("Dead units")]
    assert len(dead_warnings) == 1
    assert "`relu1`: 25% of units dead (1, 4)" in dead_warnings[0]
    assert "`act#1`: 25% of units dead (3, 7, 8, 15)" in dead_warnings[0]
    assert "`conv2`: 38%" in dead_warnings[0]
    assert "`fc2`" not in dead_warnings[0] and "`act#0`" not in dead_warnings[0]
    (text,) = texts(events(tmp_path), "activations/diagnosis")
    assert "step 4 (epoch 0)" in text and "LeakyReLU" in text
    (finding,) = findings_of(trainer)
    assert finding.kind == "dead_units" and finding.figures["relu1"] == pytest.approx(0.25)
