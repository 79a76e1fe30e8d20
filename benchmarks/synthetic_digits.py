"""Synthetic digits: quickstart-style fit time and accuracy, and realism on real MNIST.

Trains the reference CNN on ``SyntheticDigitsDataModule`` with the model settings and
epochs of ``configs/quickstart.yaml`` (no monitors) and
reports the fit wall time (data generation included), the synthetic validation
accuracy, and the accuracy of that model on the real MNIST test set (10,000 digits,
``../shared/data/mnist`` or ``--mnist``), a realism check of the generator.

    python benchmarks/synthetic_digits.py [--threads 1] [--epochs N]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml

from lightning_cnnviz.reference.data import DigitsDataset
from lightning_cnnviz.reference.mnist import read_idx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    quickstart = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
    config = yaml.safe_load(quickstart.read_text())
    parser.add_argument("--epochs", type=int, default=config["trainer"]["max_epochs"])
    parser.add_argument("--train-size", type=int, default=6000)
    parser.add_argument("--val-size", type=int, default=1000)
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    parser.add_argument("--mnist", type=Path, default=default)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    from lightning.pytorch import Trainer, seed_everything

    from lightning_cnnviz.reference import MNISTClassifier, SyntheticDigitsDataModule

    seed_everything(0)
    dm = SyntheticDigitsDataModule(train_size=args.train_size, val_size=args.val_size, seed=0)
    model = MNISTClassifier(**config["model"].get("init_args", {}))
    trainer = Trainer(
        default_root_dir=tempfile.mkdtemp(),
        max_epochs=args.epochs,
        enable_progress_bar=False,
        enable_checkpointing=False,
        logger=False,
    )
    trainer.fit(model, dm)
    wall = time.perf_counter() - start
    val = float(trainer.callback_metrics["val/acc"])
    print(f"threads={torch.get_num_threads()} train={args.train_size} val={args.val_size}")
    print(f"model: {dict(model.hparams)}")
    print(f"fit wall time (imports + generation + training): {wall:.1f} s")
    print(f"synthetic val/acc after {args.epochs} epochs: {val:.4f}")

    images = args.mnist / "t10k-images-idx3-ubyte.gz"
    if images.is_file():
        labels = read_idx(args.mnist / "t10k-labels-idx1-ubyte.gz").long()
        data = DigitsDataset(read_idx(images), labels)
        model.eval()
        with torch.no_grad():
            pred = torch.cat(
                [model(data.data[i : i + 1000]).argmax(1) for i in range(0, len(data), 1000)]
            )
        print(f"accuracy on real MNIST (10,000 test digits): {(pred == labels).float().mean():.4f}")


if __name__ == "__main__":
    main()
