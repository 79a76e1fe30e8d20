"""How people run training: no validation data, validate/test alone, one callback reused.

Each test reads back what was written (TensorBoard, the findings, warning text).
"""

import warnings

import lightning as L
import pytest
import torch

from lightning_cnnviz.core.findings import checks_of, findings_of, problems
from tests.monitors import TinyCNN, fit, loaders, make_monitor, trainer_for
from tests.tb import events, texts


def test_environments_no_validation_data_said_honestly(tmp_path):
    train, _ = loaders()
    gradcam, overfitting = make_monitor("GradCAMMonitor"), make_monitor("OverfittingMonitor")
    trainer, _, said = fit(tmp_path, [gradcam, overfitting], data=(train, None))
    acc = events(tmp_path / "tb")
    assert gradcam.events >= 1
    assert [t for t in acc.Tags()["images"] if t.startswith("gradcam/")] == ["gradcam/train"]
    assert not [t for t in acc.Tags()["scalars"] if t.startswith(("gradcam/val", "gradcam/mis"))]
    assert len([m for m in said if "GradCAMMonitor: the run has no validation data" in m]) == 1
    check = checks_of(trainer)[("OverfittingMonitor", "overfitting")]
    assert not check.ran and "no validation data" in check.why
    split = checks_of(trainer)[("GradCAMMonitor", "shortcut train vs val")]
    assert not split.ran and split.why == "the run has no validation data"
    (summary,) = texts(acc, "cnnviz/summary")
    assert "did not run" in summary and "no validation data" in summary


def test_environments_validate_and_test_alone_say_fit_only_once(tmp_path):
    monitors = [make_monitor("KernelMonitor"), make_monitor("GradCAMMonitor")]
    trainer = trainer_for(tmp_path, monitors)
    model, (_, val) = TinyCNN(), loaders()
    model.test_step = model.validation_step
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            trainer.validate(model, val, verbose=False)
        trainer.test(model, val, verbose=False)
    said = [str(w.message) for w in caught if "log during `trainer.fit()` only" in str(w.message)]
    assert len(said) == 2  # once for validate, once for test
    assert "KernelMonitor, GradCAMMonitor log nothing in `trainer.validate()`" in said[0]
    assert "`trainer.test()`" in said[1]
    assert all(m.events == 0 for m in monitors)
    assert not list(tmp_path.rglob("*.png"))


def _scalars(logdir):
    acc = events(logdir)
    return {t: [(s.step, s.value) for s in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _fit_b(tmp_path, name, monitors):
    torch.manual_seed(1)
    model = TinyCNN()
    fit(tmp_path / name, monitors, model=model)
    return _scalars(tmp_path / name / "tb")


def test_environments_reused_callbacks_start_afresh_on_another_model(tmp_path):
    names = ["KernelMonitor", "GradCAMMonitor", "ActivationMonitor", "FeatureMapMonitor"]
    reused = [make_monitor(n) for n in names]
    torch.manual_seed(0)
    fit(tmp_path / "a", reused, model=TinyCNN())
    again = _fit_b(tmp_path, "b_reused", reused)
    fresh = _fit_b(tmp_path, "b_fresh", [make_monitor(n) for n in names])
    mine = {t for t in fresh if t.split("/")[0] in {"kernels", "gradcam", "activations"}}
    assert "kernels/conv1/relative_change" in mine and any("drift" in t for t in mine)
    for tag in sorted(mine):  # as if the callbacks had never seen the first model
        assert again[tag] == fresh[tag], tag


class _Stream(torch.utils.data.IterableDataset):
    """A dataset without ``len`` or ``[i]``, as a streaming loader gives."""

    def __init__(self, loader):
        self.dataset = loader.dataset

    def __iter__(self):
        return iter(self.dataset)


def test_environments_iterable_datasets_every_monitor_logs(tmp_path):
    train, val = loaders(n_train=64)
    data = tuple(torch.utils.data.DataLoader(_Stream(d), batch_size=8) for d in (train, val))
    names = ["KernelMonitor", "FeatureMapMonitor", "ActivationMonitor", "GradCAMMonitor",
             "OverfittingMonitor"]  # fmt: skip
    auto = {"every_n_steps": None, "every_n_epochs": None}  # the automatic schedule
    monitors = [make_monitor(name, strict=True, **auto) for name in names]
    trainer, _, _ = fit(tmp_path, monitors, data=data, max_epochs=2, limit_train_batches=None)
    assert trainer.estimated_stepping_batches == -1  # Lightning cannot tell the run's length
    acc = events(tmp_path / "tb")
    for name, monitor in zip(names, monitors, strict=True):
        assert not monitor.disabled, name
        assert 1 <= monitor.events <= 3, (name, monitor.events)  # planned as a long run, not 1 step
    images = {t.split("/")[0] for t in acc.Tags()["images"]}
    assert {"kernels", "feature_maps", "activations", "gradcam", "overfitting"} <= images


def test_environments_a_second_fit_of_another_model_starts_the_trainers_record_afresh(tmp_path):
    # setups hunt 49: a second `fit` with another model on the same trainer listed the first
    # model's problems as "2 problem(s) in this run"
    monitors = [make_monitor("ActivationMonitor", every_n_steps=2)]
    torch.manual_seed(0)
    trainer, diverged, _ = fit(tmp_path, monitors, model=TinyCNN(lr=1e4), max_epochs=2)
    told = problems(findings_of(trainer))
    assert told and told[0].kind == "divergence"
    held = findings_of(trainer)  # a live list: it shows the run's record as it goes
    for model, epochs in ((diverged, 3), (TinyCNN(), 5)):  # the same model goes on; another not
        before = trainer.global_step
        trainer.fit_loop.max_epochs = epochs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model, *loaders())
        assert held is findings_of(trainer) and trainer.global_step > before
        assert (told[0] in held) == (model is diverged)
    assert not problems(held) and all(f.step > before for f in held)
    assert checks_of(trainer)  # the last fit's checks


class _BrokenSetup(L.LightningDataModule):
    """A datamodule whose ``setup`` raises: no monitor's ``setup`` runs."""

    def setup(self, stage):
        raise RuntimeError("no data here")


def test_environments_a_failed_fit_of_another_model_lists_none_of_the_last_models(tmp_path):
    # setups hunt 50: a fit of another model that failed in its datamodule's `setup` was
    # told with the first model's divergence "before it"
    monitors = [make_monitor("ActivationMonitor", every_n_steps=2)]
    torch.manual_seed(0)
    trainer, _, _ = fit(tmp_path, monitors, model=TinyCNN(lr=1e4), max_epochs=2)
    assert problems(findings_of(trainer))
    with pytest.raises(RuntimeError, match="no data here"):
        trainer.fit(TinyCNN(), datamodule=_BrokenSetup())
    assert findings_of(trainer) == []
