"""``ActivationMonitor``: per-layer activation statistics and dead units over training.

``callback.py`` the monitor; ``sites.py`` what it watches (the ``"auto"`` fallback,
call sites and how each is read); ``recorder.py`` the hooks on the window's training
batches and the probe pass, and the one host transfer per log; ``stats.py`` and
``reductions.py`` the statistics themselves (device accumulators, one batch's
contribution); ``dead.py`` the dead-strip history and alerts; ``diagnose.py`` the
training-side rules at each log (divergence, gradients, then dead units: when they hurt
in ``dead_rules.py``, their words in ``dead_words.py``, their episodes in
``episodes.py``; a rectifier on the logits in ``output_activation.py``).
"""
