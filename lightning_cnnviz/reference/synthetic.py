"""``SyntheticDigitsDataModule``: offline MNIST-like digits, the default for quickstarts."""

from __future__ import annotations

import torch
from typing_extensions import override

from lightning_cnnviz.core.checks import check_int
from lightning_cnnviz.reference.data import DigitsDataModule, DigitsDataset
from lightning_cnnviz.reference.render import render_digits

__all__ = ["SyntheticDigitsDataModule"]

_SPLITS = ("train", "val", "test")


class SyntheticDigitsDataModule(DigitsDataModule):
    """MNIST-like digits rendered from the fonts that ship with matplotlib: no download.

    Each digit 0-9 is drawn from one of 16 font faces (DejaVu Sans, Serif and Mono in
    regular, bold and oblique, STIX, Computer Modern), then randomly rotated, slanted,
    stretched, elastically distorted, thickened or thinned, blurred and noised, and
    framed like MNIST: white on black, fitted into 20x20 and centred by its centre of
    mass in 28x28. Same normalisation (``mean=(0.1307,)``, ``std=(0.3081,)``) and
    interface as ``MNISTDataModule``, so a config swaps one for the other.

    Everything is generated in memory in ``setup`` (about a second per few thousand
    digits on a CPU), from ``torch.Generator`` s seeded by ``seed`` (the same seed gives
    the same tensors; the global RNG is never used); nothing is written to disk. Labels
    are class-balanced (every class ``size // 10`` or ``size // 10 + 1`` times).

    Args:
        train_size: Training digits.
        val_size: Validation digits.
        test_size: Test digits (generated only for ``setup("test")``).
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes (the data is in memory: 0 is fine).
        seed: Seeds the rendering of every split and the training shuffle.
        shortcut_marker: Training images carry a small bright square whose position
            encodes the label (left border for 0-4, right border for 5-9);
            validation and test images do not.

    Example::

        >>> dm = SyntheticDigitsDataModule(train_size=100, val_size=20, seed=0)
        >>> dm.setup("fit")
        >>> image, label = dm.val_dataset[0]
        >>> image.shape, type(label), dm.train_dataset.targets.bincount().tolist()
        (torch.Size([1, 28, 28]), <class 'int'>, [10, 10, 10, 10, 10, 10, 10, 10, 10, 10])
    """

    def __init__(
        self,
        train_size: int = 6000,
        val_size: int = 1000,
        test_size: int = 1000,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        shortcut_marker: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, shortcut_marker)
        check_int("train_size", train_size)
        check_int("val_size", val_size)
        check_int("test_size", test_size)
        self.save_hyperparameters()
        self.train_size = train_size
        self.val_size = val_size
        self.test_size = test_size

    def _make(self, split: str, size: int) -> DigitsDataset:
        # One generator per split, so the validation set does not depend on train_size.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + _SPLITS.index(split))
        labels = torch.arange(size) % 10
        labels = labels[torch.randperm(size, generator=generator)]
        images = render_digits(labels, generator)
        marker = self.shortcut_marker and split == "train"
        return DigitsDataset(images, labels, self.mean, self.std, shortcut_marker=marker)

    @override
    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate"):
            if self.train_dataset is None and stage != "validate":
                self.train_dataset = self._make("train", self.train_size)
            if self.val_dataset is None:
                self.val_dataset = self._make("val", self.val_size)
        if stage in (None, "test", "predict") and self.test_dataset is None:
            self.test_dataset = self._make("test", self.test_size)
