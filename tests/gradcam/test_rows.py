"""``gradcam/rows.py``: what a row's CAM targets, said where the setting cannot be honoured."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import checks_of
from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from tests.monitors import digits, failures, fit
from tests.tb import events, image_tags

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


class PerPixel(L.LightningModule):
    """conv-ReLU x2 + 1x1 conv: a segmentation net (3 classes) or an autoencoder (1 channel)."""

    def __init__(self, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, out, 1),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, out = batch[0], self(batch[0])
        if len(batch) == 1:  # an autoencoder: items `(x,)`, no labels
            return nn.functional.mse_loss(out, x)
        return nn.functional.cross_entropy(out, batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.training_step(batch, batch_idx))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _data(kind: str):
    """Quadrant digits with (H, W) masks (0 background, 1 + class % 2), or without labels."""
    loaders = []
    for n, seed in ((32, 1), (16, 2)):
        x, y = digits(n, seed=seed).tensors
        rest = (
            [] if kind == "autoencoder" else [(x[:, 0] > 0.5).long() * (1 + y[:, None, None] % 2)]
        )
        loaders.append(DataLoader(TensorDataset(x, *rest), batch_size=8))
    return loaders


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("segmentation", "the items' targets are per-pixel class maps"),
        ("autoencoder", "the items have none"),
    ],
)
def test_rows_target_true_without_labels_says_pred_is_used(tmp_path, kind, why):
    # setups hunt 83: `target="true"` on masks silently drew `target="pred"`'s CAMs
    monitor = GradCAMMonitor(every_n_steps=2, num_samples=4, target="true", saliency=["saliency"])
    out = 3 if kind == "segmentation" else 1
    trainer, _, messages = fit(tmp_path, [monitor], model=PerPixel(out), data=_data(kind))
    assert not failures(messages, "GradCAMMonitor") and monitor.events == 2
    assert {"gradcam/train", "gradcam/val"} <= set(image_tags(events(tmp_path / "tb")))
    said = [m for m in messages if "`target='true'`" in m]
    assert len(said) == 1 and said[0].startswith("GradCAMMonitor: `target='true'` needs one")
    assert why in said[0] and "predicted class instead, as `target='pred'`'s" in said[0]
    check = checks_of(trainer)[("GradCAMMonitor", "`target='true'`")]
    assert not check.ran and why in check.why
    # the saliency rows' step-aside names the output as what it is: per-pixel, not "segmentation"
    saliency = [m for m in messages if "`saliency` rows need" in m]
    assert (
        len(saliency) == 1 and "a per-pixel output (a segmentation's class maps, a " in saliency[0]
    )


def test_rows_target_pred_without_labels_says_nothing(tmp_path):
    monitor = GradCAMMonitor(every_n_steps=2, num_samples=4)
    trainer, _, messages = fit(tmp_path, [monitor], model=PerPixel(3), data=_data("segmentation"))
    assert monitor.events == 2 and not [m for m in messages if "target=" in m]
    assert ("GradCAMMonitor", "`target='true'`") not in checks_of(trainer)
