"""AdversarialMonitor in the safety contract (FGSM, Grad-CAM, feature maps; 4-sample probe)."""

from lightning_cnnviz.adversarial.callback import AdversarialMonitor
from tests.contract.registry import MonitorCase

CASES = {
    "adversarial": MonitorCase(
        lambda: AdversarialMonitor(every_n_steps=2, num_samples=4, samples_shown=2),
        every_n_steps=2,
    ),
}
