from pathlib import Path

import pytest
import yaml
from lightning.pytorch.loggers import CSVLogger

from lightning_cnnviz.cli import main, make_cli, tensorboard_command
from lightning_cnnviz.presets import callbacks
from lightning_cnnviz.reference import MNISTClassifier, SyntheticDigitsDataModule

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


class OwnNet(MNISTClassifier):
    """A user's model whose parameters share names with the reference's, other defaults."""

    def __init__(self, lr: float = 5e-3, momentum: float = 0.5) -> None:
        super().__init__(lr=lr, momentum=momentum)


class OwnData(SyntheticDigitsDataModule):
    def __init__(self, batch_size: int = 32, train_size: int = 300) -> None:
        super().__init__(batch_size=batch_size, train_size=train_size)


@pytest.mark.parametrize("subcommand", [False, True])
def test_cli_own_classes_keep_their_own_defaults(subcommand, capsys):
    # setups hunt 23: `--model mymod.Net` ran at the reference's lr and batch size
    args = ["--model", f"{__name__}.OwnNet", "--data", f"{__name__}.OwnData"]
    args += ["--model.momentum", "0.7"]  # what is given still wins
    if subcommand:
        with pytest.raises(SystemExit):
            main(["fit", *args, "--print_config"])
        printed = yaml.safe_load(capsys.readouterr().out)
        model, data = printed["model"]["init_args"], printed["data"]["init_args"]
        assert (model["lr"], model["momentum"]) == (5e-3, 0.7)
        assert (data["batch_size"], data["train_size"]) == (32, 300)
        return
    cli = make_cli([*args, "--trainer.logger", "false"], run=False)
    assert (cli.model.hparams.lr, cli.model.hparams.momentum) == (5e-3, 0.7)
    assert (cli.datamodule.batch_size, cli.datamodule.train_size) == (32, 300)


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


# ------------------------------------------------------------- mistakes, help, a quiet console
def _error_of(args, capsys):
    """``cnnviz`` on ``args``: (exit code, what it wrote to stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    return exit_info.value.code, capsys.readouterr().err


def test_cli_bad_monitor_value_answered_in_the_python_api_words(tmp_path, capsys):
    from lightning_cnnviz import ActivationMonitor

    with pytest.raises(ValueError) as python_api:
        ActivationMonitor(every_n_steps=-5)
    config = tmp_path / "bad.yaml"
    config.write_text(
        "trainer:\n  max_epochs: 1\n  callbacks:\n"
        "    - class_path: lightning_cnnviz.ActivationMonitor\n"
        "      init_args:\n        every_n_steps: -5\n"
    )
    code, err = _error_of(["fit", "--config", str(config), "--trainer.logger=false"], capsys)
    assert code == 2
    assert err.splitlines()[0] == (
        f"cnnviz: error: trainer.callbacks[0] (ActivationMonitor): {python_api.value}"
    )
    assert len(err.splitlines()) <= 3 and "Traceback" not in err


class PickyLogger(CSVLogger):
    """A logger whose constructor rejects a combination of valid values."""

    def __init__(self, save_dir: str, offline: bool = False, upload: bool = False) -> None:
        if offline and upload:
            raise ValueError("upload=True cannot work offline")
        super().__init__(save_dir)


def test_cli_bad_logger_in_a_list_answered_in_its_own_words(tmp_path, capsys):
    # setups hunt 26: in a list of loggers jsonargparse said only "Not a valid subclass of
    # Logger" (WandbLogger(offline=True, log_model=True) next to a CSVLogger)
    config = tmp_path / "loggers.yaml"
    config.write_text(
        "trainer:\n  max_epochs: 1\n  logger:\n"
        "    - {class_path: lightning.pytorch.loggers.CSVLogger, "
        f"init_args: {{save_dir: {tmp_path}}}}}\n"
        f"    - {{class_path: tests.test_cli.PickyLogger, init_args: {{save_dir: {tmp_path}, "
        "offline: true, upload: true}}\n"
    )
    code, err = _error_of(["fit", "--config", str(config)], capsys)
    assert code == 2
    assert err.splitlines()[0] == (
        "cnnviz: error: trainer.logger[1] (PickyLogger): upload=True cannot work offline"
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["fit", "--config", "no_such.yaml"], "`config`: File does not exist"),
        (["fit", "--preset", "bogus"],
         "`preset` must be one of ('light', 'standard', 'full'), got 'bogus'"),
        (["fit", "--model.optimizer", "adamw"],
         "`model.optimizer` must be one of ('adam', 'sgd'), got 'adamw'"),
        (["fit", "--model.lr", "-1"], "`lr` must be a positive number, got -1.0"),
    ],
)  # fmt: skip
def test_cli_mistakes_answered_in_a_few_lines(args, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _error_of([*args, "--trainer.logger=false"], capsys)
    assert code == 2 and says in err.splitlines()[0]
    assert len(err.splitlines()) <= 3 and "usage:" not in err and "Traceback" not in err


def test_cli_preset_message_is_the_python_api_message(capsys):
    with pytest.raises(ValueError) as python_api:
        callbacks("bogus")
    _, err = _error_of(["fit", "--preset", "bogus"], capsys)
    assert str(python_api.value) in err


@pytest.mark.parametrize(
    ("callback", "cause"),
    [
        ("{class_path: lightning_cnnviz.FeatureMapMonitr}",
         "has no attribute 'FeatureMapMonitr' (did you mean `FeatureMapMonitor`?)"),
        ("{class_path: lightning_cnnviz.GradCAMMonitor, init_args: {num_sample: 4}}",
         "Option 'num_sample' is not accepted (did you mean `num_samples`?)"),
        # setups hunt 19: a wrong type kept "Parser key ...:, got 2.5" without the reason
        ("{class_path: lightning_cnnviz.KernelMonitor, init_args: {every_n_steps: 2.5}}",
         "`trainer.callbacks.every_n_steps` of KernelMonitor: expected int or None, got 2.5"),
        ("{class_path: lightning_cnnviz.KernelMonitor, init_args: {budget: abc}}",
         "`trainer.callbacks.budget` of KernelMonitor: expected float, got 'abc'"),
        ("{class_path: lightning_cnnviz.GradCAMMonitor, init_args: {output_key: true}}",
         "`trainer.callbacks.output_key` of GradCAMMonitor: expected str or int or None, "
         "got True"),
    ],
)  # fmt: skip
def test_cli_misspelt_class_or_argument_says_the_cause_and_the_closest(
    callback, cause, tmp_path, capsys
):
    # setups hunt 18: the one-line error kept "Problem with given class_path ...:" only
    config = tmp_path / "typo.yaml"
    config.write_text(f"trainer:\n  logger: false\n  callbacks:\n    - {callback}\n")
    code, err = _error_of(["fit", "--config", str(config)], capsys)
    assert code == 2 and "Traceback" not in err and cause in err.splitlines()[0]


@pytest.mark.parametrize(
    ("monitor", "preset", "says"),
    [
        ("{class_path: lightning_cnnviz.ActivationMonitor, init_args: {every_n_steps: 5}}",
         "standard",
         "trainer.callbacks[0] (ActivationMonitor) writes under the same TensorBoard tags as "
         "the preset `standard`'s ActivationMonitor: give it `init_args: {tag_prefix: dense/}` "
         "or leave --preset out"),
        ("{class_path: lightning_cnnviz.KernelMonitor}\n    - {class_path: "
         "lightning_cnnviz.KernelMonitor, init_args: {every_n_steps: 3}}",
         None,
         "trainer.callbacks[1] (KernelMonitor) writes under the same TensorBoard tags as "
         "trainer.callbacks[0] (KernelMonitor): give one `init_args: {tag_prefix: dense/}` or "
         "list it once"),
    ],
)  # fmt: skip
def test_cli_same_monitor_twice_says_the_yaml_fix(monitor, preset, says, tmp_path, capsys):
    # setups hunt 18: a preset on top of a listed monitor ended in the monitor's traceback
    config = tmp_path / "twice.yaml"
    config.write_text(f"trainer:\n  logger: false\n  callbacks:\n    - {monitor}\n")
    args = ["fit", "--config", str(config)] + (["--preset", preset] if preset else [])
    code, err = _error_of(args, capsys)
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[0] == f"cnnviz: error: {says}"


def test_cli_wrong_layer_names_the_monitor_and_the_closest(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--trainer.callbacks+=lightning_cnnviz.ActivationMonitor",
            "--trainer.callbacks.layers=[relu4]", "--trainer.logger=false",
            "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false"]  # fmt: skip
    code, err = _error_of(args, capsys)
    first = err.splitlines()[0]
    assert code == 2 and "Traceback" not in err
    assert first.startswith("cnnviz: error: ActivationMonitor: `layers` pattern 'relu4'")
    assert "did you mean 'relu3' or 'relu2' or 'relu1'?" in first


def test_cli_help_names_configs_presets_and_quickstart(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "cnnviz fit --config configs/quickstart.yaml" in out
    for path in CONFIGS:
        assert path.name in out
    assert "--preset light | standard | full" in out


def test_cli_monitor_help_shows_the_automatic_schedule(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--trainer.callbacks.help", "lightning_cnnviz.GradCAMMonitor"])
    out = " ".join(capsys.readouterr().out.split())
    assert "default: automatic schedule (docs/schedule.md)" in out
    assert "every_n_steps EVERY_N_STEPS log every this many optimizer steps" in out
    assert "default: null" not in out.split("every_n_steps EVERY_N_STEPS", 2)[2][:300]


def test_cli_quiets_lightning_tips_and_leafspec_but_the_library_does_not(caplog):
    import logging
    import warnings

    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    from lightning_cnnviz.cli import quiet_console

    tip = "💡 Tip: For seamless cloud logging, try installing [litlogger]"
    leafspec = (
        "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)`"
    )
    names = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch")
    loggers = [logging.getLogger(name) for name in names]
    kept = [list(lg.filters) for lg in loggers]
    for lg in loggers:  # as in a fresh process: earlier tests ran `main` in this one
        lg.filters[:] = [f for f in lg.filters if type(f).__name__ != "_DropTips"]
    with caplog.at_level(logging.INFO):
        rank_zero_info(tip)  # a user's own script: untouched
    assert tip in caplog.text
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_console()
            caplog.clear()
            with caplog.at_level(logging.INFO):
                rank_zero_info(tip)
                rank_zero_info("GPU available: False")
            warnings.warn(leafspec, FutureWarning, stacklevel=1)
            warnings.warn("something else", UserWarning, stacklevel=1)
        assert tip not in caplog.text and "GPU available" in caplog.text
        assert [str(w.message) for w in caught] == ["something else"]
    finally:
        for lg, filters in zip(loggers, kept, strict=True):
            lg.filters[:] = filters


def test_cli_mnist_offline_one_message_no_folders_left(tmp_path, capsys, monkeypatch):
    from torchvision import datasets

    def offline(root, train, download):  # what torchvision does without a network
        (tmp_path / root / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "MNIST", offline)
    config = Path(__file__).parents[1] / "configs" / "mnist.yaml"
    code, err = _error_of(["fit", "--config", str(config), "--trainer.logger=false"], capsys)
    assert code == 1 and err.startswith("cnnviz: error: MNIST files not found")
    assert "--data SyntheticDigitsDataModule" in err and "Traceback" not in err
    assert not (tmp_path / "data").exists()


def test_cli_one_callback_given_alone_as_lightning_takes_it(tmp_path, capsys):
    # setups hunt 21: `trainer.callbacks:` as one mapping (not a list) ended in two tracebacks
    config = tmp_path / "one.yaml"
    config.write_text(
        "trainer:\n  logger: false\n  callbacks:\n"
        "    class_path: lightning_cnnviz.GradCAMMonitor\n    init_args: {every_n_steps: 2}\n"
    )
    cli = make_cli(["--config", str(config), "--preset", "light"], run=False)
    names = [type(c).__name__ for c in cli.trainer.callbacks]
    assert {"GradCAMMonitor", "KernelMonitor", "OverfittingMonitor"} <= set(names)
    (cam,) = [c for c in cli.trainer.callbacks if type(c).__name__ == "GradCAMMonitor"]
    assert cam.every_n_steps == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("every_n_steps: 2", "every_n_steps: -5"))
    code, err = _error_of(["fit", "--config", str(bad)], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[0].startswith("cnnviz: error: trainer.callbacks[0] (GradCAMMonitor): ")


def test_cli_empty_config_and_a_short_class_path_say_what_to_write(tmp_path, capsys):
    # setups hunt 21: "Unexpected config:" with nothing after it; jsonargparse's "Expected a
    # dot import path string" with no hint of the package's path
    empty, short_name = tmp_path / "empty.yaml", tmp_path / "short.yaml"
    empty.write_text("")
    short_name.write_text("trainer:\n  callbacks:\n    - class_path: GradCAMMonitor\n")
    for config, says in (
        (empty, "the config file is empty, or holds no mapping"),
        (short_name, "write `class_path: lightning_cnnviz.GradCAMMonitor`"),
    ):
        code, err = _error_of(["fit", "--config", str(config), "--trainer.logger=false"], capsys)
        assert code == 2 and says in err.splitlines()[0] and "Traceback" not in err
