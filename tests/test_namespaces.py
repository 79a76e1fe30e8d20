"""The monitors under ``pytorch_lightning`` as under ``lightning.pytorch`` (read from TensorBoard).

Lightning ships under two package names whose classes are copies, not aliases; every
check of a logger, of ``fast_dev_run`` and of the callback type must hold for both.
"""

import warnings

import pytest

from tests.loggers import NAMESPACES, make_logger, model_for, package, written
from tests.monitors import layers_text, loaders, make_monitor
from tests.tb import events


def fit_in(namespace, tmp_path, callbacks, **args):
    """Fit ``model_for(namespace)`` with a TensorBoard logger of the same package."""
    settings = {
        "max_epochs": 1, "limit_train_batches": 4, "limit_val_batches": 1,
        "num_sanity_val_steps": 0, "enable_checkpointing": False,
        "logger": make_logger("tensorboard", namespace, tmp_path), **args,
    }  # fmt: skip
    trainer = package(namespace).Trainer(
        default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
        callbacks=callbacks, **settings,
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model_for(namespace), *loaders())
    return trainer, [str(w.message) for w in caught]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_namespaces_images_text_histograms_custom_scalars_reach_tensorboard(
    tmp_path, namespace, caplog
):
    monitors = [
        make_monitor("KernelMonitor"),
        make_monitor("ActivationMonitor", histograms=True),
        make_monitor("OverfittingMonitor"),
    ]
    with caplog.at_level("INFO"):
        fit_in(namespace, tmp_path, monitors)
    got = written("tensorboard", tmp_path)
    assert {"kernels/net.conv1", "kernels/net.conv2"} <= got["images"]
    assert layers_text(tmp_path / "tb")["KernelMonitor"] == ["net.conv1", "net.conv2"]
    assert any(t.startswith("activations/") for t in got["histograms"])
    assert "kernels/net.conv1/relative_change" in got["scalars"]
    assert not [r for r in caplog.records if "no TensorBoard logger" in r.getMessage()]
    assert "custom_scalars__config__" in events(tmp_path / "tb").Tags()["tensors"]
    assert all(m.events >= 1 and not m.disabled for m in monitors)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_namespaces_fast_dev_run_steps_aside(tmp_path, namespace):
    monitor = make_monitor("KernelMonitor", every_n_steps=1)
    _, said = fit_in(namespace, tmp_path, [monitor], fast_dev_run=2, logger=True)
    assert len([m for m in said if "step aside" in m and "fast_dev_run" in m]) == 1
    assert monitor.disabled and monitor.events == 0
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("events.out.*"))


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_namespaces_a_single_monitor_is_a_callback_of_either_trainer(tmp_path, namespace):
    monitor = make_monitor("KernelMonitor")
    assert isinstance(monitor, package(namespace).Callback)
    trainer, _ = fit_in(namespace, tmp_path, monitor)  # passed alone, not in a list
    assert monitor in trainer.callbacks and monitor.events >= 1


def test_namespaces_importing_the_monitors_keeps_lightning_log_routing():
    import subprocess
    import sys

    code = (
        "import lightning.pytorch\n"
        "from lightning_utilities.core import rank_zero\n"
        "import lightning_cnnviz.core.monitor, pytorch_lightning\n"  # both Callbacks in place
        "print(rank_zero.log.name)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "lightning.pytorch.utilities.rank_zero"
