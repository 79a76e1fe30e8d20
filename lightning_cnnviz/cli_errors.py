"""A ``cnnviz`` configuration mistake in one line: what jsonargparse and the monitors say.

Nothing here runs the command (``cli.py`` does). ``short`` turns a jsonargparse parse error
into one line without its typing jargon (the types a monitor argument expected and the
value given, the closest name to a misspelt class or argument); ``config_error`` names the
listed monitor whose own check failed; ``tag_twins`` the YAML fix where two monitors of one
type would write the same tags.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from lightning.pytorch import Callback

__all__ = ["config_error", "listed", "short", "tag_twins"]


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from or while handling, outermost first."""
    found = [err]
    while (inner := err.__cause__ or err.__context__) is not None and inner not in found:
        found.append(err := inner)
    return found


def _root_cause(err: BaseException, apart_from: BaseException | None = None) -> BaseException:
    """The innermost exception of ``err``'s chain, not counting ``apart_from``'s chain.

    Rebuilding a class inside the handler of jsonargparse's error chains that error to
    whatever the class raises (``__context__``): it is not the class's cause.
    """
    outer = _chain(apart_from) if apart_from is not None else []
    return [e for e in _chain(err) if e not in outer][-1]


def config_error(err: BaseException, trainer_config: Any) -> str:
    """``trainer.callbacks[i] (Name): message`` for a bad callback or logger, else the message.

    Each listed callback and logger is built again alone to find the one whose constructor
    failed: in a list jsonargparse reports only "Not a valid subclass of Logger" (setups
    hunt 26: `WandbLogger(offline=True, log_model=True)` among two loggers).
    """
    cause = _root_cause(err)
    message = str(cause).strip() or type(cause).__name__
    for key in ("callbacks", "logger"):
        for i, spec in enumerate(listed(_get(trainer_config, key))):
            class_path, init_args = _get(spec, "class_path"), _get(spec, "init_args")
            if not isinstance(class_path, str) or "." not in class_path:
                continue
            module, name = class_path.rsplit(".", 1)
            try:
                cls = getattr(__import__(module, fromlist=[name]), name)
                kwargs = (
                    init_args.as_dict() if hasattr(init_args, "as_dict") else dict(init_args or {})
                )
                cls(**kwargs)
            except Exception as bad:
                return f"trainer.{key}[{i}] ({name}): {str(_root_cause(bad, err)).strip()}"
    return message


def listed(callbacks: Any) -> list[Any]:
    """``trainer.callbacks`` (or ``logger``) as a list: one alone, as Lightning takes it.

    Example::

        >>> listed(None), listed({"class_path": "x.Y"}), listed([1, 2])
        ([], [{'class_path': 'x.Y'}], [1, 2])
    """
    if callbacks is None or isinstance(callbacks, bool):  # `logger: true` / `false`
        return []
    if isinstance(callbacks, Callback) or _get(callbacks, "class_path") is not None:
        return [callbacks]
    return list(callbacks) if isinstance(callbacks, list | tuple) else [callbacks]


def tag_twins(listed: list[Any], added: list[Callback], preset: str | None) -> str:
    """The fix, in YAML terms, where two monitors of one type would write the same tags.

    Example::

        >>> from lightning_cnnviz import ActivationMonitor
        >>> listed, added = [ActivationMonitor(every_n_steps=5)], [ActivationMonitor()]
        >>> print(tag_twins(listed, added, "light"))  # doctest: +NORMALIZE_WHITESPACE
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


def short(message: str) -> str:
    """A jsonargparse parse error in one line, without its typing jargon.

    Example::

        >>> short('Parser key "config": File does not exist: x.yaml')
        '`config`: File does not exist: x.yaml'
        >>> short('Parser key "trainer.callbacks": Expected a dot import path string: '
        ...       'GradCAMMonitor, got [...]')[:72]
        '`trainer.callbacks`: write `class_path: lightning_cnnviz.GradCAMMonitor`'
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    key = ".".join(re.findall(r'Parser key "([^"]+)"', message))
    if lines and lines[0].rstrip(":") == "Unexpected config" and len(lines) == 1:
        return "the config file is empty, or holds no mapping (`trainer:`, `model:`, ...)"
    if m := re.search(r"Expected a dot import path string: (\w+)\b", message):
        import lightning_cnnviz

        if m[1] in lightning_cnnviz.__all__:  # the package's class by its short name
            return f"`{key}`: write `class_path: lightning_cnnviz.{m[1]}` (the full import path)"
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
