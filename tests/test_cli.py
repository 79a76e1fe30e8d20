from pathlib import Path

import pytest
import yaml

from lightning_cnnviz.cli import main, make_cli, tensorboard_command
from lightning_cnnviz.presets import callbacks
from lightning_cnnviz.reference import MNISTClassifier

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_cli_configs_exist():
    names = {path.name for path in CONFIGS}
    assert {"quickstart.yaml", "mnist.yaml"} <= names


def _print_config(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_cli_config_print_config_round_trip(config, tmp_path, capsys):
    printed = _print_config(config, capsys)
    (tmp_path / "printed.yaml").write_text(printed)
    assert _print_config(tmp_path / "printed.yaml", capsys) == printed  # a fixed point
    original, again = yaml.safe_load(config.read_text()), yaml.safe_load(printed)
    assert again["model"]["class_path"] == original["model"]["class_path"]
    assert again["data"]["class_path"] == original["data"]["class_path"]
    listed = [c["class_path"] for c in original["trainer"].get("callbacks", [])]
    assert [c["class_path"] for c in again["trainer"].get("callbacks") or []] == listed


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_cli_config_instantiates(config):
    original = yaml.safe_load(config.read_text())
    cli = make_cli(["--config", str(config), "--trainer.logger", "false"], run=False)
    assert type(cli.model).__name__ == original["model"]["class_path"].rsplit(".", 1)[1]
    assert type(cli.datamodule).__name__ == original["data"]["class_path"].rsplit(".", 1)[1]
    ours = [
        type(c) for c in cli.trainer.callbacks if type(c).__module__.startswith("lightning_cnnviz")
    ]
    listed = [c["class_path"].rsplit(".", 1)[1] for c in original["trainer"].get("callbacks", [])]
    if original.get("preset"):
        listed += [type(m).__name__ for m in callbacks(original["preset"])]
    assert sorted(cls.__name__ for cls in ours) == sorted(listed)


def test_cli_defaults_to_reference_model_and_synthetic_digits():
    cli = make_cli(["--trainer.logger", "false"], run=False)
    assert isinstance(cli.model, MNISTClassifier)
    assert type(cli.datamodule).__name__ == "SyntheticDigitsDataModule"


def test_cli_fit_prints_tensorboard_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(
        [
            "fit",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=3",
            "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false",
            "--trainer.logger=TensorBoardLogger",
            "--trainer.logger.save_dir=runs",
            "--data.train_size=200",
            "--data.val_size=100",
        ]
    )
    out = capsys.readouterr()
    text = out.out + out.err
    assert tensorboard_command(Path("runs")) in text
    assert list((tmp_path / "runs").rglob("events.out.tfevents.*"))


def test_cli_preset_adds_its_monitors():
    cli = make_cli(["--trainer.logger", "false", "--preset", "light"], run=False)
    names = [type(c).__name__ for c in cli.trainer.callbacks]
    assert {"ActivationMonitor", "KernelMonitor", "OverfittingMonitor"} <= set(names)
    assert "GradCAMMonitor" not in names
