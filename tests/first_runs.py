"""Helpers for the tests that run what the README and the examples promise."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from tests.tb import events

ROOT = Path(__file__).resolve().parents[1]
STANDARD_SECTIONS = {"activations", "kernels", "feature_maps", "gradcam", "overfitting"}


def sections(logdir: str | Path) -> set[str]:
    """The first part of every tag (images, scalars, text) written under ``logdir``."""
    acc = events(logdir)
    tags = [t for kind in ("images", "scalars", "tensors") for t in acc.Tags()[kind]]
    return {t.split("/")[0] for t in tags}


def tags(logdir: str | Path) -> set[str]:
    acc = events(logdir)
    return {t for kind in ("images", "scalars", "tensors") for t in acc.Tags()[kind]}


def code_blocks(language: str, text: str | None = None) -> list[str]:
    """The README's fenced code blocks of ``language``, in order."""
    text = (ROOT / "README.md").read_text() if text is None else text
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def example(name: str) -> ModuleType:
    """``examples/{name}.py`` imported as a module (its ``main`` not run)."""
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", ROOT / "examples" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
