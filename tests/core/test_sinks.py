import io
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from lightning_cnnviz.core.sinks import Sink
from lightning_cnnviz.overfitting.draw import custom_scalars_layout
from tests.tb import events, projector_tags, texts


def trainer_with(tmp_path, **kwargs):
    return L.Trainer(default_root_dir=tmp_path, enable_progress_bar=False, **kwargs)


def test_sink_writes_images_scalars_text_to_tensorboard(tmp_path):
    trainer = trainer_with(tmp_path, logger=TensorBoardLogger(tmp_path, name="tb"))
    sink = Sink.of(trainer)
    assert Sink.of(trainer) is sink
    image = torch.zeros(3, 5, 7, dtype=torch.uint8)
    image[0, 1, 2] = 255
    sink.image("kernels/conv1", image, step=3)
    sink.scalars({"kernels/conv1/mean_abs": 0.25}, step=3)
    sink.text("cnnviz/layers", "conv1 (Conv2d)", step=3)
    sink.flush()
    acc = events(tmp_path / "tb")
    (img,) = acc.Images("kernels/conv1")
    assert (img.step, img.width, img.height) == (3, 7, 5)
    pixels = np.array(Image.open(io.BytesIO(img.encoded_image_string)).convert("RGB"))  # lossless
    assert torch.equal(torch.from_numpy(pixels).permute(2, 0, 1), image)
    (scalar,) = acc.Scalars("kernels/conv1/mean_abs")
    assert (scalar.step, scalar.value) == (3, 0.25)
    assert texts(acc, "cnnviz/layers") == ["conv1 (Conv2d)"]


def test_sink_palette_image_reads_back_as_its_colours(tmp_path):
    sink = Sink.of(trainer_with(tmp_path, logger=TensorBoardLogger(tmp_path, name="tb")))
    palette = torch.randint(0, 256, (256, 3), generator=torch.Generator().manual_seed(0))
    indices = torch.arange(6 * 50, dtype=torch.int64).reshape(6, 50) % 256
    sink.image("activations/relu/dead_strip", indices.to(torch.uint8), step=2, palette=palette)
    sink.flush()
    (img,) = events(tmp_path / "tb").Images("activations/relu/dead_strip")
    decoded = Image.open(io.BytesIO(img.encoded_image_string))
    assert decoded.mode == "P" and (img.width, img.height) == (50, 6)  # one byte per pixel
    rgb = torch.from_numpy(np.array(decoded.convert("RGB")))
    assert torch.equal(rgb, palette[indices].to(torch.uint8))


def test_sink_scalars_go_as_one_event_with_the_logger_prefix(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb", prefix="run")
    sink = Sink.of(trainer_with(tmp_path, logger=logger))
    sink.scalars({"activations/relu/mean": 0.5, "activations/relu/std": 2.0}, step=7)
    sink.flush()
    acc = events(tmp_path / "tb")
    read = {tag: [(s.step, s.value) for s in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert read == {"run-activations/relu/mean": [(7, 0.5)], "run-activations/relu/std": [(7, 2.0)]}
    (path,) = (tmp_path / "tb").rglob("events.out.tfevents.*")
    records = [e for e in EventFileLoader(str(path)).Load() if e.HasField("summary")]
    assert len(records) == 1 and len(records[0].summary.value) == 2  # one event, two values


def test_sink_images_text_histograms_and_split_runs_get_the_logger_prefix(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb", prefix="run")
    sink = Sink.of(trainer_with(tmp_path, logger=logger))
    sink.image("kernels/conv1", torch.zeros(3, 4, 4, dtype=torch.uint8), step=2)
    sink.text("cnnviz/findings", "no problems", step=2)
    sink.histogram("activations/relu", torch.arange(10.0), step=2)
    sink.split_scalars("val", {"overfitting/loss": 0.5}, step=2)
    sink.flush()
    acc = events(logger.log_dir)
    assert acc.Tags()["images"] == ["run-kernels/conv1"]
    assert texts(acc, "run-cnnviz/findings") == ["no problems"]
    assert acc.Tags()["histograms"] == ["run-activations/relu"]
    (value,) = events(Path(logger.log_dir) / "val").Scalars("run-overfitting/loss")
    assert (value.step, value.value) == (2, 0.5)


def test_sink_tensorboard_only_records_go_to_each_tensorboard_logger(tmp_path):
    # setups hunt 63: a second TensorBoard logger got images, scalars and text, but no
    # histograms, embeddings, chart layout or train/val runs, and nothing said so
    first, second = (
        TensorBoardLogger(tmp_path, name=n, prefix=p) for n, p in [("a", ""), ("b", "x")]
    )
    sink = Sink.of(trainer_with(tmp_path, logger=[first, second]))
    sink.histogram("activations/relu", torch.arange(10.0), step=2)
    sink.split_scalars("val", {"overfitting/loss": 0.5}, step=2)
    sink.embedding("embeddings/pool", torch.eye(4), step=2, metadata=list("abcd"))
    assert sink.layout(lambda prefix: custom_scalars_layout(tag=lambda n: prefix + n))
    sink.flush()
    for logger, prefix in [(first, ""), (second, "x-")]:
        acc = events(logger.log_dir)
        assert acc.Tags()["histograms"] == [prefix + "activations/relu"]
        (value,) = events(Path(logger.log_dir) / "val").Scalars(prefix + "overfitting/loss")
        assert (value.step, value.value) == (2, 0.5)
        assert projector_tags(logger.log_dir) == {prefix + "embeddings/pool"}
        files = Path(logger.log_dir).rglob("events.out.tfevents.*")
        charts = [v.tag for p in files for e in EventFileLoader(str(p)).Load()
                  if e.HasField("summary") for v in e.summary.value]  # fmt: skip
        assert "custom_scalars__config__" in charts


def test_sink_falls_back_to_png_without_tensorboard(tmp_path):
    trainer = trainer_with(tmp_path, logger=CSVLogger(tmp_path, name="csv"))
    sink = Sink.of(trainer)
    image = torch.full((3, 4, 4), 200, dtype=torch.uint8)
    sink.image("gradcam/val", image, step=12)
    sink.scalars({"gradcam/val/concentration": 0.5}, step=12)
    sink.text("diagnosis", "all good", step=12)
    sink.flush()
    trainer.loggers[0].save()
    png = sink.image_dir / "gradcam" / "val" / "step_00000012.png"
    assert png.is_file() and torch.equal(
        torch.from_numpy(np.array(Image.open(png).convert("RGB"))).permute(2, 0, 1), image
    )
    assert "all good" in (sink.image_dir / "diagnosis.md").read_text()
    metrics = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    assert "gradcam/val/concentration" in metrics and "0.5" in metrics


class OwnLogger(Logger):
    """A user's logger with only Lightning's abstract methods: no ``experiment``."""

    name, version = "own", "0"

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.logged = {**getattr(self, "logged", {}), **metrics}


def test_sink_a_logger_without_experiment_gets_images_in_the_run_folder(tmp_path):
    # held out (setups hunt 22): the first monitor to write failed on `logger.experiment`
    # and stepped aside for the run
    logger = OwnLogger()
    trainer = trainer_with(tmp_path, logger=logger)
    sink = Sink.of(trainer)
    image = torch.full((3, 4, 4), 90, dtype=torch.uint8)
    sink.image("kernels/conv1", image, step=3)
    sink.scalars({"kernels/conv1/norm": 2.0}, step=3)
    sink.flush()
    png = sink.image_dir / "kernels" / "conv1" / "step_00000003.png"
    assert png.is_file() and np.array(Image.open(png).convert("RGB"))[0, 0, 0] == 90
    assert logger.logged["kernels/conv1/norm"] == 2.0


def test_sink_steps_aside_under_fast_dev_run(tmp_path):
    trainer = trainer_with(tmp_path, fast_dev_run=True)
    with pytest.warns(UserWarning, match="step aside"):
        sink = Sink.of(trainer)
    assert not sink.active
    sink.image("x", torch.zeros(3, 2, 2, dtype=torch.uint8), 0)  # no error, nothing written
    assert not sink.image_dir.exists()


def test_sink_later_runs_jobs_in_order_off_the_calling_thread(tmp_path):
    import threading

    sink = Sink.of(trainer_with(tmp_path, logger=TensorBoardLogger(tmp_path, name="tb")))
    ran = []
    for i in range(40):  # more than the queue holds
        sink.later(lambda i=i: ran.append((i, threading.current_thread().name)))
    sink.flush()
    assert [i for i, _ in ran] == list(range(40))
    assert {name for _, name in ran} == {"cnnviz-sink"}
    assert sink._thread is None, "flush ends the thread"


def test_sink_later_queue_is_bounded(tmp_path):
    import threading

    from lightning_cnnviz.core.sinks import QUEUE_SIZE

    sink = Sink.of(trainer_with(tmp_path, logger=TensorBoardLogger(tmp_path, name="tb")))
    release, started = threading.Event(), threading.Event()
    sink.later(lambda: (started.set(), release.wait(10)))
    started.wait(10)
    for _ in range(QUEUE_SIZE):  # the queue is now full
        sink.later(lambda: None)
    extra = threading.Thread(target=sink.later, args=(lambda: None,))
    extra.start()
    extra.join(0.3)
    assert extra.is_alive(), "a full queue makes the caller wait"
    release.set()
    extra.join(10)
    assert not extra.is_alive()
    sink.flush()


def test_sink_later_errors_come_back_through_check(tmp_path):
    sink = Sink.of(trainer_with(tmp_path, logger=TensorBoardLogger(tmp_path, name="tb")))
    caught = []
    sink.later(lambda: 1 / 0, caught.append)
    sink.wait()
    assert caught == [], "errors wait for check, on the training thread"
    sink.check()
    assert len(caught) == 1 and isinstance(caught[0], ZeroDivisionError)
    sink.later(lambda: [][1])  # no handler: a warning at flush
    with pytest.warns(UserWarning, match="could not write a record: IndexError"):
        sink.flush()


def test_sink_image_keeps_its_own_copy_while_queued(tmp_path):
    import threading

    sink = Sink.of(trainer_with(tmp_path, logger=TensorBoardLogger(tmp_path, name="tb")))
    release = threading.Event()
    sink.later(lambda: release.wait(10))  # hold the thread so the image waits in the queue
    image = torch.full((3, 4, 6), 200, dtype=torch.uint8)
    sink.image("reused", image, step=1)
    image.zero_()  # the caller reuses its buffer before the image is encoded
    release.set()
    sink.flush()
    (img,) = events(tmp_path / "tb").Images("reused")
    pixels = np.array(Image.open(io.BytesIO(img.encoded_image_string)).convert("RGB"))
    assert (img.width, img.height) == (6, 4) and (pixels == 200).all()


def test_sinks_no_folder_to_write_to_ends_the_fit_and_says_it_once(tmp_path):
    # setups hunt 20: `logger=False` with a run folder that cannot be made (a file in the
    # way; a read-only or full disk alike) made every monitor fail on an OSError and
    # `trainer.fit` raise from the end-of-fit summary, after training
    from tests.monitors import ALL_MONITORS, fit, make_monitor

    blocked = tmp_path / "a_file"
    blocked.write_text("x")
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    trainer, _, messages = fit(blocked, monitors, logger=False)  # its root dir: the file
    said = [m for m in messages if "no folder for images and text can be made" in m]
    assert len(said) == 1 and "NotADirectoryError" in said[0]
    assert trainer.state.finished and not any(m.disabled for m in monitors)
    assert all(m.events > 0 for m in monitors)
