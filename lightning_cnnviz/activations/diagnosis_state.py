"""What ``TrainingDiagnosis`` keeps in a checkpoint, so that a resumed run goes on judging.

Nothing here knows about Lightning. ``DiagnosisState`` is a part of
``diagnose.TrainingDiagnosis`` (a mixin, as the monitors' parts are): ``state_dict``
saves the loss trace (a long run's thinned to its start and its latest steps), the
dead-strip history, the unit episodes, what was reported and the plain attributes in
``_SCALARS``; ``load_state_dict`` restores them, and reads a checkpoint of an older
version (the dead-unit history alone, no episodes) too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning_cnnviz.activations.dead import DeadHistory
from lightning_cnnviz.activations.episodes import Episode, UnitEpisodes
from lightning_cnnviz.activations.loss_levels import LossLevels
from lightning_cnnviz.activations.loss_trace import LossTrace

__all__ = ["DiagnosisState"]


class DiagnosisState:
    """``state_dict`` / ``load_state_dict`` of ``TrainingDiagnosis`` (a part of it)."""

    loss: LossTrace
    history: DeadHistory
    units: UnitEpisodes
    tau: float
    spike: tuple[int, float, float, float] | None
    reported: dict[str, str]
    logs: list[int]
    rates: tuple[float | None, float | None]
    decays: tuple[float | None, float | None]
    dropouts: tuple[float | None, float | None]
    recurring: list[int]
    log_rates: list[tuple[int, float]]
    peak_rates: list[tuple[int, float]]
    log_accs: list[tuple[int, float]]
    log_losses: list[tuple[int, float]]
    chance: tuple[int, float] | None
    _kinds: dict[str, str | None]
    _squeezed: list[str]
    levels: LossLevels

    KEPT_LOSSES = 4096  # losses a checkpoint keeps: the run's start and its latest steps
    # The plain attributes a checkpoint keeps, with the value of a checkpoint without them
    # (its type the one restored: an int, a bool; ``None``: kept as it was saved).
    _SCALARS: dict[str, Any] = {
        "first_rms": None, "weak_logs": 0, "diverged": None, "transient": -1,
        "pending": None, "nonfinite_told": False, "chance_loss": None, "init_cause": None,
        "init_checked": False, "classes": None, "loss_scale": None, "last_step": -1,
        "lr_start": None, "last_epoch": 0, "peak_acc": None, "grad_rise": 1.0, "harder": None,
        "spike_acc": None, "spike_rate": None, "output_told": None, "skipped": [],
        "skipped_told": 0, "first_grads": {}, "crawled": False, "eval_layers": None,
        "mode_switch": None, "mode_back": None,
    }  # fmt: skip

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
            **{name: getattr(self, name) for name in self._SCALARS},
            "history": self.history.state_dict(),
            "losses": list(series),
            "spike": self.spike,
            "reported": dict(self.reported),
            "units": self.units.state_dict(),
            "logs": list(self.logs),
            "rates": list(self.rates),
            "decays": list(self.decays),
            "dropouts": list(self.dropouts),
            "momenta": list(self.momenta),
            "recurring": list(self.recurring),
            "log_rates": [list(r) for r in self.log_rates],
            "peak_rates": [list(r) for r in self.peak_rates],
            "log_accs": [list(r) for r in self.log_accs],
            "log_losses": [list(r) for r in self.log_losses],
            "chance": list(self.chance) if self.chance else None,
            "kinds": dict(self._kinds),
            "squeezed": list(self._squeezed),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned (or an older checkpoint's dead-unit history)."""
        if "history" not in state:
            self.history.load_state_dict(state)
            return
        self.history.load_state_dict(state["history"])
        self.loss = LossTrace()
        self.loss.series = [(int(s), float(v)) for s, v in state.get("losses", [])]
        for name, default in self._SCALARS.items():
            value = state.get(name, default)
            setattr(self, name, value if value is None or default is None else type(default)(value))
        self.spike = tuple(state["spike"]) if state.get("spike") else None  # type: ignore[assignment]
        self.reported = dict(state.get("reported", {}))
        self.units = UnitEpisodes(self.history.threshold, self.tau)
        if "units" in state:
            self.units.load_state_dict(state["units"])
        else:  # an older checkpoint: a reported dead/dormant kind stands over the sites past it
            sites = {s: f for s, f in self.history.previous.items() if f >= self.history.threshold}
            for kind in ("dead_units", "dormant_units"):
                if kind in self.reported:
                    self.units.open[kind] = Episode(self.reported[kind], -1, dict(sites))
        self.logs = [int(s) for s in state.get("logs", [])]
        self.rates = tuple(state.get("rates", (None, None)))  # type: ignore[assignment]
        self.decays = tuple(state.get("decays", (None, None)))  # type: ignore[assignment]
        self.dropouts = tuple(state.get("dropouts", (None, None)))  # type: ignore[assignment]
        self.momenta = tuple(state.get("momenta", (None, None)))  # type: ignore[assignment]
        self.recurring = [int(s) for s in state.get("recurring", [])]
        self.log_rates = [(int(a), float(b)) for a, b in state.get("log_rates", [])]
        self.peak_rates = [(int(a), float(b)) for a, b in state.get("peak_rates", [])]
        self.log_accs = [(int(a), float(b)) for a, b in state.get("log_accs", [])]
        self.log_losses = [(int(a), float(b)) for a, b in state.get("log_losses", [])]
        chance = state.get("chance")
        self.chance = (int(chance[0]), float(chance[1])) if chance else None
        self._kinds = dict(state.get("kinds", {}))  # what ``conclude`` reads for held alerts
        self._squeezed = list(state.get("squeezed", []))
        self.levels = LossLevels()  # read again from the kept losses
