"""One fit of a shape model with every monitor (strict, cheap settings); what each wrote."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.monitors import ALL_MONITORS, fit, make_monitor, section, written_tags


@dataclass
class ShapeRun:
    name: str
    monitors: dict[str, Any]
    warnings: list[str]
    tags: dict[str, set[str]]
    logdir: str
    trainer: Any = None

    def written(self, monitor: str) -> list[str]:
        """Every tag (images, scalars, text, projector) the monitor wrote, sorted."""
        prefix = section(monitor) + "/"
        return sorted(t for kind in self.tags.values() for t in kind if t.startswith(prefix))

    def said(self, text: str) -> list[str]:
        return [w for w in self.warnings if text in w]


def run_shape(tmp_path, model, **overrides: Any) -> ShapeRun:
    """Fit ``model`` (a ShapeModule with its own loaders) 4 steps with all monitors."""
    monitors = {n: make_monitor(n, strict=True, **overrides) for n in ALL_MONITORS}
    data = (model.train_dataloader(), model.val_dataloader())
    trainer, _, said = fit(tmp_path, list(monitors.values()), model=model, data=data)
    tags = written_tags(tmp_path)
    return ShapeRun(type(model.net).__name__, monitors, said, tags, str(tmp_path), trainer)
