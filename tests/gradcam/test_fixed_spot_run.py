"""A cue at one fixed place, on bright coloured images where the brightness mask is blocked:
found by the fixed-spot rule alone, read back from findings and TensorBoard."""

import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from tests.tb import events, texts

MEAN, STD = 0.45, 0.3
COLOURS = torch.tensor([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0], [1.0, 1.0, 0.1]])


def shapes(n, seed, size=32, marker=True):
    """Discs, squares, rings and crosses of random colour at random places on a bright
    textured backdrop; with ``marker``, a 5x5 patch in the top-left corner whose colour is
    the class's (on every image, train and val alike)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    cy, cx = (torch.rand(2, n, 1, 1, generator=g) * (size - 16) + 8).unbind(0)
    r = torch.rand(n, 1, 1, generator=g) * 4 + 4
    dy, dx = (yy - cy).abs(), (xx - cx).abs()
    d = (dy**2 + dx**2).sqrt()
    masks = torch.stack([d < r, (dy < 0.85 * r) & (dx < 0.85 * r), (d < r) & (d > r - 2.4),
                         ((dy < 1.6) & (dx < r)) | ((dx < 1.6) & (dy < r))], 1)  # fmt: skip
    mask = masks[torch.arange(n), labels][:, None]
    backdrop = torch.rand(n, 3, 1, 1, generator=g) * 0.4 + 0.45
    images = backdrop + 0.1 * torch.randn(n, 3, size, size, generator=g)
    images = torch.where(mask, torch.rand(n, 3, 1, 1, generator=g), images).clamp(0, 1)
    if marker:
        images[:, :, 1:6, 1:6] = COLOURS[labels][:, :, None, None]
    return (images - MEAN) / STD, labels


class Shapes(L.LightningDataModule):
    mean, std = (MEAN,) * 3, (STD,) * 3

    def __init__(self, marker=True):
        super().__init__()
        x, y = shapes(2200, 0, marker=marker)
        self.train, self.val = TensorDataset(x[:2000], y[:2000]), TensorDataset(x[2000:], y[2000:])

    def train_dataloader(self):
        return DataLoader(self.train, 64, shuffle=True, generator=torch.Generator().manual_seed(0))

    def val_dataloader(self):
        return DataLoader(self.val, 100)


class Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 4),
        )  # fmt: skip

    def forward(self, x):
        return self.body(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), 1e-3)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fixed_spot_run_corner_cue_found_where_the_mask_is_blocked(tmp_path):
    L.seed_everything(0, verbose=False)
    monitor = GradCAMMonitor(every_n_steps=10, num_samples=8, misclassified=False)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=40, logger=TensorBoardLogger(tmp_path, name="tb"),
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[monitor], limit_val_batches=1, num_sanity_val_steps=0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Net(), Shapes())
    assert float(trainer.callback_metrics["val/acc"]) > 0.9  # the cue is on val images too
    (shortcut,) = [f for f in findings_of(trainer) if f.kind == "cam_shortcut"]
    assert shortcut.severity == "problem" and shortcut.step <= 40
    assert shortcut.figures["splits"] == "fixed" and shortcut.figures["region"] == "top-left corner"
    cam, content = shortcut.figures["cam_agreement"], shortcut.figures["content_agreement"]
    assert cam >= 0.7 and cam - content >= 0.5 * (1 - content)
    acc = events(tmp_path / "tb")
    (text,) = texts(acc, "gradcam/diagnosis")
    assert "same place (the top-left corner)" in text
    agree = {e.step: e.value for e in acc.Scalars("gradcam/train/cam_agreement")}
    content = {e.step: e.value for e in acc.Scalars("gradcam/val/content_agreement")}
    assert sorted(agree) == sorted(content) == [10, 20, 30, 40]
    assert agree[shortcut.step] == pytest.approx(shortcut.figures["cam_agreement"], abs=1e-6)
    # the brightness mask covers the bright backdrop: only the fixed-spot rule could tell
    assert acc.Scalars("gradcam/train/object_share")[-1].value > 0.5
