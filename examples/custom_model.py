"""Your own CNN, not ours: the monitors find its layers and watch them.

A small BatchNorm network with a *functional* ReLU (``F.relu``) and a tuple output
(logits, features), trained on the embedded synthetic digits. The monitors need
nothing from the model: ``layers="auto"`` picks the convolutions, activations and
the last conv block, and ``output_key`` says which output holds the logits.

    python examples/custom_model.py
    tensorboard --logdir runs --samples_per_plugin images=200

At the end of fit the monitors print where the logs are. In TensorBoard: kernels/,
feature_maps/, activations/, gradcam/ and overfitting/ sections (the `standard` preset).
"""

import argparse

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from lightning_cnnviz.presets import callbacks
from lightning_cnnviz.reference import SyntheticDigitsDataModule


class TinyNet(LightningModule):
    def __init__(self, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.features = nn.Sequential(
            nn.Conv2d(1, 24, 5, padding=2), nn.BatchNorm2d(24), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(24, 48, 3, padding=1), nn.BatchNorm2d(48),
        )  # fmt: skip
        self.head = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = F.relu(self.features(x))  # functional activation: no module to hook
        pooled = features.mean(dim=(2, 3))
        return self.head(pooled), pooled

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)[0]  # one forward pass per step
        loss = F.cross_entropy(logits, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        self.log("train/acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)[0]
        self.log("val/loss", F.cross_entropy(logits, y))
        self.log("val/acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit-batches", type=int, default=None, help="batches per epoch")
    parser.add_argument("--root", default="runs", help="TensorBoard log folder")
    args = parser.parse_args(argv)

    seed_everything(0)
    trainer = Trainer(
        max_epochs=args.epochs,
        limit_train_batches=args.limit_batches,
        limit_val_batches=args.limit_batches,
        logger=TensorBoardLogger(args.root, name="custom_model"),
        callbacks=callbacks("standard", output_key=0),
    )
    trainer.fit(TinyNet(), SyntheticDigitsDataModule(train_size=4000, val_size=1000))


if __name__ == "__main__":
    main()
