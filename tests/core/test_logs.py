import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_cnnviz import ActivationMonitor, KernelMonitor
from lightning_cnnviz.core.logs import logs_message, tensorboard_command
from lightning_cnnviz.reference import MNISTClassifier, SyntheticDigitsDataModule


def _fit(tmp_path, **trainer_args):
    torch.manual_seed(0)
    trainer = Trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=1, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
        callbacks=[ActivationMonitor(every_n_steps=1), KernelMonitor(every_n_steps=1)],
        **trainer_args,
    )  # fmt: skip
    trainer.fit(MNISTClassifier(), SyntheticDigitsDataModule(train_size=128, val_size=64))
    return trainer


def test_logs_python_run_says_where_once_after_every_monitor(tmp_path, capsys):
    trainer = _fit(tmp_path, logger=TensorBoardLogger(tmp_path / "runs", name="mine"))
    out = capsys.readouterr().out
    assert out.count(tensorboard_command(tmp_path / "runs")) == 1  # two monitors, one line
    assert f"logs of this run are in {tmp_path / 'runs' / 'mine' / 'version_0'}" in out
    assert out.rstrip().endswith(tensorboard_command(tmp_path / "runs"))  # the last word
    assert logs_message(trainer) in out


def test_logs_nothing_said_without_logs(tmp_path, capsys):
    _fit(tmp_path, logger=False, default_root_dir=tmp_path)
    _fit(tmp_path, fast_dev_run=True, default_root_dir=tmp_path)
    assert "tensorboard --logdir" not in capsys.readouterr().out
