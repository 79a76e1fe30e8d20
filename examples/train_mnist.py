"""Train the reference CNN on real MNIST with the monitors on, from Python.

python examples/train_mnist.py              # downloads MNIST into data/ once
python examples/train_mnist.py --synthetic  # offline: embedded synthetic digits
tensorboard --logdir runs --samples_per_plugin images=200
"""

import argparse

from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_cnnviz.presets import callbacks
from lightning_cnnviz.reference import MNISTClassifier, MNISTDataModule, SyntheticDigitsDataModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", action="store_true", help="use synthetic digits")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--preset", default="standard", choices=["light", "standard", "full"])
    args = parser.parse_args()

    seed_everything(0)
    data = SyntheticDigitsDataModule() if args.synthetic else MNISTDataModule(root="data")
    trainer = Trainer(
        max_epochs=args.epochs,
        logger=TensorBoardLogger("runs", name="train_mnist"),
        callbacks=callbacks(args.preset),
    )
    trainer.fit(MNISTClassifier(lr=1e-3), data)
    print(f"logs: {trainer.log_dir}")


if __name__ == "__main__":
    main()
