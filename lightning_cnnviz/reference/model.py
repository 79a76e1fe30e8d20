"""``MNISTClassifier``: the classic two-conv CNN the examples and configs train."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from typing_extensions import override

from lightning_cnnviz.core.checks import check_choice, check_number

__all__ = ["MNISTClassifier"]


class MNISTClassifier(LightningModule):
    """A small CNN for 1x28x28 digits: two conv blocks and two fully connected layers.

    ``conv1`` (1->16, 3x3, padding 1), ``relu1``, ``pool1`` (2x2), ``conv2``
    (16->32, 3x3, padding 1), ``relu2``, ``pool2`` (2x2), ``fc1`` (1568->128),
    ``relu3``, ``fc2`` (128->10): 206,922 parameters. With ``dropout > 0`` a
    ``dropout`` module (no parameters) acts between ``relu3`` and ``fc2``.

    The hyperparameters are init arguments so that YAML configs can reproduce
    healthy runs and typical failures (too high a learning rate, dead ReLUs
    from a negative ``bias_init``, no regularisation). Logs ``train/loss`` and
    ``train/acc`` (per step and per epoch), ``val/loss`` and ``val/acc`` (per
    epoch), ``test/loss`` and ``test/acc``.

    Args:
        lr: Learning rate (> 0).
        optimizer: ``"adam"`` (``torch.optim.Adam``) or ``"sgd"`` (with ``momentum``).
        momentum: SGD momentum in [0, 1); ignored by Adam.
        weight_decay: L2 penalty (>= 0) passed to the optimizer.
        dropout: Dropout probability in [0, 1) before ``fc2``; 0 means no dropout module.
        activation: ``"relu"`` or ``"leaky_relu"`` (slope 0.01) for ``relu1``-``relu3``.
        bias_init: If not ``None``, every conv and linear bias is filled with this value
            (e.g. ``-1.0`` with a large ``lr`` kills ReLUs); ``None`` keeps PyTorch's init.

    Raises:
        ValueError: An argument is out of range; the message names it and echoes the value.

    Example::

        >>> import torch
        >>> model = MNISTClassifier(lr=1e-3, dropout=0.25)
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
        >>> sum(p.numel() for p in model.parameters())
        206922
        >>> [name for name, _ in model.named_children()][:3]
        ['conv1', 'relu1', 'pool1']
    """

    def __init__(
        self,
        lr: float = 1e-3,
        optimizer: Literal["adam", "sgd"] = "adam",
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        dropout: float = 0.0,
        activation: Literal["relu", "leaky_relu"] = "relu",
        bias_init: float | None = None,
    ) -> None:
        super().__init__()
        check_number("lr", lr, low=0.0, low_open=True)
        check_choice("optimizer", optimizer, ("adam", "sgd"))
        check_number("momentum", momentum, low=0.0, high=1.0, high_open=True)
        check_number("weight_decay", weight_decay, low=0.0)
        check_number("dropout", dropout, low=0.0, high=1.0, high_open=True)
        check_choice("activation", activation, ("relu", "leaky_relu"))
        check_number("bias_init", bias_init, allow_none=True)
        self.save_hyperparameters()

        def act() -> nn.Module:
            return nn.ReLU() if activation == "relu" else nn.LeakyReLU(0.01)

        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.relu1 = act()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.relu2 = act()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.relu3 = act()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.fc2 = nn.Linear(128, 10)
        if bias_init is not None:
            for module in self.modules():
                if isinstance(module, nn.Conv2d | nn.Linear) and module.bias is not None:
                    nn.init.constant_(module.bias, float(bias_init))

    @override
    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, 10) for images (N, 1, 28, 28)."""
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(torch.flatten(x, 1)))
        if self.dropout is not None:
            x = self.dropout(x)
        return self.fc2(x)

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(dim=1) == y).float().mean()
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", acc, on_step=on_step, on_epoch=True, prog_bar=True)
        return loss

    @override
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    @override
    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    @override
    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        return self(x).argmax(dim=1)

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        if hp.optimizer == "sgd":
            return torch.optim.SGD(
                self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
            )
        return torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
