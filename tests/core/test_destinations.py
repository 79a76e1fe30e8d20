"""Images, text and scalars reach each logger of each Lightning package (read back from files)."""

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_cnnviz.core.destinations import mlflow_name
from lightning_cnnviz.core.sinks import Sink
from tests.loggers import LOGGERS, NAMESPACES, finish, make_logger, package, written

IMAGE = torch.stack([torch.full((4, 5), v, dtype=torch.uint8) for v in (10, 120, 250)])


def sink_run(tmp_path, kind, namespace, root=None):
    """Write one image, one text and one scalar through a Sink; return (logger, warnings)."""
    root = root or tmp_path
    logger = make_logger(kind, namespace, root)
    trainer = package(namespace).Trainer(
        default_root_dir=root, logger=logger, enable_progress_bar=False
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sink = Sink.of(trainer)
        sink.image("gradcam/val", IMAGE, step=3)
        sink.text("cnnviz/layers", "**KernelMonitor**: `conv1`", step=3)
        sink.scalars({"activations/relu#0/mean": 0.5}, step=3)
        sink.flush()
    finish(logger)
    return sink, [str(w.message) for w in caught]


@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize("kind", LOGGERS)
def test_destinations_images_text_scalars_reach_each_logger(tmp_path, kind, namespace):
    _, said = sink_run(tmp_path, kind, namespace)
    got = written(kind, tmp_path)
    assert got["images"] == {"gradcam/val"}
    if kind in ("csv", "none"):  # one Markdown file per tag, entries appended
        assert got["text"] == {"cnnviz_layers": "## step 3\n\n**KernelMonitor**: `conv1`\n\n"}
    else:
        assert got["text"] == {"cnnviz/layers": "**KernelMonitor**: `conv1`"}
    expected = {"tensorboard": "activations/relu#0/mean", "mlflow": "activations/relu_0/mean"}
    if kind == "none":
        assert got["scalars"] == set()
        (warned,) = [m for m in said if "no logger" in m]
        assert "scalars are not recorded" in warned
    else:
        assert expected.get(kind, "activations/relu#0/mean") in got["scalars"]
        assert not [m for m in said if "no logger" in m]
    assert not [m for m in said if "MLFlow only allows" in m]  # no name was rejected
    if kind != "tensorboard":  # the PNG the tool stored holds our pixels
        (png,) = got["where"].rglob("*.png")
        pixels = torch.from_numpy(np.array(Image.open(io.BytesIO(png.read_bytes())).convert("RGB")))
        assert torch.equal(pixels.permute(2, 0, 1), IMAGE)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_destinations_folder_is_per_run_never_shared(tmp_path, namespace):
    first, _ = sink_run(tmp_path, "none", namespace)
    second, _ = sink_run(tmp_path, "none", namespace)
    assert (first.image_dir.name, second.image_dir.name) == ("cnnviz", "cnnviz_1")
    for sink in (first, second):  # each run's text holds its own entry only
        assert (sink.image_dir / "cnnviz_layers.md").read_text().count("## step 3") == 1
        assert (sink.image_dir / "gradcam" / "val" / "step_00000003.png").is_file()


def test_destinations_folder_said_once_with_its_path(tmp_path, caplog):
    logger = make_logger("csv", "lightning.pytorch", tmp_path)
    trainer = package("lightning.pytorch").Trainer(logger=logger, enable_progress_bar=False)
    sink = Sink.of(trainer)
    with caplog.at_level("INFO"):
        for step in range(3):
            sink.image("kernels/conv1", IMAGE, step=step)
            sink.text("kernels/conv1", "x", step=step)
    sink.flush()
    said = [r.getMessage() for r in caplog.records if "images and text go to" in r.getMessage()]
    assert len(said) == 1 and str(tmp_path / "csv" / "version_0" / "cnnviz") in said[0]
    assert len(list((tmp_path / "csv" / "version_0" / "cnnviz").rglob("*.png"))) == 3


def test_destinations_mlflow_name_keeps_distinct_sites_distinct():
    names = ["activations/relu#0/mean", "activations/relu#1/mean", "kernels/layer1.0.conv1/x y"]
    mapped = [mlflow_name(n) for n in names]
    assert mapped == ["activations/relu_0/mean", "activations/relu_1/mean", names[2]]


def test_destinations_wandb_images_are_written_on_the_training_thread(tmp_path):
    import threading

    from lightning_cnnviz.core.destinations import Wandb

    calls = []

    class Logger:  # records where W&B's API is called from
        def log_image(self, key, images, step):
            calls.append((key, step, images[0].size, threading.current_thread().name))

    trainer = package("lightning.pytorch").Trainer(
        logger=make_logger("csv", "lightning.pytorch", tmp_path), enable_progress_bar=False
    )
    sink = Sink.of(trainer)
    sink.destinations = [Wandb(Logger())]
    sink.image("gradcam/val", IMAGE, step=1)
    sink.wait()  # encoded on the sink's thread, handed back
    assert calls == []
    sink.check()  # the training thread writes it (wandb.Run.log takes no lock)
    assert calls == [("gradcam/val", 1, (5, 4), threading.current_thread().name)]


def test_destinations_histograms_and_projector_without_tensorboard_said_by_their_monitor(tmp_path):
    # setups hunt 68: an info line from the sink, not naming the monitor and quieted with
    # Lightning's logger, was all a CSV run got
    import csv

    from lightning_cnnviz import ActivationMonitor, EmbeddingMonitor
    from tests.monitors import fit

    monitors = [
        ActivationMonitor(histograms=True, every_n_steps=2),
        EmbeddingMonitor(every_n_steps=2, max_points=16),
    ]
    logger = make_logger("csv", "lightning.pytorch", tmp_path)
    _, _, messages = fit(tmp_path, monitors, logger=logger)
    said = [m for m in messages if "need a TensorBoard logger" in m]
    assert said == [
        "ActivationMonitor: histograms need a TensorBoard logger: none written",
        "EmbeddingMonitor: the projector's embeddings need a TensorBoard logger, and this run "
        "has none: only the class separation scalars are written",
    ]
    assert not list(tmp_path.rglob("events.out.*")) and not list(tmp_path.rglob("*.tsv"))
    (metrics,) = tmp_path.rglob("metrics.csv")
    columns = next(csv.reader(metrics.open()))
    assert any(c.startswith("embeddings/") and "separation" in c for c in columns), columns


def test_destinations_folder_writes_names_past_the_file_name_limit(tmp_path):
    # setups hunt 21: module names of deep wrappers (~400 characters) raised "File name too
    # long" in the PNG folder, and three monitors stepped aside
    import lightning as L

    trainer = L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    site = "net." + ".".join(f"a_rather_long_wrapper_name_{i}" for i in range(12)) + ".relu"
    sink = Sink.of(trainer)
    sink.image(f"activations/{site}/dead_strip", IMAGE, step=3)
    sink.text(f"activations/{site}/diagnosis", "dead", step=3)
    sink.flush()
    (png,) = sink.image_dir.glob("activations/*/dead_strip/step_00000003.png")
    assert len(png.parent.parent.name.encode()) <= 200 and png.parent.parent.name.endswith("relu")
    assert len(list(sink.image_dir.glob("*.md"))) == 1
