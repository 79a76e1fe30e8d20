"""KernelMonitor in the safety contract: it reads weights only (no hooks, no forward pass)."""

from lightning_cnnviz.kernels.callback import KernelMonitor
from tests.contract.registry import MonitorCase

CASES = {
    "kernels": MonitorCase(lambda: KernelMonitor(every_n_steps=2), every_n_steps=2),
    "kernels_all_options": MonitorCase(
        lambda: KernelMonitor(
            every_n_steps=2, normalization="layer_symmetric", log_delta=True, linear=True
        ),
        every_n_steps=2,
    ),
}
