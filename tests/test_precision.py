"""Every monitor under ``precision="bf16-mixed"``, ``"64-true"`` and on a ``channels_last`` model.

Four fits of the same seeded 3-channel CNN with every monitor: float32
(reference), ``channels_last`` (float32), ``bf16-mixed`` + ``channels_last`` and
``64-true`` (a float64 model: KernelMonitor's norms once refused to narrow it). Per
monitor: no failure and no non-finite warning; the same tags as float32; every scalar
finite; values equal to float32 up to the layout's rounding (``channels_last``) or
close (bf16 autocast trains in bfloat16 for a few steps, so a loose tolerance); images
of the same size, not blank, and (``channels_last``) nearly the same pixels.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from tests.monitors import ALL_MONITORS, TinyCNN, fit, loaders, make_monitor, section
from tests.tb import events

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::UserWarning")]

CONFIGS = {
    "float32": {},
    "channels_last": {},
    "bf16_channels_last": {"precision": "bf16-mixed"},
    "float64": {"precision": "64-true"},
}
TOLERANCE = {  # (rel, abs)
    "channels_last": (1e-3, 1e-4),
    "bf16_channels_last": (0.15, 0.05),
    "float64": (1e-3, 1e-4),
}


def _run(tmp_path_factory, config: str):
    torch.manual_seed(0)
    model = TinyCNN(channels=3)
    if "channels_last" in config:
        model = model.to(memory_format=torch.channels_last)
    monitors = {n: make_monitor(n) for n in ALL_MONITORS}
    tmp = tmp_path_factory.mktemp(config)
    _, _, messages = fit(tmp, list(monitors.values()), model=model,
                         data=loaders(channels=3), **CONFIGS[config])  # fmt: skip
    acc = events(tmp)
    scalars = {t: {e.step: e.value for e in acc.Scalars(t)} for t in acc.Tags()["scalars"]}
    images = {
        t: [
            np.asarray(Image.open(io.BytesIO(e.encoded_image_string)).convert("RGB"))
            for e in acc.Images(t)
        ]
        for t in acc.Tags()["images"]
    }
    return {"monitors": monitors, "warnings": messages, "scalars": scalars, "images": images}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {config: _run(tmp_path_factory, config) for config in CONFIGS}


@pytest.mark.parametrize("config", ["channels_last", "bf16_channels_last", "float64"])
@pytest.mark.parametrize("name", ALL_MONITORS)
def test_precision_finite_and_close_to_float32(runs, name, config):
    run, ref = runs[config], runs["float32"]
    monitor = run["monitors"][name]
    failed = [w for w in run["warnings"] if w.startswith(f"{name} failed")]
    assert not failed and not monitor.disabled and monitor.events >= 1, failed
    nonfinite = [w for w in run["warnings"] if name.removesuffix("Monitor") in w and "finite" in w]
    ref_nonfinite = [
        w for w in ref["warnings"] if name.removesuffix("Monitor") in w and "finite" in w
    ]
    assert len(nonfinite) <= len(ref_nonfinite), nonfinite
    sec = section(name) + "/"
    mine = {t: v for t, v in run["scalars"].items() if t.startswith(sec)}
    theirs = {t: v for t, v in ref["scalars"].items() if t.startswith(sec)}
    assert set(mine) == set(theirs)
    rel, abs_ = TOLERANCE[config]
    for tag, series in mine.items():
        assert set(series) == set(theirs[tag]), tag
        for step, value in series.items():
            expected = theirs[tag][step]
            if math.isnan(expected):
                continue
            assert math.isfinite(value), (tag, step, value)
            assert value == pytest.approx(expected, rel=rel, abs=abs_), (tag, step, expected)
    images = {t: v for t, v in run["images"].items() if t.startswith(sec)}
    assert set(images) == {t for t in ref["images"] if t.startswith(sec)}
    for tag, shots in images.items():
        for got, expected in zip(shots, ref["images"][tag], strict=True):
            assert got.shape == expected.shape, tag
            assert len(np.unique(got.reshape(-1, 3), axis=0)) > 1, f"{tag} is blank"
            if config == "channels_last":
                diff = np.abs(got.astype(int) - expected.astype(int)).mean()
                assert diff < 1.0, (tag, diff)


def test_precision_default_dtype_float64_every_monitor_writes(tmp_path):
    # setups hunt 21: `torch.set_default_dtype(torch.float64)` before the model and the data
    # (scientific code): three monitors stepped aside on "Float did not match Double"
    from tests.monitors import assert_every_monitor_wrote

    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        monitors = [make_monitor(n) for n in ALL_MONITORS]
        model, data = TinyCNN(channels=3), loaders(channels=3)
        assert next(model.parameters()).dtype == torch.float64
        _, _, messages = fit(tmp_path, monitors, model=model, data=data)
    finally:
        torch.set_default_dtype(before)
    assert_every_monitor_wrote(tmp_path, monitors, messages)


class StoredNarrow(TinyCNN):
    """Images kept in bfloat16 (half the memory), widened in ``forward``."""

    def forward(self, x):
        return super().forward(x.float())


def test_precision_images_stored_in_bfloat16_every_monitor_writes(tmp_path):
    # setups hunt 29: OverfittingMonitor stepped aside on "Got unsupported ScalarType
    # BFloat16" (its val-leak check hashed the images through NumPy)
    from torch.utils.data import DataLoader, TensorDataset

    from tests.monitors import assert_every_monitor_wrote, digits

    def narrow(data):
        x, y = data.tensors
        return DataLoader(TensorDataset(x.bfloat16(), y), batch_size=8)

    monitors = [make_monitor(n) for n in ALL_MONITORS]
    data = (narrow(digits(32, seed=1)), narrow(digits(16, seed=2)))
    _, _, messages = fit(tmp_path, monitors, model=StoredNarrow(), data=data)
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    assert not [m for m in monitors if m.disabled]
