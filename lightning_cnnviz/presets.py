"""Ready-made sets of monitors: ``light``, ``standard`` and ``full``.

* ``light``: statistics that cost next to nothing: activation statistics with
  dead-unit detection, kernel change, the overfitting diagnosis.
* ``standard``: ``light`` plus pictures: kernel grids, feature maps of the probe
  images, Grad-CAM on train and val probes.
* ``full``: everything: histograms, misclassified CAMs, saliency rows, embeddings,
  activation maximisation, adversarial sensitivity and attention maps
  (vision transformers; the attention view steps aside on a model without attention).

Every monitor runs on the automatic schedule (dense early, fitted to the run's
length); the monitors of a preset share a budget of 1% of training time
(``PRESET_BUDGET``), so expensive ones log less often (``benchmarks/overhead.py``
measures it).

From YAML, name a preset at the top level of a ``cnnviz`` config (``preset:
standard``); the monitors are added to ``trainer.callbacks``.

Example::

    >>> [type(m).__name__ for m in callbacks("light")]
    ['ActivationMonitor', 'KernelMonitor', 'OverfittingMonitor']
    >>> len(callbacks("standard")), len(callbacks("full"))
    (5, 9)
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from lightning_cnnviz.activation_maximization.callback import ActivationMaximizationMonitor
from lightning_cnnviz.activations.callback import ActivationMonitor
from lightning_cnnviz.adversarial.callback import AdversarialMonitor
from lightning_cnnviz.attention.callback import AttentionMonitor
from lightning_cnnviz.core.monitor import Monitor
from lightning_cnnviz.embeddings.callback import EmbeddingMonitor
from lightning_cnnviz.feature_maps.callback import FeatureMapMonitor
from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from lightning_cnnviz.kernels.callback import KernelMonitor
from lightning_cnnviz.overfitting.callback import OverfittingMonitor

__all__ = ["PRESETS", "PRESET_BUDGET", "Preset", "argument_names", "callbacks"]

Preset = Literal["light", "standard", "full"]
PRESETS: tuple[str, ...] = Preset.__args__

_SCHEDULE = {"every_n_steps", "every_n_epochs"}
PRESET_BUDGET = 0.01  # a preset's monitors together spend at most 1% of training time

# (monitor class, its arguments) per preset; defaults everywhere else
_SETS: dict[str, list[tuple[type[Monitor], dict[str, Any]]]] = {
    "light": [
        (ActivationMonitor, {}),
        (KernelMonitor, {}),
        (OverfittingMonitor, {}),
    ],
    # Grad-CAM of 8 train + 8 val probes and no misclassified search (`full` only).
    "standard": [
        (ActivationMonitor, {}),
        (KernelMonitor, {}),
        (OverfittingMonitor, {}),
        (FeatureMapMonitor, {}),
        (GradCAMMonitor, {"num_samples": 8, "misclassified": False}),
    ],
    "full": [
        (ActivationMonitor, {"histograms": True}),
        (KernelMonitor, {"log_delta": True, "linear": True}),
        (OverfittingMonitor, {}),
        (FeatureMapMonitor, {}),
        (GradCAMMonitor, {"saliency": ["saliency", "integrated_gradients"]}),
        (EmbeddingMonitor, {}),
        (ActivationMaximizationMonitor, {}),
        (AdversarialMonitor, {}),
        (AttentionMonitor, {}),  # steps aside (one warning) on a model without attention
    ],
}


def argument_names(preset: Preset = "full") -> set[str]:
    """Every argument a monitor of ``preset`` takes (``"full"``: of every preset)."""
    return set().union(*(cls.arguments() for cls, _ in _SETS[preset]))


def callbacks(preset: Preset = "standard", **shared: Any) -> list[Monitor]:
    """The monitors of a preset, new instances each call.

    Args:
        preset: ``"light"``, ``"standard"`` or ``"full"``.
        **shared: Arguments given to every monitor that accepts them, e.g.
            ``output_key=0`` for a model that returns ``(logits, features)``,
            ``tag_prefix="run_a/"`` or ``strict=True``. A schedule given here
            (``every_n_steps`` or ``every_n_epochs``) replaces the preset's. ``layers``
            goes to every monitor but ``AttentionMonitor``, which finds the attention
            modules itself (setups hunt 69: ``callbacks("full", layers=[...])`` on a CNN
            stopped the fit); name them on an ``AttentionMonitor`` of your own.
    """
    if preset not in _SETS:
        raise ValueError(f"`preset` must be one of {PRESETS}, got {preset!r}")
    known = argument_names(preset)
    if unknown := sorted(set(shared) - known):
        # a typo would be dropped by every monitor alike, and the user believe it set
        hints = [
            f"`{key}`" + (f" (did you mean `{close[0]}`?)" if close else "")
            for key in unknown
            for close in [difflib.get_close_matches(key, sorted(known), n=1)]
        ]
        raise TypeError(
            f"no monitor of the {preset!r} preset takes {', '.join(hints)}; "
            f"they take: {', '.join(sorted(known))}"
        )
    monitors = []
    budget = PRESET_BUDGET / len(_SETS[preset])  # the set shares the budget
    for cls, args in _SETS[preset]:
        args = {"budget": budget, **args}
        extra = {key: value for key, value in shared.items() if key in cls.arguments()}
        if not cls.others_by_name:  # attention maps come from attention modules it finds:
            extra.pop("layers", None)  # a CNN's layers named for the others stopped the fit
        if extra.keys() & _SCHEDULE:  # a schedule given replaces the preset's own
            args = {key: value for key, value in args.items() if key not in _SCHEDULE}
        monitors.append(cls(**{**args, **extra}))
    return monitors
