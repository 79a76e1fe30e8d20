"""When a model starts to overfit: a state machine over the run's evaluations.

Nothing here knows about Lightning. The ``OverfittingMonitor`` feeds one
``Evaluation`` per validation into an ``OverfittingDetector``; the detector says
when (and since when) the model started to overfit, as an ``Onset``.

Example::

    >>> detector = OverfittingDetector(tolerance=0.1, patience=2)
    >>> for epoch, (train, val) in enumerate([(1.0, 0.8), (0.6, 0.5), (0.4, 0.6), (0.2, 0.7)]):
    ...     onset = detector.update(Evaluation(step=10 * (epoch + 1), epoch=epoch,
    ...                                        train_loss=train, val_loss=val))
    >>> onset.signal, onset.detected.epoch, onset.since.epoch, onset.best.epoch
    ('val_loss', 3, 2, 1)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

from lightning_cnnviz.overfitting.metrics import Evaluation

__all__ = ["Onset", "OverfittingDetector"]


@dataclass(frozen=True)
class Onset:
    """A detected overfitting onset.

    Attributes:
        signal: ``"val_loss"`` (val loss upturn while train loss falls) or ``"ece_gap"``.
        detected: the evaluation at which the rule fired.
        since: the first evaluation of the run that made it fire.
        best: the evaluation with the lowest validation loss so far (``None`` without val loss).
    """

    signal: str
    detected: Evaluation
    since: Evaluation
    best: Evaluation | None


class OverfittingDetector:
    """State machine over the sequence of evaluations.

    Two rules; the first to fire is the onset (reported once):

    * ``val_loss``: the validation loss is more than ``tolerance`` (relative) above
      its running minimum for ``patience`` consecutive evaluations, and at each of
      them the training loss is below its value at that minimum (training keeps
      improving while validation gets worse). An evaluation that fails either
      condition resets the count; the onset is the first evaluation of the run.
    * ``ece_gap``: ``ece_val - ece_train`` rose at each of the last ``patience``
      evaluations and was above ``ece_margin`` at each of them (the model grows
      over-confident on unseen data while staying calibrated on what it memorised);
      the onset is the first of those evaluations.

    Args:
        tolerance: relative margin above the best validation loss (0.1 = 10%).
        patience: consecutive evaluations a rule must hold.
        ece_margin: smallest ECE gap (absolute) the ``ece_gap`` rule reports.
    """

    def __init__(self, tolerance: float = 0.1, patience: int = 2, ece_margin: float = 0.05) -> None:
        self.tolerance, self.patience, self.ece_margin = tolerance, patience, ece_margin
        self.history: list[Evaluation] = []
        self.best: Evaluation | None = None
        self.streak: list[Evaluation] = []
        self.onset: Onset | None = None

    def update(self, ev: Evaluation) -> Onset | None:
        """Add one evaluation; returns the ``Onset`` when a rule fires for the first time."""
        self.history.append(ev)
        found = self._loss_rule(ev)
        found = found or self._ece_rule()
        if found is not None and self.onset is None:
            self.onset = found
            return found
        return None

    def _loss_rule(self, ev: Evaluation) -> Onset | None:
        if ev.val_loss is None or not math.isfinite(ev.val_loss):
            return None
        best = self.best
        if best is None or ev.val_loss < best.val_loss:
            self.best, self.streak = ev, []
            return None
        above = ev.val_loss - best.val_loss > self.tolerance * abs(best.val_loss)
        # the train loss to beat: the best evaluation's, or (when the best came before any
        # train epoch loss existed, e.g. at epoch 0) the first one seen since
        start = next(i for i, e in enumerate(self.history) if e is best)
        earlier = (e.train_loss for e in self.history[start:-1] if e.train_loss is not None)
        reference = next(earlier, None)
        falling = ev.train_loss is not None and (reference is None or ev.train_loss < reference)
        self.streak = [*self.streak, ev] if above and falling else []
        if len(self.streak) >= self.patience:
            return Onset("val_loss", ev, self.streak[0], best)
        return None

    def _ece_rule(self) -> Onset | None:
        recent = self.history[-(self.patience + 1) :]
        gaps = [ev.ece_gap for ev in recent]
        if len(recent) <= self.patience or any(g is None for g in gaps):
            return None
        rising = all(b > a for a, b in itertools.pairwise(gaps))
        if rising and all(g > self.ece_margin for g in gaps[1:]):
            return Onset("ece_gap", recent[-1], recent[1], self.best)
        return None

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state for checkpoints."""
        index = {id(ev): i for i, ev in enumerate(self.history)}
        onset = None
        if self.onset is not None:
            o = self.onset
            onset = [o.signal, index[id(o.detected)], index[id(o.since)]]
            onset.append(index[id(o.best)] if o.best is not None else None)
        return {
            "history": [asdict(ev) for ev in self.history],
            "best": index[id(self.best)] if self.best is not None else None,
            "streak": [index[id(ev)] for ev in self.streak],
            "onset": onset,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.history = [Evaluation(**ev) for ev in state.get("history", [])]
        at = self.history.__getitem__
        self.best = at(state["best"]) if state.get("best") is not None else None
        self.streak = [at(i) for i in state.get("streak", [])]
        onset = state.get("onset")
        self.onset = None
        if onset:
            best = at(onset[3]) if onset[3] is not None else None
            self.onset = Onset(onset[0], at(onset[1]), at(onset[2]), best)
