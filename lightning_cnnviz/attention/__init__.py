"""AttentionMonitor: class-token attention per head and attention rollout of vision transformers."""

from lightning_cnnviz.attention.callback import AttentionMonitor

__all__ = ["AttentionMonitor"]
