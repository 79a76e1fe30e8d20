"""EmbeddingMonitor in the safety contract (probe + up to 24 validation samples, batches of 8)."""

from lightning_cnnviz.embeddings.callback import EmbeddingMonitor
from tests.contract.registry import MonitorCase

CASES = {
    "embeddings": MonitorCase(
        lambda: EmbeddingMonitor(every_n_steps=2, num_samples=4, max_points=24, batch_size=8),
        every_n_steps=2,
    ),
    "embeddings_conv_layer": MonitorCase(
        lambda: EmbeddingMonitor(layers="Conv2d", every_n_steps=2, num_samples=4, max_points=12),
        every_n_steps=2,
    ),
}
