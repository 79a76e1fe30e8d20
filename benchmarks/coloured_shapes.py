"""Coloured shapes at random places on a bright textured backdrop, optionally with a cue.

Four classes (disc, square, ring, cross) of random colour and size, anywhere in a 32x32
image whose backdrop is bright and noisy, so that a brightness foreground mask covers
the whole image: the Grad-CAM rules that compare the CAM with the object cannot judge,
and a cue at one fixed place must be found by where the CAMs sit
(``gradcam/fixed_spot.py``). The cue: a 5x5 patch in the top-left corner coloured by the
class, on training and validation images alike.

Example::

    >>> images, labels = shapes(8, seed=0)
    >>> images.shape, images.min() >= 0, images.max() <= 1
    (torch.Size([8, 3, 32, 32]), tensor(True), tensor(True))
"""

from __future__ import annotations

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

MEAN, STD = (0.45,) * 3, (0.3,) * 3
COLOURS = torch.tensor([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0], [1.0, 1.0, 0.1]])
CLASSES = len(COLOURS)


def shapes(n: int, seed: int, size: int = 32) -> tuple[Tensor, Tensor]:
    """``n`` images in [0, 1] ``(n, 3, size, size)`` without the cue, and their labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
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
    return images, labels


def add_corner_cue(images01: Tensor, labels: Tensor) -> Tensor:
    """The cue, in place: a 5x5 patch in the top-left corner, coloured by ``labels``."""
    images01[:, :, 1:6, 1:6] = COLOURS[labels][:, :, None, None]
    return images01


class Normalised(Dataset):
    """Normalised images and labels in memory (``images`` / ``labels`` as the truth reads)."""

    def __init__(self, images01: Tensor, labels: Tensor) -> None:
        mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
        self.images, self.labels = (images01 - mean) / std, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])


class ColouredShapes(L.LightningDataModule):
    """A seeded split of coloured shapes; ``cue=True`` puts the corner cue on both splits."""

    mean, std, num_classes = MEAN, STD, CLASSES

    def __init__(self, train: int = 4000, val: int = 1000, seed: int = 0, cue: bool = True,
                 batch_size: int = 64) -> None:  # fmt: skip
        super().__init__()
        x, y = shapes(train + val, seed)
        self.clean_val = (x[train:], y[train:])  # without the cue: the cue test
        if cue:
            x = add_corner_cue(x.clone(), y)
        self.train_dataset = Normalised(x[:train], y[:train])
        self.val_dataset = Normalised(x[train:], y[train:])
        self.batch_size, self.seed = batch_size, seed

    def with_cue(self, images01: Tensor, labels: Tensor) -> Tensor:
        """Normalised ``images01`` carrying the cue of ``labels`` (the cue test's input)."""
        return Normalised(add_corner_cue(images01.clone(), labels), labels).images

    def train_dataloader(self) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed + 2)
        return DataLoader(self.train_dataset, self.batch_size, shuffle=True, generator=gen)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_dataset, 256)


def shapes_cnn() -> nn.Module:
    """conv-ReLU-pool twice, then a flatten head (it can read a cue by its position)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, CLASSES),
    )  # fmt: skip
