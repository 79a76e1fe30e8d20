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
    "Monitor": "lightning_cnnviz.callbacks.base",
    "KernelMonitor": "lightning_cnnviz.callbacks.kernels",
    "FeatureMapMonitor": "lightning_cnnviz.callbacks.feature_maps",
    "ActivationMonitor": "lightning_cnnviz.callbacks.activations",
    "GradCAMMonitor": "lightning_cnnviz.callbacks.gradcam",
    "OverfittingMonitor": "lightning_cnnviz.callbacks.overfitting",
    "EmbeddingMonitor": "lightning_cnnviz.callbacks.embeddings",
    "ActivationMaximizationMonitor": "lightning_cnnviz.callbacks.activation_maximization",
    "AdversarialMonitor": "lightning_cnnviz.callbacks.adversarial",
}

__all__ = [*_MONITORS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _MONITORS:
        return getattr(importlib.import_module(_MONITORS[name]), name)
    raise AttributeError(f"module 'lightning_cnnviz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
