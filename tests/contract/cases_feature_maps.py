"""FeatureMapMonitor in the safety contract: hooks only during its probe pass on logging steps."""

from lightning_cnnviz.feature_maps.callback import FeatureMapMonitor
from tests.contract.registry import MonitorCase

CASES = {
    "feature_maps": MonitorCase(
        lambda: FeatureMapMonitor(every_n_steps=2, num_samples=4), every_n_steps=2
    ),
    "feature_maps_all_per_map": MonitorCase(
        lambda: FeatureMapMonitor(
            every_n_steps=2, num_samples=4, channel_select="all", normalization="per_map"
        ),
        every_n_steps=2,
    ),
}
