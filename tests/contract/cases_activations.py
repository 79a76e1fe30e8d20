"""ActivationMonitor in the safety contract.

The monitor hooks the last ``window`` training *batches* before each logging step;
the contract measures its window in optimizer *steps*. The contract trains with
``accumulate_grad_batches=2``, so ``window=2`` batches is exactly 1 step: the two
batches that run towards steps 3 and 6 carry hooks, every other batch runs bare
(with ``every_n_steps=3``; batch 5, where the failing fit raises, is inside a window).
"""

from lightning_cnnviz.activations.callback import ActivationMonitor
from tests.contract.registry import MonitorCase

ACCUMULATE = 2  # test_contract.fit's accumulate_grad_batches
WINDOW_BATCHES = 2

CASES = {
    "activations": MonitorCase(
        lambda: ActivationMonitor(every_n_steps=3, num_samples=4, window=WINDOW_BATCHES),
        every_n_steps=3,
        window=-(-WINDOW_BATCHES // ACCUMULATE),
    ),
    "activations_histograms": MonitorCase(
        lambda: ActivationMonitor(
            every_n_steps=3, num_samples=4, window=WINDOW_BATCHES, histograms=True
        ),
        every_n_steps=3,
        window=-(-WINDOW_BATCHES // ACCUMULATE),
    ),
}
