"""What changed in the diagnosis at one validation: new findings, worse ones, ones gone.

Nothing here knows about Lightning. The ``OverfittingMonitor`` feeds one
``Evaluation`` per validation into a ``Detector``; the detector runs the rules on the
whole history (``precedence.py``: which verdicts stand, which wait for another finding)
and compares each verdict with the one it reported before, so a finding is told once,
then *updated* while it worsens (a later best epoch, a larger rise), and turned into a
note when it goes away (val loss reaching a new low after a bump).

Example::

    >>> detector = Detector(tolerance=0.05, patience=2)
    >>> vals = [2.0, 1.1, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1]
    >>> for epoch, val in enumerate(vals):
    ...     changes = detector.update(Evaluation(step=10 * (epoch + 1), epoch=epoch,
    ...                                          train_loss=1.0 / (epoch + 1), val_loss=val))
    ...     for c in changes:
    ...         print(epoch, c.change, c.verdict.kind, c.verdict.best.epoch)
    6 new overfitting 2
    7 worse overfitting 2
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from lightning_cnnviz.overfitting import (
    blind_level,
    bn_levels,
    chance_levels,
    flat_loss,
    gap,
    label_prior,
    same_output,
    val_source,
)
from lightning_cnnviz.overfitting.at_end import early, end_verdicts
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.gone import went_away
from lightning_cnnviz.overfitting.precedence import standing, verdicts
from lightning_cnnviz.overfitting.rules import tiny_val
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import finite

__all__ = ["KINDS", "NOTE_KINDS", "Change", "Detector"]

CHECKS = {  # check name -> what it needs, for the end-of-fit summary
    "overfitting": "a validation loss",
    "memorisation": "train and val accuracy (logged, or class labels on the probes)",
    "train/val gap": "train and val accuracy (logged, or class labels on the probes)",
    "not learning": "class labels, (N, classes) logits and enough probe images to tell chance"
    " (or the loss `training_step` returns from the run's first steps on)",
    "BatchNorm train/eval": (
        "BatchNorm layers in training mode, and class labels with (N, classes) logits or "
        "multi-hot (N, labels) targets"
    ),
    "class imbalance": (
        "class labels and (N, classes) logits on the val probe, 5 or more images of a class"
    ),
    "learning rate decayed early": "the optimiser's learning rate and the run's planned length",
    "inputs of train vs val": "validation data of its own, as image tensors",
    "loss fed probabilities": "a logged val loss, class labels and (N, classes) logits",
    "loss negated": "a loss returned by training_step, class labels and (N, classes) logits",
    "val metrics of this model": (
        "a logged val accuracy or loss, and the val probe's (class labels, (N, classes) logits)"
    ),
    "training loss climbing": "a loss returned by training_step and the learning rate",
    "weight decay": (
        "a logged training loss and weight decay decoupled from the gradient's scale (SGD, "
        "AdamW, `decoupled_weight_decay=True`; Adam's L2 `weight_decay` takes no fixed share "
        "of a weight per step)"
    ),
}

KINDS = (
    "val_metrics_differ",
    "loss_mismatch",
    "inputs_differ",
    "class_imbalance",
    "not_learning",
    "weight_decay_too_strong",
    "unstable_training",
    "bn_mismatch",
    "generalisation_gap",
    "memorisation",
    "overfitting",
    "lr_decayed_early",
)
NOTE_KINDS = ("lr_decayed_early",)  # a note (a fact that may be meant) but when extreme

# The figure that says "worse" for each kind (larger is worse).
_WORSE = {
    "overfitting": "rise_abs",
    "memorisation": "drop",
    "bn_mismatch": "gap_acc",
    "generalisation_gap": "gap",
    "class_imbalance": "left_out",
    "weight_decay_too_strong": "rise",
    "unstable_training": "rise",
    "not_learning": "relabelled",  # the labels remapped, read once the model learnt them
}


def _told(v: Verdict) -> bool:
    """Whether ``v`` is a note told as a finding (not one saying a finding went away)."""
    return early(v) or (v.severity == "note" and v.kind in NOTE_KINDS)


@dataclass(frozen=True)
class Change:
    """One change of the diagnosis: ``change`` is ``"new"``, ``"worse"`` or ``"gone"``."""

    change: str
    verdict: Verdict


class Detector:
    """Runs the validation rules at each evaluation and tracks what it reported.

    Args:
        tolerance: the overfitting rule's relative floor (val loss above its best).
        patience: evaluations a rule's smoothed signal must hold before it is reported.
    """

    def __init__(self, tolerance: float = 0.05, patience: int = 2) -> None:
        self.tolerance, self.patience = tolerance, patience
        self.history: list[Evaluation] = []
        self.reported: dict[str, Verdict] = {}

    def _verdicts(self) -> dict[str, Verdict | None]:
        """Each rule's verdict now, ``None`` where it waits for another (``precedence.py``)."""
        return verdicts(self.history, self.reported, self.tolerance, self.patience)

    def _standing(self, kind: str) -> bool:
        """Whether ``kind`` was reported and is still a problem."""
        return standing(self.reported, kind)

    def update(self, ev: Evaluation) -> list[Change]:
        """Add one evaluation; the changes of the diagnosis it brings, in ``KINDS`` order."""
        self.history.append(ev)
        changes = []
        for kind, verdict in self._verdicts().items():
            change = self._compare(kind, verdict, ev)
            if change is not None:
                self.reported[kind] = change.verdict
                changes.append(change)
        return changes

    def conclude(self, end_step: int | None = None) -> list[Change]:
        """At the end of fit: what the last evaluation shows and no later one can confirm.

        ``at_end.end_verdicts``, each reported as a problem unless one stands. ``end_step``:
        the fit's last step.
        """
        if not self.history:
            return []
        found = end_verdicts(self.history, self.reported, self._verdicts, self.patience, end_step)
        changes = []
        for kind, verdict in found.items():
            change = (
                None if self._standing(kind) else self._compare(kind, verdict, self.history[-1])
            )
            if change is not None:
                self.reported[kind] = change.verdict
                changes.append(change)
        return changes

    def dry_run(self, ev: Evaluation) -> list[Change]:
        """The changes ``update(ev)`` would bring, without keeping anything."""
        self.history.append(ev)
        try:
            found = (self._compare(k, v, ev) for k, v in self._verdicts().items())
            return [c for c in found if c is not None]
        finally:
            self.history.pop()

    def _compare(self, kind: str, verdict: Verdict | None, ev: Evaluation) -> Change | None:
        old = self.reported.get(kind)
        if verdict is not None and verdict.severity == "note":  # a note standing on its own
            standing = old is not None and (old.severity == "problem" or _told(old))
            return None if standing and old.since is verdict.since else Change("new", verdict)
        if verdict is not None:
            if old is None or old.severity == "note" or old.best is not verdict.best:
                return Change("new", verdict)  # first time, again after going away, new episode
            key = _WORSE.get(kind)
            if kind == "bn_mismatch" and "gap_rank" in verdict.figures:  # multi-hot targets
                key = "gap_rank"
            if key and verdict.figures.get(key, 0.0) > old.figures.get(key, 0.0):
                return Change("worse", verdict)
            return None
        if old is None or (old.severity == "note" and not early(old)):
            return None
        if not self._gone(kind, old, ev):
            return None
        figures = {**old.figures, "early": False} if early(old) else old.figures
        return Change("gone", Verdict(kind, old.since, ev, old.best, figures, severity="note"))

    def _gone(self, kind: str, old: Verdict, ev: Evaluation) -> bool:
        """Whether a reported failure went away (``gone.went_away``)."""
        return went_away(kind, old, ev, self.tolerance)

    def checks_ran(self) -> dict[str, bool]:
        """For each check of ``CHECKS``, whether some evaluation gave it what it needs."""
        h = self.history
        return {
            "overfitting": any(finite(e.val_loss) for e in h) and not tiny_val(h),
            # (an accuracy of 0 is one: 1000 classes read 0.0 at first, setups hunt 18)
            "memorisation": any(
                e.val_accuracy is not None and e.train_accuracy is not None for e in h
            )
            and not tiny_val(h),
            "train/val gap": any(gap.gapped(e) is not None for e in h) and not tiny_val(h),
            "not learning": any(
                chance_levels.stuck(e) is not None
                or flat_loss.judged(e)
                or label_prior.alike(e) is not None
                or blind_level.stuck_at_mean(e) is not None
                or same_output.alike(e) is not None
                for e in h
            ),
            "BatchNorm train/eval": any(bn_levels.parted(e) is not None for e in h),
            "class imbalance": any(e.ignored is not None for e in h),
            "learning rate decayed early": any(e.lr and e.run_share is not None for e in h),
            "inputs of train vs val": any(e.input_shift is not None for e in h),
            "loss fed probabilities": any(
                e.val_loss is not None and e.probe_ce_probs_val is not None for e in h
            ),
            "loss negated": any(
                e.returned_loss is not None and e.probe_loss_val is not None for e in h
            ),
            "val metrics of this model": any(val_source.differs(e) is not None for e in h),
            "training loss climbing": any(e.train_loss is not None and e.lr is not None for e in h),
            "weight decay": any(
                e.decay_per_step is not None and e.train_loss is not None for e in h
            ),
        }

    @property
    def active(self) -> list[Verdict]:
        """The reported verdicts, problems first."""
        found = [self.reported[k] for k in KINDS if k in self.reported]
        return sorted(found, key=lambda v: v.severity != "problem")

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state for checkpoints."""
        index = {id(ev): i for i, ev in enumerate(self.history)}

        def at(ev: Evaluation | None) -> int | None:
            return None if ev is None else index.get(id(ev))

        return {
            "history": [asdict(ev) for ev in self.history],
            "reported": {
                k: [at(v.since), at(v.detected), at(v.best), v.figures, v.severity]
                for k, v in self.reported.items()
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.history = [Evaluation(**ev) for ev in state.get("history", [])]

        def at(i: int | None) -> Evaluation | None:
            return None if i is None else self.history[i]

        self.reported = {}
        for kind, (since, detected, best, figures, severity) in state.get("reported", {}).items():
            since_ev, detected_ev = at(since), at(detected)
            if since_ev is not None and detected_ev is not None:
                verdict = Verdict(kind, since_ev, detected_ev, at(best), figures, severity)
                self.reported[kind] = verdict
