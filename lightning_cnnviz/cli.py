"""The ``cnnviz`` command: LightningCLI over the reference model and data modules.

Subclass mode, so ``--model`` and ``--data`` take class paths (your own
LightningModule works too) and the monitors are listed under
``trainer.callbacks`` in YAML. Without a config it trains the reference CNN on
the embedded synthetic digits. At the end of ``fit`` it prints where the logs
are and the TensorBoard command that shows them.

Example::

    cnnviz fit --config configs/quickstart.yaml
    cnnviz fit --config configs/mnist.yaml --trainer.max_epochs 5
    cnnviz fit --preset standard --model.lr 0.01 --print_config
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_cnnviz import presets
from lightning_cnnviz.presets import Preset

__all__ = ["CNNVizCLI", "main", "make_cli", "tensorboard_command"]

DEFAULT_MODEL = "lightning_cnnviz.reference.MNISTClassifier"
DEFAULT_DATA = "lightning_cnnviz.reference.SyntheticDigitsDataModule"


def tensorboard_command(logdir: str | os.PathLike) -> str:
    """The command that opens a run's logs in TensorBoard, with room for many images.

    Example::

        >>> tensorboard_command("runs/quickstart")
        'tensorboard --logdir runs/quickstart --samples_per_plugin images=200'
    """
    return f"tensorboard --logdir {shlex.quote(str(logdir))} --samples_per_plugin images=200"


class CNNVizCLI(LightningCLI):
    """LightningCLI with the reference model and synthetic digits as defaults."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Default to the reference CNN on synthetic digits when no class is given."""
        parser.set_defaults({"model": {"class_path": DEFAULT_MODEL}})
        parser.set_defaults({"data": {"class_path": DEFAULT_DATA}})
        parser.add_argument(
            "--preset",
            type=Preset | None,
            default=None,
            help="Add a preset set of monitors (light | standard | full) to trainer.callbacks.",
        )

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        preset = self._get(self.config_init, "preset")
        return super()._instantiate_trainer(
            config, callbacks + (presets.callbacks(preset) if preset else [])
        )

    def after_fit(self) -> None:
        """Say where the logs went and how to look at them."""
        trainer = self.trainer
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        logger = trainer.logger
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        # TensorBoard lists every run under the logger's root (e.g. runs/), so point it there
        root = Path(logger.save_dir) if logger is not None and logger.save_dir else run_dir
        print(
            f"\nlightning-cnnviz: logs of this run are in {_relative(run_dir)}\n"
            f"View them with:\n    {tensorboard_command(_relative(root))}\n",
            flush=True,
        )


def _relative(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def make_cli(args: list[str] | None = None, run: bool = True) -> CNNVizCLI:
    """Build the CLI (and, with ``run=True``, run the subcommand in ``args``)."""
    return CNNVizCLI(
        LightningModule,
        LightningDataModule,
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
    make_cli(args)


if __name__ == "__main__":  # pragma: no cover
    main()
