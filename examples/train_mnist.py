"""Train the reference CNN on real MNIST with the monitors on, from Python.

python examples/train_mnist.py              # reads data/MNIST/raw, downloads it there once
python examples/train_mnist.py --synthetic  # offline: embedded synthetic digits
tensorboard --logdir runs --samples_per_plugin images=200

At the end of fit the monitors print where the logs are. In TensorBoard: kernels/,
feature_maps/, activations/, gradcam/ and overfitting/ sections (the `standard` preset).
"""

import argparse
import sys

from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_cnnviz.presets import PRESETS, callbacks
from lightning_cnnviz.reference import MNISTClassifier, MNISTDataModule, SyntheticDigitsDataModule
from lightning_cnnviz.reference.mnist import MNISTNotFoundError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", action="store_true", help="use synthetic digits (offline)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--preset", default="standard", choices=PRESETS)
    parser.add_argument("--limit-batches", type=int, default=None, help="batches per epoch")
    parser.add_argument("--root", default="runs", help="TensorBoard log folder")
    args = parser.parse_args(argv)

    seed_everything(0)
    data = SyntheticDigitsDataModule() if args.synthetic else MNISTDataModule(root="data")
    trainer = Trainer(
        max_epochs=args.epochs,
        limit_train_batches=args.limit_batches,
        limit_val_batches=args.limit_batches,
        logger=TensorBoardLogger(args.root, name="train_mnist"),
        callbacks=callbacks(args.preset),
    )
    # SGD with momentum and a small positive bias: a healthy run (with Adam at lr 1e-3 a
    # quarter of fc1's units die early, and ActivationMonitor says so)
    model = MNISTClassifier(optimizer="sgd", lr=0.01, momentum=0.9, bias_init=0.1)
    try:
        trainer.fit(model, data)
    except MNISTNotFoundError as err:  # offline: say so in a few lines, not a traceback
        sys.exit(f"{err}\nOr run this example offline: python examples/train_mnist.py --synthetic")


if __name__ == "__main__":
    main()
