"""The val probe's logits read from the validation loop.

The same figures as a probe pass, a probe pass whenever the loop cannot stand in, no hook left.
"""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from lightning_cnnviz.core.capture import hook_count
from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from lightning_cnnviz.overfitting.val_reach import trained_layers
from tests.monitors import TinyCNN, digits, fit
from tests.tb import events

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

EPOCHS = 3  # a validation per epoch, each read from the loop (the probe drawn before the first)


def data(n_val=24, batch_size=8):
    train = DataLoader(digits(32, seed=1), batch_size=8)
    return train, DataLoader(digits(n_val, seed=2), batch_size=batch_size)


def run(tmp_path, model_cls=TinyCNN, readable=True, callbacks=(), n_val=24, sanity=0, **kw):
    """Fit with OverfittingMonitor: (monitor, model, each evaluation's source of val logits)."""
    L.seed_everything(0)
    model = model_cls()
    monitor = OverfittingMonitor(num_samples=12, **kw)
    if not readable:  # the reference: today's val probe pass at every evaluation
        monitor._loop_readable = lambda trainer: False
    sources = []
    measure = monitor._measure

    def recorded(trainer, pl_module):
        out = measure(trainer, pl_module)
        sources.append("loop" if monitor.val_from_loop else "probe")
        return out

    monitor._measure = recorded
    fit(
        tmp_path, [monitor, *callbacks], model=model, data=data(n_val),
        max_epochs=EPOCHS, limit_val_batches=None, num_sanity_val_steps=sanity,
    )  # fmt: skip
    return monitor, model, sources


def written(logdir):
    acc = events(logdir)
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    images = {t: [e.encoded_image_string for e in acc.Images(t)] for t in acc.Tags()["images"]}
    return scalars, images


def test_loop_logits_figures_equal_a_probe_pass_over_the_same_images(tmp_path):
    monitor, _, sources = run(tmp_path / "loop")
    _, _, reference = run(tmp_path / "probe", readable=False)
    assert sources == ["loop"] * EPOCHS, monitor._loop.why
    assert reference == ["probe"] * EPOCHS
    (loop_scalars, loop_images), (ref_scalars, ref_images) = (
        written(tmp_path / "loop" / "tb"),
        written(tmp_path / "probe" / "tb"),
    )
    assert "overfitting/ece_val" in loop_scalars and set(loop_scalars) == set(ref_scalars)
    for tag, series in ref_scalars.items():
        got = loop_scalars[tag]
        assert [s for s, _ in got] == [s for s, _ in series], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in series], abs=1e-5), tag
    # per-class accuracy, confusion matrix (and confused pairs with their probe images)
    assert {"overfitting/per_class", "overfitting/confusion"} <= set(loop_images)
    assert loop_images == ref_images
    h = monitor.detector.history
    assert [e.probe_size for e in h] == [12.0] * EPOCHS
    # the BatchNorm check judged every evaluation: its pass ran, or its screen was quiet
    assert all((e.probe_acc_bn is None) != (e.bn_screen is None) for e in h)
    assert monitor.timings["loop"] > 0


class ForwardBypassed(TinyCNN):
    """``validation_step`` calls ``self.forward`` directly: no forward hook fires."""

    def validation_step(self, batch, batch_idx):
        logits = self.forward(batch[0])
        self.log("val/loss", torch.nn.functional.cross_entropy(logits, batch[1]))


def test_loop_logits_fall_back_to_the_probe_pass_when_forward_is_not_called(tmp_path):
    monitor, _, sources = run(tmp_path / "loop", model_cls=ForwardBypassed)
    _, _, _ = run(tmp_path / "probe", model_cls=ForwardBypassed, readable=False)
    assert sources == ["probe"] * EPOCHS
    assert monitor._loop.why == "validation_step did not call the module's forward"
    assert written(tmp_path / "loop" / "tb") == written(tmp_path / "probe" / "tb")


def test_loop_logits_fall_back_when_the_loop_never_reaches_the_probe(tmp_path):
    L.seed_everything(0)
    monitor = OverfittingMonitor(num_samples=12)
    fit(tmp_path, [monitor], data=data(), max_epochs=EPOCHS, limit_val_batches=1)
    # 8 val images reached of the 12 the probe holds: every evaluation runs its probe pass
    assert monitor.events == EPOCHS and not monitor.val_from_loop
    assert "reached" in monitor._loop.why and "of 12 probe images" in monitor._loop.why


class Spy(L.Callback):
    """Forward hooks on the module during validation batches and training batches."""

    def __init__(self) -> None:
        self.val, self.train = [], []

    def on_validation_batch_end(self, trainer, pl_module, *args):
        self.val.append(len(pl_module._forward_hooks))

    def on_train_batch_start(self, trainer, pl_module, *args):
        self.train.append(sum(hook_count(pl_module).values()))

    on_train_batch_end = on_train_batch_start


def test_loop_logits_tap_lives_only_during_due_validations(tmp_path):
    spy = Spy()
    monitor, model, sources = run(tmp_path, callbacks=[spy], sanity=2)
    assert sources == ["loop"] * EPOCHS
    # the sanity check's 2 batches untapped, then 3 batches per validation, the first included
    assert spy.val == [0] * 2 + [1] * 3 * EPOCHS
    # on training batches only the first batch's taps: the first convolution (step_inputs)
    # and each trained layer (val_reach: do the taps see the model's calls); and the first
    # convolution's again on each epoch's last batch, the one a validation follows (read
    # at each batch's start and end: 4 batches an epoch)
    assert spy.train[0] == 1 + len(trained_layers(model))
    assert spy.train[1:] == [1 if i in (5, 13, 21) else 0 for i in range(8 * EPOCHS - 1)]
    assert sum(hook_count(model).values()) == 0 and monitor._loop._handle is None


class FailsInValidation(TinyCNN):
    def validation_step(self, batch, batch_idx):
        if self.current_epoch == 1 and batch_idx == 1:
            raise RuntimeError("boom")
        return super().validation_step(batch, batch_idx)


def test_loop_logits_no_hook_left_after_an_exception_in_validation(tmp_path):
    L.seed_everything(0)
    model, monitor = FailsInValidation(), OverfittingMonitor(num_samples=12)
    with pytest.raises(RuntimeError, match="boom"):
        fit(
            tmp_path, [monitor], model=model, data=data(), max_epochs=EPOCHS, limit_val_batches=None
        )
    assert monitor.events == 1 and sum(hook_count(model).values()) == 0
    assert monitor._loop._handle is None


class TwoValLoaders(TinyCNN):
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self._step(batch, "val") if dataloader_idx == 0 else self(batch[0] * 0)


def test_loop_logits_read_the_first_val_loader_only(tmp_path):
    L.seed_everything(0)
    monitor = OverfittingMonitor(num_samples=12)
    train, val = data()
    other = DataLoader(digits(24, seed=5), batch_size=8)
    trainer, model, warned = fit(
        tmp_path, [monitor], model=TwoValLoaders(), data=(train, [val, other]),
        max_epochs=EPOCHS, limit_val_batches=None,
    )  # fmt: skip
    said = [m for m in warned if "several validation dataloaders" in m]
    assert len(said) == 1 and "`val/loss/dataloader_idx_0`" in said[0]  # said, once
    assert monitor.val_from_loop, monitor._loop.why
    h = monitor.detector.history[-1]
    with torch.no_grad():
        model.eval()
        probe = monitor.probe(trainer, "val")
        logits = model(probe.images)
    assert h.probe_acc_val == pytest.approx(
        (logits.argmax(1) == probe.labels).float().mean().item()
    )
    # Lightning suffixes the first loader's values: read as `val/loss`, `val/acc`
    logged = trainer.callback_metrics
    assert "val/loss" not in logged
    assert h.val_loss == pytest.approx(float(logged["val/loss/dataloader_idx_0"]))
    assert h.val_acc == pytest.approx(float(logged["val/acc/dataloader_idx_0"]))


class DictItems(torch.utils.data.Dataset):
    """The quadrant digits as dict items with the label under a key of its own."""

    def __init__(self, n, seed):
        self.x, self.y = digits(n, seed=seed).tensors

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixels": self.x[i], "cls": self.y[i]}


class DictBatches(TinyCNN):
    def training_step(self, batch, batch_idx):
        return self._step((batch["pixels"], batch["cls"]), "train")

    def validation_step(self, batch, batch_idx):
        self._step((batch["pixels"], batch["cls"]), "val")


def test_loop_logits_read_labels_under_label_key(tmp_path):
    L.seed_everything(0)
    monitor = OverfittingMonitor(num_samples=12, label_key="cls")
    train = DataLoader(DictItems(32, 1), batch_size=8)
    val = DataLoader(DictItems(24, 2), batch_size=8)
    fit(tmp_path, [monitor], model=DictBatches(), data=(train, val), max_epochs=2,
        limit_val_batches=None)  # fmt: skip
    assert monitor.events == 2 and monitor.val_from_loop, monitor._loop.why
    assert monitor.detector.history[-1].probe_acc_val is not None
