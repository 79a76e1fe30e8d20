"""Every public monitor by name, with cheap test settings, for the robustness suites.

``ALL_MONITORS`` is the one list the suites (zoo, DDP, resume, compile, precision,
bad input, real TensorBoard) are parametrised over; ``make_monitor(name, **overrides)``
builds one that logs early and cheaply. Settings a monitor's ``__init__`` does not
accept are left out (several names are offered for an option whose name differs
between monitors), so one table serves all eight.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lightning_cnnviz
from lightning_cnnviz.core.logs import event_folder
from lightning_cnnviz.core.monitor import Monitor
from tests.tb import events, layer_lists, projector_tags

ALL_MONITORS: list[str] = [
    "KernelMonitor",
    "FeatureMapMonitor",
    "ActivationMonitor",
    "GradCAMMonitor",
    "OverfittingMonitor",
    "EmbeddingMonitor",
    "ActivationMaximizationMonitor",
    "AdversarialMonitor",
]

# Looked up now, by public name: a monitor missing from the package fails every suite.
CLASSES: dict[str, type[Monitor]] = {name: getattr(lightning_cnnviz, name) for name in ALL_MONITORS}

# Cheap settings: log at step 2, tiny probes, few iterations, small pools. Keys a monitor
# does not take are dropped (e.g. only one of `steps`/`num_steps`/`iterations` exists).
COMMON: dict[str, Any] = {"every_n_steps": 2, "num_samples": 4}
CHEAP: dict[str, dict[str, Any]] = {
    "KernelMonitor": {"max_filters": 16, "max_in_channels": 4},
    "FeatureMapMonitor": {"max_layers": 4, "max_samples_shown": 2, "top_k": 4, "tile_size": 16},
    "ActivationMonitor": {"window": 2},
    "GradCAMMonitor": {"misclassified_pool": 16},
    "OverfittingMonitor": {"every_n_steps": None, "every_n_epochs": 1, "patience": 1},
    "EmbeddingMonitor": {"max_points": 16},
    "ActivationMaximizationMonitor": {"steps": 3, "channels": 2, "classes": 2},
    "AdversarialMonitor": {"samples_shown": 2},
}


def monitor_class(name: str) -> type[Monitor]:
    return CLASSES[name]


def init_params(cls: type) -> set[str]:
    """The keyword arguments ``cls(...)`` takes (``Monitor.arguments``)."""
    return cls.arguments()


def accepted(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` less the ones ``cls`` does not take (settings meant for other monitors)."""
    params = init_params(cls)
    return {k: v for k, v in kwargs.items() if k in params}


def make_monitor(name: str, **overrides: Any) -> Any:
    """A monitor that logs at step 2 with tiny probes; ``overrides`` win (dropped if unknown)."""
    cls = monitor_class(name)
    kwargs = {**COMMON, **CHEAP.get(name, {}), **overrides}
    # A schedule given in `overrides` replaces the other one; else an epoch schedule wins.
    if "every_n_steps" in overrides and "every_n_epochs" not in overrides:
        kwargs["every_n_epochs"] = None
    elif kwargs.get("every_n_epochs") is not None and "every_n_steps" not in overrides:
        kwargs["every_n_steps"] = None
    return cls(**accepted(cls, kwargs))


def section(name: str) -> str:
    return monitor_class(name).section


# ------------------------------------------------------------------- a tiny CNN and data
class TinyCNN(L.LightningModule):
    """conv-BN-ReLU-pool x2 + linear over (C, 16, 16) inputs, 4 classes; logs train/val loss+acc."""

    def __init__(self, channels: int = 1, lr: float = 0.05, classes: int = 4) -> None:
        super().__init__()
        self.lr = lr
        self.conv1, self.bn1, self.relu1 = (
            nn.Conv2d(channels, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
        )
        self.pool1 = nn.MaxPool2d(2)
        self.conv2, self.bn2, self.relu2 = (
            nn.Conv2d(8, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
        )
        self.pool2 = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * 4 * 4, classes)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(x.flatten(1))

    def _step(self, batch, stage):
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True)
        self.log(f"{stage}/acc", acc, on_step=stage == "train", on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)


class FrozenNorms(TinyCNN):
    """TinyCNN whose BatchNorm is put in eval mode for training (a `.eval()` after `train()`)."""

    def on_train_epoch_start(self):
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()


def digits(n: int, channels: int = 1, side: int = 16, classes: int = 4, seed: int = 0):
    """Seeded images: a bright square in the quadrant of the class (learnable, a foreground)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = 0.1 * torch.randn(n, channels, side, side, generator=g)
    h = side // 2
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label % 4, 2)
        x[i, :, r * h + 2 : r * h + h - 2, c * h + 2 : c * h + h - 2] += 1.0
    return TensorDataset(x, y)


def loaders(n_train=32, n_val=16, batch_size=8, **kw):
    train = DataLoader(digits(n_train, seed=1, **kw), batch_size=batch_size)
    val = DataLoader(digits(n_val, seed=2, **kw), batch_size=batch_size)
    return train, val


def trainer_for(tmp_path, callbacks, logger=True, **args):
    if logger is True:
        logger = TensorBoardLogger(str(tmp_path), name="tb")
    settings = {
        "max_epochs": 1,
        "limit_train_batches": 4,
        "limit_val_batches": 1,
        "num_sanity_val_steps": 0,
        "enable_checkpointing": False,
        **args,
    }
    return L.Trainer(
        default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
        logger=logger, callbacks=list(callbacks), **settings,
    )  # fmt: skip


class ComplexImages(L.LightningModule):
    """A complex conv on complex images, then a real conv on their magnitudes."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1, dtype=torch.cfloat)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 4)

    def forward(self, x):
        x = F.max_pool2d(self.c1(x).abs(), 2)
        return self.fc(F.max_pool2d(self.c2(x).relu(), 2).flatten(1))

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def complex_loader(n: int = 64, batch_size: int = 16) -> torch.utils.data.DataLoader:
    """Complex-valued (N, 1, 16, 16) images of 4 classes, for ``ComplexImages``."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 16, 16, generator=g)
    data = torch.utils.data.TensorDataset(torch.complex(x, 0.5 * x), torch.arange(n) % 4)
    return torch.utils.data.DataLoader(data, batch_size=batch_size)


def fit(tmp_path, callbacks, model=None, data=None, logger=True, ckpt_path=None, **args):
    """Fit (default: TinyCNN on quadrant digits); returns (trainer, model, warning texts)."""
    model = model if model is not None else TinyCNN()
    train, val = data if data is not None else loaders()
    trainer = trainer_for(tmp_path, callbacks, logger=logger, **args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, train, val, ckpt_path=ckpt_path)
    return trainer, model, [str(w.message) for w in caught]


def failures(messages: list[str], name: str) -> list[str]:
    """Warnings that say the monitor ``name`` failed and stepped aside."""
    return [m for m in messages if m.startswith(f"{name} failed")]


# ------------------------------------------------------------------- reading back
def assert_every_monitor_wrote(logdir, monitors, messages) -> None:
    """Each monitor logged, failed nowhere, and wrote a section of its own to TensorBoard."""
    tags = written_tags(logdir)
    written = {t for kind in ("images", "scalars") for t in tags[kind]}
    for monitor in monitors:
        name = type(monitor).__name__
        assert not failures(messages, name) and monitor.events > 0, name
        assert any(t.startswith(section(name) + "/") for t in written), name


def written_tags(logdir: str | Path) -> dict[str, set[str]]:
    acc = events(logdir)
    tags = acc.Tags()
    text = {t.removesuffix("/text_summary") for t in tags["tensors"] if t.endswith("/text_summary")}
    projector = projector_tags(logdir)
    return {
        "images": set(tags["images"]),
        "scalars": set(tags["scalars"]),
        "text": text,
        "projector": projector,
    }


def tags_of(tags: dict[str, set[str]], prefix: str) -> dict[str, set[str]]:
    return {kind: {t for t in found if t.startswith(prefix)} for kind, found in tags.items()}


def layers_text(logdir: str | Path) -> dict[str, list[str]]:
    """The ``cnnviz/layers`` entries by monitor class: the names in backticks."""
    out: dict[str, list[str]] = {}
    for entry in layer_lists(events(logdir)):
        match = re.match(r"\*\*(\w+)\*\*", entry)
        if match:
            out[match.group(1)] = re.findall(r"`([^`]+)`", entry)
    return out


def _written_order(file: Path) -> tuple[int, int]:
    """``events.out.tfevents.<time>.<host>.<pid>.<n>``: by time, then the process's counter
    (as numbers: ``.10`` comes after ``.9``)."""
    parts = file.name.split(".")
    return int(parts[3]), int(parts[-1]) if parts[-1].isdigit() else 0


def raw_steps(logdir: str | Path) -> dict[str, list[int]]:
    """Every record's step per tag, read raw from all event files in write order.

    Unlike ``EventAccumulator`` nothing is purged or deduplicated, so a step written
    twice (e.g. by a resumed run) shows up twice. Tags of the runs below the run's
    folder (the ``train`` / ``val`` twins) are named ``<tag> (<folder>)``.
    """
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps: dict[str, list[int]] = {}
    files = sorted(Path(logdir).rglob("events.out.tfevents.*"), key=_written_order)
    run = event_folder(logdir)
    for file in files:
        below = "" if file.parent == run else f" ({file.parent.name})"
        for event in EventFileLoader(str(file)).Load():
            for value in event.summary.value:
                tag = value.tag.removesuffix("/text_summary") + below
                steps.setdefault(tag, []).append(event.step)
    return steps
