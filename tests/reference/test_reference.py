import gzip
import shutil
import time
import urllib.error
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from torch import nn

from lightning_cnnviz.core.dataset_labels import dataset_labels
from lightning_cnnviz.reference import (
    MNISTClassifier,
    MNISTDataModule,
    MNISTNotFoundError,
    SyntheticDigitsDataModule,
)
from lightning_cnnviz.reference.data import MARKER_SIZE, marker_position
from tests.mnist_files import mnist_root, requires_mnist

NAMES = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc1", "relu3", "fc2"]
BRIGHT = (1.0 - 0.1307) / 0.3081  # a white pixel after the normalisation


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on shared CPUs two threads can be several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trainer(tmp_path, **kwargs):
    defaults = dict(
        default_root_dir=tmp_path,
        max_epochs=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
    )
    return Trainer(**{**defaults, **kwargs})


def _marker_mean(images, labels):
    """Mean value inside each image's label-encoded marker square."""
    values = []
    for x, y in zip(images, labels.tolist(), strict=True):
        r, c = marker_position(y)
        values.append(x[0, r : r + MARKER_SIZE, c : c + MARKER_SIZE].mean())
    return torch.stack(values)


def test_reference_model_parameter_count_and_modules():
    model = MNISTClassifier()
    assert [name for name, _ in model.named_children()] == NAMES
    assert sum(p.numel() for p in model.parameters()) == 206_922
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert (model.conv1.in_channels, model.conv1.out_channels, model.conv1.padding) == (
        1,
        16,
        (1, 1),
    )
    assert (model.fc1.in_features, model.fc2.out_features) == (1568, 10)

    dropped = MNISTClassifier(dropout=0.5, activation="leaky_relu", bias_init=-0.5)
    assert [name for name, _ in dropped.named_children()] == [*NAMES[:-1], "dropout", "fc2"]
    assert isinstance(dropped.dropout, nn.Dropout) and dropped.dropout.p == 0.5
    assert sum(p.numel() for p in dropped.parameters()) == 206_922
    assert all(isinstance(getattr(dropped, f"relu{i}"), nn.LeakyReLU) for i in (1, 2, 3))
    biases = [m.bias for m in dropped.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(biases) == 4 and all(torch.all(b == -0.5) for b in biases)
    assert dropped.hparams.dropout == 0.5 and dropped.hparams.bias_init == -0.5


def test_reference_model_optimizers():
    sgd = MNISTClassifier(optimizer="sgd", lr=0.1, momentum=0.5, weight_decay=1e-4)
    opt = sgd.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["momentum"] == 0.5 and opt.defaults["weight_decay"] == 1e-4
    assert isinstance(MNISTClassifier().configure_optimizers(), torch.optim.Adam)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lr": 0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"dropout": 1.0}, "dropout"),
        ({"activation": "tanh"}, "activation"),
        ({"bias_init": "zero"}, "bias_init"),
    ],
)
def test_reference_model_argument_messages(kwargs, name):
    value = next(iter(kwargs.values()))
    with pytest.raises(ValueError, match=rf"`{name}`") as info:
        MNISTClassifier(**kwargs)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (SyntheticDigitsDataModule, {"train_size": 0}, "train_size"),
        (SyntheticDigitsDataModule, {"batch_size": -2}, "batch_size"),
        (SyntheticDigitsDataModule, {"num_workers": 1.5}, "num_workers"),
        (SyntheticDigitsDataModule, {"shortcut_marker": "yes"}, "shortcut_marker"),
        (MNISTDataModule, {"val_size": 0}, "val_size"),
        (MNISTDataModule, {"train_subset": 0}, "train_subset"),
    ],
)
def test_reference_data_argument_messages(cls, kwargs, name):
    value = next(iter(kwargs.values()))
    with pytest.raises(ValueError, match=rf"`{name}`") as info:
        cls(**kwargs)
    assert repr(value) in str(info.value)


def test_reference_model_logs_metrics(tmp_path):
    seed_everything(0)
    dm = SyntheticDigitsDataModule(train_size=80, val_size=40, test_size=20, batch_size=16)
    trainer = _trainer(tmp_path, limit_train_batches=3, log_every_n_steps=1)
    model = MNISTClassifier()
    trainer.fit(model, dm)
    logged = set(trainer.logged_metrics)
    expected = {"train/loss_step", "train/acc_step", "train/loss_epoch", "train/acc_epoch"}
    assert expected | {"val/loss", "val/acc"} <= logged
    assert "val/loss_step" not in logged
    results = trainer.test(model, datamodule=dm, verbose=False)
    assert set(results[0]) == {"test/loss", "test/acc"}


@requires_mnist
def test_reference_mnist_reads_torchvision_layout(tmp_path):
    root = mnist_root(tmp_path)
    dm = MNISTDataModule(root=root, val_size=2000, download=False, seed=0)
    dm.prepare_data()  # all files present: nothing to do, no network
    dm.setup("fit")
    assert (len(dm.train_dataset), len(dm.val_dataset)) == (8000, 2000)
    image, label = dm.train_dataset[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and isinstance(label, int)
    assert abs(float(dm.train_dataset.data.mean())) < 0.05  # normalised with MNIST's mean/std
    assert float(dm.train_dataset.data.max()) == pytest.approx(BRIGHT, rel=1e-5)
    assert torch.equal(dataset_labels(dm.val_dataset), dm.val_dataset.targets)
    assert dm.val_dataset.targets.bincount(minlength=10).min() > 150
    # The split is seeded, and together the two parts are the 10,000 digits once each.
    again = MNISTDataModule(root=root, val_size=2000, download=False, seed=0)
    again.setup("fit")
    assert torch.equal(again.val_dataset.data, dm.val_dataset.data)
    other = MNISTDataModule(root=root, val_size=2000, download=False, seed=1)
    other.setup("fit")
    assert not torch.equal(other.val_dataset.targets, dm.val_dataset.targets)
    total = torch.cat([dm.train_dataset.targets, dm.val_dataset.targets]).bincount()
    dm.setup("test")
    assert torch.equal(total, dm.test_dataset.targets.bincount())
    # Uncompressed files are read too, and train_subset keeps a seeded random subset.
    raw = Path(root) / "MNIST" / "raw"
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        with gzip.open(raw / f"{name}.gz") as src, open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
        (raw / f"{name}.gz").unlink()
    small = MNISTDataModule(root=root, val_size=2000, train_subset=300, download=False)
    small.setup("fit")
    assert len(small.train_dataset) == 300 and torch.equal(
        small.val_dataset.data, dm.val_dataset.data
    )


def test_reference_mnist_missing_files_error(tmp_path):
    dm = MNISTDataModule(root=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(MNISTNotFoundError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert str((tmp_path / "nowhere" / "MNIST" / "raw").resolve()) in message
    assert "train-images-idx3-ubyte" in message and "download=False" in message
    assert "SyntheticDigitsDataModule" in message and "place the MNIST files" in message
    with pytest.raises(FileNotFoundError, match="SyntheticDigitsDataModule"):
        dm.setup("fit")

    # Through the Trainer it fails before the first training step.
    class Spy(MNISTClassifier):
        steps = 0

        def training_step(self, batch, batch_idx):
            Spy.steps += 1
            return super().training_step(batch, batch_idx)

    with pytest.raises(MNISTNotFoundError):
        _trainer(tmp_path).fit(Spy(), dm)
    assert Spy.steps == 0


def test_reference_mnist_download_failure_error(tmp_path, monkeypatch):
    from torchvision.datasets import mnist

    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(mnist, "download_and_extract_archive", offline)
    dm = MNISTDataModule(root=str(tmp_path / "data"), download=True)
    with pytest.raises(MNISTNotFoundError) as info:
        dm.prepare_data()
    assert calls, "the download was not attempted"
    message = str(info.value)
    assert "Downloading them failed" in message and "name resolution" in message
    assert str((tmp_path / "data" / "MNIST" / "raw").resolve()) in message
    assert "SyntheticDigitsDataModule" in message


def test_reference_synthetic_deterministic_and_balanced():
    def make(seed):
        dm = SyntheticDigitsDataModule(train_size=300, val_size=100, test_size=50, seed=seed)
        dm.setup("fit")
        return dm

    start = time.perf_counter()
    a, b, c = make(0), make(0), make(1)
    assert time.perf_counter() - start < 30
    for split in ("train_dataset", "val_dataset"):
        assert torch.equal(getattr(a, split).data, getattr(b, split).data)
        assert torch.equal(getattr(a, split).targets, getattr(b, split).targets)
        assert not torch.equal(getattr(a, split).data, getattr(c, split).data)
    assert a.train_dataset.targets.bincount().tolist() == [30] * 10
    assert a.val_dataset.targets.bincount().tolist() == [10] * 10
    assert not torch.equal(a.train_dataset.data[:100], a.val_dataset.data)
    x = a.train_dataset.data * 0.3081 + 0.1307  # back to [0, 1]
    assert x.shape == (300, 1, 28, 28) and float(x.min()) > -1e-5 and float(x.max()) < 1 + 1e-5
    assert 0.05 < float(x.mean()) < 0.25  # thin white strokes on black, like MNIST's 0.13
    # MNIST framing: centre of mass near the image centre; borders dark.
    coords = torch.arange(28.0) + 0.5
    mass = x[:, 0].sum(dim=(1, 2))
    com_y = (x[:, 0].sum(2) * coords).sum(1) / mass
    com_x = (x[:, 0].sum(1) * coords).sum(1) / mass
    assert (com_y - 14.5).abs().max() < 1.5 and (com_x - 14.5).abs().max() < 1.5  # pixel 14
    assert float(x[:, 0, :2].mean()) < 0.02 and float(x[:, 0, :, :2].mean()) < 0.02
    a.setup("test")
    assert len(a.test_dataset) == 50 and a.test_dataset.targets.bincount().tolist() == [5] * 10


def test_reference_synthetic_shortcut_marker_train_only():
    plain = SyntheticDigitsDataModule(train_size=100, val_size=50, seed=3)
    marked = SyntheticDigitsDataModule(train_size=100, val_size=50, seed=3, shortcut_marker=True)
    plain.setup("fit")
    marked.setup("fit")
    train = marked.train_dataset
    assert torch.allclose(_marker_mean(train.data, train.targets), torch.tensor(BRIGHT))
    assert torch.equal(marked.val_dataset.data, plain.val_dataset.data)  # no marker in val
    val = marked.val_dataset
    assert float(_marker_mean(val.data, val.targets).max()) < BRIGHT * 0.9
    changed = (train.data != plain.train_dataset.data).flatten(1).sum(1)
    assert int(changed.max()) <= MARKER_SIZE**2  # only the marker pixels differ


@requires_mnist
def test_reference_mnist_shortcut_marker_train_only(tmp_path):
    root = mnist_root(tmp_path)
    dm = MNISTDataModule(root=root, val_size=2000, download=False, shortcut_marker=True)
    dm.setup("fit")
    train, val = dm.train_dataset, dm.val_dataset
    assert torch.allclose(_marker_mean(train.data, train.targets), torch.tensor(BRIGHT))
    assert float(_marker_mean(val.data, val.targets).mean()) < 0.0  # background stays dark
    augmented = MNISTDataModule(
        root=root, val_size=2000, download=False, augment=True, shortcut_marker=True
    )
    augmented.setup("fit")
    image, label = augmented.train_dataset[0]
    assert _marker_mean(image[None], torch.tensor([label])).item() == pytest.approx(BRIGHT)


def test_reference_loaders_seeded_and_leave_global_rng_alone():
    def first_batch(seed):
        dm = SyntheticDigitsDataModule(train_size=100, val_size=20, batch_size=10, seed=seed)
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))[1], dm

    state = torch.get_rng_state()
    labels, dm = first_batch(0)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(labels, first_batch(0)[0])
    assert not torch.equal(labels, dm.train_dataset.targets[:10])  # shuffled
    val = next(iter(dm.val_dataloader()))[1]
    assert torch.equal(val, dm.val_dataset.targets[:10])  # in order
    workers = SyntheticDigitsDataModule(train_size=20, val_size=20, num_workers=2)
    workers.setup("fit")
    assert workers.train_dataloader().persistent_workers
    assert not dm.train_dataloader().persistent_workers
    with pytest.raises(RuntimeError, match="setup"):
        SyntheticDigitsDataModule().train_dataloader()


@requires_mnist
def test_reference_mnist_training_reaches_97_5(tmp_path):
    """8,000 / 2,000 real digits, seed 0, 3 epochs of Adam(1e-3), batch 64."""
    seed_everything(0)
    dm = MNISTDataModule(root=mnist_root(tmp_path), val_size=2000, download=False, seed=0)
    trainer = _trainer(tmp_path, max_epochs=3)
    trainer.fit(MNISTClassifier(), dm)
    assert len(dm.train_dataset) == 8000
    accuracy = float(trainer.callback_metrics["val/acc"])
    print(f"MNIST 8k/2k, 3 epochs: val/acc {accuracy:.4f}")
    assert accuracy >= 0.975
