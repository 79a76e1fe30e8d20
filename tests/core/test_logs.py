from pathlib import Path

import pytest
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
    _fit(tmp_path, fast_dev_run=True, default_root_dir=tmp_path)
    assert "tensorboard --logdir" not in capsys.readouterr().out


def test_logs_without_tensorboard_say_where_the_images_are(tmp_path, capsys):
    from lightning.pytorch.loggers import CSVLogger

    trainer = _fit(tmp_path, logger=CSVLogger(tmp_path / "runs", name="csv"))
    out = capsys.readouterr().out
    folder = tmp_path / "runs" / "csv" / "version_0" / "cnnviz"
    assert "tensorboard --logdir" not in out  # it would open nothing of the monitors'
    assert f"Images and text: PNG and Markdown files in {folder}" in out
    assert logs_message(trainer) in out
    assert sorted(p.name for p in (folder / "kernels").iterdir()) == ["conv1", "conv2"]


def test_logs_without_a_logger_name_the_monitors_folder(tmp_path, capsys):
    _fit(tmp_path, logger=False, default_root_dir=tmp_path)
    out = capsys.readouterr().out
    assert (
        "this run has no logger (its scalars were not kept); its images and text are "
        f"PNG and Markdown files in {tmp_path / 'cnnviz'}" in out
    )
    assert any((tmp_path / "cnnviz" / "kernels").rglob("*.png"))


def test_logs_with_a_csv_logger_listed_first_name_the_tensorboard_folder(tmp_path, capsys):
    # held out: logger=[CSVLogger, TensorBoardLogger] named the CSV folder (metrics.csv only)
    from lightning.pytorch.loggers import CSVLogger

    csv = CSVLogger(tmp_path / "csv", name="c")
    board = TensorBoardLogger(tmp_path / "runs", name="tb")
    _fit(tmp_path, logger=[csv, board])
    out = capsys.readouterr().out
    assert f"logs of this run are in {tmp_path / 'runs' / 'tb' / 'version_0'}" in out
    assert out.rstrip().endswith(tensorboard_command(tmp_path / "runs"))
    assert any((tmp_path / "runs" / "tb" / "version_0").glob("events.out.tfevents.*"))


def test_logs_a_tuner_trial_fit_says_nothing_the_fit_after_it_says_where(tmp_path, capsys):
    # held out: Tuner.lr_find's own fit (a DummyLogger) printed the line, and the real fit
    # on the same trainer then said nothing
    from lightning.pytorch.tuner import Tuner

    torch.manual_seed(0)
    trainer = Trainer(
        max_epochs=1, limit_train_batches=4, limit_val_batches=1, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path,
        logger=TensorBoardLogger(tmp_path / "runs", name="tb"),
        callbacks=[ActivationMonitor(every_n_steps=1)],
    )  # fmt: skip
    model, data = MNISTClassifier(), SyntheticDigitsDataModule(train_size=256, val_size=64)
    Tuner(trainer).lr_find(model, datamodule=data, num_training=5)
    assert "logs of this run are in" not in capsys.readouterr().out
    trainer.fit(model, datamodule=data)
    assert capsys.readouterr().out.count("logs of this run are in") == 1


def test_logs_without_a_logger_say_the_folder_once_without_naming_other_loggers(tmp_path, caplog):
    # setups hunt 78: `logger=False` was said at the start, then again as "no TensorBoard
    # logger in this run (nor W&B or MLflow)"
    import logging

    with caplog.at_level(logging.INFO):
        _fit(tmp_path, logger=False, default_root_dir=tmp_path)
    said = [r.getMessage() for r in caplog.records if "lightning-cnnviz" in r.getMessage()]
    assert f"lightning-cnnviz: images and text go to {tmp_path / 'cnnviz'}" in said
    assert not any("no TensorBoard logger" in message for message in said)


def test_logs_a_reused_wandb_run_names_the_folder_it_writes_to(tmp_path, capsys):
    # setups hunt 78: a second WandbLogger in one process without wandb.finish() reuses the
    # first one's run; the summary named the second's save_dir, which stays empty
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    first = WandbLogger(save_dir=str(tmp_path / "first"), offline=True, project="cnnviz")
    try:
        _fit(tmp_path, logger=first)
        capsys.readouterr()
        second = WandbLogger(save_dir=str(tmp_path / "second"), offline=True, project="cnnviz")
        trainer = _fit(tmp_path, logger=second)
        run = Path(second.experiment.dir).parent
        assert run.parent.parent == tmp_path / "first"  # the reused run
        assert f"logs of this run are in {run}" in capsys.readouterr().out
        assert logs_message(trainer).startswith(f"lightning-cnnviz: logs of this run are in {run}")
    finally:
        first.experiment.finish()


def test_logs_a_disabled_wandb_run_keeps_the_images_in_a_folder_and_names_it(tmp_path, capsys):
    # setups hunt 79: `WandbLogger(mode="disabled")` dropped every image unsaid, and the
    # summary named a placeholder run's folder, never made
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(tmp_path / "w"), mode="disabled", project="cnnviz")
    try:
        trainer = _fit(tmp_path, logger=logger)
    finally:
        logger.experiment.finish()  # else the next WandbLogger reuses the disabled run
    out = capsys.readouterr().out
    folder = Path(logs_message(trainer).split("PNG and Markdown files in ")[1].strip())
    assert folder.is_dir() and any((folder / "kernels").rglob("*.png"))
    assert "the W&B run (its media panels)" not in out and str(folder) in out
