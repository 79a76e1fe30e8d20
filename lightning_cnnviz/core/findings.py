"""Finding records and the end-of-fit summary: what the monitors noticed during one run.

Monitors report problems here (dead units, CAMs leaving the object, overfitting
onset); the ``OverfittingMonitor`` gathers them into its diagnosis and prints
``summary_text`` at the end of fit. The record lives on the trainer, so monitors
never reach into each other; ``lightning_cnnviz.findings_of(trainer)`` reads it.

Example::

    >>> class Run: ...
    >>> run = Run()
    >>> report(run, Finding("activations", "dead_units", step=40, epoch=0,
    ...                     message="relu1: 30% of channels dead", figures={"dead": 0.3}))
    >>> [f.kind for f in findings_of(run)]
    ['dead_units']
    >>> print(summary_text(findings_of(run)))
    lightning-cnnviz: 1 problem(s) in this run:
      - [activations/dead_units] epoch 0, step 40: relu1: 30% of channels dead
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "SEVERITIES",
    "Finding",
    "Severity",
    "findings_of",
    "problems",
    "record_skipped",
    "report",
    "summary_text",
]

Severity = Literal["problem", "note"]
SEVERITIES: tuple[str, ...] = ("problem", "note")

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
        severity: ``"problem"`` (training is going wrong: the monitor warns) or ``"note"``
            (true and worth knowing, not hurting this run: listed in the summary only).
    """

    source: str
    kind: str
    step: int
    epoch: int
    message: str
    figures: dict[str, Any] = field(default_factory=dict)
    severity: Severity = "problem"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"`severity` must be one of {SEVERITIES}, got {self.severity!r}")

    @property
    def first_line(self) -> str:
        r"""The message's first line (``""`` for an empty message): what lists show of it.

        Example::

            >>> Finding("gradcam", "off_object", 5, 0, "on_object fell\nDetails").first_line
            'on_object fell'
        """
        text = self.message.strip()
        return text.splitlines()[0] if text else ""


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


def record_skipped(trainer: Any, source: str, reason: str) -> None:
    """Record that a check of ``source`` could not run in this run, and why (said once).

    It is kept as a ``"skipped"`` note, so the summary never reads as a clean bill
    for a check that never ran.

    Example::

        >>> class Run:
        ...     global_step, current_epoch = 0, 0
        >>> run = Run()
        >>> record_skipped(run, "overfitting", "the run has no validation data")
        >>> record_skipped(run, "overfitting", "the run has no validation data")
        >>> [(f.kind, f.message) for f in findings_of(run)]
        [('skipped', 'check could not run: the run has no validation data')]
    """
    message = f"check could not run: {reason}"
    if any(
        f.kind == "skipped" and (f.source, f.message) == (source, message)
        for f in findings_of(trainer)
    ):
        return
    step, epoch = getattr(trainer, "global_step", 0), getattr(trainer, "current_epoch", 0)
    report(trainer, Finding(source, "skipped", step, epoch, message, severity="note"))


def problems(findings: Sequence[Finding]) -> list[Finding]:
    """The findings of severity ``"problem"``, in order."""
    return [f for f in findings if f.severity == "problem"]


def summary_text(findings: Sequence[Finding]) -> str:
    """The end-of-fit console summary: one line per problem, then one per note.

    Example::

        >>> summary_text([])
        'lightning-cnnviz: no problems found in this run.'
        >>> print(summary_text([Finding("activations", "dead_units", 9, 0, "fc1: 25% silent",
        ...                             severity="note")]))
        lightning-cnnviz: no problems found in this run. 1 note:
          - [activations/dead_units] epoch 0, step 9: fc1: 25% silent
    """
    found = problems(findings)
    notes = [f for f in findings if f.severity == "note"]
    noted = f"{len(notes)} note{'s' if len(notes) > 1 else ''}:"
    if found:
        lines = [f"lightning-cnnviz: {len(found)} problem(s) in this run:"]
        lines += [_line(f) for f in found]
        lines += [noted] if notes else []
    else:
        lines = [
            "lightning-cnnviz: no problems found in this run." + (f" {noted}" if notes else "")
        ]
    lines += [_line(f) for f in notes]
    return "\n".join(lines)


def _line(f: Finding) -> str:
    text = f.first_line.replace("**", "")
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"  - [{f.source}/{f.kind}] epoch {f.epoch}, step {f.step}: {text}"
