"""What ``TrainingDiagnosis`` keeps of each log's readings: rates, settings, probe, norms.

Nothing here knows about Lightning. ``LogReadings`` is a part of
``diagnose.TrainingDiagnosis`` (a mixin, as ``DiagnosisState`` is): at each log it keeps
the learning rate (at the first log and now, the latest few, and a peak between logs),
the run's settings the remedies fit (decay, clipping, momentum, dropout, precision, a
warm-up, gradient hooks, a maximising optimiser), the probe's accuracy and loss, and
which layers were written outside the optimiser (``rewrites.py``).

Example::

    >>> first_and_now((None, None), 0.1), first_and_now((0.1, 0.1), 1.0)
    ((0.1, 0.1), (0.1, 1.0))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lightning_cnnviz.activations.rewrites import rewritten

__all__ = ["LogReadings", "first_and_now"]

Rewrite = tuple[str, str, float, float]  # (layer, "weights" or "biases", norm before, now)


def first_and_now(
    pair: tuple[float | None, float | None], value: float | None
) -> tuple[float | None, float | None]:
    """``(the first value read, value)``: a setting at the first log and now."""
    return (pair[0] if pair[0] is not None else value, value)


class LogReadings:
    """The readings of each log a later rule or remedy needs (a part of the diagnosis)."""

    last_step: int
    rates: tuple[float | None, float | None]
    log_rates: list[tuple[int, float]]
    peak_rates: list[tuple[int, float]]
    log_accs: list[tuple[int, float]]
    log_losses: list[tuple[int, float]]
    peak_acc: float | None
    decay: tuple[float | None, float | None]
    decays: tuple[float | None, float | None]
    dropouts: tuple[float | None, float | None]
    clip: tuple[float | None, str | None]
    momentum: float | None
    momenta: tuple[float | None, float | None]
    half: bool
    warmup: bool
    hooked: tuple[str, ...]
    maximize: tuple[str, ...]
    _norms: dict[str, float]
    zeroed: tuple[Rewrite, ...]
    rewrite: tuple[Rewrite, ...]
    _rewrite_before: tuple[Rewrite, ...]
    written: tuple[Rewrite, ...]

    def _note_rates(self, step: int, lr: float | None, lr_peak: tuple[int, float] | None) -> None:
        """Keep the rate at this log (and the highest of a step since the last, if higher)."""
        self.rates = first_and_now(self.rates, lr)
        if lr is not None:  # a divergence is confirmed up to two logs after its spike
            self.log_rates = [*self.log_rates[-5:], (step, lr)]
            if lr_peak is not None and lr_peak[1] > lr:  # raised between the logs
                self.peak_rates = [*self.peak_rates[-5:], lr_peak]

    def _note_probe(self, step: int, acc: float | None, loss: float | None) -> None:
        """Keep the probe's accuracy and cross-entropy at this log (the latest few)."""
        if acc is not None:
            self.log_accs = [*self.log_accs[-5:], (step, acc)]
            self.peak_acc = max(self.peak_acc or 0.0, acc)
        if loss is not None:
            self.log_losses = [*self.log_losses[-5:], (step, loss)]

    def _note_settings(
        self,
        decay: tuple[float | None, float | None],
        clip: tuple[float | None, str | None],
        momentum: float | None,
        dropout: float | None,
        half: bool,
        warmup: bool,
        hooked: tuple[str, ...],
        maximize: tuple[str, ...],
    ) -> None:
        """Keep the run's settings, for remedies that fit it (``divergence_remedies.fitted``)."""
        self.decay, self.clip, self.momentum = decay, clip, momentum
        for name, value in (("decays", decay[0]), ("dropouts", dropout), ("momenta", momentum)):
            if value is not None:  # raised during the run: a divergence's cause
                setattr(self, name, first_and_now(getattr(self, name), value))
        self.half, self.warmup, self.hooked, self.maximize = half, warmup, hooked, maximize

    def _note_norms(
        self,
        step: int,
        norms: Mapping[str, float],
        reach: Mapping[str, float] | None,
        written: Sequence[Rewrite],
    ) -> None:
        """Keep the layers rewritten since the last log (``rewrites.rewritten``) and between."""
        steps = max(step - self.last_step, 1) if self.last_step >= 0 else 1
        # the share of every weight the decay takes a step (``Settings.decay_per_step``)
        found = tuple(rewritten(self._norms, norms, reach, steps, self.decay[0] or 0.0))
        self.rewrite, self._rewrite_before = found or self._rewrite_before, found
        self.written = tuple(written)
        self.zeroed = found or self.zeroed
        self._norms = dict(norms)
