"""Isolated non-finite losses the model took no harm from: a note, not a divergence.

Nothing here knows about Lightning. A loss that is NaN or Inf on a few steps between
finite ones, while every weight and activation stays finite and the finite loss keeps
its level, is a step whose update was skipped (a GradScaler skips an fp16 overflow; a
hook drops a non-finite gradient) or one that let no NaN reach the weights: the run is
healthy (held out, hunt 115: every 25th loss overflowed to inf and its step was skipped,
6 of 160 steps, val 94% and every weight finite, was told a standing ``divergence``
problem "the logged loss ... is broken from there"). ``isolated`` is the rule,
``skipped_text`` its words, and ``SkippedLosses`` (a part of ``TrainingDiagnosis``) hands
the other rules the losses without those steps and tells the note, withdrawing a
loss-only divergence told before it could be judged.

Example::

    >>> series = [(s, 2.3 - 0.05 * s) for s in range(20)]
    >>> series[10] = (10, float("inf"))
    >>> isolated(series)
    [10]
    >>> isolated(series[:10] + [(s, float("nan")) for s in range(10, 20)]) is None  # stays NaN
    True
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence

from torch import Tensor

from lightning_cnnviz.activations.episodes import Verdict
from lightning_cnnviz.activations.loss_trace import SMOOTH, LossTrace
from lightning_cnnviz.activations.recovery import BACK

__all__ = ["RUN", "SHARE", "SkippedLosses", "isolated", "skipped_text"]

RUN = 2  # non-finite losses in a row at most: a skipped overflow, not a loss that stays broken
SHARE = 0.1  # of the run's steps at most: a few odd batches, not a loss broken again and again


def _runs(series: Sequence[tuple[int, float]]) -> list[int]:
    """The lengths of the runs of consecutive non-finite losses, in order."""
    runs, length = [], 0
    for _, value in series:
        if math.isfinite(value):
            runs, length = [*runs, length] if length else runs, 0
        else:
            length += 1
    return [*runs, length] if length else runs


def trailing(series: Sequence[tuple[int, float]]) -> int:
    """How many of the latest losses are non-finite (after the last finite one).

    Example::

        >>> trailing([(0, 2.3), (1, float("inf")), (2, float("nan"))]), trailing([(0, 2.3)])
        (2, 0)
    """
    runs = _runs(series)
    return runs[-1] if runs and not math.isfinite(series[-1][1]) else 0


def isolated(
    series: Sequence[tuple[int, float]], known: frozenset[int] = frozenset()
) -> list[int] | None:
    """The new non-finite steps where every one sits between finite losses, else ``None``.

    Isolated: no more than ``RUN`` non-finite losses in a row, ``SHARE`` of the steps at
    most, and the finite loss now within ``BACK`` x its level before the first new one
    (medians of the latest ``SMOOTH`` finite losses and of the ``SMOOTH`` before it; its
    start where none came before): not broken by them. ``known``: steps already judged
    so (not new). A trailing run of non-finite losses counts as one run: the caller
    decides whether it may be judged yet.

    Example::

        >>> flat = [(s, 1.0) for s in range(40)]
        >>> isolated(flat[:5] + [(5, float("nan"))] + [(s, 9.0) for s in range(6, 40)])  # broken
        >>> nan = float("nan")
        >>> isolated(flat[:5] + [(5, nan), (6, nan), (7, nan)] + flat[8:])  # three in a row
    """
    new = [s for s, v in series if not math.isfinite(v) and s not in known]
    bad = sum(not math.isfinite(v) for _, v in series)
    if not new or max(_runs(series)) > RUN or bad > SHARE * len(series):
        return None
    before = [v for s, v in series if s < new[0] and math.isfinite(v)][-SMOOTH:]
    finite = [v for _, v in series if math.isfinite(v)]
    if not finite:
        return None
    level = statistics.median(before or finite[:SMOOTH])
    return new if statistics.median(finite[-SMOOTH:]) <= BACK * level else None


def skipped_text(
    step: int, epoch: int, steps: Sequence[int], total: int, told: int | None, inputs: int = 0
) -> str:
    """The note: how many steps had a non-finite loss, that no harm came of it, what to check.

    ``total``: the steps with a loss up to ``step``; ``told``: the step of a loss-only
    divergence told before, now withdrawn; ``inputs``: how many of ``steps`` had NaN/Inf
    in their batch (``LossTrace.bad_inputs``): the data, not the loss, is then named first.

    Example::

        >>> print(skipped_text(20, 0, [10], 20, None)[:67])
        1 of the 20 training steps up to step 20 (epoch 0) had a non-finite
    """
    shown = ", ".join(map(str, steps[:8])) + (", ..." if len(steps) > 8 else "")
    head = (
        f"The divergence told at step {told} is withdrawn: the loss is finite again. "
        if told is not None
        else ""
    )
    data = (
        f" {inputs} of them had NaN/Inf values in their batch's inputs: check the data "
        "(`torch.isfinite(x).all()` on each item) first."
        if inputs
        else ""
    )
    return (
        f"{head}{len(steps)} of the {total} training steps up to step {step} (epoch {epoch}) "
        f"had a non-finite loss (NaN or Inf; steps {shown}), each between finite ones, and the "
        "model took no harm: every weight and activation is finite and the loss kept its "
        "level, so each such step's update was skipped (as a GradScaler skips an fp16 "
        f"overflow) or let no NaN reach the weights.{data} Worth checking: a term of the loss that "
        "gives Inf or NaN on some batches (log(0), a division by zero: `torch.isfinite` on "
        "each term), or an fp16 overflow a GradScaler skips (nothing to do). The per-step "
        "logged loss is non-finite on those steps: a checkpoint or scheduler reading it sees it."
    )


class SkippedLosses:
    """Isolated, harmless non-finite losses (a part of ``TrainingDiagnosis``).

    Uses the diagnosis's ``loss``, ``diverged``, ``spike``, ``nonfinite_told`` and
    ``reported``; keeps ``skipped`` (the steps judged so) and ``skipped_told`` (how many
    the note named), which checkpoints keep (``diagnosis_state.py``).
    """

    diverged: int | None
    spike: tuple[int, float, float, float] | None
    nonfinite_told: bool
    reported: dict[str, str]
    skipped: list[int]
    skipped_told: int
    loss: LossTrace

    def _finite_losses(
        self,
        series: list[tuple[int, float]],
        figures: Mapping[str, Mapping[str, Tensor]],
        bad_parameters: Callable[[], list[str]],
        final: bool = False,
    ) -> list[tuple[int, float]]:
        """The losses the rules read at this log: without the steps judged isolated.

        At a log (not ``final``), up to ``RUN`` non-finite losses at the end of the series,
        with the model finite and ``SHARE`` of the losses non-finite at most, wait for the
        next log: the losses after them tell whether they stay (hunt 115's overflow steps
        fell just before a log as well as after). More of them (a net blown up at its
        third step, NaN at its fourth and fifth) are judged now.
        """
        known = frozenset(self.skipped)
        if not any(not math.isfinite(v) and s not in known for s, v in series):
            return [(s, v) for s, v in series if s not in known] if known else series
        if any(float(f["nonfinite"]) > 0 for f in figures.values()) or bad_parameters():
            return [(s, v) for s, v in series if s not in known]  # the model is harmed
        end, bad = trailing(series), sum(not math.isfinite(v) for _, v in series)
        if not final and 0 < end <= RUN and bad <= SHARE * len(series):
            series = series[:-end]  # not judged yet
        steps = isolated(series, known) or []
        self.skipped, known = [*self.skipped, *steps], known | set(steps)
        return [(s, v) for s, v in series if s not in known]

    def _skipped_note(self, step: int, epoch: int, final: bool = False) -> list[Verdict]:
        """The note on the skipped steps: once, updated at the end of fit if more came.

        A divergence told from a non-finite loss alone (no weight non-finite, no finite
        spike) whose steps are now judged isolated is withdrawn by it (``change="gone"``).
        """
        if not self.skipped or len(self.skipped) == self.skipped_told:
            return []
        loss_only = self.diverged is not None and self.spike is None and self.nonfinite_told
        if self.diverged is not None and not loss_only:
            return []  # a divergence of the model stands: its finding says what to do
        again = self.skipped_told > 0 and final  # the run's count, over the first note
        if not (loss_only or again) and (self.skipped_told or "divergence" in self.reported):
            return []  # told once (a divergence note, a transient spike's, stands alike)
        told = self.diverged if loss_only else None
        if loss_only:
            self.diverged, self.nonfinite_told = None, False
        self.reported["divergence"], self.skipped_told = "note", len(self.skipped)
        total = len({s for s, _ in self.loss.series})  # the steps with a loss so far
        inputs = len(set(self.skipped) & set(self.loss.bad_inputs))
        text = skipped_text(step, epoch, self.skipped, total, told, inputs)
        figures = {"nonfinite_steps": len(self.skipped), "steps": total}
        figures |= {"first_nonfinite_step": self.skipped[0]}
        change = "gone" if loss_only or again else "new"
        return [Verdict("divergence", "note", text, figures, change=change)]
