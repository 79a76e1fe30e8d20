"""Short real runs of ``OverfittingMonitor`` on in-memory data, for the rule tests."""

import warnings

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_cnnviz.overfitting.callback import OverfittingMonitor


def one_hot_set(counts, seed=0, noise=0.05):
    """Images whose class sits in one pixel (plus ``noise``), ``counts[c]`` of class ``c``.

    4x4 pixels, class ``c`` in the ``c``-th (row by row): up to 16 classes.
    """
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    x = noise * torch.randn(len(y), 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    x.view(len(y), 16)[torch.arange(len(y)), y] += 1.0
    return TensorDataset(x, y)


class ItemsMapped(Dataset):
    """``data`` whose item ``i`` is ``read(data, i)``: a dataset's own ``__getitem__``."""

    def __init__(self, data, read):
        self.data, self.read = data, read

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.read(self.data, i)


def fit_monitor(
    tmp_path,
    model,
    train: DataLoader,
    val: DataLoader,
    epochs: int,
    callbacks=(),
    num_samples=64,
    **trainer_args,
):
    """Fit ``model`` under one ``OverfittingMonitor`` (TensorBoard at ``tmp_path/tb/version_0``).

    ``num_samples``: the monitor's probe size; ``trainer_args`` go to the ``Trainer``.
    Returns the trainer and the warnings said.
    """
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_epochs=epochs, log_every_n_steps=1,
        num_sanity_val_steps=0, logger=TensorBoardLogger(tmp_path, name="tb", version=0),
        callbacks=[OverfittingMonitor(num_samples=num_samples), *callbacks],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        **trainer_args,
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, train, val)
    return trainer, [str(w.message) for w in caught]


class Net(L.LightningModule):
    """A small classifier logging loss and accuracy under the monitor's default keys."""

    def __init__(self, net: nn.Module, lr: float) -> None:
        super().__init__()
        self.net, self.lr = net, lr

    def forward(self, x):
        return self.net(x)

    def loss(self, logits, y):
        return F.cross_entropy(logits, y)

    def _step(self, batch, split):
        x, y = batch
        logits = self(x)
        loss = self.loss(logits, y)
        self.log(f"{split}/loss", loss, on_epoch=True, on_step=False)
        self.log(f"{split}/acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def blobs(n=64, seed=0, offset=3.0):
    """Two classes told apart by the sign of one pixel (around a large offset)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 1, 4, 4, generator=g) + offset
    x[:, 0, 0, 0] = offset + torch.where(y == 1, 1.0, -1.0) * (1 + torch.rand(n, generator=g))
    return TensorDataset(x, y)


def fit(tmp_path, model, callbacks, epochs=4, val=True, caplog=None):
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_epochs=epochs,
        logger=TensorBoardLogger(tmp_path, name="tb", version=0),
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(
            model,
            DataLoader(blobs(), batch_size=16, shuffle=False),
            DataLoader(blobs(seed=1), batch_size=16) if val else None,
        )
    return trainer, [str(w.message) for w in caught]


def pictures(n=128, seed=0):
    """Normalised 3-channel pictures: bright squares on a dark ground, per-channel tints."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.rand(n, 3, 16, 16, generator=g)
    for i in range(n):
        r, c = torch.randint(0, 10, (2,), generator=g).tolist()
        x[i, :, r : r + 6, c : c + 6] += torch.rand(3, 1, 1, generator=g)
    return x


class TakesTwoForThird(nn.Module):
    """Reads the class from a one-hot pixel, but takes classes 1 and 2 for class 3.

    ``width`` outputs, those past the first 4 held low as training holds a head wider
    than the labels' classes (never predicted).
    """

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        w = torch.zeros(width, 16)
        w[0, 0] = w[3, 1] = w[3, 2] = w[3, 3] = 5.0
        self.register_buffer("w", w)
        self.register_buffer("b", torch.zeros(width).index_fill_(0, torch.arange(4, width), -10))
        self.unused = nn.Parameter(torch.zeros(1))  # for the optimizer; never moves

    def forward(self, x):
        return x.flatten(1) @ self.w.T + self.b + 0 * self.unused


def fit_imbalanced(tmp_path, train, sampler=None, model=None):
    """Fit on ``train`` (4 one-hot classes) against an imbalanced val set, 3 epochs."""
    val = one_hot_set([60, 8, 8, 8], seed=1)  # imbalanced like training: accuracy hides it
    loader = DataLoader(train, batch_size=32, shuffle=sampler is None, sampler=sampler)
    val_loader = DataLoader(val, batch_size=32)
    model = model if model is not None else Net(TakesTwoForThird(), lr=0.1)
    return fit_monitor(tmp_path, model, loader, val_loader, epochs=3)
