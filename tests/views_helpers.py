"""Shared fixtures for the embedding, activation-maximisation and adversarial monitor tests.

Real MNIST digits (the shared 10k test set, split into train/val here) and the
reference CNN.
"""

from __future__ import annotations

import gzip
import warnings
from functools import lru_cache
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.reference import MNISTClassifier

MNIST = Path("/work/shared/data/mnist")
MEAN, STD = 0.1307, 0.3081


@lru_cache(maxsize=1)
def mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """The 10k MNIST test digits as normalised (N, 1, 28, 28) floats and labels."""
    with gzip.open(MNIST / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(MNIST / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    x = (torch.from_numpy(images.copy()).float() / 255 - MEAN) / STD
    return x, torch.from_numpy(labels.copy()).long()


class Digits(TensorDataset):
    """A ``TensorDataset`` with ``.targets`` (as torchvision's MNIST has)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        super().__init__(x, y)
        self.targets = y


class DigitsData(L.LightningDataModule):
    """Train on the first ``train_size`` test digits, validate on the last ``val_size``."""

    mean, std, num_classes = (MEAN,), (STD,), 10

    def __init__(self, train_size: int = 512, val_size: int = 256, batch_size: int = 64) -> None:
        super().__init__()
        x, y = mnist()
        self.train_dataset = Digits(x[:train_size], y[:train_size])
        self.val_dataset = Digits(x[-val_size:], y[-val_size:])
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_dataset, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_dataset, batch_size=self.batch_size)


def reference_model(lr: float = 1e-3) -> L.LightningModule:
    """The reference ``MNISTClassifier``."""
    return MNISTClassifier(lr=lr)


def run(tmp_path, callbacks, *, model=None, steps=8, epochs=1, data=None, seed=0):
    """A short fit with a TensorBoard logger under ``tmp_path``; returns (model, trainer)."""
    L.seed_everything(seed, verbose=False)
    model = model or reference_model()
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_epochs=epochs,
        limit_train_batches=steps,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=list(callbacks),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=data or DigitsData())
    return model, trainer
