"""``OverfittingMonitor`` and its pure parts.

``callback.py`` the monitor; ``metrics.py`` what one validation showed (logged values,
calibration, per-class accuracy); ``detector.py`` when overfitting starts; ``text.py``
the diagnosis in words; ``draw.py`` the train-vs-val chart layout and per-class bars.
"""
