"""GradCAMMonitor on layers whose maps have one position (setups hunt 82).

A named layer whose output is 1x1 (length 1, 1x1x1) gives a CAM of one value per image:
it is left out, said once, before any of its scalars is written, and the end-of-fit
summary lists it among the checks that did not run; other layers go on. A 2x2 map or a
1xN strip still shows a place and is drawn.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import checks_of, findings_of
from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from tests.monitors import digits, trainer_for
from tests.tb import events, image_tags


class Net(L.LightningModule):
    """``body`` then a linear head over its flattened output; 4 classes."""

    def __init__(self, body: Callable[[], list[nn.Module]], features: int) -> None:
        super().__init__()
        L.seed_everything(0, verbose=False)  # the same weights whichever test ran before
        self.net = nn.Sequential(*body(), nn.Flatten(), nn.Linear(features, 4))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", F.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _data(shape: tuple[int, ...], seed: int) -> DataLoader:
    if len(shape) == 3:  # a bright square in the class's quadrant: an object to be on
        return DataLoader(digits(32, shape[0], shape[1], seed=seed), batch_size=8)
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(32) % 4
    x = 0.1 * torch.randn(32, *shape, generator=g) + y.view(-1, *[1] * len(shape)) / 4
    return DataLoader(TensorDataset(x, y), batch_size=8)


def _fit(tmp_path, net, shape, monitor):
    L.seed_everything(0, verbose=False)
    trainer = trainer_for(tmp_path, [monitor])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(net, _data(shape, 1), _data(shape, 2))
    said = [str(w.message) for w in caught if type(w.message).__name__ == "CnnvizWarning"]
    return trainer, said, events(tmp_path)


@pytest.mark.parametrize(
    ("body", "shape", "size"),
    [
        (lambda: [nn.Conv2d(1, 8, 8), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.ReLU()], (1, 8, 8), "1x1"),
        (lambda: [nn.Conv1d(2, 8, 12), nn.ReLU(), nn.Conv1d(8, 8, 1), nn.ReLU()], (2, 12), "1"),
    ],
)
def test_gradcam_named_one_position_layer_steps_aside_with_why(tmp_path, body, shape, size):
    monitor = GradCAMMonitor(layers=["net.2"], every_n_steps=1, num_samples=4,
                             misclassified_pool=16)  # fmt: skip
    trainer, said, acc = _fit(tmp_path, Net(body, 8), shape, monitor)
    assert not [t for t in image_tags(acc) if t.startswith("gradcam")]
    assert not [t for t in acc.Tags()["scalars"] if t.startswith("gradcam")]
    assert len([m for m in said if "one position" in m]) == 1
    assert f"`net.2`: its output has one position ({size})" in said[0]
    check = checks_of(trainer)[("GradCAMMonitor", "")]
    assert not check.ran and f"`net.2`: its output has one position ({size})" in check.why
    assert not findings_of(trainer)


def test_gradcam_one_position_layer_left_out_beside_a_map(tmp_path):
    # 16x16 -> 8x8 after the pool (`net.2`), 1x1 after the conv covering it (`net.4`)
    def body():
        return [nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 8),
                nn.ReLU()]  # fmt: skip

    monitor = GradCAMMonitor(layers=["net.2", "net.4"], every_n_steps=2, num_samples=4,
                             misclassified_pool=16)  # fmt: skip
    trainer, said, acc = _fit(tmp_path, Net(body, 8), (1, 16, 16), monitor)
    assert [m for m in said if m.startswith("GradCAMMonitor: leaves out `net.4`: its output "
                                            "has one position (1x1)")]  # fmt: skip
    scalars = acc.Tags()["scalars"]
    assert not [t for t in scalars if "net.4" in t]
    # the layer left is the deepest from the first log on: the plain tags only, and what
    # the shortcut rules read of the deepest layer at every log
    assert not [t for t in scalars if "/net." in t]
    assert [e.step for e in acc.Scalars("gradcam/train/on_object_hirescam")] == [2, 4]
    assert [e.step for e in acc.Scalars("gradcam/train/cam_agreement")] == [2, 4]
    assert {"gradcam/train", "gradcam/val"} <= set(image_tags(acc))
    check = checks_of(trainer)[("GradCAMMonitor", "Grad-CAM of `net.4`")]
    assert not check.ran and check.why == "its output has one position (1x1)"
    assert checks_of(trainer)[("GradCAMMonitor", "")].ran


@pytest.mark.parametrize("hw", [(2, 2), (1, 6)])
def test_gradcam_coarse_map_still_drawn_and_scored(tmp_path, hw):
    # a 2x2 map or a 1x6 strip shows a place, coarsely: drawn, no warning of one position
    def body():
        return [nn.Conv2d(1, 8, (17 - hw[0], 17 - hw[1])), nn.ReLU()]

    monitor = GradCAMMonitor(layers=["net.1"], every_n_steps=2, num_samples=4,
                             misclassified_pool=16)  # fmt: skip
    trainer, said, acc = _fit(tmp_path, Net(body, 8 * hw[0] * hw[1]), (1, 16, 16), monitor)
    assert not [m for m in said if "one position" in m]
    assert [e.step for e in acc.Scalars("gradcam/train/concentration")] == [2, 4]
    assert checks_of(trainer)[("GradCAMMonitor", "")].ran
