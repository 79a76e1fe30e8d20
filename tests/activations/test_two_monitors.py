"""Two ActivationMonitors on one model: each keeps its own statistics."""

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz import ActivationMonitor
from tests.monitors import TinyCNN, loaders, trainer_for
from tests.tb import events


class TwoReLUs(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(1, 8, 3, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()
        self.fc = nn.Linear(16 * 4 * 4, 4)

    def forward(self, x):
        x = F.max_pool2d(self.relu1(self.conv1(x)), 2)
        return self.fc(F.max_pool2d(self.relu2(self.conv2(x)), 2).flatten(1))

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), 1e-2)


def test_two_monitors_on_one_layer_both_log(tmp_path):
    # setups hunt 56: the preset's monitor and a user's on `relu1` (its own tag_prefix):
    # one counted the other's activation-kind test tensor and failed, "expected 8
    # channels, got an output with 3"
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 16, 16, generator=g), torch.arange(64) % 4
    every = ActivationMonitor(every_n_steps=2, strict=True)
    mine = ActivationMonitor(layers=["relu1"], tag_prefix="mine/", every_n_steps=2, strict=True)
    trainer = L.Trainer(default_root_dir=tmp_path, max_steps=4, callbacks=[every, mine],
                        logger=L.pytorch.loggers.TensorBoardLogger(tmp_path, name="tb"),
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)  # fmt: skip
    trainer.fit(TwoReLUs(), DataLoader(TensorDataset(x, y), batch_size=16))
    scalars = events(tmp_path / "tb").Tags()["scalars"]
    assert [t for t in scalars if t.startswith("activations/relu1/")]
    assert [t for t in scalars if t.startswith("activations/relu2/")]
    assert [t for t in scalars if t.startswith("mine/activations/relu1/")]


def test_activations_second_fit_of_the_same_model_goes_on_from_the_first(tmp_path):
    # setups hunt 76: a second `fit` on the same trainer started the diagnosis anew on the
    # converged model (a gradient of 5e-9 its baseline) and told the loss's first bump
    # "exploding gradients ... grew 402331x"; it goes on from the first fit, as a resumed
    # run does, and a fit of another model on the trainer starts afresh
    monitor = ActivationMonitor(every_n_steps=2)
    trainer, model = trainer_for(tmp_path, [monitor], max_epochs=1), TinyCNN()
    trainer.fit(model, *loaders())
    first = monitor.diagnosis.first_rms
    assert first is not None and monitor.diagnosis.last_step == 4
    trainer.fit_loop.max_epochs = 2
    trainer.fit(model, *loaders())
    assert monitor.diagnosis.last_step == 8 and monitor.diagnosis.first_rms >= first
    assert [s for s, _ in monitor.diagnosis.log_rates][:2] == [2, 4]  # the first fit's logs
    trainer.fit_loop.max_epochs = 3
    trainer.fit(TinyCNN(), *loaders())  # another model: its own baseline
    assert monitor.diagnosis.first_rms != first
