"""The models and data ``overhead.py`` trains: the reference CNN and torchvision ResNets.

A ``Setup`` is one model with its data and trainer arguments, built fresh for every run
from the same seed so that bare and monitored runs train the same model on the same
batches in the same order:

* ``reference``: ``MNISTClassifier`` at its defaults on ``SyntheticDigitsDataModule``
  (8,000 training digits, batch 64), 3 epochs, validation every epoch;
* ``resnet18``: torchvision's ``resnet18(weights=None, num_classes=10)`` on random
  3x32x32 images carrying a faint pattern of their class (``RandomImages``), batch 32,
  400 steps (epochs of 100 steps, validation every epoch);
* ``resnet50``: ``resnet50`` on random 3x64x64 images, batch 16; a short run for the
  cost of one event of each monitor, every monitor logging every 10 steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, Dataset

from lightning_cnnviz.reference import MNISTClassifier, MNISTDataModule, SyntheticDigitsDataModule

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)  # the random images' normalisation
PATTERN_SEED, PATTERN_SHARE = 1234, 0.2  # the class patterns of ``RandomImages``


class RandomImages(Dataset):
    """``size`` fixed random pictures, each with a faint pattern of its class (0-9).

    The class patterns are the same on every split (drawn from ``PATTERN_SEED``), so the
    models learn them: a healthy run, whose cost is what the budget is for. (On random
    labels the models memorise the training set, and ``OverfittingMonitor`` rightly runs
    the extra passes its memorisation finding needs.)
    """

    def __init__(self, size: int, image_size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        noise = torch.rand(size, 3, image_size, image_size, generator=generator)
        self.targets = torch.randint(0, 10, (size,), generator=generator)
        shape = (10, 3, image_size, image_size)
        patterns = torch.rand(shape, generator=torch.Generator().manual_seed(PATTERN_SEED))
        pixels = (1 - PATTERN_SHARE) * noise + PATTERN_SHARE * patterns[self.targets]
        mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
        self.images = (pixels - mean) / std

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.targets[index])


class RandomImagesDataModule(L.LightningDataModule):
    """Random images in memory; the same shuffle order in every fit (a fresh seeded generator)."""

    mean, std = MEAN, STD

    def __init__(
        self, train_size: int, val_size: int, image_size: int, batch_size: int, seed: int = 0
    ) -> None:
        super().__init__()
        self.train_dataset = RandomImages(train_size, image_size, seed)
        self.val_dataset = RandomImages(val_size, image_size, seed + 1)
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self) -> DataLoader:
        order = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.train_dataset, self.batch_size, shuffle=True, generator=order, drop_last=True
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_dataset, self.batch_size)


class Classifier(L.LightningModule):
    """A torchvision classifier (Adam 1e-3, or SGD 0.05 with momentum); logs the keys
    ``OverfittingMonitor`` reads."""

    def __init__(self, arch: str, optimizer: str = "adam") -> None:
        super().__init__()
        self.net = getattr(torchvision.models, arch)(weights=None, num_classes=10)
        self.optimizer = optimizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True)
        self.log(f"{stage}/acc", (logits.argmax(1) == y).float().mean(), on_step=on_step,
                 on_epoch=True)  # fmt: skip
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
        return torch.optim.Adam(self.parameters(), lr=1e-3)


@dataclass
class Setup:
    """One model to benchmark: how to build it, its data, and its trainer's arguments.

    ``kind`` is ``"ratio"`` (interleaved bare and monitored runs on the automatic
    schedule: wall ratios, events) or ``"cost"`` (one bare and one monitored run with
    every monitor at ``every_n_steps=cost_every``: what one event costs).
    """

    name: str
    description: str
    make_model: Callable[[], L.LightningModule]
    data: L.LightningDataModule
    trainer: dict[str, Any]
    steps: int
    kind: str = "ratio"
    cost_every: int = 10

    def before_run(self) -> None:
        """Reset the data's shuffle, so that every run sees the same batches."""
        shuffle = getattr(self.data, "_shuffle", None)
        if shuffle is not None:
            shuffle.manual_seed(self.data.seed)


def mnist_root(files: Path, root: Path) -> Path:
    """Lay the shared MNIST test files (10k digits) out as torchvision's MNIST ``root``.

    Both the train and the test file names link to the t10k files; the data module then
    splits them (no download).
    """
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for kind in ("images-idx3", "labels-idx1"):
        for split in ("train", "t10k"):
            link = raw / f"{split}-{kind}-ubyte.gz"
            if not link.exists():
                link.symlink_to(files.resolve() / f"t10k-{kind}-ubyte.gz")
    return root


def reference(train_size: int, val_size: int, epochs: int, mnist: Path | None, root: Path) -> Setup:
    """The reference CNN at its defaults: synthetic digits, or real MNIST files from ``mnist``."""
    if mnist is None:
        data = SyntheticDigitsDataModule(train_size=train_size, val_size=val_size, seed=0)
        what = f"synthetic digits ({train_size} train / {val_size} val)"
    else:  # the shared MNIST test files (10k digits) laid out as torchvision's root: 8k / 2k
        mnist_root(Path(mnist), root)
        data = MNISTDataModule(root=str(root), val_size=2000, download=False)
        what = "MNIST t10k as 8k train / 2k val"
    data.setup("fit")  # once: every run reuses the same tensors
    steps = epochs * len(data.train_dataloader())
    return Setup(
        "reference",
        f"MNISTClassifier (defaults), {what}, batch {data.batch_size}, {epochs} epochs "
        f"({steps} steps), validation every epoch",
        MNISTClassifier, data, {"max_epochs": epochs}, steps,
    )  # fmt: skip


def resnet(arch: str, steps: int, batch: int, image_size: int, *, epoch_steps: int,
           val_size: int, kind: str = "ratio", cost_every: int = 10) -> Setup:  # fmt: skip
    """A torchvision ResNet on random images; ``steps`` in epochs of ``epoch_steps`` steps."""
    epochs = max(1, -(-steps // epoch_steps))
    data = RandomImagesDataModule(epoch_steps * batch, val_size, image_size, batch)
    trainer: dict[str, Any] = {"max_steps": steps, "max_epochs": epochs}
    every = "validation every epoch"
    if kind == "cost":  # validations often enough for OverfittingMonitor's events
        trainer |= {"val_check_interval": cost_every, "check_val_every_n_epoch": None}
        every = f"validation every {cost_every} steps, every monitor every {cost_every} steps"
    return Setup(
        arch,
        f"torchvision {arch}(weights=None, num_classes=10), random 3x{image_size}x{image_size},"
        f" batch {batch}, {steps} steps (epochs of {epoch_steps}), {val_size} val images, {every}",
        lambda: Classifier(arch), data, trainer, steps, kind, cost_every,
    )  # fmt: skip
