"""Small nets and a short fit shared by the diagnosis's real-fit tests."""

import warnings

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from lightning_cnnviz.activations.callback import ActivationMonitor
from lightning_cnnviz.reference.synthetic import SyntheticDigitsDataModule


class Net(L.LightningModule):
    def __init__(self, net: nn.Module, lr: float, momentum: float = 0.9) -> None:
        super().__init__()
        self.net, self.lr, self.momentum = net, lr, momentum

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)


def leaky_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.LeakyReLU(0.01), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.LeakyReLU(0.01), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 49, 64), nn.LeakyReLU(0.01), nn.Linear(64, 10),
    )  # fmt: skip


def plain_cnn(activation: type[nn.Module], depth: int, width: int, pools: tuple[int, int]):
    """``depth`` 3x3 convs of ``width`` channels, each with ``activation``; 28 -> 7 by two pools."""
    layers, channels = [], 1
    for i in range(depth):
        layers += [nn.Conv2d(channels, width, 3, padding=1), activation()]
        channels = width
        if i in pools:
            layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * 49, 10))


def sigmoid_cnn(depth: int = 8) -> nn.Module:
    return plain_cnn(nn.Sigmoid, depth, 16, (2, 5))


def scaled_cnn(gain: float, depth: int = 6) -> nn.Module:
    """A plain ReLU CNN, He (kaiming) init times ``gain`` per layer (1: the standard)."""
    net = plain_cnn(nn.ReLU, depth, 8, (1, 3))
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight)
            module.weight.data.mul_(gain)
            nn.init.zeros_(module.bias)
    return net


def fit(tmp_path, model, steps, every=25, layers="auto"):
    L.seed_everything(0, verbose=False)
    data = SyntheticDigitsDataModule(train_size=64 * steps, val_size=64, batch_size=64)
    monitor = ActivationMonitor(every_n_steps=every, layers=layers)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=steps, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
        logger=TensorBoardLogger(tmp_path, name="tb"), callbacks=[monitor],
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, data)
    return trainer, [str(w.message) for w in caught]
