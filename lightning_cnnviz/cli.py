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

import difflib
import logging
import re
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lightning_cnnviz import presets
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
        _exit(_short(message), 2)


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
            _exit(_config_error(err, self._get(self.config, "trainer")), 2)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        preset = self._get(self.config_init, "preset")
        added = presets.callbacks(preset) if preset else []
        if twins := _tag_twins(list(config.get("callbacks") or []), added, preset):
            _exit(twins, 2)  # before Lightning's own check and the monitors' (a traceback)
        return super()._instantiate_trainer(config, callbacks + added)

    def after_fit(self) -> None:
        """Say where the logs went and how to look at them (once, also without monitors)."""
        announce_logs(self.trainer)


def _root_cause(err: BaseException) -> BaseException:
    while (inner := err.__cause__ or err.__context__) is not None:
        err = inner
    return err


def _config_error(err: BaseException, trainer_config: Any) -> str:
    """``trainer.callbacks[i] (Name): message`` for a monitor's bad value, else the message."""
    cause = _root_cause(err)
    message = str(cause).strip() or type(cause).__name__
    for i, spec in enumerate(_get(trainer_config, "callbacks") or []):
        class_path, init_args = _get(spec, "class_path"), _get(spec, "init_args")
        if not class_path:
            continue
        try:
            module, name = class_path.rsplit(".", 1)
            cls = getattr(__import__(module, fromlist=[name]), name)
            kwargs = init_args.as_dict() if hasattr(init_args, "as_dict") else dict(init_args or {})
            cls(**kwargs)
        except Exception as bad:
            return f"trainer.callbacks[{i}] ({name}): {str(_root_cause(bad)).strip()}"
    return message


def _tag_twins(listed: list[Any], added: list[Callback], preset: str | None) -> str:
    """The fix, in YAML terms, where two monitors of one type would write the same tags.

    Example::

        >>> from lightning_cnnviz import ActivationMonitor
        >>> listed, added = [ActivationMonitor(every_n_steps=5)], [ActivationMonitor()]
        >>> print(_tag_twins(listed, added, "light"))  # doctest: +NORMALIZE_WHITESPACE
        trainer.callbacks[0] (ActivationMonitor) writes under the same TensorBoard tags as
        the preset `light`'s ActivationMonitor: give it `init_args: {tag_prefix: dense/}`
        or leave --preset out
    """
    from lightning_cnnviz.core.monitor import Monitor

    seen: dict[tuple[type, str], str] = {}
    for i, cb in enumerate(listed + added):
        if not isinstance(cb, Monitor):
            continue
        name = type(cb).__name__
        where = f"trainer.callbacks[{i}] ({name})"
        if i >= len(listed):
            where = f"the preset `{preset}`'s {name}"
        key = (type(cb), cb.tag_prefix)
        if key not in seen:
            seen[key] = where
            continue
        if i < len(listed):
            return (
                f"{where} writes under the same TensorBoard tags as {seen[key]}: give one "
                "`init_args: {tag_prefix: dense/}` or list it once"
            )
        return (
            f"{seen[key]} writes under the same TensorBoard tags as {where}: give it "
            "`init_args: {tag_prefix: dense/}` or leave --preset out"
        )
    return ""


def _get(config: Any, key: str) -> Any:
    if config is None:
        return None
    return config.get(key) if hasattr(config, "get") else getattr(config, key, None)


def _short(message: str) -> str:
    """A jsonargparse parse error in one line, without its typing jargon.

    Example::

        >>> _short('Parser key "config": File does not exist: x.yaml')
        '`config`: File does not exist: x.yaml'
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    key = ".".join(re.findall(r'Parser key "([^"]+)"', message))
    if m := re.search(r"Expected a typing\.Literal\[(.*?)\]\.? Got value: (.*)", message):
        return f"`{key}` must be one of ({m[1]}), got {m[2].strip()!r}"
    if typed := _wrong_type(message):
        return f"`{key}` {typed}"
    if "Union subtypes" in message:
        at = [i for i, ln in enumerate(lines) if ln.startswith("- ") and "NoneType" not in ln]
        given = next((ln.split(":", 1)[1].strip() for ln in lines if "Given value:" in ln), "?")
        if not at:
            return f"`{key}`: invalid value, got {given}"
        reason = lines[at[0]][2:]
        after = lines[at[0] + 1] if at[0] + 1 < len(lines) else ""
        if reason.endswith(":") and after and not after.startswith("- "):
            reason += f" {after}{_closest(after)}"  # the cause, on jsonargparse's next line
        return f"`{key}`: {reason}, got {given}"
    return re.sub(r'^Parser key "([^"]+)":\s*', r"`\1`: ", " ".join(lines))


def _wrong_type(message: str) -> str:
    r"""``"of Class: expected int or None, got 2.5"`` for a wrongly typed monitor argument.

    jsonargparse nests the reason under the class it tried (``Problem with given
    class_path``); the types it expected and the value it got are read from that block
    alone ("" where the block says something else: a misspelt argument, a failed check).

    Example::

        >>> _wrong_type("- Problem with given class_path 'pkg.KernelMonitor':\n"
        ...             '    Parser key "budget":\n'
        ...             "      Expected a <class 'float'>. Got value: abc\n"
        ...             "- Expected a <class 'NoneType'>")
        "of KernelMonitor: expected float, got 'abc'"
    """
    lines = message.splitlines()
    at = next((i for i, ln in enumerate(lines) if "Problem with given class_path" in ln), None)
    if at is None:
        return ""
    indent = len(lines[at]) - len(lines[at].lstrip())
    block: list[str] = []
    for line in lines[at + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        block.append(line.strip())
    types = re.findall(r"Expected a <class '(\w+)'>", " ".join(block))
    got = [re.split(r"Got value: |Given value: ", ln, maxsplit=1)[1] for ln in block
           if "Got value: " in ln or "Given value: " in ln]  # fmt: skip
    if not types or not got:
        return ""
    cls = re.search(r"class_path '([^']+)'", lines[at])[1].rsplit(".", 1)[-1]  # type: ignore[index]
    literal = r"[-+.\deE]+|\[.*\]|\{.*\}|True|False|None"
    given = got[0] if re.fullmatch(literal, got[0]) else repr(got[0])
    expected = " or ".join("None" if t == "NoneType" else t for t in dict.fromkeys(types))
    return f"of {cls}: expected {expected}, got {given}"


def _closest(cause: str) -> str:
    """``" (did you mean ...?)"`` for a misspelt class of the package or argument of a monitor.

    Example::

        >>> _closest("module 'lightning_cnnviz' has no attribute 'FeatureMapMonitr'")
        ' (did you mean `FeatureMapMonitor`?)'
        >>> _closest("Option 'num_sample' is not accepted")
        ' (did you mean `num_samples`?)'
    """
    import lightning_cnnviz
    from lightning_cnnviz.presets import argument_names

    if m := re.search(r"module 'lightning_cnnviz' has no attribute '(\w+)'", cause):
        names = lightning_cnnviz.__all__
    elif m := re.search(r"Option '(\w+)' is not accepted", cause):
        names = argument_names()
    else:
        return ""
    close = difflib.get_close_matches(m[1], sorted(names), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


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
