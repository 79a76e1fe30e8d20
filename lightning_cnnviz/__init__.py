"""lightning-cnnviz: see inside a CNN while it trains, and be told when training goes wrong.

Add monitors to a Lightning ``Trainer`` and open TensorBoard::

    from lightning_cnnviz import GradCAMMonitor, KernelMonitor
    trainer = Trainer(callbacks=[KernelMonitor(), GradCAMMonitor()])

After ``trainer.fit(...)``, ``lightning_cnnviz.findings_of(trainer)`` returns what the
monitors noticed (dead units, Grad-CAM leaving the object, overfitting), oldest first,
each with ``source``, ``kind``, ``step``, ``epoch``, ``message`` and ``figures``.

Public names are imported on first use, so ``import lightning_cnnviz`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it (imported on first access)
_PUBLIC = {
    "Monitor": "lightning_cnnviz.core.monitor",
    "KernelMonitor": "lightning_cnnviz.kernels.callback",
    "FeatureMapMonitor": "lightning_cnnviz.feature_maps.callback",
    "ActivationMonitor": "lightning_cnnviz.activations.callback",
    "GradCAMMonitor": "lightning_cnnviz.gradcam.callback",
    "OverfittingMonitor": "lightning_cnnviz.overfitting.callback",
    "EmbeddingMonitor": "lightning_cnnviz.embeddings.callback",
    "ActivationMaximizationMonitor": "lightning_cnnviz.activation_maximization.callback",
    "AdversarialMonitor": "lightning_cnnviz.adversarial.callback",
    "AttentionMonitor": "lightning_cnnviz.attention.callback",
    "findings_of": "lightning_cnnviz.core.findings",
    "in_probe_pass": "lightning_cnnviz.core.probe_pass",
    "CnnvizWarning": "lightning_cnnviz.core.say",
}

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'lightning_cnnviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
