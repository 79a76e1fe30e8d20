"""Short real runs of ``OverfittingMonitor`` on in-memory data, for the rule tests."""

import warnings

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_cnnviz.overfitting.callback import OverfittingMonitor


def one_hot_set(counts, seed=0, noise=0.05):
    """Images whose class sits in one pixel (plus ``noise``), ``counts[c]`` of class ``c``."""
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    x = noise * torch.randn(len(y), 1, 4, 4, generator=torch.Generator().manual_seed(seed))
    x[torch.arange(len(y)), 0, 0, y] += 1.0
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
    tmp_path, model, train: DataLoader, val: DataLoader, epochs: int, callbacks=(), **trainer_args
):
    """Fit ``model`` under one ``OverfittingMonitor`` (TensorBoard at ``tmp_path/tb/version_0``).

    ``trainer_args`` go to the ``Trainer``. Returns the trainer and the warnings said.
    """
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_epochs=epochs, log_every_n_steps=1,
        num_sanity_val_steps=0, logger=TensorBoardLogger(tmp_path, name="tb", version=0),
        callbacks=[OverfittingMonitor(num_samples=64), *callbacks], enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, **trainer_args,
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, train, val)
    return trainer, [str(w.message) for w in caught]
