"""``ActivationMaximizationMonitor``: the inputs that make channels and classes fire most.

``callback.py`` the monitor and its captioned grids; ``optimize.py`` the
regularised gradient ascent on the input (the model's parameters untouched).
"""
