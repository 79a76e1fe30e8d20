"""The examples, run briefly as a user would: the sections they promise are in TensorBoard."""

from __future__ import annotations

import pytest
import torch

from tests.first_runs import STANDARD_SECTIONS, example, sections


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)  # data/ and runs/ land here
    yield
    torch.set_num_threads(threads)


def test_examples_train_mnist_synthetic_logs_every_standard_section(tmp_path, capsys):
    module = example("train_mnist")
    assert "--synthetic" in module.__doc__
    module.main(["--synthetic", "--epochs", "1", "--limit-batches", "12"])
    assert sections(tmp_path / "runs" / "train_mnist") >= STANDARD_SECTIONS
    out = capsys.readouterr().out
    assert out.count("tensorboard --logdir runs --samples_per_plugin images=200") == 1


def test_examples_train_mnist_offline_says_so_once_and_leaves_no_folders(tmp_path, monkeypatch):
    from torchvision import datasets

    def offline(root, train, download):  # what torchvision does without a network
        (tmp_path / root / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(datasets, "MNIST", offline)
    with pytest.raises(SystemExit) as exit_info:
        example("train_mnist").main(["--epochs", "1"])
    message = str(exit_info.value.code)
    assert message.startswith("MNIST files not found")
    assert "python examples/train_mnist.py --synthetic" in message
    assert "Traceback" not in message
    assert not (tmp_path / "data").exists()


def test_examples_custom_model_one_forward_per_step_and_every_section(tmp_path, capsys):
    module = example("custom_model")
    calls, per_step = [], []
    forward, training_step = module.TinyNet.forward, module.TinyNet.training_step

    def counting_forward(self, x):
        calls.append(1)
        return forward(self, x)

    def counting_step(self, batch, batch_idx):
        before = len(calls)
        loss = training_step(self, batch, batch_idx)
        per_step.append(len(calls) - before)
        return loss

    module.TinyNet.forward, module.TinyNet.training_step = counting_forward, counting_step
    module.main(["--epochs", "1", "--limit-batches", "12"])
    assert per_step == [1] * 12
    assert sections(tmp_path / "runs" / "custom_model") >= STANDARD_SECTIONS
    assert "tensorboard --logdir runs" in capsys.readouterr().out
