"""A small shared record of what the monitors noticed during one run.

Monitors report problems here (dead units, CAMs leaving the object, noisy
kernels, overfitting onset); the ``OverfittingMonitor`` gathers them into one
diagnosis and the end-of-fit summary. The record lives on the trainer, so
monitors never reach into each other.

Example::

    >>> class Run: ...
    >>> run = Run()
    >>> report(run, Finding("activations", "dead_units", step=40, epoch=0,
    ...                     message="relu1: 30% of channels dead", figures={"dead": 0.3}))
    >>> [f.kind for f in findings_of(run)]
    ['dead_units']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Finding", "findings_of", "report"]

_ATTR = "_cnnviz_findings"


@dataclass(frozen=True)
class Finding:
    """One thing a monitor noticed.

    Attributes:
        source: the monitor's TensorBoard section (``"activations"``, ``"gradcam"``, ...).
        kind: a short machine-readable name (``"dead_units"``, ``"overfitting"``, ...).
        step: ``trainer.global_step`` when it was noticed.
        epoch: ``trainer.current_epoch`` when it was noticed.
        message: one plain-words sentence for the user.
        figures: the numbers behind it.
    """

    source: str
    kind: str
    step: int
    epoch: int
    message: str
    figures: dict[str, Any] = field(default_factory=dict)


def findings_of(trainer: object) -> list[Finding]:
    """The run's findings so far, oldest first (a live list)."""
    found = getattr(trainer, _ATTR, None)
    if found is None:
        found = []
        setattr(trainer, _ATTR, found)
    return found


def report(trainer: object, finding: Finding) -> None:
    """Add a finding to the run's record."""
    findings_of(trainer).append(finding)
