"""What the reference data modules share: an in-memory digits dataset and a base module.

Both ``MNISTDataModule`` and ``SyntheticDigitsDataModule`` hold their images
in memory as tensors (N, 1, 28, 28), expose ``mean``, ``std``, ``num_classes``
and, after ``setup``, ``train_dataset`` / ``val_dataset`` / ``test_dataset``
whose items are ``(normalised float image 1x28x28, int label)`` and which have
a ``targets`` tensor, so configs can swap one module for the other.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from typing_extensions import override

from lightning_cnnviz.core.checks import check_int

__all__ = [
    "MARKER_SIZE",
    "DigitsDataModule",
    "DigitsDataset",
    "add_shortcut_marker",
    "marker_position",
]

MEAN = (0.1307,)
STD = (0.3081,)
#: Side of the square shortcut marker (pixels).
MARKER_SIZE = 3


def marker_position(label: int) -> tuple[int, int]:
    """Top-left (row, column) of the shortcut marker for ``label``.

    Labels 0-4 sit along the left border (column 0), 5-9 along the right border
    (column 25), at rows 2, 7, 12, 17, 22: where MNIST-style digits (fitted into
    the central 20x20) have almost never any ink.
    """
    return 2 + 5 * (label % 5), (0 if label < 5 else 28 - MARKER_SIZE)


def add_shortcut_marker(images: Tensor, labels: Tensor, value: float = 1.0) -> Tensor:
    """Paint a bright ``MARKER_SIZE`` square whose position encodes the label (returns a copy).

    Example::

        >>> x = add_shortcut_marker(torch.zeros(2, 1, 28, 28), torch.tensor([0, 7]))
        >>> x[0, 0, 2:5, 0:3].min().item(), x[1, 0, 12:15, 25:28].min().item(), x.sum().item()
        (1.0, 1.0, 18.0)
    """
    out = images.clone()
    for i, label in enumerate(labels.tolist()):
        r, c = marker_position(int(label))
        out[i, ..., r : r + MARKER_SIZE, c : c + MARKER_SIZE] = value
    return out


class DigitsDataset(Dataset):
    """Digits held in memory: items are ``(normalised image (1, 28, 28), int label)``.

    Args:
        images: (N, 1, 28, 28) uint8 (0-255) or float in [0, 1].
        targets: (N,) integer labels; kept as the ``targets`` tensor.
        mean: Per-channel mean for the normalisation.
        std: Per-channel standard deviation for the normalisation.
        augment: Optional per-item transform of the float [0, 1] image (before the
            marker and the normalisation); ``None`` precomputes every item once.
        shortcut_marker: Paint the label-encoding marker (see ``add_shortcut_marker``).
    """

    def __init__(
        self,
        images: Tensor,
        targets: Tensor,
        mean: tuple[float, ...] = MEAN,
        std: tuple[float, ...] = STD,
        augment: Callable[[Tensor], Tensor] | None = None,
        shortcut_marker: bool = False,
    ) -> None:
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.shape[0] != len(targets):
            raise ValueError(f"{images.shape[0]} images but {len(targets)} labels")
        self.targets = torch.as_tensor(targets, dtype=torch.long)
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.augment = augment
        self.shortcut_marker = shortcut_marker
        data = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if augment is None:
            if shortcut_marker:
                data = add_shortcut_marker(data, self.targets)
            data = (data - self.mean) / self.std
        self.data = data.contiguous()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x, y = self.data[index], int(self.targets[index])
        if self.augment is None:
            return x, y
        x = self.augment(x)
        if self.shortcut_marker:
            x = add_shortcut_marker(x.unsqueeze(0), torch.tensor([y]))[0]
        return (x - self.mean) / self.std, y


class DigitsDataModule(LightningDataModule):
    """Base of the reference data modules: loaders, normalisation constants, checks.

    Subclasses fill ``train_dataset``, ``val_dataset`` and ``test_dataset`` in ``setup``.
    The training loader shuffles with a ``torch.Generator`` seeded from ``seed`` and
    owned by the data module (never the global RNG); validation and test loaders keep
    their order.

    Args:
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes (0 = load in the main process);
            workers are kept alive between epochs.
        seed: Seeds the split, the generated data and the training shuffle.
        shortcut_marker: Training images (only the train split) carry a small bright
            square whose position encodes the label; validation and test images do not.
    """

    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD
    num_classes: int = 10

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        shortcut_marker: bool = False,
    ) -> None:
        super().__init__()
        check_int("batch_size", batch_size)
        check_int("num_workers", num_workers, minimum=0)
        check_int("seed", seed, minimum=0)
        if not isinstance(shortcut_marker, bool):
            raise ValueError(f"`shortcut_marker` must be a bool, got {shortcut_marker!r}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.shortcut_marker = shortcut_marker
        self.train_dataset: DigitsDataset | None = None
        self.val_dataset: DigitsDataset | None = None
        self.test_dataset: DigitsDataset | None = None
        self._shuffle = torch.Generator().manual_seed(seed)

    def _loader(self, dataset: Dataset | None, split: str, shuffle: bool = False) -> DataLoader:
        if dataset is None:
            raise RuntimeError(
                f"{type(self).__name__}: no {split} dataset; call `setup()` first "
                "(the Trainer does it for you)"
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=self._shuffle if shuffle else None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    @override
    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, "train", shuffle=True)

    @override
    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, "validation")

    @override
    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, "test")

    @override
    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, "test")
