"""The shared real MNIST test set (10,000 digits) arranged as a torchvision ``root``.

Only the official *test* files are available offline (``../shared/data/mnist``). For
tests, ``mnist_root(tmp_path)`` builds ``tmp_path/mnist/MNIST/raw`` with symlinks to
them under both the ``t10k-*`` and the ``train-*`` names, so ``MNISTDataModule``
reads them unchanged. With ``val_size=2000`` its seeded split gives 8,000 training
and 2,000 validation digits, all real. (Its ``test_dataset`` is then the same 10,000
digits: fine for loading tests, not for reporting test accuracy.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_MNIST = Path(
    os.environ.get(
        "CNNVIZ_MNIST_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    )
)
_FILES = {
    "t10k-images-idx3-ubyte.gz": ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"),
    "t10k-labels-idx1-ubyte.gz": ("train-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def have_mnist() -> bool:
    return all((SHARED_MNIST / name).is_file() for name in _FILES)


requires_mnist = pytest.mark.skipif(
    not have_mnist(), reason=f"real MNIST test files not found in {SHARED_MNIST}"
)


def mnist_root(tmp_path: Path) -> str:
    """A torchvision-layout ``root`` whose train and test files are the shared 10k digits."""
    raw = Path(tmp_path) / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for source, targets in _FILES.items():
        for target in targets:
            link = raw / target
            if not link.exists():
                link.symlink_to(SHARED_MNIST / source)
    return str(raw.parents[1])
