"""What the first log says of the weights as initialised: a part of ``CauseReview``.

Nothing here knows about Lightning. ``InitReview`` runs the initial-scale check once, at
the first log with losses (``initial_scale.init_explosion``: the first losses far above
the chance level ``ln K``; ``scaled_loss``: a loss scaled in ``training_step``), and tells
layers whose units all hold the same weights (``symmetric_weights``) or whose biases start
far below zero with units silent (``negative_biases``). Each, like all-zero layers, makes
the weights' initialisation the cause that later findings name (``init_cause``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from lightning_cnnviz.activations.episodes import Verdict
from lightning_cnnviz.activations.init_weights import (
    QUIET,
    SILENT,
    identical_text,
    negative_text,
)
from lightning_cnnviz.activations.initial_scale import (
    NEAR,
    init_explosion,
    scaled_at_start,
    scaled_loss,
)
from lightning_cnnviz.core.inputs import RAW_SCALE
from lightning_cnnviz.core.voice import listed

__all__ = ["InitReview"]


class InitReview:
    """The checks of the weights' initialisation (a part of ``CauseReview``).

    Uses the diagnosis's ``init_checked``, ``init_cause``, ``chance_loss``,
    ``loss_scale`` and ``_new``.
    """

    init_checked: bool
    input_scale: (
        Mapping[str, float] | None
    )  # the raw inputs' figures (``core.inputs.raw_scale``), where far off
    init_cause: str | None
    chance_loss: float | None
    loss_scale: float | None

    def _new(self, kind: str, severity: str) -> bool:
        raise NotImplementedError  # the diagnosis's

    def wants_chance(self) -> bool:
        """Whether the next ``review`` reads ``chance`` (the initial-scale check is pending)."""
        return not self.init_checked

    def _initial_scale(
        self,
        step: int,
        epoch: int,
        series: list[tuple[int, float]],
        chance: tuple[int, float] | None,
    ) -> list[Verdict]:
        """The initial-scale check, once, at the first log with losses (skipped without K)."""
        if self.init_checked or not series:
            return []
        self.init_checked = True  # K unknown at the first log stays unknown: not asked again
        if chance is None or series[0][0] > 0:
            # the first losses seen are not the run's first (a fit resumed from a checkpoint
            # without this monitor's state: setups hunt 67, a blow-up at step 33 was told
            # "exploding activations at initialisation")
            return []
        raw = self._raw_inputs()
        found = init_explosion([v for _, v in series], *chance, raw_inputs=raw)
        if found is None or (self.loss_scale is not None and not raw):  # ``_scaled_start``
            scaled = scaled_loss([v for _, v in series], *chance)
            if scaled is not None and scaled[1]["scale"] > 1 and len(series) <= NEAR:
                # a loss scaled up, or an explosion the first updates brought down (hunt 96:
                # 123, 223 read at step 1): told apart at the next log, by its last losses
                self.init_checked = False
                return []
            if scaled is None or not self._new("scaled_loss", "note"):
                return []
            text, fig = scaled
            if fig["scale"] > 1:  # the cause a divergence names (a loss scaled down is not)
                self.loss_scale = fig["scale"]
            return [Verdict("scaled_loss", "note", f"At step {step} (epoch {epoch}): {text}.", fig)]
        if not self._new(found[0], found[1]):
            return []
        kind, severity, message, fig = found
        self.chance_loss = fig["chance_loss"]
        scale = "inputs'" if "input_max" in fig else "weights'"
        self.init_cause = (
            f"The {scale} scale at initialisation is the cause here, not the learning rate: "
            f"the first losses sat ~{fig['over_chance']:.0f}x above the chance level "
            "(see `exploding_gradients`)."
        )
        return [Verdict(kind, severity, f"At step {step} (epoch {epoch}): {message}", fig)]

    def _raw_inputs(self) -> float:
        """The largest raw input where the inputs are far from unit scale, else 0."""
        raw = (self.input_scale or {}).get("input_max", 0.0)
        return raw if raw > RAW_SCALE else 0.0  # (not the flat inputs `scale_text` tells too)

    def _scaled_start(
        self,
        step: int,
        epoch: int,
        series: list[tuple[int, float]],
        chance: tuple[int, float] | None,
        growth: float | None,
    ) -> list[Verdict]:
        """A loss scaled, read at the first log from step 0 (``scaled_at_start``): a note.

        Before the divergence rules, whose cause it then is: the first updates of a loss
        scaled up under SGD blow the weights up before the first log, where the probe can
        no longer read the model's own cross-entropy (held-out hunt 122). ``growth``: the
        weights' at step 0 (``initial_scale.init_growth``); ``chance``: the first log's.
        """
        if self.loss_scale is not None or chance is None or not series or series[0][0] > 0:
            return []
        found = None if self._raw_inputs() else scaled_at_start(series[0][1], *chance, growth)
        if found is None:
            return []
        text, fig = found
        self.loss_scale = fig["scale"]
        if not self._new("scaled_loss", "note"):
            return []
        return [Verdict("scaled_loss", "note", f"At step {step} (epoch {epoch}): {text}.", fig)]

    def _symmetric(self, step: int, epoch: int, layers: Sequence[str]) -> list[Verdict]:
        """Layers whose units all hold the same weights after the first updates: a problem.

        Also the cause the dead-unit and not-learning findings name.
        """
        if not layers or step < 1 or not self._new("symmetric_weights", "problem"):
            return []
        held = (
            f"The weights' initialisation is the cause here, not the learning rate: every "
            f"unit of {', '.join(f'`{n}`' for n in layers[:4])} holds the same weights"
        )
        return self._init_problem(
            "symmetric_weights", held, identical_text(layers, step, epoch), layers
        )

    def _init_problem(
        self, kind: str, cause: str, text: str, layers: Sequence[str]
    ) -> list[Verdict]:
        """An initialisation problem told, and its ``cause`` the one later findings name."""
        if self.init_cause is None:
            self.init_cause = f"{cause} (see `{kind}`)."
        return [Verdict(kind, "problem", text, {"layers": float(len(layers))})]

    def _negative_bias(
        self,
        step: int,
        epoch: int,
        layers: Sequence[str],
        figures: Mapping[str, Mapping[str, Tensor]],
    ) -> list[Verdict]:
        """Layers whose biases start far below zero while units are silent: a problem.

        Silent: a watched site with ``SILENT`` of its units never positive on the probe (a
        SiLU's too: its dormant share is relative to the layer, all of it equally quiet), or
        ``QUIET`` of its outputs not positive (a unit of a map positive at a few places).
        Also the cause the dead-unit, gradient and not-learning findings name.
        """
        silent = any(
            float(f["dead_fraction"]) >= SILENT or float(f.get("zero_fraction", 0.0)) >= QUIET
            for f in figures.values()
        )
        if not layers or not silent or not self._new("negative_biases", "problem"):
            return []
        held = (
            "The biases' initialisation is the cause here, not the learning rate: "
            f"{listed(layers)} {'starts' if len(layers) == 1 else 'start'} with biases far "
            "below zero"
        )
        return self._init_problem(
            "negative_biases", held, negative_text(layers, step, epoch), layers
        )

    def _zero_init(self, zero_layers: Sequence[str]) -> None:
        """The weights' scale as the cause, where layers hold all-zero weights (first log)."""
        if zero_layers and self.init_cause is None:
            names = listed(zero_layers)
            self.init_cause = (
                f"The weights' scale at initialisation is the cause here, not the learning rate: "
                f"{names} hold all-zero weights (zero initialisation), so their units "
                "compute nothing and no gradient reaches the layers below."
            )
