"""A small zoo of test models that exercise the safety contract's corner cases.

Each model is a LightningModule over 1x16x16 inputs and 4 classes:

* ``bn_dropout``: BatchNorm + Dropout (train/eval differences, running buffers);
* ``inplace_relu``: ``ReLU(inplace=True)`` after each conv;
* ``functional_relu``: activations applied with ``F.relu`` (no activation modules);
* ``shared_relu``: one ReLU module called at two call sites;
* ``conv_logits``: a 1x1-conv logits head (Grad-CAM's auto must not pick it);
* ``frozen_backbone``: conv features with ``requires_grad=False``, trainable head;
* ``functional_dropout``: ``F.dropout(x, p)`` in ``forward`` (random in eval mode too: every
  probe pass draws random numbers, which must not move the run's own stream);
* ``own_state``: state a ``forward`` changes outside buffers, in eval mode too: a
  ``torch.Generator`` the model holds, a list it appends to, a tensor attribute updated in
  place, a counter in a ``SimpleNamespace`` and a dataclass;
* ``moving_buffers``: a ``spectral_norm`` parametrized conv (a power-iteration step on every
  read of its weight in training mode), a DropConnect parametrization keyed to its conv's
  ``training`` (random numbers on every read of the weight, outside a probe pass too) and
  a ``FakeQuantize`` (quantization-aware training's observer, which updates its buffers on
  every forward, in eval mode too).
"""

from __future__ import annotations

import dataclasses
import random
import types

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

NUM_CLASSES = 4


class ZooModel(L.LightningModule):
    """Shared training logic: cross-entropy, SGD with momentum (exercises optimizer state)."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_log: list[tuple[int, int, int]] = []  # (global_step, batch_idx, hook count)
        self.raise_at_step: int | None = None

    def training_step(self, batch, batch_idx):
        from lightning_cnnviz.core.capture import hook_count

        self.hook_log.append((self.trainer.global_step, batch_idx, sum(hook_count(self).values())))
        if self.raise_at_step is not None and batch_idx == self.raise_at_step:
            raise RuntimeError("planted failure in training_step")
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(
            (p for p in self.parameters() if p.requires_grad), lr=0.05, momentum=0.9
        )


class BNDropout(ZooModel):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(8 * 4 * 4, NUM_CLASSES)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(self.dropout(x.flatten(1)))


class InplaceReLU(ZooModel):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(8 * 4 * 4, NUM_CLASSES)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


class FunctionalReLU(ZooModel):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, NUM_CLASSES)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


class SharedReLU(ZooModel):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.act = nn.ReLU()  # called twice: two call sites
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, NUM_CLASSES)

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        return self.fc(x.flatten(1))


class ConvLogits(ZooModel):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.AdaptiveAvgPool2d(1)
        self.logits = nn.Conv2d(8, NUM_CLASSES, 1)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.logits(x).flatten(1)


class FrozenBackbone(ZooModel):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.backbone.requires_grad_(False)
        self.head = nn.Linear(8 * 4 * 4, NUM_CLASSES)

    def forward(self, x):
        return self.head(self.backbone(x).flatten(1))


class FunctionalDropout(ZooModel):
    """Random in eval mode too, from each global generator: torch's, NumPy's and Python's."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, NUM_CLASSES)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        jitter = 1 + 0.05 * float(np.random.randn()) + 0.05 * random.gauss(0, 1)
        return self.fc(F.dropout(x.flatten(1), 0.3)) * jitter  # `training=True` in eval mode too


class DropConnect(nn.Module):
    """Drops weights while the conv it belongs to trains (not its own flag: kept in eval)."""

    def __init__(self, owner: nn.Module) -> None:
        super().__init__()
        self.owner = [owner]  # a list: not a submodule

    def forward(self, weight):
        if not self.owner[0].training:
            return weight
        return weight * torch.bernoulli(torch.full_like(weight, 0.8)) / 0.8


class MovingBuffers(ZooModel):
    def __init__(self) -> None:
        super().__init__()
        spectral = torch.nn.utils.parametrizations.spectral_norm
        self.conv1 = spectral(nn.Conv2d(1, 6, 3, padding=1))
        self.quant = torch.ao.quantization.FakeQuantize()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        # setups hunt 29: a monitor's weight reads at its events drew from torch's stream
        torch.nn.utils.parametrize.register_parametrization(
            self.conv2, "weight", DropConnect(self.conv2)
        )
        # per channel: its min/max buffers start empty and grow at the first forward, which
        # a monitor's first pass may be (setups hunt 27: QAT with fbgemm aborted fit)
        self.quant2 = torch.ao.quantization.FakeQuantize(
            torch.ao.quantization.MovingAveragePerChannelMinMaxObserver, ch_axis=1
        )
        self.fc = nn.Linear(8 * 4 * 4, NUM_CLASSES)

    def forward(self, x):
        x = F.max_pool2d(self.quant(F.relu(self.conv1(x))), 2)
        x = F.max_pool2d(self.quant2(F.relu(self.conv2(x))), 2)
        return self.fc(x.flatten(1))


@dataclasses.dataclass
class Calls:
    seen: int = 0


class OwnState(ZooModel):
    """State ``forward`` changes outside buffers (setups hunt 23: each trained differently)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, NUM_CLASSES)
        self.noise = torch.Generator().manual_seed(3)  # test-time noise, eval mode too
        self.history: list[int] = []
        self.level = torch.zeros(())  # a tensor attribute, no buffer
        self.counter = types.SimpleNamespace(calls=0)
        self.calls = Calls()

    def forward(self, x):
        x = x + 0.05 * torch.randn(x.shape, generator=self.noise)
        self.history.append(len(x))
        self.level.add_(0.01)
        self.counter.calls += 1
        self.calls.seen += 1
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        scale = 1 + 0.01 * (len(self.history) % 3) + float(self.level) + 0.001 * self.calls.seen
        return self.fc(x.flatten(1)) * scale / (1 + 1 / self.counter.calls)


class FeatureBank(BNDropout):
    """``forward`` keeps its features for the module's own hook after the step (a memory
    bank, as contrastive and centre losses keep): the monitors' probe passes run first."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("bank", torch.zeros(8 * 4 * 4))

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        self._features = x.flatten(1).detach()
        return self.fc(self.dropout(x.flatten(1)))

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.bank.mul_(0.9).add_(0.1 * self._features.mean(0))


ZOO: dict[str, type[ZooModel]] = {
    "bn_dropout": BNDropout,
    "inplace_relu": InplaceReLU,
    "functional_relu": FunctionalReLU,
    "shared_relu": SharedReLU,
    "conv_logits": ConvLogits,
    "frozen_backbone": FrozenBackbone,
    "functional_dropout": FunctionalDropout,
    "moving_buffers": MovingBuffers,
    "own_state": OwnState,
    "feature_bank": FeatureBank,
}


def make_data(n: int = 64, seed: int = 123) -> TensorDataset:
    """Blob images whose position depends on the class, so the models can learn something."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % NUM_CLASSES
    x = 0.3 * torch.randn(n, 1, 16, 16, generator=g)
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, 2 + 8 * r : 6 + 8 * r, 2 + 8 * c : 6 + 8 * c] += 2.0
    return TensorDataset(x, y)


class Augmented(Dataset):
    """Random augmentation drawn from the global generators, as torchvision's transforms
    (torch's) and others (``random``'s, NumPy's) draw, and from generators the dataset
    holds (a seeded NumPy and torch generator, for reproducible augmentation): a monitor
    that reads an item must leave them all as they were."""

    def __init__(self, data: TensorDataset) -> None:
        self.data = data
        self.rng = np.random.default_rng(0)
        self.transform = {"noise": torch.Generator().manual_seed(0)}

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.data[index]
        scale = 1.0 + 0.1 * random.random() + 0.1 * float(np.random.rand())
        scale += 0.1 * float(self.rng.random())
        own = torch.randn(x.shape, generator=self.transform["noise"])
        return scale * x + 0.05 * torch.randn_like(x) + 0.05 * own, y


class ZooData(L.LightningDataModule):
    """Shuffled, randomly augmented training loader (both draw from the global RNGs),
    fixed validation loader."""

    def __init__(self, batch_size: int = 8) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.train_set = Augmented(make_data(64, seed=1))
        self.val_set = make_data(32, seed=2)

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)
