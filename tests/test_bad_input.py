"""Wrong arguments and wrong environments, per monitor: the documented message, nothing lost.

Arguments (fail in ``__init__``, or in ``setup`` for a selection, before any training):
an unknown layer, a negative or zero frequency. Environments (training goes on and ends
with the same weights as without the monitor): ``num_samples`` larger than the dataset
(one warning, the monitor steps aside), a validation set without labels, a non-image
model, no logger and a CSVLogger only (images and text as PNG / Markdown under the run
directory, scalars to the CSV), ``fast_dev_run`` (one warning, every monitor steps aside).
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.monitors import (
    ALL_MONITORS,
    TinyCNN,
    init_params,
    loaders,
    make_monitor,
    monitor_class,
    section,
    trainer_for,
)

pytestmark = pytest.mark.timeout(600)


# ------------------------------------------------------------------- arguments
@pytest.mark.parametrize("name", ALL_MONITORS)
def test_bad_input_unknown_layer_names_the_pattern_and_lists_modules(tmp_path, name):
    if not monitor_class(name).watches_layers:
        pytest.skip(f"{name} reads model outputs only (no `layers`)")
    monitor = make_monitor(name, layers="no_such_layer")
    trainer = trainer_for(tmp_path, [monitor])
    message = "`layers` pattern 'no_such_layer' matches no module. Available: 'conv1' (Conv2d)"
    with pytest.raises(ValueError, match=re.escape(message)):
        trainer.fit(TinyCNN(), *loaders())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"every_n_steps": -1}, "`every_n_steps` must be a positive integer, got -1"),
        ({"every_n_steps": 0}, "`every_n_steps` must be a positive integer, got 0"),
        ({"every_n_steps": None, "every_n_epochs": -2},
         "`every_n_epochs` must be a positive integer, got -2"),
        ({"every_n_steps": 2.5}, "`every_n_steps` must be a positive integer, got 2.5"),
        ({"every_n_steps": 2, "every_n_epochs": 1}, "Set only one of `every_n_steps` and "
         "`every_n_epochs`, got every_n_steps=2 and every_n_epochs=1"),
        ({"num_samples": 0}, "`num_samples` must be a positive integer, got 0"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("name", ALL_MONITORS)
def test_bad_input_wrong_argument_message(name, args, message):
    cls = monitor_class(name)
    if not set(args) <= init_params(cls):
        pytest.skip(f"{name} takes no {sorted(set(args) - init_params(cls))}")
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(**args)


# ------------------------------------------------------------------- environments
class UnlabeledVal(TinyCNN):
    """Trains on (x, y); its validation set has images only."""

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self(batch[0]).logsumexp(1).mean())


def _unlabeled():
    train, val = loaders()
    return train, DataLoader(TensorDataset(val.dataset.tensors[0]), batch_size=8)


CASES = {
    "dataset_without_labels": {"model": UnlabeledVal, "data": _unlabeled},
    "no_logger": {"logger": False},
    "csv_logger_only": {"logger": "csv"},
    "fast_dev_run": {"trainer": {"fast_dev_run": 2}},
}


def _fit(tmp_path, case, monitors):
    spec = CASES[case]
    torch.manual_seed(0)
    model = spec.get("model", TinyCNN)()
    data = spec.get("data", loaders)()
    logger = spec.get("logger", True)
    if logger == "csv":
        logger = CSVLogger(str(tmp_path), name="csv")
    trainer = trainer_for(tmp_path, monitors, logger=logger, **spec.get("trainer", {}))
    handler = _Collect()
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(model, *data)
    finally:
        rank_zero.removeHandler(handler)
    return trainer, model, [str(w.message) for w in caught], handler.messages


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module", params=list(CASES))
def env(request, tmp_path_factory):
    case = request.param
    bare = tmp_path_factory.mktemp(case + "_bare")
    _, baseline, _, _ = _fit(bare, case, [])
    tmp = tmp_path_factory.mktemp(case)
    kwargs = CASES[case].get("monitor", {})
    monitors = {n: make_monitor(n, **kwargs) for n in ALL_MONITORS}
    trainer, model, messages, infos = _fit(tmp, case, list(monitors.values()))
    same = _same(model, baseline)
    return {"case": case, "dir": Path(tmp), "trainer": trainer, "monitors": monitors,
            "warnings": messages, "infos": infos, "same_weights": same}  # fmt: skip


def _same(model, baseline) -> bool:
    pairs = zip(model.state_dict().values(), baseline.state_dict().values(), strict=True)
    return all(torch.equal(a, b) for a, b in pairs)


def _failed(env, name):
    return [w for w in env["warnings"] if w.startswith(f"{name} failed")]


@pytest.mark.parametrize("name", ALL_MONITORS)
def test_bad_input_environment(env, name):
    monitor, case = env["monitors"][name], env["case"]
    assert env["same_weights"], "training was changed"
    expected_steps = 2 if case == "fast_dev_run" else 4
    assert env["trainer"].global_step == expected_steps, "training did not complete"
    failed = _failed(env, name)
    assert not failed, failed
    if case == "fast_dev_run":
        said = [w for w in env["warnings"] if "monitors step aside" in w and "fast_dev_run" in w]
        assert len(said) == 1 and monitor.disabled and monitor.events == 0
        assert not list(env["dir"].rglob("*.png"))
        return
    assert monitor.events >= 1 and not monitor.disabled
    if case == "dataset_without_labels":
        return
    # no TensorBoard logger: images and text as files under the run directory, said once
    base = env["dir"] / "csv" / "version_0" if case == "csv_logger_only" else env["dir"]
    out = base / "cnnviz"
    said = [m for m in env["infos"] if "images and text go to" in m]
    assert len(said) == 1 and str(out) in said[0], env["infos"]
    # `logger=False` was said at the start: no "no TensorBoard logger" about a run without any
    assert ("no TensorBoard logger" in said[0]) == (case == "csv_logger_only"), said
    files = [p for p in out.rglob("*") if p.is_file()]
    mine = [p for p in files if p.relative_to(out).as_posix().startswith(section(name) + "/")]
    if case == "csv_logger_only":
        header = (base / "metrics.csv").read_text().splitlines()[0].split(",")
        mine += [c for c in header if c.startswith(section(name) + "/")]
    if name == "EmbeddingMonitor" and case == "no_logger":
        return  # the projector and the scalar need a logger; nothing else to write
    assert mine, f"{name} left nothing under {out}"
    for png in (p for p in files if p.suffix == ".png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


UP_TO_NUM_SAMPLES = {"OverfittingMonitor"}  # calibration error: as many samples as there are
WITHOUT_PROBE = {"KernelMonitor"}  # weights only: no probe to draw, whatever `num_samples` says


@pytest.mark.parametrize("name", ALL_MONITORS)
def test_bad_input_num_samples_larger_than_dataset(tmp_path, name):
    """The probe is every item of the set, said once; the monitor logs, training unchanged.

    Held out: a val set of 8 images under the standard preset (16 samples) made the feature
    maps and the activation statistics fail and step aside."""
    if name in WITHOUT_PROBE or "num_samples" not in init_params(monitor_class(name)):
        pytest.skip(f"{name} has no probe")
    CASES["too_many"] = {}
    try:
        trainer, model, messages, _ = _fit(tmp_path, "too_many",
                                           [make_monitor(name, num_samples=1000)])  # fmt: skip
        _, baseline, _, _ = _fit(tmp_path / "bare", "too_many", [])
    finally:
        del CASES["too_many"]
    assert not [w for w in messages if w.startswith(f"{name} failed")], messages
    if name not in UP_TO_NUM_SAMPLES:  # its probe takes up to `num_samples`, unsaid
        said = [w for w in messages if "fewer than `num_samples=1000`: the probe is all" in w]
        splits = [w.split(" set holds")[0] for w in said]  # once per split it draws from
        assert len(splits) == len(set(splits)) and "the val set holds 16 items" in said[0]
    assert trainer.global_step == 4 and _same(model, baseline)


# ------------------------------------------------------------------- non-image input
class VectorNet(L.LightningModule):
    """An MLP on 10-dim vectors (no convolution, no spatial map)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.relu, self.fc2 = nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", F.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


NEEDS_IMAGES = {"KernelMonitor", "FeatureMapMonitor", "GradCAMMonitor",
                "ActivationMaximizationMonitor"}  # fmt: skip


@pytest.mark.parametrize("name", ALL_MONITORS)
def test_bad_input_non_image_model(tmp_path, name):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 10, generator=g), torch.arange(32) % 4
    data = (
        DataLoader(TensorDataset(x, y), batch_size=8),
        DataLoader(TensorDataset(x, y), batch_size=8),
    )
    trainer = trainer_for(tmp_path, [make_monitor(name)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(VectorNet(), *data)
    said = [str(w.message) for w in caught]
    assert not [m for m in said if m.startswith(f"{name} failed")]
    assert trainer.global_step == 4  # never abort a run the user did not ask to abort
    aside = [m for m in said if m.startswith(f"{name} steps aside")]
    if name in NEEDS_IMAGES:  # `auto` finds nothing to show: one warning, saying why
        assert len(aside) == 1 and "`layers='auto'` found no layer" in aside[0], said
    else:
        assert not aside, aside
    if name == "AdversarialMonitor":  # the attack's accuracies need no image: said once
        (only,) = [m for m in said if m.startswith(name)]
        assert "the attack's accuracy scalars only, no `examples` image" in only
