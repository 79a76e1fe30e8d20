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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lightning_cnnviz.core.hand_back import take_back

__all__ = [
    "ASIDE",
    "SEVERITIES",
    "Check",
    "Finding",
    "Severity",
    "checks_of",
    "earlier_cause",
    "findings_of",
    "problems",
    "record_check",
    "records_of",
    "replace",
    "report",
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


def records_of(trainer: object) -> dict[str, Any]:
    """The run's findings and checks, as ``hand_back.hand_back`` passes them on."""
    return {_ATTR: findings_of(trainer), _CHECKS: checks_of(trainer)}


def _take_back(trainer: object) -> None:
    """Put the records a child process handed back on ``trainer`` (``core.hand_back``)."""
    records = take_back(trainer)
    for name, value in (records or {}).items():
        setattr(trainer, name, value)


# Problems that make others follow from them: a finding of another kind told later in the
# run names the one standing, so its remedies (a learning rate for a loss that jumps with
# each new class) are not read as the cause
ROOT_CAUSES = {
    "unshuffled_batches": "the training batches come in class order",
    "loss_mismatch": "the loss is not the one the model's outputs are made for",
    "unnormalised_inputs": "the inputs are far from unit scale",  # a note, and still a cause
    # a note (harmless under Adam), and still a cause: under SGD every step is that much larger
    "scaled_loss": "the training loss is scaled far from the model's own cross-entropy",
    # a problem when frozen at random initialisation or given no gradient (a frozen trained
    # backbone: a note)
    "frozen_layers": (
        "layers learn nothing (frozen at their random initialisation, or given no gradient)"
    ),
    # withdrawn as a note once gradients reach the first layers and the loss falls
    "vanishing_gradients": "the gradient vanishes before it reaches the first layers",
    "output_activation": "an activation holds classes' logits at 0",
    "symmetric_weights": "the units of a layer hold identical weights",
    "negative_biases": "biases initialised far below zero silence the units",
    "frozen_batch_norm": "BatchNorm layers sit in eval mode with their initial statistics",
    "weight_decay_too_strong": "weight decay takes too large a share of every weight each step",
    "unstable_training": "the training loss climbs back at an unchanged learning rate",
    "train_mode_in_validation": "validation runs the model in training mode",
    # a note (Adam minds less), and still a cause: under SGD every step is that much smaller
    "clipped_gradients": "gradient clipping by value cuts nearly every gradient entry",
}

# what reaches the model before anything in it: named even by a root cause told after it
# (inputs divided by 255 twice: vanishing gradients at step 120, their cause at step 12)
_INPUT_CAUSES = ("unnormalised_inputs",)
# notes (inputs off scale are healthy under BatchNorm, a scaled loss under Adam), yet causes
_NOTED_CAUSES = ("unnormalised_inputs", "scaled_loss", "clipped_gradients", "repeated_items")
# Problems that are no root cause in general, but one a later finding of a given kind
# follows from: a model that diverged sits at chance, which is then no separate failure;
# val curves read across splits that differ (half the val labels wrong: the val loss rose
# as the model grew sure of the right labels) measure the split, not the fit
_SPLITS = "the training and validation images differ in what decides the label"
# a training loader reaching few of its set's items (a note: a subset may be on purpose)
_FEW = "training reads few different images, the same ones every epoch"
CONSEQUENCES = {
    "not_learning": {"divergence": "training diverged"},
    "overfitting": {"generalisation_gap": _SPLITS, "repeated_items": _FEW},
    "memorisation": {"generalisation_gap": _SPLITS, "repeated_items": _FEW},
    "generalisation_gap": {"repeated_items": _FEW},
}


def earlier_cause(trainer: object, kind: str, since: int | None = None) -> str:
    """A sentence naming a standing root cause a ``kind`` problem may follow from.

    ``""`` where none stands (or ``kind`` is one of them). With ``since`` (the step the
    problem started at), not a cause that started after it: a BatchNorm mismatch since
    step 7 was told at step 126 as following from unstable training found at 126.

    Example::

        >>> class Run: ...
        >>> run = Run()
        >>> report(run, Finding("overfitting", "unshuffled_batches", 0, 0, "in class order"))
        >>> print(earlier_cause(run, "divergence")[:66])
        This may follow from a problem reported first (step 0, `unshuffled
        >>> run = Run()
        >>> report(run, Finding("activations", "divergence", 15, 0, "the loss spiked"))
        >>> print(earlier_cause(run, "not_learning")[-59:])
        (step 15, `divergence`): training diverged. Fix that first.
        >>> earlier_cause(run, "dead_units")  # dead units with a divergence are part of it
        ''
    """
    if kind in ROOT_CAUSES:  # a cause names only what comes before any model: its inputs
        causes = {k: ROOT_CAUSES[k] for k in _INPUT_CAUSES if k != kind}
    else:
        causes = ROOT_CAUSES | CONSEQUENCES.get(kind, {})
    for f in findings_of(trainer):
        if since is not None and _onset(f) > since:
            continue
        if f.kind in causes and (f.severity == "problem" or f.kind in _NOTED_CAUSES):
            if kind in _TOO_LARGE and f.kind == "scaled_loss" and f.figures.get("scale", 1) < 1:
                continue  # a loss scaled down: every step smaller
            return (
                f"This may follow from a {f.severity} reported first (step {f.step}, "
                f"`{f.kind}`): {causes[f.kind]}. Fix that first."
            )
    return ""


# what updates too large do: a loss scaled down (smaller steps) is no cause of them (hunt 49:
# a loss weight ramped 0.01 -> 1 under SGD at lr 1.5, told "may follow from `scaled_loss`")
_TOO_LARGE = ("divergence", "exploding_gradients", "dead_units", "unstable_training")


def _onset(f: Finding) -> int:
    """The step a finding's failure started at, where its figures say (else its report's)."""
    steps = [f.figures.get(k) for k in ("since_step", "spike_step", "first_nonfinite_step")]
    return min([f.step, *(int(s) for s in steps if isinstance(s, int | float) and s >= 0)])


def report(trainer: object, finding: Finding) -> None:
    """Add a finding to the run's record."""
    findings_of(trainer).append(finding)


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
