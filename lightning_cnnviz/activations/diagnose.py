"""The training-side diagnosis at each log: divergence, gradients across depth, dead units.

Nothing here knows about Lightning. ``TrainingDiagnosis`` keeps what the rules need
across logs (the loss trace, the dead-strip history, the first gradient level, what
was reported) and ``review`` turns one log's figures into ``Verdict`` s, in the order
of their causes:

1. ``divergence`` (``divergence.py``): a non-finite loss, or a loss spike; where the
   non-finite values first showed. Units dying with it, and gradients exploding with
   it, are part of it (no separate dead-unit or gradient finding afterwards).
2. ``vanishing_gradients`` / ``exploding_gradients`` / ``saturated_activations``
   (``gradients.py``).
3. ``dead_units`` (rectifiers) and ``dormant_units`` (activations that pass gradient
   below zero), each a problem only when it hurts (``dead.dead_severity``).

Each kind is reported once per run, and once more if a note becomes a problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from lightning_cnnviz.activations.dead import (
    STALLED,
    DeadHistory,
    dead_severity,
    dead_text,
    dormant_text,
)
from lightning_cnnviz.activations.divergence import (
    LossTrace,
    divergence_text,
    first_nonfinite,
    is_jump,
    loss_spike,
    progress,
    recovered,
    still_spiked,
    transient_text,
)
from lightning_cnnviz.activations.gradients import gradient_findings, mean_rms
from lightning_cnnviz.activations.sites import SiteInfo

__all__ = ["TrainingDiagnosis", "Verdict"]


@dataclass
class Verdict:
    """One finding to report: ``kind``, ``severity``, ``message``, ``figures``."""

    kind: str
    severity: str
    message: str
    figures: dict[str, Any] = field(default_factory=dict)


class TrainingDiagnosis:
    """Divergence, gradient and dead-unit rules over a run's logs (state across logs).

    Args:
        dead_threshold: dead (or dormant) share whose crossing is an alert.
        strip_length: dead-strip columns kept.
        tau: the dormant threshold (for the words).
    """

    def __init__(self, dead_threshold: float, strip_length: int, tau: float) -> None:
        self.loss = LossTrace()
        self.history = DeadHistory(dead_threshold, strip_length)
        self.tau = tau
        self.first_rms: float | None = None
        self.diverged: int | None = None  # the step of the first divergence finding
        self.transient = -1  # the step of the last spike the run recovered from on its own
        self.pending: int | None = None  # the log that first saw a smoothed spike
        self.nonfinite_told = False
        self.reported: dict[str, str] = {}  # kind -> severity already reported

    KEPT_LOSSES = 4096  # losses a checkpoint keeps: the run's start and its latest steps

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to go on judging: losses, baselines, what was reported.

        A long run's losses are thinned to its first steps (the start a spike is
        measured from) and its latest ones (the trend).
        """
        series = self.loss.read()
        head = self.KEPT_LOSSES // 16
        if len(series) > self.KEPT_LOSSES:
            series = series[:head] + series[-(self.KEPT_LOSSES - head) :]
        return {
            "history": self.history.state_dict(),
            "losses": list(series),
            "first_rms": self.first_rms,
            "diverged": self.diverged,
            "transient": self.transient,
            "pending": self.pending,
            "nonfinite_told": self.nonfinite_told,
            "reported": dict(self.reported),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned (or an older checkpoint's dead-unit history)."""
        if "history" not in state:
            self.history.load_state_dict(state)
            return
        self.history.load_state_dict(state["history"])
        self.loss = LossTrace()
        self.loss.series = [(int(s), float(v)) for s, v in state.get("losses", [])]
        self.first_rms = state.get("first_rms")
        self.diverged = state.get("diverged")
        self.transient = int(state.get("transient", -1))
        self.pending = state.get("pending")
        self.nonfinite_told = bool(state.get("nonfinite_told", False))
        self.reported = dict(state.get("reported", {}))

    def _new(self, kind: str, severity: str) -> bool:
        before = self.reported.get(kind)
        if before == "problem" or before == severity:
            return False
        self.reported[kind] = severity
        return True

    def review(
        self,
        step: int,
        epoch: int,
        figures: Mapping[str, Mapping[str, Tensor]],
        sites: Mapping[str, SiteInfo],
        profile: list[tuple[str, float]],
        bad_parameters: Callable[[], list[str]],
    ) -> list[Verdict]:
        """One log's verdicts (``bad_parameters`` lists non-finite parameters, when asked)."""
        series = self.loss.read()
        gain = progress(series)
        stalled = None if gain is None else gain < STALLED
        kinds = {site: info.kind for site, info in sites.items()}
        alerts = self.history.update(figures, kinds)
        out = self._divergence(step, epoch, series, figures, profile, alerts, bad_parameters)
        if self.diverged is not None:
            return out  # what follows a divergence is its consequence
        first = mean_rms(profile)
        self.first_rms = first if self.first_rms is None else self.first_rms
        saturation = {
            site: float(f["saturation"])
            for site, f in figures.items()
            if kinds.get(site) == "saturating" and "saturation" in f
        }
        for kind, severity, message, fig in gradient_findings(
            profile, self.first_rms, saturation, stalled
        ):
            if self._new(kind, severity):
                out.append(
                    Verdict(kind, severity, f"At step {step} (epoch {epoch}): {message}", fig)
                )
        dead = [a for a in alerts if kinds.get(a[0]) != "leaky"]
        dormant = [a for a in alerts if kinds.get(a[0]) == "leaky"]
        if dead:
            severity = max(
                (
                    dead_severity(f, b, gain, len(self.history.dead.get(site, [])))
                    for site, f, b in dead
                ),
                key=("note", "problem").index,
            )
            if self._new("dead_units", severity):
                message = dead_text(dead, self.history.dead, step, epoch, severity, gain)
                fig = {site: f for site, f, _ in dead} | (
                    {"progress": gain} if gain is not None else {}
                )
                out.append(Verdict("dead_units", severity, message, fig))
        if dormant:
            severity = "problem" if stalled and max(f for _, f, _ in dormant) >= 0.75 else "note"
            if self._new("dormant_units", severity):
                fig = {site: f for site, f, _ in dormant}
                out.append(
                    Verdict(
                        "dormant_units", severity, dormant_text(dormant, step, epoch, self.tau), fig
                    )
                )
        return out

    def _divergence(
        self,
        step: int,
        epoch: int,
        series: list[tuple[int, float]],
        figures: Mapping[str, Mapping[str, Tensor]],
        profile: list[tuple[str, float]],
        alerts: list[tuple[str, float, float | None]],
        bad_parameters: Callable[[], list[str]],
    ) -> list[Verdict]:
        nonfinite = first_nonfinite(series)
        bad_sites = [site for site, f in figures.items() if float(f["nonfinite"]) > 0]
        weights = bad_parameters() if nonfinite is not None or bad_sites else []
        if weights and nonfinite is None:
            nonfinite = step  # no loss seen (manual optimisation): the weights tell
        spike = loss_spike(series, since=self.transient) if self.diverged is None else None
        if nonfinite is None and spike is not None:
            if recovered(series):
                self.transient, self.pending = step, None  # back below its start: no divergence
                if not self._new("divergence", "note"):
                    return []
                return [Verdict("divergence", "note", transient_text(step, epoch, spike, series))]
            if not is_jump(spike):
                # a smoothed rise (not one step's blow-up) is confirmed at a later log while
                # still past its bar: Adam's first steps at a high rate lift the loss 2x for
                # a dozen steps, then it falls (coming down but not yet below the start: wait)
                if self.pending is None:
                    self.pending = step
                    return []
                if not still_spiked(series, spike):
                    return []
        if (nonfinite is None or self.nonfinite_told) and spike is None:
            return []
        self.nonfinite_told = self.nonfinite_told or nonfinite is not None
        self.diverged = step if self.diverged is None else self.diverged
        died = {site: f for site, f, _ in alerts}
        grads = next((name for name, v in profile if v != v or v in (float("inf"),)), None)
        message = divergence_text(
            step, epoch, nonfinite_step=nonfinite, spike=spike,
            first_weights=weights[0] if weights else None,
            first_activations=bad_sites[0] if bad_sites else None,
            first_grads=grads, died=died,
        )  # fmt: skip
        figures_out: dict[str, Any] = {"first_nonfinite_step": nonfinite}
        if spike is not None:
            figures_out |= dict(
                zip(("spike_step", "spike_loss", "best_loss", "start_loss"), spike, strict=True)
            )
        figures_out |= {"first_nonfinite_parameter": weights[0] if weights else None}
        figures_out |= {"first_nonfinite_layer": bad_sites[0] if bad_sites else None}
        figures_out |= {f"died/{site}": f for site, f in died.items()}
        return [Verdict("divergence", "problem", message, figures_out)]
