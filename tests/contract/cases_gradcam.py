"""GradCAMMonitor in the safety contract: a probe pass with autograd at train batch end only."""

from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from tests.contract.registry import MonitorCase

CASES = {
    "gradcam": MonitorCase(
        lambda: GradCAMMonitor(every_n_steps=2, num_samples=4, misclassified_pool=16),
        every_n_steps=2,
        window=0,
    ),
    "gradcam_guided": MonitorCase(
        lambda: GradCAMMonitor(
            every_n_steps=2,
            num_samples=4,
            method="guided_gradcam",
            target="true",
            misclassified_pool=16,
        ),
        every_n_steps=2,
        window=0,
    ),
    "gradcam_saliency": MonitorCase(
        lambda: GradCAMMonitor(
            every_n_steps=2,
            num_samples=4,
            misclassified=False,
            saliency=["saliency", "integrated_gradients"],  # SmoothGrad: tests/test_saliency.py
        ),
        every_n_steps=2,
        window=0,
    ),
}
