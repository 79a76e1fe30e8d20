"""``GradCAMMonitor``: where the model looks, on train, val and misclassified probe images.

``callback.py`` the monitor; ``metrics.py`` concentration, on-object share, drift;
``shortcut.py`` the ``cam_off_object`` / ``cam_shortcut`` findings; ``draw.py`` the
labelled heatmap grids; ``misclassified.py`` the samples the model gets wrong;
``saliency.py`` the optional input-gradient rows. Grad-CAM itself and its automatic
layer choice are shared with other monitors: ``core/cam.py``, ``core/target_layer.py``.
"""
