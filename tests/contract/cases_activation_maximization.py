"""ActivationMaximizationMonitor in the safety contract (few steps, two channels, all classes)."""

from lightning_cnnviz.activation_maximization.callback import ActivationMaximizationMonitor
from tests.contract.registry import MonitorCase

CASES = {
    "activation_maximization": MonitorCase(
        lambda: ActivationMaximizationMonitor(every_n_steps=2, num_samples=4, channels=2, steps=3),
        every_n_steps=2,
    ),
}
