"""OverfittingMonitor in the safety contract.

It runs the model on its probes (eval mode, no gradients) once per validation, after
the validation ends, and taps the module's forward during a validation that brings an
evaluation only (the val probe's logits, ``loop_logits.py``). One layer tap besides: the
first convolution for the fit's first training batch and first validation batch, and for
the training batch a validation follows, or where that cannot be told (here: validation
every 4 batches counted across epochs) the one that runs each evaluation
(``step_inputs.py``: per-channel statistics kept on the device, no host sync).
The zoo models log ``train/loss`` and ``val/loss`` but no accuracy: the monitor says once
which keys it misses and goes on with what it has (the train probe and the BatchNorm
pass then run at every evaluation, ``passes.py``: nothing to screen with).
"""

from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from tests.contract.registry import MonitorCase

CASES = {
    "overfitting": MonitorCase(
        lambda: OverfittingMonitor(every_n_steps=2, num_samples=8),
        every_n_steps=2,
        window=0,
        first_batch=True,
        after_event=True,
    ),
}
