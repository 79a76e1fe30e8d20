"""Every monitor on a CUDA device, strict: no tensor left on the wrong device, none fails.

The rest of the suite runs on CPU, where a CPU probe and a CUDA activation can never meet;
these fits run where they can (skipped on machines without CUDA). Each monitor must log
and write its own section, read back from the event files.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from lightning_cnnviz.presets import callbacks
from tests.monitors import ALL_MONITORS, assert_every_monitor_wrote, fit, loaders, make_monitor
from tests.shapes import models

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = {"accelerator": "cuda", "devices": 1}


def _resnet18() -> models.ShapeModule:
    make = lambda: torchvision.models.resnet18(weights=None, num_classes=models.NUM_CLASSES)  # noqa: E731
    return models.backbone(make)


SHAPES = {"conv1d": models.conv1d, "conv3d": models.conv3d,
          "segmentation": models.segmentation, "resnet18": _resnet18}  # fmt: skip


@pytest.mark.parametrize("precision", ["32-true", "16-mixed", "bf16-mixed"])
def test_cuda_every_monitor_writes_on_a_bn_cnn(tmp_path, precision):
    monitors = [make_monitor(n, strict=True) for n in ALL_MONITORS]
    _, _, said = fit(tmp_path, monitors, precision=precision, **CUDA)
    assert_every_monitor_wrote(tmp_path, monitors, said)


def _logged(tmp_path, name: str, **trainer: object) -> dict[str, int]:
    torch.manual_seed(0)
    model = SHAPES[name]()
    monitors = [make_monitor(n, strict=True) for n in ALL_MONITORS]
    data = (model.train_dataloader(), model.val_dataloader())
    _, _, said = fit(tmp_path, monitors, model=model, data=data, **trainer)
    assert [w for w in said if " failed" in w] == []
    return {type(m).__name__: m.events for m in monitors if m.events}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_cuda_every_shape_logs_what_it_logs_on_cpu(tmp_path, name):
    on_cpu = _logged(tmp_path / "cpu", name, accelerator="cpu")
    on_cuda = _logged(tmp_path / "cuda", name, precision="bf16-mixed", **CUDA)
    assert on_cuda.keys() == on_cpu.keys() and len(on_cpu) >= 5, (on_cpu, on_cuda)


@pytest.mark.parametrize("preset", ["standard", "full"])
def test_cuda_presets_at_their_defaults_log_what_they_log_on_cpu(tmp_path, preset):
    logged = {}
    for where, trainer in (("cpu", {"accelerator": "cpu"}), ("cuda", CUDA)):
        monitors = callbacks(preset, strict=True)
        data = loaders(n_train=256, n_val=64, batch_size=8)
        _, _, said = fit(tmp_path / where, monitors, data=data, max_epochs=2,
                         limit_train_batches=None, limit_val_batches=None, **trainer)  # fmt: skip
        assert [w for w in said if " failed" in w] == []
        logged[where] = {type(m).__name__ for m in monitors if m.events}
    assert logged["cuda"] == logged["cpu"] and len(logged["cpu"]) >= 5, logged
