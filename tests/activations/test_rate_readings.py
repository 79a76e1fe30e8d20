"""The rates a divergence reads: a rate raised as a cause of its own, a hot spell no log saw."""

import warnings

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from lightning_cnnviz import ActivationMonitor, OverfittingMonitor
from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.reference.synthetic import SyntheticDigitsDataModule
from tests.activations.diagnosis_nets import Net, fit, leaky_cnn


class FrozenThenJumped(Net):
    """A BatchNorm CNN frozen on purpose from the start (it learns); SGD 0.01 x300 from step 60."""

    def __init__(self) -> None:
        net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 49, 10),
        )  # fmt: skip
        super().__init__(net, lr=0.01)

    def on_train_epoch_start(self):
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()

    def validation_step(self, batch, batch_idx):
        out = self(batch[0])
        self.log("val_loss", F.cross_entropy(out, batch[1]))
        self.log("val_acc", (out.argmax(1) == batch[1]).float().mean())

    def configure_optimizers(self):
        opt = super().configure_optimizers()
        jump = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 300.0 if s >= 60 else 1.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": jump, "interval": "step"}}


def test_rate_readings_a_rate_jump_names_no_root_cause_it_did_not_follow(tmp_path):
    # held-out hunt 123: BatchNorm frozen on purpose (the run at 88-94% val), the rate
    # raised 300x at step 140: the divergence and the model at chance after it were told
    # "may follow from ... `frozen_batch_norm` ... Fix that first"
    L.seed_everything(0, verbose=False)
    data = SyntheticDigitsDataModule(train_size=64 * 30, val_size=256, batch_size=64)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=120, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=2,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[ActivationMonitor(every_n_steps=10), OverfittingMonitor()],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(FrozenThenJumped(), data)
    found = {f.kind: f for f in findings_of(trainer)}
    assert found["frozen_batch_norm"].severity == "problem"  # a freeze from the start: told
    diverged, stalled = found["divergence"], found["not_learning"]
    assert diverged.figures["rate_rise"] == 300.0
    assert "The learning rate rose from 0.01 to 3 before it" in diverged.message
    assert "frozen_batch_norm" not in diverged.message + stalled.message
    assert f"(step {diverged.step}, `divergence`): training diverged." in stalled.message


class HotThenWarmup(Net):
    """SGD 0.03: its first two steps at 300x (9.0), then a warm-up from 0.025x over 40 steps."""

    def __init__(self) -> None:
        super().__init__(leaky_cnn(), lr=0.03)

    def configure_optimizers(self):
        opt = super().configure_optimizers()
        rule = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: 300.0 if s < 2 else min(1.0, (s - 1) / 40)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": rule, "interval": "step"}}


def test_rate_readings_a_hot_spell_before_the_first_log_names_its_rate(tmp_path):
    # held-out hunt 123: the divergence read the rate at its first log (0.00525) and said
    # "lower the learning rate (10x) ... add a learning-rate warmup" behind a warm-up
    trainer, _ = fit(tmp_path, HotThenWarmup(), 60, every=10)
    (diverged,) = [f for f in findings_of(trainer) if f.kind == "divergence"]
    assert diverged.figures["lr_spike"] == 9.0 and diverged.figures["lr"] < 0.01
    assert (
        "The learning rate was 9 up to step 2, 1333x the 0.00675 in force now" in diverged.message
    )
    assert "Try: lower the learning rate of the first steps (10x)" in diverged.message
    assert "add a learning-rate warmup" not in diverged.message


class HotStepInWarmup(Net):
    """A BatchNorm CNN, Adam 1e-3 warmed up over 40 steps: step 13 alone at 100x (0.035)."""

    def __init__(self) -> None:
        net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 49, 64), nn.ReLU(), nn.Linear(64, 10),
        )  # fmt: skip
        super().__init__(net, lr=1e-3)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.lr)
        rule = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / 40) * (100.0 if s == 13 else 1.0)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": rule, "interval": "step"}}


def test_rate_readings_a_hot_step_in_a_warmup_names_its_rate_not_the_warmups_rise(tmp_path):
    # held-out hunt 124: Adam warming up to 1e-3, step 13 alone at 0.035 (logs at 10 and
    # 20), the loss 2.0 -> 8.2: the note said "the learning rate jumped 4x (from 0.00025
    # to 0.001), which is still in force ... lower the rate", the warm-up's healthy target
    trainer, _ = fit(tmp_path, HotStepInWarmup(), 60, every=10)
    (told,) = [f for f in findings_of(trainer) if f.kind == "divergence"]
    assert "It came at a learning rate of 0.035, 35x the 0.001 in force now" in told.message
    assert "still in force" not in told.message and "jumped" not in told.message
