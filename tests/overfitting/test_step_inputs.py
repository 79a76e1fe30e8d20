"""Images the steps' own code preprocesses differently: the comparison, the layer, a run."""

import warnings

import lightning as L
import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.capture import hook_count
from lightning_cnnviz.core.findings import checks_of, findings_of
from lightning_cnnviz.core.step_input_shift import same_formula, step_input, step_shift
from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from tests.overfitting.runs import Net, fit_monitor, pictures
from tests.tb import events, texts

MEAN, STD = 0.13, 0.31


def test_step_shift_found_for_a_normalisation_in_one_step_only():
    x, other = pictures(64), pictures(64, seed=1)
    train = step_input(x, (x - MEAN) / STD)
    found = step_shift(train, step_input(other, other))  # validation_step leaves them raw
    assert found["scale_ratio"] > 2
    assert abs(found["train_scale"] - 1 / STD) < 0.01 and abs(found["val_scale"] - 1) < 1e-4
    assert abs(found["train_offset"] + MEAN / STD) < 0.01 and abs(found["val_offset"]) < 1e-4
    # the other way round, and a validation_step normalising with other constants
    assert step_shift(step_input(x, x), step_input(other, (other - MEAN) / STD))
    assert step_shift(train, step_input(other, (other - 0.5) / 0.5))


def test_step_shift_quiet_for_the_same_transform_or_augmentation_on_other_classes():
    x, other = pictures(64), pictures(64, seed=1)
    dark = 0.2 * other  # a val batch of one dark class: its own statistics differ
    assert step_shift(step_input(x, (x - MEAN) / STD), step_input(dark, (dark - MEAN) / STD)) == {}
    flipped = ((x - MEAN) / STD).flip(-1) + 0.1 * torch.randn_like(x)  # augmented in the step
    assert step_shift(step_input(x, flipped), step_input(other, (other - MEAN) / STD)) == {}
    flat = torch.zeros(64, 3, 16, 16)  # a constant channel: no scale to read, nothing said
    assert step_shift(step_input(flat, flat), step_input(flat, flat)) == {}


def test_step_shift_parts_two_steady_formulas_at_lower_bars():
    # hunt 113: `(x - 0.1307) / 0.3081` in training, `(x - 0.5) / 0.5` in validation put
    # the same digits 0.89 standard deviations apart, 1.6x in spread: val 74% against 93%
    x, other = pictures(64), pictures(64, seed=1)
    train, val = step_input(x, (x - MEAN) / STD), step_input(other, (other - 0.25) / 0.4)
    assert step_shift(train, val) == {}  # under the bars for a change drawn per batch
    found = step_shift(train, val, steady=True)
    assert found["mean_gap"] == pytest.approx(0.5, abs=0.05) and found["scale_ratio"] > 1.25
    flipped = step_input(x, ((x - MEAN) / STD).flip(-1))  # the same values moved about
    assert step_shift(flipped, val, steady=True)["train_moved"] < 1e-4
    noisy = step_input(x, (x - MEAN) / STD + 0.1 * torch.randn_like(x))  # no formula
    assert step_shift(noisy, val, steady=True) == {}
    alike = step_input(other, (other - 0.14) / 0.32)  # constants rounded otherwise
    assert step_shift(train, alike, steady=True) == {}


def test_step_shift_words_give_no_exact_formula_for_each_image_standardised():
    # hunt 115: each image standardised by its own mean and spread in `training_step` was
    # said "makes `(x - 0.1193) / 0.2948`", one formula the user might copy
    from lightning_cnnviz.overfitting.evaluation import Evaluation
    from lightning_cnnviz.overfitting.input_words import inputs_differ
    from lightning_cnnviz.overfitting.verdict import Verdict

    x, other = pictures(64), pictures(64, seed=1)
    own = (x - x.mean((1, 2, 3), keepdim=True)) / x.std((1, 2, 3), keepdim=True)
    found = step_shift(step_input(x, own), step_input(other, other))
    assert 0.9 < found["train_fit"] < 0.95 and 0.02 < found["train_moved"] < 0.05
    now = Evaluation(40, 3)
    said = inputs_differ(Verdict("inputs_differ", now, now, None, {**found, "in_steps": 1.0}))
    assert "`training_step` changes, beyond any scale and shift" in said
    assert "each image scaled on its own" in said and "pixels moved about" not in said
    nearly = {**found, "train_fit": 0.976, "train_moved": 0.08, "in_steps": 1.0}  # hunt 115's
    said = inputs_differ(Verdict("inputs_differ", now, now, None, nearly))
    assert "`training_step` makes about `(x - " in said and "per-image standardisation" in said
    exact = step_shift(step_input(x, (x - MEAN) / STD), step_input(other, other))
    said = inputs_differ(Verdict("inputs_differ", now, now, None, {**exact, "in_steps": 1.0}))
    assert f"`training_step` makes `(x - {MEAN:g}) / {STD:g}` of channel 0" in said


def test_same_formula_holds_for_constants_not_for_a_jitter_per_batch():
    x, other = pictures(64), pictures(64, seed=1)
    assert same_formula(step_input(x, (x - MEAN) / STD), step_input(other, (other - MEAN) / STD))
    assert not same_formula(step_input(x, x * 1.1), step_input(other, other * 0.9))
    assert not same_formula(step_input(x, x + 0.05), step_input(other, other))


def test_step_shift_names_channels_reordered_in_one_step_only():
    # hunt 93: RGB -> BGR in `training_step` was told "`(x - 0.038) / 2.325` of channel 0"
    tint = torch.tensor([1.0, 2.0, 5.0]).view(1, 3, 1, 1)
    x, other = pictures(64) * tint, pictures(64, seed=1) * tint
    found = step_shift(step_input(x, x[:, [2, 1, 0]]), step_input(other, other))
    assert (found["train_order"], found["val_order"]) == ([2, 1, 0], [0, 1, 2])
    normalised = step_shift(step_input(x, (x - MEAN) / STD), step_input(other, other))
    assert normalised and "train_order" not in normalised  # a rescale, no reordering


def test_step_shift_reads_noise_added_as_no_scale_and_shift():
    # hunt 111: noise of sd 3 added in `training_step` was said "makes `(x - 0.02458) /
    # 0.1734` of channel 0", a formula nowhere in the code
    x, other = pictures(64), pictures(64, seed=1)
    noisy = step_input(x, x + 3 * torch.randn_like(x))
    found = step_shift(noisy, step_input(other, other))
    assert found["train_fit"] < 0.5 and found["train_moved"] > 0.1
    assert found["val_fit"] == pytest.approx(1.0) and found["val_moved"] < 1e-4
    normalised = step_shift(step_input(x, (x - MEAN) / STD), step_input(other, other))
    assert normalised["train_fit"] == pytest.approx(1.0, abs=1e-4)
    # hunt 112: normalised and flipped: the same values moved about (the formula kept)
    flipped = step_shift(step_input(x, ((x - MEAN) / STD).flip(-1)), step_input(other, other))
    assert flipped["train_fit"] < 0.95 and flipped["train_moved"] < 1e-4


class StepNormalised(Net):
    """Normalises in ``training_step``; ``validation_step`` too where ``both``."""

    def __init__(self, net, lr, both):
        super().__init__(net, lr)
        self.both = both

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self._step(((x - MEAN) / STD, y), "train")

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self._step(((x - MEAN) / STD if self.both else x, y), "val")


class OtherConstants(StepNormalised):
    """``validation_step`` normalises with other constants than ``training_step``'s."""

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self._step(((x - 0.25) / 0.4, y), "val")


class Jittered(StepNormalised):
    """``training_step`` draws a brightness per batch before normalising, as validation does."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self._step(((x * (0.7 + 0.6 * torch.rand(1)) - MEAN) / STD, y), "train")


class InPlace(StepNormalised):
    """Normalises in both steps, in place (``sub_``/``div_``) in ``training_step`` only."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        x.sub_(MEAN).div_(STD)
        return self._step((x, y), "train")


class HeldWithAverage(nn.Module):
    """``net`` with an EMA copy of it registered first (setups hunt 59)."""

    def __init__(self, net):
        super().__init__()
        net(torch.zeros(1, 3, *pictures(1).shape[-2:]))  # its LazyLinear made, to be copied
        self.ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9))
        self.net = net

    def forward(self, x):
        return self.net(x)


class ScaledLater(StepNormalised):
    """Normalises in both steps; ``training_step`` also scales by 255 from step 5 on."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        x = (x - MEAN) / STD
        return self._step((x * 255 if self.global_step >= 5 else x, y), "train")


class Swapped(StepNormalised):
    """``training_step`` hands the net the channels in BGR order; ``validation_step`` in RGB."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self._step((x[:, [2, 1, 0]], y), "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")


class ValSwappedLater(StepNormalised):
    """``validation_step`` hands the net the channels in BGR order from epoch 1 on."""

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self._step((x[:, [2, 1, 0]] if self.current_epoch >= 1 else x, y), "val")


class FlippedTrainingStep(StepNormalised):
    """``training_step`` normalises and flips its images; ``validation_step`` does neither."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self._step((((x - MEAN) / STD).flip(-1), y), "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")


class NoisyTrainingStep(StepNormalised):
    """``training_step`` adds noise of sd 3 to the images; ``validation_step`` does not."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self._step((x + 3 * torch.randn_like(x), y), "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")


def _run(tmp_path, both, compiled=False, averaged=False, model_type=StepNormalised, epochs=2,
         tint=(1.0, 1.0, 1.0), val_normalised=False):  # fmt: skip
    torch.manual_seed(0)
    tint = torch.tensor(tint).view(1, 3, 1, 1)
    x, y = pictures(128) * tint, torch.arange(128) % 2
    x[y == 1, 1] += 0.5  # class 1 greener
    val_x, val_y = pictures(128, seed=1) * tint, torch.arange(128) % 2
    val_x[val_y == 1, 1] += 0.5
    val_x = (val_x - MEAN) / STD if val_normalised else val_x  # in the dataset
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                        nn.LazyLinear(2))  # fmt: skip
    train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(val_x, val_y), batch_size=32)
    model = model_type(HeldWithAverage(net) if averaged else net, 0.01, both)
    if compiled:  # hunt 35: a compiled network's steps were not read at all
        torch._dynamo.reset()
        model.net = torch.compile(net, backend="eager")
    trainer, said = fit_monitor(tmp_path, model, train, val, epochs=epochs)
    assert sum(hook_count(model.net).values()) == 0  # the tap lives for one batch only
    return trainer, said


@pytest.mark.parametrize("compiled", [False, True])
def test_step_inputs_told_in_a_run_normalising_in_training_step_only(tmp_path, compiled):
    trainer, said = _run(tmp_path, both=False, compiled=compiled)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "inputs_differ"]
    assert (finding.severity, finding.step) == ("problem", 4)  # the first validation
    assert finding.figures["in_steps"] == 1.0 and finding.figures["scale_ratio"] > 2
    assert not [f for f in findings_of(trainer) if f.kind == "bn_mismatch"]
    assert any("by the steps' own code" in m for m in said)
    text = texts(events(tmp_path / "tb" / "version_0"), "overfitting/diagnosis")[0]
    assert "`validation_step` leaves it" in text and "Preprocess in one place" in text
    # as the step wrote it (hunt 55: "scales by 0.00392x")
    assert f"`training_step` makes `(x - {MEAN:g}) / {STD:g}` of channel" in text


def test_step_inputs_channels_reordered_in_training_step_are_told_as_that(tmp_path):
    trainer, _ = _run(tmp_path, both=False, model_type=Swapped, tint=(0.5, 1.0, 4.0))
    (finding,) = [f for f in findings_of(trainer) if f.kind == "inputs_differ"]
    assert (finding.severity, finding.step) == ("problem", 4)
    assert finding.figures["train_order"] == [2, 1, 0]
    text = texts(events(tmp_path / "tb" / "version_0"), "overfitting/diagnosis")[0]
    assert "`training_step` reorders the channels as loaded to (2, 1, 0) and " in text
    assert "`validation_step` keeps their order" in text and "makes `(x" not in text


def test_step_inputs_noise_added_in_training_step_is_told_without_a_formula(tmp_path):
    trainer, _ = _run(tmp_path, both=False, model_type=NoisyTrainingStep)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "inputs_differ"]
    assert finding.figures["train_fit"] < 0.5 and finding.figures["scale_ratio"] > 2
    text = texts(events(tmp_path / "tb" / "version_0"), "overfitting/diagnosis")[0]
    assert "`training_step` changes, beyond any scale and shift (its values correlate" in text
    assert "makes `" not in text and "`validation_step` leaves it" in text
    # hunt 112: normalised and flipped in `training_step`: the formula is what parts them
    flipped, _ = _run(tmp_path / "flip", both=False, model_type=FlippedTrainingStep)
    (finding,) = [f for f in findings_of(flipped) if f.kind == "inputs_differ"]
    assert finding.figures["train_fit"] < 0.95 and finding.figures["train_moved"] < 0.05
    text = texts(events(tmp_path / "flip" / "tb" / "version_0"), "overfitting/diagnosis")[0]
    assert f"`training_step` makes `(x - {MEAN:g}) / {STD:g}`" in text


def test_step_inputs_a_validation_step_changed_mid_run_is_read_again(tmp_path):
    # hunt 91: channels reversed in `validation_step` from epoch 3 were told as memorisation
    # (`generalisation_gap`): the val step was read at the first validation only
    trainer, _ = _run(tmp_path, both=False, model_type=ValSwappedLater, tint=(0.5, 1.0, 4.0),
                      epochs=3)  # fmt: skip
    (finding,) = [f for f in findings_of(trainer) if f.kind == "inputs_differ"]
    assert finding.step == 8 and finding.figures["val_order"] == [2, 1, 0]  # the second
    assert finding.figures["train_order"] == [0, 1, 2]


def test_step_inputs_read_the_live_net_behind_a_weight_average_registered_first(tmp_path):
    # setups hunt 59: the copy's first convolution was taken, no batch reached it, and the
    # check was listed as not run ("no training batch reached the model's first layer")
    trainer, _ = _run(tmp_path, both=False, averaged=True)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "inputs_differ"]
    assert (finding.severity, finding.step) == ("problem", 4)
    assert finding.figures["in_steps"] == 1.0 and finding.figures["scale_ratio"] > 2


class Pixels(StepNormalised):
    """uint8 pixels scaled in ``forward``; ``training_step`` normalises too unless ``both``."""

    def forward(self, x):
        return self.net(x.float() / 255 if not x.is_floating_point() else x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self._step(((x.float() / 255 - MEAN) / STD, y), "train")

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self._step(((x.float() / 255 - MEAN) / STD if self.both else x, y), "val")


@pytest.mark.parametrize("both", [True, False])
def test_step_inputs_read_uint8_pixels_the_model_scales_itself(tmp_path, both):
    # setups hunt 59: uint8 images scaled in `forward`: the check was listed as not run
    # ("its inputs are not float images") while the first convolution got floats
    torch.manual_seed(0)
    x, y = (pictures(128) * 255).to(torch.uint8), torch.arange(128) % 2
    x[y == 1, 1] = x[y == 1, 1].clamp(max=127) * 2  # class 1 greener
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    trainer, _ = fit_monitor(tmp_path, Pixels(net, 0.01, both), train,
                             DataLoader(TensorDataset(x, y), batch_size=32), epochs=2)  # fmt: skip
    assert checks_of(trainer)[("OverfittingMonitor", "inputs in the steps")].ran
    told = [f for f in findings_of(trainer) if f.kind == "inputs_differ"]
    assert bool(told) is not both
    if told:
        assert told[0].figures["in_steps"] == 1.0 and told[0].figures["scale_ratio"] > 2


def test_step_inputs_quiet_when_both_steps_normalise(tmp_path):
    trainer, _ = _run(tmp_path, both=True)
    assert not [f for f in findings_of(trainer) if f.kind == "inputs_differ"]


def test_step_inputs_quiet_where_training_step_normalises_what_the_val_set_holds_so(tmp_path):
    # hunt 116: a normalisation in `training_step`, the val set normalised in its dataset:
    # told "preprocessed differently" from the raw training probe, both splits reaching the
    # model at mean near 0 and spread near 1
    trainer, _ = _run(tmp_path, both=False, val_normalised=True)
    assert not [f for f in findings_of(trainer) if f.kind == "inputs_differ"]
    (monitor,) = [c for c in trainer.callbacks if isinstance(c, OverfittingMonitor)]
    assert monitor._shift and monitor._steps_undo_shift()  # the probes differ, the layers not


def test_step_inputs_told_for_two_steps_normalising_with_other_constants(tmp_path):
    trainer, _ = _run(tmp_path, both=True, model_type=OtherConstants)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "inputs_differ"]
    assert (finding.severity, finding.step) == ("problem", 4)  # the first validation
    assert finding.figures["mean_gap"] < 1 and finding.figures["scale_ratio"] < 2
    assert finding.figures["val_scale"] == pytest.approx(1 / 0.4, rel=1e-4)
    assert "`validation_step` makes `(x - 0.25) / 0.4` of it" in finding.message


def test_step_inputs_quiet_for_a_brightness_drawn_per_batch_in_training(tmp_path):
    trainer, _ = _run(tmp_path, both=True, model_type=Jittered, epochs=3)
    assert not [f for f in findings_of(trainer) if f.kind == "inputs_differ"]


def test_step_inputs_quiet_when_one_step_normalises_its_batch_in_place(tmp_path):
    # setups hunt 66: `x.mul_(2)` in `training_step`, `self(x * 2)` in `validation_step`:
    # the batch read after the step changed it in place, told "training_step leaves
    # channel 0 as loaded, validation_step makes (x - 0.25) / 0.5 of it"
    trainer, _ = _run(tmp_path, both=True, model_type=InPlace)
    assert not [f for f in findings_of(trainer) if f.kind == "inputs_differ"]
    (monitor,) = [c for c in trainer.callbacks if isinstance(c, OverfittingMonitor)]
    steps = monitor._steps  # both steps were read, the training one as loaded
    assert set(steps) == {"train", "val"}
    train = steps["train"]
    normalised = ((train.images_mean - MEAN) / STD).tolist()
    assert train.layer_mean.tolist() == pytest.approx(normalised, rel=1e-4, abs=1e-5)


def test_step_inputs_a_training_step_changed_mid_run_is_read_again(tmp_path):
    # hunt 89: inputs x255 in `training_step` from step 300, told as a BatchNorm mismatch;
    # the training batch is read again on the batch a validation follows (hunt 92: read on
    # the batch after each evaluation instead, a change within an epoch was told a
    # validation late); the change comes at the second batch of epoch 1 (4 batches each)
    trainer, _ = _run(tmp_path, both=True, model_type=ScaledLater, epochs=3)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "inputs_differ"]
    assert finding.figures["in_steps"] == 1.0 and finding.step == 8  # the second validation
    assert finding.figures["train_scale"] == pytest.approx(255 / STD, rel=1e-3)


def test_step_inputs_quiet_for_an_input_batchnorm_read_in_the_sanity_check(tmp_path):
    # a BatchNorm ahead of the first convolution normalises by the batch in training and
    # by its running statistics in eval (at their start in the sanity check): that is
    # the model's own doing, not the steps'
    torch.manual_seed(0)
    x, y = pictures(128), torch.arange(128) % 2
    x[y == 1, 1] += 0.5
    val_x, val_y = pictures(128, seed=1), torch.arange(128) % 2
    val_x[val_y == 1, 1] += 0.5
    net = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(),
                        nn.LazyLinear(2))  # fmt: skip
    train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(val_x, val_y), batch_size=32)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_epochs=2, num_sanity_val_steps=1, logger=False,
        callbacks=[OverfittingMonitor(num_samples=64)], enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Net(net, 0.01), train, val)
    monitor = trainer.callbacks[0]
    assert set(monitor._steps) == {"train", "val"}  # both read, after the sanity check
    assert not [f for f in findings_of(trainer) if f.kind == "inputs_differ"]
