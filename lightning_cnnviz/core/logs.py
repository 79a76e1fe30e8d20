"""Where a run's logs are, said once at the end of ``fit``: the one place that prints it.

Both the monitors (the Python API) and the ``cnnviz`` command call ``announce_logs``;
it prints once per trainer, on rank zero, and not for ``fast_dev_run`` (no logs).

Example::

    >>> tensorboard_command("runs/quickstart")
    'tensorboard --logdir runs/quickstart --samples_per_plugin images=200'
"""

from __future__ import annotations

import contextlib
import os
import shlex
import weakref
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer

from lightning_cnnviz.core.destinations import shown_path
from lightning_cnnviz.core.namespaces import is_logger
from lightning_cnnviz.core.sinks import Sink, wandb_disabled

__all__ = ["announce_logs", "event_folder", "logs_message", "tensorboard_command"]

_ANNOUNCED: weakref.WeakSet[Trainer] = weakref.WeakSet()


def tensorboard_command(logdir: str | os.PathLike) -> str:
    """The command that opens a run's logs in TensorBoard, with room for many images."""
    return f"tensorboard --logdir {shlex.quote(str(logdir))} --samples_per_plugin images=200"


def event_folder(root: str | os.PathLike) -> Path:
    """The folder of a run's own TensorBoard event files, found under ``root``.

    The shallowest folder holding one (the last in name order if several): the
    ``train`` / ``val`` runs that OverfittingMonitor writes below it hold its twins.

    Example::

        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for folder in ("version_0", "version_0/train"):
        ...     (root / folder).mkdir(parents=True)
        ...     (root / folder / "events.out.tfevents.1.host").touch()
        >>> event_folder(root).name
        'version_0'
    """
    files = sorted(Path(root).rglob("events.out.tfevents.*"))
    if not files:
        raise FileNotFoundError(f"no TensorBoard event file under {root}")
    top = min(len(f.parts) for f in files)
    return [f for f in files if len(f.parts) == top][-1].parent


def logs_message(trainer: Trainer) -> str | None:
    """Where ``trainer``'s logs are and how to view them; ``None`` when it writes none.

    TensorBoard's command when a TensorBoard logger took the monitors' images; else
    where they went instead (W&B, MLflow, or a folder of PNG and Markdown files, also
    with ``logger=False``).
    """
    if trainer.fast_dev_run:
        return None
    sink = Sink.attached(trainer)
    elsewhere = sink.viewers() if sink is not None else []
    # the TensorBoard logger where there are several (CSV first holds no images)
    loggers = list(getattr(trainer, "loggers", None) or [])
    boards = [
        lg for lg in loggers if any(c.__name__ == "TensorBoardLogger" for c in type(lg).__mro__)
    ]
    logger = boards[0] if boards else trainer.logger
    if logger is None:
        if not elsewhere:
            return None
        return (
            f"lightning-cnnviz: this run has no logger (its scalars were not kept); its "
            f"images and text are {'; '.join(elsewhere)}"
        )
    # not trainer.log_dir: it broadcasts, and only rank zero comes here
    run_dir = Path(
        _wandb_dir(logger)
        or getattr(logger, "log_dir", None)
        or logger.save_dir
        or trainer.default_root_dir
    )
    said = f"lightning-cnnviz: logs of this run are in {shown_path(run_dir)}"
    if elsewhere:  # no TensorBoard logger: its command would open nothing of ours
        return f"{said}\nImages and text: {'; '.join(elsewhere)}"
    # TensorBoard lists every run under the logger's root (e.g. runs/), so point it there
    root = Path(logger.save_dir) if logger.save_dir else run_dir
    if shown_path(root) == Path(".") and getattr(logger, "root_dir", None):
        root = Path(logger.root_dir)  # Lightning's default: ./lightning_logs, not all of .
    return f"{said}\nView them with:\n    {tensorboard_command(shown_path(root))}"


def _wandb_dir(logger: Any) -> str | None:
    """The folder a W&B logger's run writes to (``None`` for other loggers).

    Not its ``save_dir``: a second ``WandbLogger`` in one process without
    ``wandb.finish()`` reuses the first one's run and writes there (setups hunt 78: the
    summary named the second's empty folder).
    """
    if not is_logger(logger, "WandbLogger") or wandb_disabled(logger):
        return None  # (a disabled run's folder is a placeholder, never made)
    with contextlib.suppress(Exception):  # a run that failed to start, an offline stub
        return str(Path(logger.experiment.dir).parent)
    return None


def announce_logs(trainer: Trainer) -> None:
    """Print ``logs_message`` once per trainer, on rank zero."""
    if trainer in _ANNOUNCED or not trainer.is_global_zero:
        return
    if any(getattr(cb, "_early_exit", False) for cb in trainer.callbacks):
        return  # a Tuner's trial fit (`lr_find`, `scale_batch_size`): the fit after it is the run
    _ANNOUNCED.add(trainer)
    if (message := logs_message(trainer)) is not None:
        print(f"\n{message}\n", flush=True)
