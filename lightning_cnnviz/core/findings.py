"""Finding records and the checks that ran: what the monitors noticed during one run.

Monitors report problems here (dead units, CAMs leaving the object, overfitting
onset) and say which of their checks ran (``record_check``); at the end of fit the
last monitor prints ``summary.summary_text`` once for the whole run. A finding that evolves
(an overfitting onset that worsens) is ``replace``d in place, so the record shows
its latest state. The record lives on the trainer, so monitors never reach into
each other; ``lightning_cnnviz.findings_of(trainer)`` reads it.

Example::

    >>> class Run: ...
    >>> run = Run()
    >>> report(run, Finding("activations", "dead_units", step=40, epoch=0,
    ...                     message="relu1: 30% of channels dead", figures={"dead": 0.3}))
    >>> [f.kind for f in findings_of(run)]
    ['dead_units']
    >>> [f.kind for f in problems(findings_of(run))]
    ['dead_units']
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lightning_cnnviz.core.hand_back import hand_back_now, take_back

__all__ = [
    "ASIDE",
    "SEVERITIES",
    "Check",
    "Finding",
    "Severity",
    "checks_of",
    "findings_of",
    "problems",
    "record_check",
    "records_of",
    "replace",
    "report",
    "start_record",
]

Severity = Literal["problem", "note"]
SEVERITIES: tuple[str, ...] = ("problem", "note")
ASIDE = "stepped aside: "  # a monitor's whole ``Check.why`` begins so where it stepped aside

_ATTR = "_cnnviz_findings"
_CHECKS = "_cnnviz_checks"


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


def _run_of(trainer: object) -> object:
    """The trainer a run's records live on: ``trainer``, or the one a LightningModule is in."""
    if trainer is None:
        raise TypeError("findings_of() takes the run's Trainer (or its LightningModule), got None")
    if hasattr(type(trainer), "trainer") and hasattr(trainer, "_trainer"):  # a LightningModule
        attached = trainer._trainer
        if attached is None:
            raise TypeError(
                f"findings_of() takes the run's Trainer: this {type(trainer).__name__} is in "
                "no Trainer (pass the one `fit` ran with)"
            )
        return attached
    return trainer


def findings_of(trainer: object) -> list[Finding]:
    """The run's findings so far, oldest first (a live list).

    ``trainer``: the run's ``Trainer``, or the LightningModule it trained.
    """
    trainer = _run_of(trainer)
    _take_back(trainer)
    found = getattr(trainer, _ATTR, None)
    if found is None:
        found = []
        setattr(trainer, _ATTR, found)
    return found


# the model each trainer's record is about (a trainer pickled for a spawned fit carries no
# weak reference: this table stays in its process)
_ABOUT: weakref.WeakKeyDictionary[object, weakref.ref[object]] = weakref.WeakKeyDictionary()


def start_record(trainer: object, model: object) -> None:
    """Start ``trainer``'s record afresh where a fit trains another model than the record's.

    A fit of the same model again goes on adding to it. Emptied in place: the live lists
    ``findings_of`` handed out show this fit's findings. (Setups hunt 49: a second ``fit``
    with another model on the same trainer listed the first model's problems as its own.)

    Example::

        >>> class Run: ...
        >>> run, a, b = Run(), Run(), Run()
        >>> start_record(run, a)
        >>> report(run, Finding("activations", "divergence", 9, 0, "the loss spiked"))
        >>> start_record(run, a); len(findings_of(run))
        1
        >>> start_record(run, b); len(findings_of(run))
        0
    """
    about = _ABOUT.get(trainer)
    if about is not None and about() is model:
        return
    findings_of(trainer).clear()
    checks_of(trainer).clear()
    with contextlib.suppress(TypeError):  # no weak reference to one: each fit starts afresh
        _ABOUT[trainer] = weakref.ref(model)


def records_of(trainer: object) -> dict[str, Any]:
    """The run's findings and checks, as ``hand_back.hand_back`` passes them on."""
    return {_ATTR: findings_of(trainer), _CHECKS: checks_of(trainer)}


def _take_back(trainer: object) -> None:
    """Put the records a child process handed back on ``trainer`` (``core.hand_back``)."""
    records = take_back(trainer)
    for name, value in (records or {}).items():
        setattr(trainer, name, value)


def report(trainer: object, finding: Finding) -> None:
    """Add a finding to the run's record."""
    findings_of(trainer).append(finding)
    hand_back_now(trainer, records_of(trainer))  # in a child process: a fit may yet raise


def replace(trainer: object, old: Finding, new: Finding) -> None:
    """Put ``new`` where ``old`` is in the run's record (appended if ``old`` is not there).

    Example::

        >>> class Run: ...
        >>> run, a = Run(), Finding("overfitting", "overfitting", 5, 1, "rose 10%")
        >>> report(run, a)
        >>> replace(run, a, Finding("overfitting", "overfitting", 7, 2, "rose 30%"))
        >>> [f.message for f in findings_of(run)]
        ['rose 30%']
    """
    found = findings_of(trainer)
    index = next((i for i, f in enumerate(found) if f is old), None)
    if index is None:
        found.append(new)
    else:
        found[index] = new
    hand_back_now(trainer, records_of(trainer))


@dataclass(frozen=True)
class Check:
    """Whether one check of a monitor ran in this run, and why not.

    Attributes:
        source: the monitor's class name (``"OverfittingMonitor"``).
        name: the check (``"overfitting"``); ``""`` stands for the monitor as a whole.
        ran: whether it looked at the run at least once.
        why: why it did not run (or stepped aside).
    """

    source: str
    name: str
    ran: bool
    why: str = ""

    @property
    def label(self) -> str:
        """``source`` or ``source/name``."""
        return f"{self.source}/{self.name}" if self.name else self.source


def checks_of(trainer: object) -> dict[tuple[str, str], Check]:
    """The run's checks by ``(source, name)``, in the order they were first recorded."""
    trainer = _run_of(trainer)
    _take_back(trainer)
    found = getattr(trainer, _CHECKS, None)
    if found is None:
        found = {}
        setattr(trainer, _CHECKS, found)
    return found


def record_check(trainer: object, source: str, name: str, ran: bool, why: str = "") -> None:
    """Record (or overwrite) whether a check ran."""
    checks_of(trainer)[(source, name)] = Check(source, name, ran, why)


def problems(findings: Sequence[Finding]) -> list[Finding]:
    """The findings of severity ``"problem"``, in order."""
    return [f for f in findings if f.severity == "problem"]
