"""lightning-cnnviz: see inside a CNN while it trains, and be told when training goes wrong.

Add monitors to a Lightning ``Trainer`` and open TensorBoard::

    from lightning_cnnviz import GradCAMMonitor, KernelMonitor
    trainer = Trainer(callbacks=[KernelMonitor(), GradCAMMonitor()])

Monitors are imported on first use, so ``import lightning_cnnviz`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_MONITORS = {
    "Monitor": "lightning_cnnviz.core.monitor",
    "KernelMonitor": "lightning_cnnviz.kernels.callback",
    "FeatureMapMonitor": "lightning_cnnviz.feature_maps.callback",
    "ActivationMonitor": "lightning_cnnviz.activations.callback",
    "GradCAMMonitor": "lightning_cnnviz.gradcam.callback",
    "OverfittingMonitor": "lightning_cnnviz.overfitting.callback",
    "EmbeddingMonitor": "lightning_cnnviz.embeddings.callback",
    "ActivationMaximizationMonitor": "lightning_cnnviz.activation_maximization.callback",
    "AdversarialMonitor": "lightning_cnnviz.adversarial.callback",
}

__all__ = [*_MONITORS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _MONITORS:
        return getattr(importlib.import_module(_MONITORS[name]), name)
    raise AttributeError(f"module 'lightning_cnnviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
