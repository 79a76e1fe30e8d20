"""Short fits on inputs, outputs and words: raw pixels, activations on the logits, NaN batches."""

import math
import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.activations.callback import ActivationMonitor
from lightning_cnnviz.activations.episodes import Verdict
from lightning_cnnviz.core.findings import findings_of, problems
from lightning_cnnviz.reference.synthetic import SyntheticDigitsDataModule
from tests.activations.diagnosis_nets import Net, fit, leaky_cnn
from tests.monitors import TinyCNN, loaders
from tests.monitors import fit as monitors_fit
from tests.tb import events, texts


def scaled_loaders(scale: float) -> list[DataLoader]:
    """The test digits' loaders with their pixels (made positive) times ``scale``."""
    return [
        DataLoader(TensorDataset(x.abs() * scale, y), batch_size=8)
        for x, y in (loader.dataset.tensors for loader in loaders())
    ]


class ScaledOnTransfer(TinyCNN):
    """Raw 0..255 pixels, scaled in ``on_after_batch_transfer`` (the probes skip it)."""

    def on_after_batch_transfer(self, batch, dataloader_idx):
        x, y = batch
        return x / 255, y


def test_diagnosis_runs_raw_pixels_scaled_in_a_batch_hook_are_no_note(tmp_path):
    # setups hunt 24: uint8 images scaled in `on_after_batch_transfer` got "the probe images
    # reach |x| = 255 ... raw pixel values perhaps" though training saw them scaled
    data = scaled_loaders(255)
    monitor = ActivationMonitor(every_n_steps=2)
    trainer, _, said = monitors_fit(tmp_path, [monitor], model=ScaledOnTransfer(lr=0.01), data=data)
    assert monitor.events > 0
    assert [f for f in findings_of(trainer) if f.kind == "unnormalised_inputs"] == []
    assert any("without the run's `module.on_after_batch_transfer`" in m for m in said)


class ScaledInForward(TinyCNN):
    """Raw 0..255 pixels, normalised by ``forward`` before its first convolution."""

    def forward(self, x):
        return super().forward((x / 255 - 0.5) / 0.25)


def test_diagnosis_runs_raw_pixels_a_model_normalises_itself_are_no_note(tmp_path):
    # setups hunt 71: uint8 images normalised in `forward` got "the probe images reach
    # |x| = 255 ... scale them (`x / 255`)"
    data = scaled_loaders(255)
    monitor = ActivationMonitor(every_n_steps=2)
    trainer, _, _ = monitors_fit(tmp_path, [monitor], model=ScaledInForward(lr=0.01), data=data)
    assert monitor.events > 0
    assert [f for f in findings_of(trainer) if f.kind == "unnormalised_inputs"] == []


def test_diagnosis_runs_raw_pixels_of_the_val_images_alone_are_no_note_of_the_inputs(tmp_path):
    # hunt 106: val images left in [0, 255] beside normalised training ones were told "the
    # inputs are far from unit scale ... divergence and dead units likelier" (the probe's
    # were val images); the inputs' scale is read from the training images
    (train, val), (raw_train, raw_val) = scaled_loaders(1.0), scaled_loaders(255.0)
    for data, told in (((train, raw_val), False), ((raw_train, val), True)):
        monitor = ActivationMonitor(every_n_steps=2)
        run = tmp_path / str(told)
        trainer, _, _ = monitors_fit(run, [monitor], model=TinyCNN(lr=0.01), data=data)
        found = [f for f in findings_of(trainer) if f.kind == "unnormalised_inputs"]
        assert monitor.events > 0 and bool(found) is told


@pytest.mark.parametrize("scale", [1.0, 255.0, 1 / 255])
def test_diagnosis_runs_raw_pixel_inputs_are_a_note_naming_their_scale(tmp_path, scale):
    data = scaled_loaders(scale)
    monitor = ActivationMonitor(every_n_steps=2)
    trainer, _, _ = monitors_fit(tmp_path, [monitor], model=TinyCNN(lr=0.01), data=data)
    found = [f for f in findings_of(trainer) if f.kind == "unnormalised_inputs"]
    if scale == 1.0:
        assert found == []
    elif scale > 1:
        (note,) = found
        assert note.severity == "note" and note.figures["input_max"] > 20 * 8
        assert "raw pixel values perhaps" in note.message and "x / 255" in note.message
    else:  # scaled twice: the images barely vary
        (note,) = found
        assert note.severity == "note" and note.figures["input_std"] < 1e-2
        assert note.message.startswith("The inputs barely vary: the probe images have a")


@pytest.mark.parametrize("layers", ["auto", "*"])  # "*": also the Sequential holding it
def test_diagnosis_runs_relu_on_the_logits_is_named_not_dead_units(tmp_path, layers):
    # held out: a ReLU after the last Linear, 6-7 of 10 classes at 0 (val 47-49% vs 94%);
    # the tool said only "30% dead ... a note, not a problem" at the first log
    model = Net(nn.Sequential(leaky_cnn(), nn.ReLU()), lr=0.05)
    trainer, said = fit(tmp_path, model, 50, 10, layers=layers)
    (found,) = [f for f in findings_of(trainer) if f.kind == "output_activation"]
    assert found.severity == "problem"
    assert "the model's output passes through `net.1`" in found.message
    stuck = int(found.figures["dead_outputs"])
    assert 1 <= stuck <= 10 and found.figures["share"] == pytest.approx(stuck / 10)
    assert f"{stuck} of its outputs" in found.message
    later = [f for f in findings_of(trainer) if f.kind == "dead_units" and f.step > found.step]
    assert not [f for f in later if "`net.1`" in f.message]  # its units are classes, told once
    assert [m for m in said if "passes through `net.1`" in m] == [found.message]
    run = events(tmp_path)
    dead = {e.step: e.value for e in run.Scalars("activations/net.1/dead_fraction")}
    assert dead[found.step] == pytest.approx(found.figures["share"])


def test_diagnosis_runs_relu_on_class_maps_before_a_global_pool_is_an_output_activation(tmp_path):
    # held out: torchvision SqueezeNet (1x1 conv to the classes, ReLU, global average pool)
    # kept 6 of 10 class maps at 0 and val accuracy at 22% for 10 epochs; the ReLU's output
    # is not the model's, its pooled output is, and it was told as dead units
    head = nn.Conv2d(16, 10, 1)
    with torch.no_grad():
        head.bias[:4] = -50.0  # classes 0-3 never above 0
    body = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.LeakyReLU(0.01), nn.MaxPool2d(2),
        head, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip
    trainer, _ = fit(tmp_path, Net(body, lr=0.01), 20, 10)
    (found,) = [f for f in findings_of(trainer) if f.kind == "output_activation"]
    assert found.severity == "problem" and found.step <= 20  # the second log at the latest
    assert "the model's output passes through `net.4`" in found.message
    assert "classes 0, 1, 2, 3" in found.message
    dead = [f for f in findings_of(trainer) if f.kind == "dead_units"]
    assert not [f for f in dead if "`net.4`" in f.message]


@pytest.mark.parametrize("layers", ["*", "Conv2d", "Linear"])
def test_diagnosis_runs_watched_logits_and_convs_before_batchnorm_hold_no_dead_units(
    tmp_path, layers
):
    # hunt 25: `layers=["fc"]` on a plain classifier got "the model's output passes
    # through `fc`, an activation ...: remove it" (no activation there, no logit at 0), and
    # convs whose BatchNorm re-centres a bias of -3 "81-100% dead" (their ReLUs: 0%)
    body = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip
    with torch.no_grad():
        body[0].bias.fill_(-3.0), body[4].bias.fill_(-3.0)
        body[9].bias[:4] = -20.0  # four classes' logits below 0 on every image
    trainer, said = fit(tmp_path, Net(body, lr=0.01), 20, 10, layers=layers)
    assert problems(findings_of(trainer)) == []
    assert not [m for m in said if "dead" in m or "passes through" in m]
    run = events(tmp_path)
    logged = {t.split("/")[1] for t in run.Tags()["scalars"] if t.endswith("dead_fraction")}
    assert logged >= {"*": {"net.0", "net.2", "net.9"}, "Conv2d": {"net.0"}}.get(layers, {"net.9"})
    if layers == "*":  # the ReLUs after the BatchNorms are measured as before: all alive
        assert all(e.value == 0 for e in run.Scalars("activations/net.2/dead_fraction"))


class FunctionalReluOut(nn.Module):
    """``F.relu`` on the logits in ``forward``: no module to watch at the output."""

    def __init__(self) -> None:
        super().__init__()
        self.body = leaky_cnn()

    def forward(self, x):
        return F.relu(self.body(x))


def test_diagnosis_runs_functional_relu_on_the_logits_is_an_output_activation(tmp_path):
    # hunt 19: `F.relu(model(x))` kept a CNN at 67-69% (95-97% without it), told nothing
    trainer, _ = fit(tmp_path, Net(FunctionalReluOut(), lr=0.05), 50, 10)
    (found,) = [f for f in findings_of(trainer) if f.kind == "output_activation"]
    assert found.severity == "problem"
    assert "the model's output is never below 0 (an activation that is 0 below zero" in (
        found.message
    )
    stuck = int(found.figures["dead_outputs"])
    assert 1 <= stuck <= 10 and f"{stuck} of its outputs" in found.message


class _Texts:
    """A sink that keeps the texts it is given (what ``ActivationMonitor._tell`` writes)."""

    active = True

    def __init__(self):
        self.written = []

    def text(self, tag, text, step):
        self.written.append((tag, step))


def test_diagnosis_runs_a_divergence_that_grows_is_one_finding_at_its_latest():
    # f_bn_sgd_lr3 (hunt 15): a spike told at step 9, the loss NaN at step 10 told at 20:
    # two `divergence` problems and "3 problem(s)" for one failure
    monitor, run = ActivationMonitor(), type("Run", (), {})()
    monitor._sink = _Texts()
    spike = Verdict("divergence", "problem", "Training diverged: a spike", {"spike_step": 1})
    nan = Verdict("divergence", "problem", "Training diverged: NaN", {"first_nonfinite_step": 10})
    with pytest.warns(UserWarning) as said:
        monitor._tell(run, [spike], 9, 0)
        monitor._tell(run, [nan], 20, 0)
    assert [str(w.message) for w in said] == [spike.message, nan.message]
    ((kind, severity, step, message),) = [
        (f.kind, f.severity, f.step, f.message) for f in findings_of(run)
    ]
    assert (kind, severity, step) == ("divergence", "problem", 20) and "NaN" in message


def test_diagnosis_runs_a_cause_told_at_a_log_is_named_by_the_problems_after_it_there():
    # held out: inputs divided by 255 twice; the `unnormalised_inputs` note and a dead-units
    # problem came at the same log (step 12), and the problem never named the inputs
    monitor, run = ActivationMonitor(), type("Run", (), {})()
    monitor._sink = _Texts()
    note = Verdict("unnormalised_inputs", "note", "The inputs barely vary", {})
    dead = Verdict("dead_units", "problem", "Dead units at step 12", {})
    with pytest.warns(UserWarning) as said:
        monitor._tell(run, [note, dead], 12, 0)
    (warned,) = [str(w.message) for w in said]
    assert warned.startswith("Dead units at step 12 This may follow from a note reported first")
    assert "(step 12, `unnormalised_inputs`)" in warned
    assert [f.kind for f in findings_of(run)] == ["unnormalised_inputs", "dead_units"]


def test_diagnosis_runs_a_nan_batch_is_named_as_the_divergence_cause(tmp_path):
    # setups hunt 20: three all-NaN training items made the loss NaN at step 3, told as
    # "the optimiser overshoots ... lower the learning rate"
    from tests.monitors import digits
    from tests.monitors import fit as fit_monitors

    x, y = digits(64, seed=1).tensors
    x = x.clone()
    x[20] = float("nan")  # the third batch of 8
    loaders = (DataLoader(TensorDataset(x, y), 8), DataLoader(digits(16, seed=2), 8))
    monitor = ActivationMonitor(every_n_steps=4)
    trainer, _, _ = fit_monitors(tmp_path, [monitor], data=loaders, limit_train_batches=8)
    found = [f for f in problems(findings_of(trainer)) if f.kind == "divergence"]
    assert found and "The training batch at step 2 held NaN/Inf inputs" in found[0].message
    assert "overshoots" not in found[0].message


def _three_epochs(tmp_path, model, batches, *callbacks):
    """Three epochs of ``batches`` synthetic-digit batches, ActivationMonitor every 10 steps."""
    L.seed_everything(0, verbose=False)
    data = SyntheticDigitsDataModule(train_size=64 * batches, val_size=64, batch_size=64)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_epochs=3, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[ActivationMonitor(every_n_steps=10), *callbacks],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, data)
    return trainer


class NaNWeightsAt(L.Callback):
    """Writes NaN into one weight of the second conv when ``epoch`` begins (a corrupt reload)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                pl_module.net[3].weight[0, 0, 0, 0] = math.nan


def test_diagnosis_runs_nan_written_between_epochs_is_told_as_what_runs_between_them(tmp_path):
    # hunt 35: NaN written into conv2 by a callback at epoch 3 was told "first parameter:
    # `body.0.weight` ... one batch or one operation (a NaN/Inf in an input or label)"
    trainer = _three_epochs(tmp_path, Net(leaky_cnn(), lr=0.02), 20, NaNWeightsAt(2))
    (diverged,) = [f for f in problems(findings_of(trainer)) if f.kind == "divergence"]
    assert diverged.figures["first_nonfinite_step"] == 40
    assert diverged.figures["first_nonfinite_parameter"] == "*"
    assert "Every parameter holds non-finite values" in diverged.message
    assert "first parameter with non-finite values" not in diverged.message.lower()
    assert "just before step 40, the first step of epoch 2" in diverged.message
    told = texts(events(tmp_path), "activations/diagnosis")
    assert any("what runs between two epochs" in t for t in told)


class BlownUpAfterTheLastLog(Net):
    """A per-epoch warm restart (back to its peak after the last epoch); the loss x1e4 at 33."""

    def __init__(self) -> None:
        super().__init__(leaky_cnn(), lr=0.05)
        self.rates: dict[int, float] = {}

    def training_step(self, batch, batch_idx):
        self.rates[self.global_step] = self.trainer.optimizers[0].param_groups[0]["lr"]
        loss = super().training_step(batch, batch_idx)
        return loss * 1e4 if self.global_step == 33 else loss

    def configure_optimizers(self):
        opt = super().configure_optimizers()
        restarts = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3, eta_min=5e-4)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": restarts, "interval": "epoch"}}


def test_diagnosis_runs_a_blow_up_after_the_last_log_reads_the_rate_of_the_last_step(tmp_path):
    # setups hunt 49: Lightning steps a per-epoch scheduler after the last epoch; the rate
    # it then holds (0.05, the restart) was read as the rate now and told as "The learning
    # rate jumped from 0.0129 (step 30) to 0.05 (step 36) ... a warm restart": no step ran at it
    L.seed_everything(0, verbose=False)  # the weights too: a loss not steady before 33 differs
    model = BlownUpAfterTheLastLog()
    trainer = _three_epochs(tmp_path, model, 12)
    after = trainer.optimizers[0].param_groups[0]["lr"]
    assert max(r for s, r in model.rates.items() if s >= 30) < after / 2  # the restart: unused
    (diverged,) = [f for f in problems(findings_of(trainer)) if f.kind == "divergence"]
    assert diverged.step == 36 and "step 33" in diverged.message
    assert "jumped" not in diverged.message and "warm restart" not in diverged.message
    assert "one batch or one operation" in diverged.message


class LossTermOutOfRange(Net):
    """An auxiliary loss term out of its domain from step 25: ``log`` of 0 or of a negative.

    Its gradient stays finite (``relu`` masks the ``log(0)`` one; ``1/x`` of a negative x is
    finite), so the model trains on while the returned loss is -inf or NaN.
    """

    def __init__(self, negative: bool) -> None:
        super().__init__(leaky_cnn(), lr=0.02)
        self.negative = negative

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if self.global_step < 25:
            return loss
        spread = self(batch[0]).std() - 100.0  # far below 0
        term = spread if self.negative else F.relu(spread)
        return loss + 0.01 * torch.log(term)


@pytest.mark.parametrize("negative", [False, True], ids=["log0", "log_negative"])
def test_diagnosis_runs_a_loss_term_out_of_range_is_no_divergence_of_the_model(tmp_path, negative):
    # hunt 111: 0.01 * log(relu(s)) hit log(0) (-inf) on a net still learning, told "the
    # loss is negated ... every update climbs the cross-entropy"; log of a negative (NaN)
    # told "Training diverged ... then blew up in that one step"
    trainer = _three_epochs(tmp_path, LossTermOutOfRange(negative), 12)
    assert all(torch.isfinite(p).all() for p in trainer.lightning_module.parameters())
    (found,) = [f for f in problems(findings_of(trainer)) if f.kind == "divergence"]
    assert found.figures["first_nonfinite_step"] == 25
    assert found.message.startswith("The loss became non-finite (NaN or Inf) at step 25")
    assert "no weight, activation or gradient of the model is" in found.message
    for wrong in ("Training diverged", "negated", "climbs the cross-entropy", "blew up"):
        assert wrong not in found.message
