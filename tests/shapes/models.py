"""Models of every shape people train: 1-D and 3-D CNNs, a segmentation net, tuple and dict
outputs, dict batches; each a LightningModule with a tiny dataset (4 classes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

NUM_CLASSES = 4


class DictDataset(Dataset):
    """Items ``{"pixels": image, "cls": label}`` (keys no convention knows)."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"pixels": self.x[i], "cls": self.y[i]}


class ShapeModule(L.LightningModule):
    """Cross-entropy on the logits (``logits_of`` picks them from the output), SGD."""

    def __init__(self, net: nn.Module, input_shape: tuple[int, ...], dense: bool = False,
                 dict_batches: bool = False, pick: Callable[[Any], Tensor] | None = None,
                 size: int = 64) -> None:  # fmt: skip
        super().__init__()
        self.net, self.input_shape, self.dense = net, input_shape, dense
        self.dict_batches, self.size = dict_batches, size
        self.pick = pick or (lambda out: out)

    def forward(self, x: Tensor) -> Any:
        return self.net(x)

    def _loss(self, batch: Any) -> Tensor:
        x, y = (batch["pixels"], batch["cls"]) if self.dict_batches else batch
        logits = self.pick(self(x))
        if self.dense:  # every pixel of an image belongs to its class
            y = y.view(-1, *([1] * (logits.dim() - 2))).expand(-1, *logits.shape[2:])
        return F.cross_entropy(logits, y)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def _data(self, seed: int) -> Dataset:
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(self.size) % NUM_CLASSES
        x = torch.randn(self.size, *self.input_shape, generator=g)
        x = x + y.view(-1, *([1] * len(self.input_shape))).float() * 0.5
        return DictDataset(x, y) if self.dict_batches else TensorDataset(x, y)

    def train_dataloader(self):
        return DataLoader(self._data(0), batch_size=4)

    def val_dataloader(self):
        return DataLoader(self._data(1), batch_size=4)


def conv1d() -> ShapeModule:
    """An audio-like 1-D classifier over 1 x 64 signals."""
    net = nn.Sequential(
        nn.Conv1d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(6, 8, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Flatten(), nn.Linear(8 * 16, NUM_CLASSES),
    )  # fmt: skip
    return ShapeModule(net, (1, 64))


def conv3d() -> ShapeModule:
    """A volume classifier over 1 x 8 x 16 x 16 volumes."""
    net = nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2),
        nn.Conv3d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool3d(2),
        nn.Flatten(), nn.Linear(6 * 2 * 4 * 4, NUM_CLASSES),
    )  # fmt: skip
    return ShapeModule(net, (1, 8, 16, 16))


def segmentation() -> ShapeModule:
    """A tiny fully convolutional segmentation net: N x 4 x 16 x 16 logits."""
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Upsample(scale_factor=2), nn.Conv2d(8, NUM_CLASSES, 1),
    )  # fmt: skip
    return ShapeModule(net, (3, 16, 16), dense=True)


class _TwoHeads(nn.Module):
    def __init__(self, as_dict: bool) -> None:
        super().__init__()
        self.as_dict = as_dict
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.fc = nn.Linear(16, NUM_CLASSES)

    def forward(self, x: Tensor) -> Any:
        features = self.features(x)
        logits = self.fc(features)
        return {"features": features, "logits": logits} if self.as_dict else (features, logits)


def tuple_output() -> ShapeModule:
    """Returns ``(features, logits)``: the features come first."""
    return ShapeModule(_TwoHeads(False), (3, 16, 16), pick=lambda out: out[1])


def dict_output() -> ShapeModule:
    """Returns ``{"features": ..., "logits": ...}``."""
    return ShapeModule(_TwoHeads(True), (3, 16, 16), pick=lambda out: out["logits"])


class _ComplexCNN(nn.Module):
    """A complex-valued conv net read out by magnitude (MRI, radar): real images in."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1, dtype=torch.cfloat)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1, dtype=torch.cfloat)
        self.head = nn.Linear(4, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        z = self.c2(self.c1(x.to(torch.cfloat)))
        return self.head(z.abs().mean((2, 3)))


def complex_valued() -> ShapeModule:
    """Complex convolutions on 1 x 16 x 16 images, their magnitude read out."""
    return ShapeModule(_ComplexCNN(), (1, 16, 16))


def _small_cnn(channels: int) -> nn.Sequential:
    """Two conv + ReLU + pool blocks over ``channels`` x 16 x 16 images, a linear head."""
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, NUM_CLASSES),
    )  # fmt: skip


def dict_batches() -> ShapeModule:
    """Batches ``{"pixels": x, "cls": y}``."""
    return ShapeModule(_small_cnn(3), (3, 16, 16), dict_batches=True)


def four_channels() -> ShapeModule:
    """RGBA (or RGB + infrared) images, 4 x 16 x 16: pictures show the first three."""
    return ShapeModule(_small_cnn(4), (4, 16, 16))


MODELS: dict[str, Callable[[], ShapeModule]] = {
    "conv1d": conv1d,
    "conv3d": conv3d,
    "segmentation": segmentation,
    "tuple_output": tuple_output,
    "dict_output": dict_output,
    "dict_batches": dict_batches,
}


class _MLP(nn.Module):
    """No conv at all: the monitors that watch conv layers find nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 32), nn.ReLU())
        self.fc = nn.Linear(32, NUM_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x))


def mlp() -> ShapeModule:
    """An image classifier without convolutions."""
    return ShapeModule(_MLP(), (3, 16, 16))


def backbone(make: Callable[[], nn.Module], side: int = 64) -> ShapeModule:
    """A timm or torchvision classifier over 3 x side x side images (8 samples per split)."""
    return ShapeModule(make(), (3, side, side), size=8)
