"""``MNISTDataModule``: the real MNIST digits, read from torchvision's folder layout."""

from __future__ import annotations

import contextlib
import gzip
import os
from pathlib import Path

import torch
from torch import Tensor
from typing_extensions import override

from lightning_cnnviz.core.checks import check_int
from lightning_cnnviz.reference.data import DigitsDataModule, DigitsDataset

__all__ = ["MNISTDataModule", "MNISTNotFoundError", "read_idx"]

TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class MNISTNotFoundError(FileNotFoundError):
    """The MNIST files are not where the data module looked, and could not be downloaded."""


def read_idx(path: str | os.PathLike) -> Tensor:
    """Read an IDX file (MNIST's format), gzip-compressed or not, into a uint8 tensor.

    Raises:
        ValueError: The file is not a uint8 IDX file.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not a uint8 IDX file (MNIST format)")
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = 1
    for side in shape:
        count *= side
    if len(raw) - offset != count:
        raise ValueError(f"{path} is truncated or corrupt: header says {shape}")
    return torch.frombuffer(bytearray(raw[offset:]), dtype=torch.uint8).view(*shape)


class MNISTDataModule(DigitsDataModule):
    """Real MNIST (60,000 training and 10,000 test digits) from torchvision's folder layout.

    Reads ``{root}/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (each
    file gzip-compressed, ``.gz``, or not), the layout ``torchvision.datasets.MNIST``
    downloads into, with no network. Downloads happen only in ``prepare_data`` and only
    when ``download=True``. When the files are missing and cannot be downloaded,
    ``prepare_data`` / ``setup`` raise ``MNISTNotFoundError`` (a ``FileNotFoundError``)
    before training starts, saying where they looked and what to do.

    The 60,000 training digits are split (seeded) into ``60,000 - val_size`` for
    training and ``val_size`` for validation; the test split is the official test set.

    Args:
        root: Folder holding ``MNIST/raw`` (created by the download).
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes.
        val_size: Training digits held out for validation (seeded split).
        train_subset: Keep only this many (seeded, random) training digits, e.g. a few
            hundred for an overfitting demo; ``None`` keeps all.
        augment: Small random affine (rotation 10 degrees, translation 2 px, scale
            0.9-1.1) of each training image, redrawn every epoch.
        seed: Seeds the split, the subset and the training shuffle.
        download: Download missing files in ``prepare_data`` (needs internet access).
        shortcut_marker: Training images carry a small bright square whose position
            encodes the label (left border for 0-4, right border for 5-9);
            validation and test images do not. A planted shortcut for the Grad-CAM and
            overfitting scenarios.

    Example::

        >>> dm = MNISTDataModule(root="data", download=False)
        >>> dm.mean, dm.std, dm.num_classes
        ((0.1307,), (0.3081,), 10)
    """

    def __init__(
        self,
        root: str = "data",
        batch_size: int = 64,
        num_workers: int = 0,
        val_size: int = 5000,
        train_subset: int | None = None,
        augment: bool = False,
        seed: int = 0,
        download: bool = True,
        shortcut_marker: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, seed, shortcut_marker)
        check_int("val_size", val_size)
        check_int("train_subset", train_subset, allow_none=True)
        self.save_hyperparameters()
        self.root = str(root)
        self.val_size = val_size
        self.train_subset = train_subset
        self.augment = augment
        self.download = download

    @property
    def raw_folder(self) -> Path:
        """Where the IDX files are read from (``{root}/MNIST/raw``)."""
        return Path(self.root) / "MNIST" / "raw"

    def _find(self, name: str) -> Path | None:
        for candidate in (self.raw_folder / name, self.raw_folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
        return None

    def _missing(self, names: tuple[str, ...]) -> list[str]:
        return [name for name in names if self._find(name) is None]

    def _not_found(self, missing: list[str], why: str) -> MNISTNotFoundError:
        return MNISTNotFoundError(
            f"MNIST files not found: looked in {str(self.raw_folder.resolve())!r} for "
            f"{', '.join(missing)} (gzipped '.gz' or not). {why}\n"
            "To fix it, do one of:\n"
            f"  - place the MNIST files in that folder ({self.raw_folder}/train-images-idx3-"
            "ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
            "t10k-labels-idx1-ubyte.gz), or point `root` at the folder that holds MNIST/raw;\n"
            "  - run once with `download=True` on a machine with internet access;\n"
            "  - train offline on rendered digits: "
            "`lightning_cnnviz.reference.SyntheticDigitsDataModule` "
            "(cnnviz fit --data SyntheticDigitsDataModule ...)."
        )

    @override
    def prepare_data(self) -> None:
        missing = self._missing(TRAIN_FILES + TEST_FILES)
        if not missing:
            return
        if not self.download:
            if self._missing(TRAIN_FILES):
                raise self._not_found(missing, "Downloading is off (`download=False`).")
            return  # enough to train; `setup("test")` reports the test files if needed
        # folders the download creates; removed again if it fails and leaves them empty
        created = [p for p in (self.raw_folder, self.raw_folder.parent, Path(self.root))
                   if not p.exists()]  # fmt: skip
        try:
            from torchvision import datasets

            for train in (True, False):
                datasets.MNIST(self.root, train=train, download=True)
        except Exception as err:  # no network, a proxy, a mirror down, ...
            for folder in created:  # innermost first; rmdir leaves a non-empty one alone
                with contextlib.suppress(OSError):
                    folder.rmdir()
            why = f"Downloading them failed ({type(err).__name__}: {err})."
            raise self._not_found(missing, why.replace("\n", " ")) from err

    @override
    def setup(self, stage: str | None = None) -> None:
        fit = stage in (None, "fit", "validate")
        test = stage in (None, "test", "predict")
        if fit and self.train_dataset is None:
            self.train_dataset, self.val_dataset = self._train_val()
        if test and self.test_dataset is None:
            images, labels = self._read(TEST_FILES)
            self.test_dataset = DigitsDataset(images, labels, self.mean, self.std)

    def _read(self, names: tuple[str, str]) -> tuple[Tensor, Tensor]:
        missing = self._missing(names)
        if missing:
            hint = "Call `prepare_data()` with `download=True` to download them."
            raise self._not_found(missing, hint if self.download else "`download=False`.")
        images, labels = (read_idx(self._find(name)) for name in names)
        if images.shape[0] != labels.shape[0] or tuple(images.shape[1:]) != (28, 28):
            raise ValueError(
                f"MNIST files in {self.raw_folder} do not match: images {tuple(images.shape)}, "
                f"labels {tuple(labels.shape)}"
            )
        return images, labels.long()

    def _train_val(self) -> tuple[DigitsDataset, DigitsDataset]:
        images, labels = self._read(TRAIN_FILES)
        n = labels.numel()
        if self.val_size >= n:
            raise ValueError(
                f"`val_size` must be smaller than the {n} training digits, got {self.val_size}"
            )
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        val_idx, train_idx = order[: self.val_size], order[self.val_size :]
        if self.train_subset is not None:
            if self.train_subset > train_idx.numel():
                raise ValueError(
                    f"`train_subset` must be at most the {train_idx.numel()} training digits "
                    f"left after the validation split, got {self.train_subset}"
                )
            train_idx = train_idx[: self.train_subset]
        augment = None
        if self.augment:
            from torchvision.transforms import v2

            augment = v2.RandomAffine(degrees=10, translate=(2 / 28, 2 / 28), scale=(0.9, 1.1))
        train = DigitsDataset(
            images[train_idx],
            labels[train_idx],
            self.mean,
            self.std,
            augment=augment,
            shortcut_marker=self.shortcut_marker,
        )
        val = DigitsDataset(images[val_idx], labels[val_idx], self.mean, self.std)
        return train, val
