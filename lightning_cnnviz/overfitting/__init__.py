"""``OverfittingMonitor`` and its pure parts.

``callback.py`` the monitor; ``metrics.py`` what one validation showed (logged values,
probe accuracy, loss, confidence, calibration, per-class accuracy, confusion counts);
``batch_stats.py`` the probe with BatchNorm on batch statistics; ``rules.py`` the
diagnosis rules (overfitting, memorisation, not learning, BatchNorm mismatch);
``detector.py`` what changed at each validation; ``text.py`` the diagnosis in words;
``confusion.py`` the most confused classes; ``draw.py`` the chart layout and bars.
"""
