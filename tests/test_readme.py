"""Every command and snippet of the README, run briefly as written: the tags it promises appear.

Runs are shortened only through Trainer arguments (epochs, batches) and data sizes.
"""

from __future__ import annotations

import pytest
import torch
import yaml

from lightning_cnnviz.cli import main
from tests.first_runs import ROOT, STANDARD_SECTIONS, code_blocks, sections, tags
from tests.mnist_files import mnist_root, requires_mnist

README = (ROOT / "README.md").read_text()
SHORT = ["--trainer.enable_progress_bar=false", "--trainer.limit_val_batches=2"]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    yield
    torch.set_num_threads(threads)


def test_readme_first_screen_says_what_and_how_to_look():
    first_screen = README.split("## Install")[0]
    assert "cnnviz fit --config configs/quickstart.yaml" in first_screen
    assert "tensorboard --logdir runs --samples_per_plugin images=200" in first_screen
    assert "Measured" not in first_screen and "benchmark" not in first_screen.lower()


def test_readme_install_has_a_cpu_only_line():
    (install,) = [b for b in code_blocks("bash") if "download.pytorch.org/whl/cpu" in b]
    assert install.splitlines() == [
        "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu",
        'pip install -e ".[dev]"',
    ]


def test_readme_quickstart_command_logs_every_monitor(tmp_path, capsys):
    assert "cnnviz fit --config configs/quickstart.yaml\n" in code_blocks("bash")[2]
    config = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    monitors = {c["class_path"].split(".")[-1] for c in config["trainer"]["callbacks"]}
    main(["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"), *SHORT,
          "--trainer.max_epochs=1", "--trainer.limit_train_batches=12",
          "--data.train_size=800", "--data.val_size=200"])  # fmt: skip
    found = sections(tmp_path / "runs" / "quickstart")
    expected = {"activations", "kernels", "feature_maps", "gradcam", "overfitting",
                "embeddings", "activation_maximization", "adversarial"}  # fmt: skip
    assert len(monitors) == len(expected) and expected <= found
    assert "tensorboard --logdir runs --samples_per_plugin images=200" in capsys.readouterr().out


@requires_mnist
def test_readme_mnist_command_logs_the_standard_sections(tmp_path):
    assert "cnnviz fit --config configs/mnist.yaml" in README
    main(["fit", "--config", str(ROOT / "configs" / "mnist.yaml"), *SHORT,
          "--trainer.max_epochs=1", "--trainer.limit_train_batches=12",
          f"--data.root={mnist_root(tmp_path)}", "--data.val_size=2000"])  # fmt: skip
    assert sections(tmp_path / "runs" / "mnist") >= STANDARD_SECTIONS


def test_readme_python_snippet_runs_and_says_where_the_logs_are(tmp_path, capsys):
    (snippet,) = [b for b in code_blocks("python") if "trainer.fit(" in b]
    short = snippet.replace(
        "max_epochs=2,", "max_epochs=1, limit_train_batches=51, limit_val_batches=2,"
    ).replace("SyntheticDigitsDataModule())", "SyntheticDigitsDataModule(train_size=3300))")
    assert short.count("limit_train_batches") == 1 and "train_size=3300" in short
    exec(compile(short, "README.md", "exec"), {})
    written = tags(tmp_path / "lightning_logs")
    assert {"activations/relu1/dead_fraction", "gradcam/train", "gradcam/val"} <= written
    assert any(t.startswith("overfitting/") for t in written)
    assert "tensorboard --logdir lightning_logs" in capsys.readouterr().out


def test_readme_yaml_snippet_runs_as_cnnviz_fit(tmp_path):
    (snippet,) = [b for b in code_blocks("yaml") if "class_path" in b]
    assert "cnnviz fit --config my_monitors.yaml" in snippet
    assert yaml.safe_load(snippet)["trainer"]["max_epochs"] <= 3
    (tmp_path / "my_monitors.yaml").write_text(snippet)
    main(["fit", "--config", "my_monitors.yaml", *SHORT, "--trainer.limit_train_batches=51",
          "--data.train_size=3300"])  # fmt: skip
    written = tags(tmp_path / "lightning_logs")
    assert {"activations/relu1/dead_fraction", "activations/relu2/dead_fraction"} <= written
    assert "activations/relu3/dead_fraction" not in written  # only the layers it names
    assert {"gradcam/train", "gradcam/val"} <= written
