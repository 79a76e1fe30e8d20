"""``FeatureMapMonitor``: what each conv block outputs for the probe images.

``callback.py`` the monitor; ``layers.py`` which layers are drawn and which
activation and pooling follow each conv; ``draw.py`` channel choice, ranges and
the pictures.
"""
