"""The runs ``diagnosis.py`` scores: models, data and the failures planted in them.

Every run trains on the real MNIST test set (10,000 digits at ``../shared/data/mnist``,
split here into training and validation digits by a seeded permutation), or on
synthetic digits when those files are missing. Each ``Scenario`` says which cause a
right diagnosis names (``None``: a healthy run, where no problem may be reported) and
how to measure the ground-truth onset from the run itself (``truth.py``).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from coloured_shapes import ColouredShapes, shapes_cnn
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lightning_cnnviz.reference import MNISTClassifier, SyntheticDigitsDataModule
from lightning_cnnviz.reference.data import add_shortcut_marker

# beside the checkout, or where CNNVIZ_MNIST points (a worktree elsewhere)
MNIST = Path(
    os.environ.get("CNNVIZ_MNIST", Path(__file__).resolve().parents[1].parent / "shared/data/mnist")
)
MEAN, STD = (0.1307,), (0.3081,)


def digits_source(files: Path = MNIST) -> str:
    """Which digits the runs train on, in words (the scoreboard prints and records it)."""
    if all((files / name).exists() for name in MNIST_FILES):
        return "the real MNIST test set"
    return f"synthetic digits: no MNIST test set at {files} (set CNNVIZ_MNIST)"


MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def load_digits(files: Path = MNIST) -> tuple[Tensor, Tensor]:
    """The 10,000 MNIST test digits as (N, 1, 28, 28) floats in [0, 1] and labels, or synthetic."""
    images, labels = (files / name for name in MNIST_FILES)
    if images.exists() and labels.exists():
        with gzip.open(images) as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
        with gzip.open(labels) as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)
        return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))
    data = SyntheticDigitsDataModule(train_size=8000, val_size=2000, seed=0)
    data.setup("fit")
    xs = [data.train_dataset[i] for i in range(len(data.train_dataset))]
    xs += [data.val_dataset[i] for i in range(len(data.val_dataset))]
    x = torch.stack([a for a, _ in xs]) * STD[0] + MEAN[0]  # back to [0, 1]
    return x, torch.tensor([int(b) for _, b in xs])


class Pairs(Dataset):
    """Normalised images and labels in memory."""

    def __init__(self, images: Tensor, labels: Tensor, offset: float = 0.0) -> None:
        self.images, self.labels = (images - MEAN[0]) / STD[0] + offset, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])


class Digits(L.LightningDataModule):
    """A seeded split of the digits, optionally with noisy labels or a shortcut marker."""

    mean, std, num_classes = MEAN, STD, 10

    def __init__(self, train: int, val: int = 2000, seed: int = 0, batch_size: int = 64,
                 label_noise: float = 0.0, marker: str = "none", offset: float = 0.0,
                 ) -> None:  # fmt: skip
        super().__init__()
        x, y = DIGITS if DIGITS else _cache()
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        tx, ty = x[order[:train]], y[order[:train]].clone()
        vx, vy = x[order[-val:]], y[order[-val:]]
        gen = torch.Generator().manual_seed(seed + 1)
        if label_noise:  # memorisation: a share of training labels replaced by random ones
            noisy = torch.rand(len(ty), generator=gen) < label_noise
            ty[noisy] = torch.randint(0, 10, (int(noisy.sum()),), generator=gen)
        if marker in ("train", "both"):  # a bright square whose position encodes the label
            tx = add_shortcut_marker(tx.clone(), ty)
        if marker == "both":
            vx = add_shortcut_marker(vx.clone(), vy)
        # ``offset``: inputs far from zero mean, which running statistics must follow
        self.train_dataset, self.val_dataset = Pairs(tx, ty, offset), Pairs(vx, vy, offset)
        self.clean_val = (x[order[-val:]], vy)  # unmarked [0, 1] digits: the cue test
        self.batch_size, self.seed = batch_size, seed

    def with_cue(self, images01: Tensor, labels: Tensor) -> Tensor:
        """Normalised ``images01`` carrying the marker of ``labels`` (the cue test's input)."""
        return (add_shortcut_marker(images01.clone(), labels) - self.mean[0]) / self.std[0]

    def train_dataloader(self) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed + 2)
        return DataLoader(self.train_dataset, self.batch_size, shuffle=True, generator=gen)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_dataset, 256)


DIGITS: tuple[Tensor, Tensor] | None = None


def _cache() -> tuple[Tensor, Tensor]:
    global DIGITS
    DIGITS = load_digits()
    return DIGITS


class Net(L.LightningModule):
    """A classifier around ``body`` that logs what the reference model logs."""

    def __init__(self, body: nn.Module, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.body, self.opt, self.lr, self.weight_decay = body, optimizer, lr, weight_decay

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)

    def _step(self, batch: Any, stage: str) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        train = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=train, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", acc, on_step=train, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params, lr, wd = self.parameters(), self.lr, self.weight_decay
        if self.opt == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
        if self.opt == "sgd_plain":
            return torch.optim.SGD(params, lr=lr)
        if self.opt == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=wd or 0.01)
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def cnn(
    width: int = 16,
    *,
    act: Callable[[], nn.Module] = nn.ReLU,
    bn: bool = False,
    dropout: float = 0.0,
    bn_momentum: float = 0.1,
    functional: bool = False,
) -> nn.Module:
    """conv-act-pool twice, then fc-act-fc; BatchNorm after each conv when ``bn``."""

    class Functional(nn.Module):  # an activation the model calls as a function
        def forward(self, x: Tensor) -> Tensor:
            return F.relu(x)

    def norm(c: int) -> list[nn.Module]:
        return [nn.BatchNorm2d(c, momentum=bn_momentum)] if bn else []

    a = Functional if functional else act
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), *norm(width), a(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), *norm(2 * width), a(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * width * 49, 128), act(),
        nn.Linear(128, 10),
    )  # fmt: skip


class Block(nn.Module):
    """A ResNet basic block; a 1x1 conv on the shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.down is None else self.down(x)))


def resnet_small() -> nn.Module:
    """A small ResNet: BN stem, two stages of one basic block, global pool, fc."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
        Block(16, 16, 1), Block(16, 32, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, 10),
    )  # fmt: skip


def deep_sigmoid(depth: int = 8, width: int = 16) -> nn.Module:
    """A deep plain CNN with sigmoids and default init: gradients vanish toward the input."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Conv2d(1 if i == 0 else width, width, 3, padding=1), nn.Sigmoid()]
        if i in (depth // 2, depth - 1):
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * 49, 10))


class PlantDeadUnits(L.Callback):
    """At ``step``, push half of a layer's output channels far below zero (they never recover).

    ``layer`` is a conv (its bias) or a BatchNorm (its shift; its scale made tiny, so that
    normalisation cannot lift the channel back).
    """

    def __init__(self, step: int, layer: str = "body.5", share: float = 0.5) -> None:
        self.step, self.layer, self.share = step, layer, share

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *_: Any
    ) -> None:
        if trainer.global_step != self.step:
            return
        layer = pl_module.get_submodule(self.layer)
        with torch.no_grad():
            n = int(layer.weight.shape[0] * self.share)
            layer.bias[:n] = -50.0
            layer.weight[:n].mul_(0.01)


@dataclass
class Scenario:
    """One run: what to train, and what a right diagnosis names.

    Attributes:
        name: the scoreboard's row name.
        cause: the cause a right diagnosis names; ``None`` for a healthy run.
        model: builds the LightningModule.
        data: builds the data module.
        trainer: ``Trainer`` arguments (``max_epochs`` / ``max_steps``).
        onset: the ground truth's kind: ``"start"`` (broken from step 0), ``"step"``
            (``onset_step``), ``"nonfinite"``, ``"val_loss_up"``, ``"val_acc_down"``,
            ``"bn_gap"``, ``"cue"``; ``None`` for healthy runs.
        callbacks: the scenario's own interventions (e.g. planting dead units).
    """

    name: str
    cause: str | None
    model: Callable[[], L.LightningModule]
    data: Callable[[int], L.LightningDataModule]
    trainer: dict[str, Any]
    onset: str | None = None
    onset_step: int | None = None
    callbacks: Callable[[], list[L.Callback]] = field(default=list)


def scenarios() -> list[Scenario]:
    """The runs of the scoreboard: 5 healthy, 11 failures."""
    D = Digits
    return [
        Scenario("healthy: reference MNISTClassifier (Adam 1e-3)", None, MNISTClassifier,
                 lambda s: D(6000, seed=s), {"max_epochs": 3}),
        Scenario("healthy: BatchNorm CNN, AdamW", None,
                 lambda: Net(cnn(16, bn=True), "adamw", 1e-3), lambda s: D(6000, seed=s),
                 {"max_epochs": 3}),
        Scenario("healthy: BN + dropout + functional ReLU, SGD", None,
                 lambda: Net(cnn(16, bn=True, dropout=0.3, functional=True), "sgd", 0.02),
                 lambda s: D(6000, seed=s), {"max_epochs": 3}),
        Scenario("healthy: GELU CNN, Adam", None, lambda: Net(cnn(16, act=nn.GELU), "adam", 1e-3),
                 lambda s: D(6000, seed=s), {"max_epochs": 3}),
        Scenario("healthy: LeakyReLU CNN, SGD", None,
                 lambda: Net(cnn(16, act=nn.LeakyReLU), "sgd", 0.02), lambda s: D(6000, seed=s),
                 {"max_epochs": 3}),
        Scenario("overfitting: wide CNN on 300 digits", "overfitting",
                 lambda: Net(cnn(32), "adam", 1e-3), lambda s: D(300, seed=s),
                 {"max_epochs": 30}, "val_loss_up"),
        Scenario("memorisation: 50% noisy labels", "memorisation",
                 lambda: Net(cnn(32), "adam", 1e-3), lambda s: D(1500, seed=s, label_noise=0.5),
                 {"max_epochs": 25}, "val_acc_down"),
        Scenario("not learning: SGD lr 1e-5 (far too low)", "not_learning",
                 lambda: Net(cnn(16), "sgd_plain", 1e-5), lambda s: D(3000, seed=s),
                 {"max_epochs": 2}, "start"),
        Scenario("divergence: Adam lr 0.1, LeakyReLU", "divergence",
                 lambda: Net(cnn(16, act=nn.LeakyReLU), "adam", 0.1), lambda s: D(3000, seed=s),
                 {"max_epochs": 2}, "nonfinite"),
        Scenario("vanishing gradients: deep sigmoid CNN", "vanishing_gradients",
                 lambda: Net(deep_sigmoid(), "sgd", 0.01), lambda s: D(3000, seed=s),
                 {"max_epochs": 2}, "start"),
        Scenario("BatchNorm statistics lagging (momentum 0.001, inputs off zero)", "bn_mismatch",
                 lambda: Net(cnn(16, bn=True, bn_momentum=0.001), "adam", 1e-3),
                 lambda s: D(4000, seed=s, offset=4.0), {"max_epochs": 3}, "bn_gap"),
        Scenario("BatchNorm statistics lagging: small ResNet, SGD 0.1, short run", "bn_mismatch",
                 lambda: Net(resnet_small(), "sgd", 0.1), lambda s: D(6000, seed=s, batch_size=128),
                 {"max_epochs": 3}, "bn_gap"),
        Scenario("shortcut: cue on validation images too", "shortcut",
                 lambda: Net(cnn(16), "adam", 1e-3), lambda s: D(4000, seed=s, marker="both"),
                 {"max_epochs": 3}, "cue"),
        Scenario("shortcut: cue on training images only", "shortcut",
                 lambda: Net(cnn(16), "adam", 1e-3), lambda s: D(4000, seed=s, marker="train"),
                 {"max_epochs": 3}, "cue"),
        Scenario("shortcut: corner cue on coloured images, train and val", "shortcut",
                 lambda: Net(shapes_cnn(), "adam", 1e-3), lambda s: ColouredShapes(seed=s),
                 {"max_epochs": 3}, "cue"),
        Scenario("dead units planted at step 100 (BN CNN)", "dead_units",
                 lambda: Net(cnn(16, bn=True), "adam", 1e-3), lambda s: D(6000, seed=s),
                 {"max_epochs": 2}, "step", 100, lambda: [PlantDeadUnits(100)]),
    ]  # fmt: skip
