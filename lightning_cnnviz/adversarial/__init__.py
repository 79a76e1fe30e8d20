"""``AdversarialMonitor``: accuracy under a small FGSM attack, and what it changes inside.

``callback.py`` the monitor; ``fgsm.py`` the attack (Captum) and the example rows.
Grad-CAM before/after comes from ``core/cam.py`` at ``core/target_layer.py``'s layer.
"""
