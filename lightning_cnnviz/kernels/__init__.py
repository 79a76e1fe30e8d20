"""``KernelMonitor``: what the conv filters look like and how fast they change.

``callback.py`` the monitor; ``figures.py`` the scalars (``hf_energy``,
``relative_change``, ``mean_abs``); ``draw.py`` conv weights as grids of their
filters; ``dense.py`` Linear weights as heatmaps and as maps over the conv output.
"""
