"""The ``cnnviz`` command: LightningCLI over the reference model and data modules.

Subclass mode, so ``--model`` and ``--data`` take class paths (your own
LightningModule works too) and the monitors are listed under
``trainer.callbacks`` in YAML. Without a config it trains the reference CNN
(``MNISTClassifier``: Adam, lr 1e-3) on the embedded synthetic digits. At the end of
``fit`` it prints where the logs are and the TensorBoard command that shows them
(``core.logs``, the same line a Python run prints).

The command, not the library, keeps the console readable: a configuration mistake
is answered in a few lines (``cnnviz: error: ...``, the Python API's own message,
exit code 2) instead of a traceback; missing MNIST files likewise (exit code 1);
Lightning's product tips and known-harmless deprecation warnings are silenced.

Example::

    cnnviz fit --config configs/quickstart.yaml
    cnnviz fit --config configs/mnist.yaml --trainer.max_epochs 5
    cnnviz fit --preset standard --model.lr 0.01 --print_config
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse import DefaultHelpFormatter, Namespace
from jsonargparse._actions import _ActionPrintConfig  # its own switch to parse without printing
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_cnnviz import presets
from lightning_cnnviz.cli_errors import config_error, listed, short, tag_twins
from lightning_cnnviz.core.logs import announce_logs, tensorboard_command
from lightning_cnnviz.core.selection import LayerNotFoundError
from lightning_cnnviz.reference.mnist import MNISTNotFoundError

__all__ = ["CNNVizCLI", "ConfigError", "main", "make_cli", "tensorboard_command"]

DEFAULT_MODEL = "lightning_cnnviz.reference.MNISTClassifier"
DEFAULT_DATA = "lightning_cnnviz.reference.SyntheticDigitsDataModule"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"

DESCRIPTION = f"""\
Train a CNN with lightning-cnnviz monitors and look at it in TensorBoard.

Start here (every monitor, synthetic digits, no download, about a minute on a CPU):
    cnnviz fit --config configs/quickstart.yaml
    tensorboard --logdir runs --samples_per_plugin images=200

Shipped configs (configs/): quickstart.yaml (every monitor), mnist.yaml (real MNIST),
dead_relu.yaml, overfit.yaml, shortcut.yaml (one planted failure each).
Presets (add a set of monitors): --preset {" | ".join(presets.PRESETS)}.
Without --model / --data: the reference CNN (MNISTClassifier, Adam lr 1e-3) on
synthetic digits. Options of a subcommand: cnnviz fit --help; of one monitor:
cnnviz fit --trainer.callbacks.help lightning_cnnviz.ActivationMonitor"""

_SCHEDULE_ARGS = ("every_n_steps", "every_n_epochs")
_AUTOMATIC = (
    "automatic schedule (docs/schedule.md) unless one of every_n_steps / every_n_epochs is set"
)
_TIPS = "💡 Tip:"  # Lightning's advertisements for other products


class ConfigError(ValueError):
    """A configuration mistake, said in one message (the Python API's own)."""


class _HelpFormatter(DefaultHelpFormatter):
    """Says what a schedule argument left at ``None`` means: the automatic schedule."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))  # as written

    def _get_help_string(self, action: Any) -> str:
        text = super()._get_help_string(action)
        if action.dest.rsplit(".", 1)[-1] in _SCHEDULE_ARGS and action.default is None:
            text = text.replace("default: %(default)s", f"default: {_AUTOMATIC}")
        return text


class _Parser(LightningArgumentParser):
    """Parse errors in a few lines: the message and where to find help, no usage dump."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)  # also for a monitor's --help
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        _exit(short(message), 2)


class CNNVizCLI(LightningCLI):
    """LightningCLI with the reference model and synthetic digits as defaults."""

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """Our parser class, help formatter and, on the main parser, the description."""
        kwargs.setdefault("description", DESCRIPTION)
        kwargs.setdefault("prog", "cnnviz")
        kwargs.setdefault("dump_header", None)
        return super().init_parser(**kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Default to the reference CNN on synthetic digits when no class is given."""
        parser.set_defaults({"model": {"class_path": DEFAULT_MODEL}})
        parser.set_defaults({"data": {"class_path": DEFAULT_DATA}})
        parser.add_argument(
            "--preset",
            type=str | None,
            default=None,
            help=f"Add a set of monitors ({' | '.join(presets.PRESETS)}) to trainer.callbacks.",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse; a model or data class of the user's own is parsed again with its defaults.

        jsonargparse carries the default class's values over to a class given in its place
        wherever a parameter's name matches: ``--model mymod.Net`` ran at the reference's
        ``lr`` and ``batch_size`` instead of Net's own (setups hunt 23).
        """
        with _ActionPrintConfig.skip_print_config():
            super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        own = {
            key: config[key]["class_path"]
            for key, default in (("model", DEFAULT_MODEL), ("data", DEFAULT_DATA))
            if isinstance(config.get(key), Namespace) and config[key].get("class_path") != default
        }
        if not own:
            _ActionPrintConfig.print_config_if_requested(parser, self.config)
            return
        target = self._subcommand_parsers[subcommand] if subcommand else parser
        target.set_defaults({key: {"class_path": path} for key, path in own.items()})
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        """Check the preset with the Python API's own check before building anything."""
        preset = self._get(self.config, "preset")
        if preset is not None and preset not in presets.PRESETS:
            _exit(f"`preset` must be one of {presets.PRESETS}, got {preset!r}", 2)

    def instantiate_classes(self) -> None:
        """Build the classes; a bad value is answered with the constructor's own message."""
        try:
            super().instantiate_classes()
        except Exception as err:  # jsonargparse wraps the constructor's error twice
            _exit(config_error(err, self._get(self.config, "trainer")), 2)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        preset = self._get(self.config_init, "preset")
        added = presets.callbacks(preset) if preset else []
        if twins := tag_twins(listed(config.get("callbacks")), added, preset):
            _exit(twins, 2)  # before Lightning's own check and the monitors' (a traceback)
        return super()._instantiate_trainer(config, callbacks + added)

    def after_fit(self) -> None:
        """Say where the logs went and how to look at them (once, also without monitors)."""
        announce_logs(self.trainer)


def _exit(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"cnnviz: error: {message}\n(cnnviz --help lists the configs and presets)\n")
    raise SystemExit(code)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_TIPS)


def quiet_console() -> None:
    """Silence Lightning's product tips and known-harmless deprecation warnings (CLI only)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch"):
        logging.getLogger(name).addFilter(_DropTips())
    # Lightning 2.6 calls torch's deprecated LeafSpec; harmless, fixed upstream
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def make_cli(args: list[str] | None = None, run: bool = True) -> CNNVizCLI:
    """Build the CLI (and, with ``run=True``, run the subcommand in ``args``)."""
    return CNNVizCLI(
        LightningModule,
        LightningDataModule,
        parser_class=_Parser,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``cnnviz`` console script."""
    quiet_console()
    try:
        make_cli(args)
    except (MNISTNotFoundError, LayerNotFoundError) as err:  # clear already; no traceback
        _exit(str(err), 1 if isinstance(err, MNISTNotFoundError) else 2)


if __name__ == "__main__":  # pragma: no cover
    main()
