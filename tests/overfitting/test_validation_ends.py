"""The step a validation follows, read as Lightning decides it (``validation_ends.py``)."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from lightning_cnnviz.overfitting.validation_ends import before_validation


class _Spy(L.Callback):
    """The steps ``before_validation`` says a validation follows, and those it did."""

    def __init__(self):
        self.said, self.validated = [], []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if before_validation(trainer):
            self.said.append(trainer.global_step + 1)  # the step this one completes

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.validated.append(trainer.global_step)


class _Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.fc(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class _Stream(IterableDataset):
    def __init__(self, data):
        self.data = data

    def __iter__(self):
        yield from DataLoader(self.data, batch_size=4)


@pytest.mark.parametrize(
    "setting",
    [
        {},
        {"val_check_interval": 20, "check_val_every_n_epoch": None},  # setups hunt 47
        {"val_check_interval": 5},
        {"val_check_interval": 0.5},
        {"check_val_every_n_epoch": 2},
        {"stream": True},
        {"stream": True, "val_check_interval": 5},
        {"accumulate_grad_batches": 3},
    ],
)
def test_validation_ends_the_steps_a_validation_follows_are_lightnings(tmp_path, setting):
    setting = dict(setting)
    data = TensorDataset(torch.randn(48, 4), torch.randint(0, 2, (48,)))
    train = (
        DataLoader(_Stream(data), batch_size=None)
        if setting.pop("stream", False)
        else DataLoader(data, batch_size=4)
    )  # 12 batches an epoch
    spy = _Spy()
    trainer = L.Trainer(
        max_epochs=5, default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[spy],
        num_sanity_val_steps=0, **setting,
    )  # fmt: skip
    trainer.fit(_Net(), train, DataLoader(data, batch_size=16))
    assert spy.validated and spy.said == spy.validated
