"""The reference CNN and data modules the configs, examples and tests train.

``MNISTClassifier`` is the classic two-conv CNN (206,922 parameters);
``MNISTDataModule`` reads real MNIST from torchvision's folder layout (downloading
only when asked); ``SyntheticDigitsDataModule`` renders MNIST-like digits offline.
Both data modules share the normalisation and the interface, so a config swaps one
for the other.
"""

from lightning_cnnviz.reference.mnist import MNISTDataModule, MNISTNotFoundError
from lightning_cnnviz.reference.model import MNISTClassifier
from lightning_cnnviz.reference.synthetic import SyntheticDigitsDataModule

__all__ = [
    "MNISTClassifier",
    "MNISTDataModule",
    "MNISTNotFoundError",
    "SyntheticDigitsDataModule",
]
