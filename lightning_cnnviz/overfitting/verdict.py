"""What one rule concludes at the latest evaluation: the ``Verdict`` every rule returns.

Nothing here knows about Lightning. The detector (``detector.py``) compares each verdict
with what it reported before; the headlines and remedies read its figures.

Example::

    >>> from lightning_cnnviz.overfitting.evaluation import Evaluation
    >>> now = Evaluation(step=60, epoch=2, val_loss=0.9)
    >>> Verdict("overfitting", now, now, None, {"rise": 0.2}).severity
    'problem'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lightning_cnnviz.overfitting.evaluation import Evaluation

__all__ = ["Verdict"]


@dataclass(frozen=True)
class Verdict:
    """What one rule concludes at the latest evaluation.

    Attributes:
        kind: ``"overfitting"``, ``"memorisation"`` (here), ``"not_learning"``
            (``levels.py``) or ``"bn_mismatch"`` (``bn_levels.py``).
        since: the evaluation where the failure began (its onset).
        detected: the latest evaluation (the one the verdict speaks for).
        best: the evaluation to go back to (lowest val loss, highest val accuracy), if any.
        figures: the evidence, by name (see ``docs/diagnosis.md``).
        severity: ``"problem"``, or ``"note"`` once the failure went away.
    """

    kind: str
    since: Evaluation
    detected: Evaluation
    best: Evaluation | None
    figures: dict[str, Any] = field(default_factory=dict)
    severity: str = "problem"
