"""``EmbeddingMonitor``: penultimate features of validation samples for TensorBoard's projector.

``callback.py`` the monitor; ``features.py`` which points, their pooled features
and ``class_separation``.
"""
