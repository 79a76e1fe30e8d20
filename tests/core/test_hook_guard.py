"""Every hook of a monitor guarded: a failure steps the monitor aside, the fit goes on."""

import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_cnnviz import KernelMonitor
from lightning_cnnviz.core.findings import checks_of
from lightning_cnnviz.core.hook_guard import ConfigError
from tests.contract.registry import CaptureOnlyMonitor
from tests.contract.zoo import BNDropout, ZooData
from tests.tb import events, texts


class FailingHook(CaptureOnlyMonitor):
    """Fails in ``on_train_batch_end`` from step ``fail_at`` on, after its parent's hook ran."""

    def __init__(self, fail_at, **kwargs):
        super().__init__(**kwargs)
        self.fail_at, self.calls = fail_at, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.calls += 1
        if trainer.global_step >= self.fail_at:
            raise RuntimeError("planted hook failure")


def fit(tmp_path, callbacks):
    L.seed_everything(0, verbose=False)
    model = BNDropout()
    trainer = L.Trainer(default_root_dir=tmp_path, max_epochs=2, callbacks=callbacks,
                        logger=TensorBoardLogger(tmp_path, name="tb"), enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=ZooData())
    return trainer, model


def test_hook_guard_a_failing_hook_steps_aside_once_and_training_goes_on(tmp_path):
    monitor = FailingHook(fail_at=3, every_n_steps=2, num_samples=4)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        trainer, model = fit(tmp_path / "with", [monitor])
    failed = [str(w.message) for w in said if "planted hook failure" in str(w.message)]
    assert len(failed) == 1 and failed[0].startswith("FailingHook failed and steps aside")
    assert monitor.disabled and trainer.global_step == 16  # both epochs ran
    assert monitor.calls > 4  # called on after it stepped aside, quiet
    (check,) = checks_of(trainer).values()
    assert "planted hook failure" in check.why
    (summary,) = texts(events(tmp_path / "with" / "tb"), "cnnviz/summary")
    assert "FailingHook" in summary and "planted hook failure" in summary
    _, bare = fit(tmp_path / "bare", [])
    for (name, p), q in zip(model.state_dict().items(), bare.state_dict().values(), strict=True):
        assert torch.equal(p, q), name  # training unchanged by the failure


def test_hook_guard_strict_raises_the_hooks_error(tmp_path):
    with pytest.raises(RuntimeError, match="planted hook failure"):
        fit(tmp_path, [FailingHook(fail_at=3, every_n_steps=2, num_samples=4, strict=True)])


def test_hook_guard_a_configuration_mistake_is_raised_not_stepped_aside(tmp_path):
    with pytest.raises(ConfigError, match="matches no module"):
        fit(tmp_path, [KernelMonitor(layers="nope")])
