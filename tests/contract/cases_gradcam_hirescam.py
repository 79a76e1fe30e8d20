"""GradCAMMonitor(method="hirescam") in the safety contract: gradient x activation per position."""

from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from tests.contract.registry import MonitorCase

CASES = {
    "gradcam_hirescam": MonitorCase(
        lambda: GradCAMMonitor(
            every_n_steps=2, num_samples=4, method="hirescam", misclassified_pool=16
        ),
        every_n_steps=2,
        window=0,
    ),
}
