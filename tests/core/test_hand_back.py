"""Findings of a fit run in processes Lightning started, read back in the one that started them."""

import os
import pickle

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz import OverfittingMonitor, findings_of
from lightning_cnnviz.core.findings import checks_of


class Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(4 * 64, 3))  # fmt: skip

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(tmp_path, **trainer_args):
    """A short fit whose val loader reads the training tensors (a `val_is_train` problem)."""
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(96, 1, 8, 8), torch.randint(0, 3, (96,)))
    monitor = OverfittingMonitor()
    trainer = L.Trainer(
        max_epochs=1, callbacks=[monitor], default_root_dir=tmp_path, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        **trainer_args,
    )  # fmt: skip
    trainer.fit(Tiny(), DataLoader(data, batch_size=16), DataLoader(data, batch_size=32))
    return trainer, monitor


def test_hand_back_forked_fit_findings_reach_the_launching_process(tmp_path):
    # setups hunt 47: under ddp_spawn / ddp_notebook the launching process (a notebook's)
    # read no findings; rank 0 had printed two problems
    trainer, monitor = _fit(tmp_path, strategy="ddp_fork", devices=2, accelerator="cpu")
    kinds = [(f.kind, f.severity) for f in findings_of(trainer)]
    assert ("val_is_train", "problem") in kinds
    assert checks_of(trainer)[("OverfittingMonitor", "")].ran
    assert not monitor.hand_back_to.files()  # read once, then removed


def test_hand_back_file_nobody_read_goes_with_its_monitor(tmp_path):
    import gc

    monitor = OverfittingMonitor()
    path = monitor.hand_back_to.fit_path()
    with open(path, "wb") as file:  # as a child leaves it, never read by `findings_of`
        pickle.dump({}, file)
    del monitor
    gc.collect()
    assert not os.path.exists(path)


def test_hand_back_single_process_fit_writes_nothing(tmp_path):
    trainer, monitor = _fit(tmp_path)
    assert monitor.hand_back_to.pid == os.getpid()
    assert not monitor.hand_back_to.files()
    assert "val_is_train" in [f.kind for f in findings_of(trainer)]


def test_hand_back_copy_pickled_by_another_process_takes_an_address_there(monkeypatch):
    monitor = OverfittingMonitor()
    made = monitor.hand_back_to
    same = pickle.loads(pickle.dumps(monitor))  # a copy where it was made: its own address
    assert same.hand_back_to.pid == made.pid and same.hand_back_to.stem != made.stem
    monkeypatch.setattr(os, "getpid", lambda: made.pid + 1)
    sent_on = pickle.loads(pickle.dumps(monitor))  # a copy that launches a fit of its own
    assert sent_on.hand_back_to.pid == made.pid + 1 and sent_on.hand_back_to.stem != made.stem


def test_hand_back_a_file_it_cannot_write_is_said_never_raised(tmp_path):
    from types import SimpleNamespace

    import pytest

    from lightning_cnnviz.core.hand_back import HandBack, hand_back

    launched = SimpleNamespace(launcher=SimpleNamespace(_start_method="spawn"))
    trainer = SimpleNamespace(strategy=launched, is_global_zero=True, state=SimpleNamespace())
    to = HandBack(os.getppid(), str(tmp_path / "missing" / "records"))
    with pytest.warns(UserWarning, match="could not hand the findings back"):
        hand_back(trainer, {"_cnnviz_findings": []}, to)
    written = HandBack(os.getppid(), str(tmp_path / "records"))
    hand_back(trainer, {"_cnnviz_findings": []}, written)  # as a child of this process
    assert written.holds(trainer.state._cnnviz_hand_back)  # named on the state sent back
    with open(trainer.state._cnnviz_hand_back, "rb") as file:
        assert pickle.load(file) == {"_cnnviz_findings": []}


def _fit_with(monitor, tmp_path, val_is_train, model=None):
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(96, 1, 8, 8), torch.randint(0, 3, (96,)))
    other = TensorDataset(torch.randn(64, 1, 8, 8), torch.randint(0, 3, (64,)))
    trainer = L.Trainer(
        max_epochs=1, callbacks=[monitor], default_root_dir=tmp_path, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        strategy="ddp_fork", devices=1, accelerator="cpu",
    )  # fmt: skip
    val = DataLoader(data if val_is_train else other, batch_size=32)
    trainer.fit(model or Tiny(), DataLoader(data, batch_size=16), val)
    return trainer


def test_hand_back_two_trainers_sharing_a_monitor_each_get_their_own_fit(tmp_path):
    # setups hunt 49: one file per monitor: the second fit overwrote the first's, and the
    # first trainer asked got it (a k-fold loop reusing its callbacks)
    monitor = OverfittingMonitor()
    first = _fit_with(monitor, tmp_path / "a", val_is_train=True)
    second = _fit_with(monitor, tmp_path / "b", val_is_train=False)
    assert "val_is_train" not in [f.kind for f in findings_of(second)]
    assert "val_is_train" in [f.kind for f in findings_of(first)]
    assert checks_of(first) and checks_of(second) and not monitor.hand_back_to.files()


class Crashes(Tiny):
    def training_step(self, batch, batch_idx):
        if batch_idx == 3:
            raise RuntimeError("a bad batch")
        return super().training_step(batch, batch_idx)


def test_hand_back_a_fit_that_raised_hands_its_findings_back_too(tmp_path):
    import pytest

    monitor = OverfittingMonitor()
    first = _fit_with(monitor, tmp_path / "a", val_is_train=False)
    findings_of(first)  # read: its file is gone
    crashed = L.Trainer(max_epochs=1, callbacks=[monitor], default_root_dir=tmp_path / "b",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, strategy="ddp_fork", devices=1,
                        accelerator="cpu")  # fmt: skip
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(96, 1, 8, 8), torch.randint(0, 3, (96,)))
    with pytest.raises(Exception, match="a bad batch"):  # as the child raised it
        crashed.fit(Crashes(), DataLoader(data, batch_size=16), DataLoader(data, batch_size=32))
    assert "val_is_train" in [f.kind for f in findings_of(crashed)]


def test_hand_back_a_fit_that_raised_having_found_nothing_takes_no_other_fits(tmp_path, caplog):
    # setups hunt 50: it took "the newest file" at the address: the other trainer's unread
    # findings, which that trainer then lost
    import logging

    import pytest

    monitor = OverfittingMonitor()
    found = _fit_with(monitor, tmp_path / "a", val_is_train=True)  # its file left unread
    crashed = L.Trainer(max_epochs=1, callbacks=[monitor], default_root_dir=tmp_path / "b",
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, strategy="ddp_fork", devices=1,
                        accelerator="cpu", num_sanity_val_steps=0)  # fmt: skip
    other = TensorDataset(torch.randn(64, 1, 8, 8), torch.randint(0, 3, (64,)))
    data = TensorDataset(torch.randn(96, 1, 8, 8), torch.randint(0, 3, (96,)))
    with caplog.at_level(logging.INFO), pytest.raises(Exception, match="a bad batch"):
        crashed.fit(Crashes(), DataLoader(data, batch_size=16), DataLoader(other, batch_size=32))
    assert "ended with ProcessRaisedException before it handed any findings back" in caplog.text
    assert findings_of(crashed) == []
    assert "val_is_train" in [f.kind for f in findings_of(found)]


def test_hand_back_a_deep_copy_keeps_its_findings_when_the_original_goes(tmp_path):
    # setups hunt 50: a deep copy shared the original's address; the original's clean-up
    # removed the copy's unread file, and the copy's diverged fit read no findings
    import copy
    import gc

    original = OverfittingMonitor()
    twin = copy.deepcopy(original)
    assert twin.hand_back_to != original.hand_back_to
    found = _fit_with(twin, tmp_path, val_is_train=True)
    del original
    gc.collect()
    assert "val_is_train" in [f.kind for f in findings_of(found)]
