"""The gradients part of ``TrainingDiagnosis``: vanishing, exploding, saturated, and over.

Nothing here knows about Lightning. ``GradientReview`` is a part of
``diagnose.TrainingDiagnosis`` (a mixin, as the monitors' parts are): at each log (no
divergence standing) it keeps the gradient baseline (the first log's level, raised at
each new low of the loss), runs ``gradients.gradient_findings`` on the per-layer
gradient profile and the saturating activations, and turns a standing
``vanishing_gradients`` or ``saturated_activations`` problem into a note once learning
has begun. What it keeps across logs (``first_rms``, ``weak_logs``) lives on the
diagnosis, which saves it in checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from lightning_cnnviz.activations.clipping import clipped_by_value
from lightning_cnnviz.activations.dead_rules import STALLED
from lightning_cnnviz.activations.episodes import Verdict
from lightning_cnnviz.activations.gradients import (
    FALLING,
    SATURATED,
    STUCK_LOGS,
    STUCK_STEPS,
    attenuated,
    depth_ratio,
    gradient_cut,
    gradient_findings,
    mean_rms,
    saturation_eased,
)
from lightning_cnnviz.activations.loss_levels import LossLevels

__all__ = ["GradientReview"]


class GradientReview:
    """The gradient rules' review at one log (a part of ``TrainingDiagnosis``).

    Uses the diagnosis's ``levels``, ``reported`` and ``_new``.
    """

    levels: LossLevels
    first_rms: float | None
    grad_rise: float  # the most the gradient's level rose over ``first_rms`` at any log
    weak_logs: int  # logs in a row whose gradient profile was ``attenuated``
    clip: tuple[float | None, str | None]  # the trainer's clipping value and algorithm
    frozen_head: str | None  # the first layer, frozen: the profile starts after it
    classes: int | None
    reported: dict[str, str]

    def _new(self, kind: str, severity: str) -> bool:
        raise NotImplementedError  # the diagnosis's

    def _gradients(
        self,
        step: int,
        epoch: int,
        series: Sequence[float],
        figures: Mapping[str, Mapping[str, Tensor]],
        profile: list[tuple[str, float]],
        kinds: Mapping[str, str | None],
        dying: Mapping[str, float],
        zero_layers: Sequence[str],
        previous: int,
        gain: float | None,
    ) -> tuple[list[Verdict], bool]:
        """One log's gradient verdicts, and whether the loss is falling (for the dead units).

        Falling: at a new low, by at least ``FALLING`` since the ``previous`` log (what the
        gradient rules read too) or beyond its own noise. ``gain``: the loss's progress
        since the start (``None``: unknown).
        """
        found: list[Verdict] = []
        clipped = clipped_by_value(profile, *self.clip)
        if clipped is not None and self._new("clipped_gradients", "note"):
            text, fig = clipped
            message = f"At step {step} (epoch {epoch}): {text}."
            found.append(Verdict("clipped_gradients", "note", message, fig))
        stalled = None if gain is None else gain < STALLED
        now, new_low = mean_rms(profile), self.levels.at_new_low(series)
        if now is not None and not zero_layers:  # a zero layer blocks backprop: no baseline
            # the baseline: the first log's level, raised to that of every log at which the
            # loss set a new low (a flat start's or a zero head's trickle is no reference)
            base = self.first_rms
            self.grad_rise = max(self.grad_rise, now / base if base else 1.0)
            self.first_rms = now if base is None or (new_low and now > base) else base
        saturation = {
            site: float(f["saturation"])
            for site, f in figures.items()
            # sigmoid-like, or a rectifier capped at a top (ReLU6; hunt 28: biases of +8
            # pinned every unit at 6, told vanishing gradients from depth)
            if kinds.get(site) in ("saturating", "rectifier") and "saturation" in f
        }
        fall = self.levels.fall(series, previous)
        falling = new_low and fall is not None and fall >= FALLING  # two signals agreeing
        # for silent units: a loss falling beyond its own noise has not stalled, however
        # little it has fallen since the start (a 100-class net leaving chance at step 50)
        clearly = new_low and self.levels.fell_clearly(series, previous)
        # rectifier units dying at this log block the gradient below them: the dead-unit
        # finding tells that cause (a ReLU net whose loss was scaled 1000x: 69-94% of three
        # layers dead at step 10, first layers at 1e-4 of the last ones' gradient)
        dead_now = any(kinds.get(site) != "leaky" for site in dying)
        self.weak_logs = self.weak_logs + 1 if attenuated(profile) else 0
        stuck = (
            self.weak_logs >= STUCK_LOGS
            and step >= STUCK_STEPS
            and bool(stalled)
            and self.levels.at_chance(series, self.classes)
        )  # a weaker attenuation, held while nothing is learnt, tells vanishing gradients too
        capped = {site for site in saturation if kinds.get(site) == "rectifier"}
        told = gradient_findings(
            profile, self.first_rms, saturation, stalled, new_low, falling, stuck, capped
        )
        for kind, severity, message, fig in told:
            # a profile that starts after frozen layers measures no vanishing: its "first
            # layers" are the first trainable ones (a timm resnet18d frozen up to layer4:
            # 4.3e-4 at layer4.0.conv1; the frozen layers are the kernel monitor's finding)
            # nor one cut off: what reaches no layer before a cut is no vanishing gradient (a
            # `.detach()` in a zero-gated residual net, hunt 52: its gated branches' small
            # gradients were told as vanishing, with Sigmoid/Tanh remedies)
            cut = gradient_cut(profile, {}) is not None
            if kind == "vanishing_gradients" and (dead_now or self.frozen_head or cut):
                continue
            if self._new(kind, severity):
                found.append(
                    Verdict(kind, severity, f"At step {step} (epoch {epoch}): {message}", fig)
                )
        ratio = depth_ratio(profile)
        if (
            self.reported.get("vanishing_gradients") == "problem"
            and not any(kind == "vanishing_gradients" for kind, *_ in told)
            and ratio is not None
            and not (gain is None or stalled)
        ):  # gradients reach the first layers and the loss falls: the problem is over
            self.reported["vanishing_gradients"] = "note"
            message = (
                f"At step {step} (epoch {epoch}): gradients reach the first layers again "
                f"({ratio:.1e} of the last layers' per parameter) and the loss has fallen "
                f"{gain:.0%} since the start: the vanishing gradients reported earlier no "
                "longer hold learning back."
            )
            fig = {"depth_ratio": ratio, "progress": gain}
            found.append(Verdict("vanishing_gradients", "note", message, fig, change="gone"))
        if self.reported.get("saturated_activations") == "problem" and not (
            gain is None or stalled
        ):  # learning has begun: the standing problem becomes a note
            self.reported["saturated_activations"] = "note"
            text, fig = saturation_eased(
                gain, {s: v for s, v in saturation.items() if v > SATURATED}
            )
            message = f"At step {step} (epoch {epoch}): {text}."
            found.append(Verdict("saturated_activations", "note", message, fig, change="gone"))
        return found, falling or clearly
