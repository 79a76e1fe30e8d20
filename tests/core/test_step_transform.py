"""What a training step does to the images outside ``forward``: read, followed, said."""

import gc
import warnings

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.capture import hook_count
from lightning_cnnviz.core.probe_pass import follows_step, in_probe_pass
from lightning_cnnviz.core.step_follower import StepFollower, StepTap
from lightning_cnnviz.core.step_transform import (
    agreed,
    channel_affine,
    moved_affine,
    step_change,
    step_text,
)
from lightning_cnnviz.feature_maps.callback import FeatureMapMonitor
from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from tests.overfitting.runs import Net, pictures
from tests.test_no_work_between_logs import global_hooks

MEAN, STD = (0.2, 0.3, 0.4), (0.25, 0.5, 0.2)


def _normalised(x):
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_channel_affine_reads_each_channels_scale_and_shift():
    x = pictures(8)
    scale, offset = channel_affine(x, _normalised(x))
    assert torch.allclose(scale, 1 / torch.tensor(STD), atol=1e-4)
    assert torch.allclose(offset, -torch.tensor(MEAN) / torch.tensor(STD), atol=1e-4)
    assert channel_affine(x, x.flip(-1)) is None  # a flip is no scale and shift of each value
    assert channel_affine(x, x + 0.05 * torch.randn_like(x)) is None  # nor is noise
    assert channel_affine(x, x[:, :2]) is None
    nan = x.clone()
    nan[0, 0, 0, 0] = float("nan")
    assert channel_affine(nan, _normalised(nan)) is None  # a NaN pixel: nothing followed


def test_step_change_alike_followed_or_said():
    x = pictures(8)
    found = step_change("", _normalised(x)[:4], x[:4])
    assert found.name == "" and found.figures["scale_ratio"] > 2  # with how far it moves them
    assert torch.allclose(found.scale, 1 / torch.tensor(STD), atol=1e-4)
    assert step_change("", x[:4], x[:4]) is None  # forward itself does it all
    found = step_change("net", 3 * x[:4] ** 2, x[:4])  # not a scale and shift: said
    assert found.scale is None and found.figures["train_std"] > 2 * found.figures["val_std"]
    assert step_change("", x[:4].flip(-1), x[:4]) is None  # augmentation: left alone
    resized = nn.functional.interpolate(x[:4], size=(20, 20))
    assert step_change("", resized, x[:4]).figures == {"size": (20, 20), "given": (16, 16)}
    # bfloat16 rounding leaves more than float32's: still the same scale and shift
    assert step_change("", _normalised(x[:4]).bfloat16(), x[:4].bfloat16()).scale is not None


def test_step_change_follows_a_normalisation_after_the_pixels_moved_about():
    # hunt 113: a random crop and flip, then a normalisation, in `training_step`: no scale
    # and shift value by value, so the probes stayed raw
    x = pictures(8)
    moved = _normalised(x[:4]).roll(3, -1).flip(-2)
    found = step_change("", moved, x[:4])
    assert found.figures["moved"] == 1.0
    assert torch.allclose(found.scale, 1 / torch.tensor(STD), atol=1e-4)
    assert torch.allclose(found.offset, -torch.tensor(MEAN) / torch.tensor(STD), atol=1e-4)
    said = step_text(found)
    assert "`(x - (0.2, 0.3, 0.4)) / (0.25, 0.5, 0.2)` after moving its pixels about" in said
    noisy = _normalised(x[:4]) + 0.3 * torch.randn_like(x[:4])  # other values: not followed
    assert moved_affine(x[:4], noisy) is None and step_change("", noisy, x[:4]).scale is None


def test_step_text_writes_the_change_as_a_user_would():
    x = pictures(8)
    said = step_text(step_change("", _normalised(x), x))
    assert "`(x - (0.2, 0.3, 0.4)) / (0.25, 0.5, 0.2)`" in said
    # setups hunt 35: uint8 images divided by 255 read "(x - -8.39e-07) / 255"
    raw = (pictures(8) * 255).round().to(torch.uint8).float()
    assert "its images as `x / 255`, outside" in step_text(step_change("", raw / 255, raw))
    assert "its images as `x + 0.5`, outside" in step_text(step_change("", x + 0.5, x))
    # setups hunt 53: `(x - 0.5) / 0.5` on uint8 images read 0-255 written with 127
    said = step_text(step_change("", (raw / 255 - 0.5) / 0.5, raw))
    assert "its images as `(x - 127.5) / 127.5`, outside" in said


def test_step_change_agreed_only_where_both_batches_show_it():
    x, y = pictures(8), pictures(8, seed=1)
    first, second = step_change("", _normalised(x), x), step_change("", _normalised(y), y)
    assert torch.allclose(agreed(first, second).scale, 1 / torch.tensor(STD), atol=1e-4)
    jitter = step_change("", 1.3 * y + 0.1, y)  # a brightness drawn anew per batch
    assert agreed(first, jitter) is None and agreed(first, None) is None


def test_step_tap_keeps_the_modules_a_batch_reaches_and_leaves_no_hook():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    x = pictures(8)
    tap = StepTap(net, x)
    net(_normalised(x))
    tap.remove()
    assert [name for _, name, _ in tap.calls] == ["", "0"]
    assert torch.equal(tap.calls[0][2], _normalised(x)[:4])
    assert global_hooks() == 0 and sum(hook_count(net).values()) == 0
    found = tap.change(net, None)
    assert found.name == "" and torch.allclose(found.scale, 1 / torch.tensor(STD), atol=1e-4)


class Stepped(Net):
    """Changes its images in both steps (``how``); ``PROBED``: what probe passes hand ``net[0]``.

    Kept in a module global: a probe pass puts back the model's own attributes and what
    its hooks hold (their closures' variables).
    """

    def __init__(self, net, how):
        super().__init__(net, 0.01)
        self.how = how
        net[0].register_forward_pre_hook(_keep)

    def prep(self, x):
        if self.how == "noise":
            return x + 0.1 * torch.randn_like(x)
        if self.how == "jitter":  # a brightness and contrast drawn anew per batch
            return x * (0.5 + torch.rand(1)) + 0.2 * torch.rand(1)
        if self.how == "bytes":  # stored as bytes, made floats in the step
            return _normalised(x.float() / 255)
        if self.how == "noisy" and self.training:  # augmentation after the normalisation
            return _normalised(x) + 0.3 * torch.randn_like(x)
        if self.how == "moved" and self.training:  # a random shift and flip, then normalised
            return _normalised(x.roll(int(torch.randint(1, 8, ())), -1).flip(-2))
        return _normalised(x)

    def on_train_batch_start(self, batch, batch_idx):
        if self.how == "skip" and self.current_epoch == 0:
            return -1  # Lightning skips the rest of the epoch, and its batch end hooks

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.how == "direct":  # the step calls the network, not `forward`
            logits = self.net(self.prep(x))
            return nn.functional.cross_entropy(logits, y)
        return self._step((self.prep(x), y), "train")

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self._step((self.prep(x), y), "val")


PROBED: list = []


def _keep(module, args):
    if in_probe_pass():
        PROBED.append(args[0].detach().clone())


def _fit(tmp_path, how, extra=()):
    torch.manual_seed(0)
    x, y = pictures(64), torch.arange(64) % 2
    val_x, val_y = pictures(64, seed=1), torch.arange(64) % 2
    if how == "bytes":
        x, val_x = (x * 255).round().byte(), (val_x * 255).round().byte()
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))
    PROBED.clear()
    model = Stepped(net, how)
    if how == "compiled":  # the step's batches reach the compiled wrapper, not its graph
        torch._dynamo.reset()
        model.net = torch.compile(net, backend="eager")
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_epochs=2, logger=False, num_sanity_val_steps=0,
        callbacks=[FeatureMapMonitor(num_samples=4), *extra], enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(
            model, DataLoader(TensorDataset(x, y), 16), DataLoader(TensorDataset(val_x, val_y), 16)
        )
    assert sum(hook_count(net).values()) == 1 and global_hooks() == 0  # the test's own only
    said = [str(w.message) for w in caught if "training step" in str(w.message)]
    return torch.cat(PROBED), said, torch.cat([val_x, x])  # the images a probe may hold


def _as_val_images(probed, val_x):
    """Whether every probed image, normalised back, is one of the dataset images ``val_x``."""
    raw = probed * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    return all(any(torch.allclose(r, v, atol=1e-5) for v in val_x) for r in raw)


def test_step_transform_followed_by_the_probe_passes_of_a_run(tmp_path):
    probed, said, val_x = _fit(tmp_path, "normalise")
    assert len(said) == 1
    assert "hands `forward` its images as `(x - (0.2, 0.3, 0.4)) / (0.25, 0.5, 0.2)`" in said[0]
    # from the first training batch on (the passes before it only try `forward`), the
    # monitor's probe passes hand the network val images normalised as the steps do
    assert len(probed) > 16 and _as_val_images(probed[-16:], val_x)
    gc.collect()  # what the probe passes follow keeps no model alive
    assert not [o for o in gc.get_objects() if isinstance(o, Stepped)]


def test_step_transform_followed_where_the_step_calls_the_network(tmp_path):
    probed, said, val_x = _fit(tmp_path, "direct")
    assert len(said) == 1 and "hands `net` its images as" in said[0]
    assert len(probed) > 16 and _as_val_images(probed[-16:], val_x)


def test_step_transform_followed_where_the_network_is_compiled(tmp_path):
    # setups hunts 32-33: a compiled network was not followed, and nothing said it
    probed, said, val_x = _fit(tmp_path, "compiled")
    assert len(said) == 1 and "hands `forward` its images as `(x - (0.2, 0.3, 0.4))" in said[0]
    assert len(probed) > 16 and _as_val_images(probed[-16:], val_x)


def test_step_transform_quiet_for_noise_added_in_the_step(tmp_path):
    probed, said, _ = _fit(tmp_path, "noise")
    assert said == []
    assert probed.std() < 0.5  # the probes as the data gives them


def test_step_transform_followed_for_bytes_made_floats_in_the_step(tmp_path):
    # setups hunt 32: uint8 batches converted in the step reached the probes as 0..255
    probed, said, val_x = _fit(tmp_path, "bytes")
    assert len(said) == 1 and "hands `forward` its images as `(x - (51, 76.5, 102)) /" in said[0]
    assert _as_val_images(probed[-16:], val_x.float() / 255)


def test_step_transform_follows_validation_where_training_adds_noise_after_it(tmp_path):
    # setups hunt 34: a normalisation followed by noise (or a flip) in `training_step` is
    # no scale and shift: the probes stayed raw, though `validation_step` normalised alone
    probed, said, val_x = _fit(tmp_path, "noisy")
    assert len(said) == 1 and "the validation step hands `forward` its images as `(x -" in said[0]
    assert "(0.2, 0.3, 0.4)) / (0.25, 0.5, 0.2)`" in said[0]
    assert _as_val_images(probed[-16:], val_x)


def test_step_transform_followed_where_training_moves_the_pixels_about_first(tmp_path):
    probed, said, val_x = _fit(tmp_path, "moved")
    assert len(said) == 1 and "the training step hands `forward` its images as `(x -" in said[0]
    assert "after moving its pixels about (a crop, a flip: left out of them)" in said[0]
    assert _as_val_images(probed[-16:], val_x)


def test_step_transform_quiet_for_a_jitter_drawn_anew_per_batch(tmp_path):
    # setups hunt 32: the first batch's random brightness was followed as normalisation
    probed, said, _ = _fit(tmp_path, "jitter")
    assert said == [] and probed.std() < 0.5


def test_step_transform_leaves_no_hook_where_the_first_batches_are_skipped(tmp_path):
    # setups hunt 32: `on_train_batch_start` returning -1 skips the batch end hooks, and
    # OverfittingMonitor's tap and the step follower's hook stayed on after the fit
    probed, said, _ = _fit(tmp_path, "skip", [OverfittingMonitor(num_samples=16)])
    assert len(said) == 1 and "hands `forward` its images as" in said[0]  # from epoch 1
    assert probed[-4:].amin() < -1  # the last probe pass's images normalised (raw: >= 0)


def test_step_follower_follows_one_batch_at_once_then_confirms_or_takes_back():
    # setups hunt 33: events before the second batch ran their probes on raw images
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    x, y = pictures(8), pictures(8, seed=1)
    follower = StepFollower()
    follower.start(net, x, 0)
    assert follower.follow(net, None) is None and not follows_step(net)  # not reached yet
    net(_normalised(x))  # the step ran: an event at the batch's end reads it
    assert follower.follow(net, None) is None and follows_step(net)  # followed at once
    follower.start(net, y, 1)
    net(_normalised(y))
    found = follower.follow(net, None)
    assert torch.allclose(found.scale, 1 / torch.tensor(STD), atol=1e-4) and follows_step(net)
    assert follower.done and global_hooks() == 0
    jittered = StepFollower()  # a scale and shift the second batch does not repeat
    for key, (images, given) in enumerate([(x, _normalised(x)), (y, 1.5 * y + 0.3)]):
        jittered.start(net, images, key)
        net(given)
        jittered.follow(net, None)
    assert not follows_step(net)  # taken back
