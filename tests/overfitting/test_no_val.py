"""A fit that validates nothing: OverfittingMonitor says so once, and the summary lists it.

Held out (setups hunt 23): with ``limit_val_batches=0``, no val loader, or ``max_steps``
reached before the first validation, it wrote nothing and said nothing (the reason was
only in the end-of-fit summary).
"""

from types import SimpleNamespace

import pytest
import torch

from lightning_cnnviz.core.findings import checks_of, findings_of
from lightning_cnnviz.overfitting.no_val import never_validated, validation_off
from tests.monitors import TinyCNN, fit, loaders, make_monitor, written_tags

CASES = {
    "limit_val_0": ({"limit_val_batches": 0}, True, "`limit_val_batches=0` turns validation off"),
    "no_val_loader": ({}, False, "the run has no validation data"),
    # validation is due at the epoch end (batch 4); training stops at step 2
    "max_steps_first": (
        {"max_steps": 2},
        True,
        "training stopped at `max_steps=2` before the first validation",
    ),
}


def _said(messages: list[str]) -> list[str]:
    return [m for m in messages if m.startswith("OverfittingMonitor:") and "writes nothing" in m]


@pytest.mark.parametrize("case", list(CASES))
def test_no_val_said_once_and_listed(tmp_path, case):
    args, with_val, why = CASES[case]
    train, val = loaders()
    monitor = make_monitor("OverfittingMonitor")
    trainer, _, messages = fit(tmp_path, [monitor], data=(train, val if with_val else None), **args)
    (said,) = _said(messages)
    assert said.startswith(f"OverfittingMonitor: {why}: it reads each validation's end")
    # said once: not again at fit end as "never logged" (setups hunt 26)
    assert [m for m in messages if m.startswith("OverfittingMonitor") and why in m] == [said]
    assert checks_of(trainer)[("OverfittingMonitor", "overfitting")].why == why
    tags = written_tags(tmp_path)
    assert not [t for kind in tags.values() for t in kind if t.startswith("overfitting/")]


def test_no_val_not_said_on_a_run_that_validates_at_epoch_ends(tmp_path):
    # nothing validated when training starts, one validation at the epoch end: healthy
    monitor = make_monitor("OverfittingMonitor")
    _, _, messages = fit(tmp_path, [monitor], model=TinyCNN(), max_epochs=2)
    assert monitor.events == 2 and not _said(messages)


def test_no_val_reasons_from_the_trainer_settings():
    class Module:  # a user's module, validation_step of its own
        def validation_step(self, batch, batch_idx): ...

    trainer = SimpleNamespace(enable_validation=True, limit_val_batches=1.0, max_steps=-1,
                              global_step=5, lightning_module=Module())  # fmt: skip
    assert validation_off(trainer) == ""  # it may run: nothing said at the start
    assert never_validated(trainer) == "validation never ran after training started"
    trainer.enable_validation, trainer.lightning_module = False, object()
    assert validation_off(trainer) == "the module defines no `validation_step`"
    trainer.limit_val_batches = 0.0
    assert validation_off(trainer) == never_validated(trainer)
    assert validation_off(trainer) == "`limit_val_batches=0.0` turns validation off"


def test_no_val_an_empty_iterable_val_loader_is_named_not_the_metric_keys(tmp_path):
    # setups hunt 71: a val loader over an IterableDataset yielding nothing: "cannot find
    # `val/loss`, `val/acc` ... pass `val_loss_key=`", which could not help
    from torch.utils.data import DataLoader, IterableDataset

    class Nothing(IterableDataset):
        def __iter__(self):
            return iter([])

    train, _ = loaders()
    monitor = make_monitor("OverfittingMonitor")
    trainer, _, messages = fit(tmp_path, [monitor], data=(train, DataLoader(Nothing(), 8)))
    said = [m for m in messages if m.startswith("OverfittingMonitor")]
    assert len(said) == 1 and "the val loader holds no item" in said[0], said
    assert "val_loss_key" not in said[0]
    assert checks_of(trainer)[("OverfittingMonitor", "overfitting")].why.startswith(
        "the val loader holds no item"
    )


class Emptied(torch.utils.data.Dataset):
    """Its items until ``items`` is emptied (a val set gone after the first validation)."""

    def __init__(self, items) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class EmptiesVal(TinyCNN):
    def on_train_epoch_start(self):
        if self.current_epoch == 1:
            self.trainer.val_dataloaders.dataset.items = []


def test_no_val_a_validation_of_no_batch_is_not_evaluated(tmp_path):
    # setups hunt 72: the val set emptied after epoch 0; Lightning's logged val metrics kept
    # epoch 0's, read as every later validation's: a healthy run told `val_metrics_differ`
    from torch.utils.data import DataLoader

    train, val = loaders()
    val = DataLoader(Emptied(val.dataset), batch_size=8)
    monitor = make_monitor("OverfittingMonitor", every_n_epochs=1)
    trainer, _, messages = fit(tmp_path, [monitor], model=EmptiesVal(), data=(train, val),
                               max_epochs=4, limit_val_batches=1.0)  # fmt: skip
    assert monitor.events == 1  # epoch 0's validation only
    said = [m for m in messages if "ran no batch" in m]
    assert len(said) == 1 and said[0].startswith("OverfittingMonitor: the validation at step")
    assert not [f for f in findings_of(trainer) if f.kind == "val_metrics_differ"]


def test_no_val_the_commonest_share_is_read_from_the_batches_validated(tmp_path):
    # hunt 100: `limit_val_batches=10` validated a 60/40 head of a balanced val set; its
    # commonest share, read from the whole set, let a model answering one class read past
    # chance
    from torch.utils.data import DataLoader, TensorDataset

    train, val = loaders()
    x, y = val.dataset.tensors
    order = torch.argsort(y, stable=True)  # sorted by class: the first batch all class 0
    head = DataLoader(TensorDataset(x[order], y[order]), batch_size=4)
    monitor = make_monitor("OverfittingMonitor", every_n_epochs=1)
    fit(tmp_path, [monitor], data=(train, head), max_epochs=2, limit_val_batches=1)
    first = int(y[order][0])
    assert int((y == first).sum()) < len(y)  # the whole set holds other classes
    assert [e.val_major for e in monitor.detector.history] == [1.0, 1.0]
    fit(tmp_path / "all", [monitor], data=(train, head), max_epochs=1, limit_val_batches=1.0)
    counts = torch.bincount(y)
    assert monitor.detector.history[-1].val_major == float(counts.max()) / len(y)


class TwoLoaders(TinyCNN):
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self._step(batch, "val")


def test_no_val_an_empty_first_of_two_val_loaders_is_named(tmp_path):
    # setups hunt 73: the first of two val loaders empty: "cannot find `val/loss` ... pass
    # `val_loss_key`", and GradCAMMonitor "the val loader holds no item" beside a full one
    from torch.utils.data import DataLoader, Subset

    train, val = loaders()
    monitor = make_monitor("OverfittingMonitor")
    empty = DataLoader(Subset(val.dataset, []), batch_size=8)
    _, _, messages = fit(tmp_path, [monitor], model=TwoLoaders(), data=(train, [empty, val]))
    said = [m for m in messages if m.startswith("OverfittingMonitor") and "val/loss" in m]
    assert len(said) == 1 and "val_loss_key" not in said[0], messages
    assert "the first of the 2 val loaders, the one the monitors read, holds no item" in said[0]
