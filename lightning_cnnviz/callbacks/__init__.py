"""The monitors: one callback per file, each a thin schedule -> capture -> render -> sink."""

from lightning_cnnviz.callbacks.base import Monitor

__all__ = ["Monitor"]
