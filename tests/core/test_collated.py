"""Datasets seen as the model's layers get them: through a collate, stored channels last."""

import collections
import dataclasses
import functools
import gc
import itertools
import weakref

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, default_collate

from lightning_cnnviz import FeatureMapMonitor, GradCAMMonitor
from lightning_cnnviz.core.collated import Collated, collated_view
from lightning_cnnviz.core.random_state import rng_untouched
from lightning_cnnviz.core.stored_form import CHANNELS_LAST, channels_last, seen_view
from tests.tb import events


def test_collated_channels_last_told_by_the_first_convolution():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    assert channels_last(torch.zeros(28, 28, 3), net)
    assert not channels_last(torch.zeros(3, 28, 28), net)
    assert not channels_last(torch.zeros(3, 3, 3), net)  # the same either way: as stored
    assert channels_last(torch.zeros(100, 12), nn.Conv1d(12, 4, 3))  # (L, C) signals
    assert not channels_last(torch.zeros(28, 28, 3), nn.Conv1d(3, 4, 3))  # not its dims
    assert not channels_last(torch.zeros(28, 28, 3), nn.Linear(3, 4))


def test_collated_channels_first_view_keeps_the_item_around_the_image():
    image = np.zeros((5, 6, 3), np.uint8)
    view = seen_view([(7, image, 2), {"image": torch.zeros(5, 6, 3), "label": 1}], CHANNELS_LAST)
    index, x, y = view[0]
    assert (index, tuple(x.shape), y) == (7, (3, 5, 6), 2)
    item = view[1]
    assert tuple(item["image"].shape) == (3, 5, 6) and item["label"] == 1
    assert seen_view(view, CHANNELS_LAST) is view


class KerasPort(L.LightningModule):
    """Images stored (H, W, C); `forward` permutes them, as a Keras port does."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x.permute(0, 3, 1, 2))

    def training_step(self, batch, _):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), 1e-3)


def squares(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.rand(n, 3, 24, 24, generator=g) * 0.1
    x[:, :, 8:16, 8:16] += 1.0  # an 8 x 8 square on every image
    return TensorDataset(x.permute(0, 2, 3, 1).contiguous(), y)


def stored_fit(tmp_path, model, data, monitors, said):
    """Fit ``model`` on ``data(n, seed)`` with ``monitors``; the trainer and the object share."""
    trainer = L.Trainer(max_steps=8, logger=TensorBoardLogger(tmp_path), callbacks=list(monitors),
                        enable_progress_bar=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, val_check_interval=4)  # fmt: skip
    with pytest.warns(UserWarning, match=said):
        trainer.fit(model, DataLoader(data(64, 0), 8), DataLoader(data(16, 1), 8))
    share = events(trainer.logger.log_dir).Scalars("gradcam/val/object_share")[-1].value
    return trainer, share


def test_collated_channels_last_images_drawn_and_measured_channels_first(tmp_path):
    monitors = [GradCAMMonitor(every_n_steps=4, num_samples=4), FeatureMapMonitor(every_n_steps=4)]
    said = r"stored channels last, \(24, 24, 3\)"
    trainer, share = stored_fit(tmp_path, KerasPort(), squares, monitors, said)
    assert tuple(monitors[0].probe(trainer).images.shape) == (4, 3, 24, 24)
    assert share == pytest.approx(64 / 576, abs=0.03)  # the square: 64 of 576 pixels
    assert monitors[1].events == 2 and not monitors[1].disabled


class NoChannel(KerasPort):
    """Grey images stored (H, W); `forward` adds the channel axis (MNIST held as `data / 255`)."""

    def __init__(self):
        super().__init__()
        self.net[0] = nn.Conv2d(1, 8, 3, padding=1)

    def forward(self, x):
        return self.net(x.unsqueeze(1))


def test_collated_images_without_a_channel_axis_drawn_and_measured_with_one(tmp_path):
    # held out (setups hunt 22): Grad-CAM and feature maps stepped aside on "flat vectors",
    # and the first layer was read as taking "1 channels, not 28"
    from lightning_cnnviz import OverfittingMonitor
    from lightning_cnnviz.core.findings import checks_of

    def grey(n, seed):
        x, y = squares(n, seed).tensors
        return TensorDataset(x[..., 0].contiguous(), y)

    monitors = [GradCAMMonitor(every_n_steps=4, num_samples=4), FeatureMapMonitor(every_n_steps=4),
                OverfittingMonitor()]  # fmt: skip
    said = r"stored without a channel axis, \(24, 24\)"
    trainer, share = stored_fit(tmp_path, NoChannel(), grey, monitors, said)
    assert tuple(monitors[0].probe(trainer).images.shape) == (4, 1, 24, 24)
    assert share == pytest.approx(64 / 576, abs=0.03)
    assert all(m.events > 0 and not m.disabled for m in monitors)
    assert checks_of(trainer)[("OverfittingMonitor", "inputs in the steps")].ran


class PermutedInSteps(KerasPort):
    """Images stored (H, W, C); the steps permute and normalise them, `forward` takes NCHW."""

    def forward(self, x):
        return self.net(x)

    def prep(self, x):
        return (x.permute(0, 3, 1, 2) - 0.5) / 0.25

    def training_step(self, batch, _):
        x, y = batch
        return F.cross_entropy(self(self.prep(x)), y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(self.prep(x)), y))


def test_collated_channels_last_permuted_in_the_steps_probed_channels_first(tmp_path):
    # held out (setups hunt 33): NHWC digits that both steps permuted made every probe
    # monitor step aside, and the train/val input check read image rows as channels
    from lightning_cnnviz import OverfittingMonitor
    from lightning_cnnviz.core.findings import findings_of

    monitors = [GradCAMMonitor(every_n_steps=4, num_samples=4), FeatureMapMonitor(every_n_steps=4),
                OverfittingMonitor()]  # fmt: skip
    said = r"stored channels last, \(24, 24, 3\), and the model's `forward` takes them as"
    followed = r"the training step hands `forward` its images as `\(x - 0.5\) / 0.25`"
    with pytest.warns(UserWarning, match=followed):  # the normalisation followed too
        trainer, share = stored_fit(tmp_path, PermutedInSteps(), squares, monitors, said)
    assert tuple(monitors[0].probe(trainer).images.shape) == (4, 3, 24, 24)
    assert share == pytest.approx(64 / 576, abs=0.03)
    assert all(m.events > 0 and not m.disabled for m in monitors)
    assert [f.kind for f in findings_of(trainer)] == []


class RepeatedInSteps(PermutedInSteps):
    """Grey images (1, H, W); the steps repeat them to three channels and normalise them."""

    def prep(self, x):
        return (x.repeat(1, 3, 1, 1) - 0.5) / 0.25


def test_collated_grey_images_repeated_in_the_steps_probed_with_three_channels(tmp_path):
    # held out: digits for a 3-channel network, repeated in the steps, made every probe
    # monitor step aside on "expected input to have 3 channels, but got 1"
    from lightning_cnnviz import OverfittingMonitor

    def grey(n, seed):
        x, y = squares(n, seed).tensors
        return TensorDataset(x[..., :1].permute(0, 3, 1, 2).contiguous(), y)

    monitors = [GradCAMMonitor(every_n_steps=4, num_samples=4), FeatureMapMonitor(every_n_steps=4),
                OverfittingMonitor()]  # fmt: skip
    said = r"stored with one channel, \(1, 24, 24\), and the model's `forward` takes them as"
    followed = r"the training step hands `forward` its images as `\(x - 0.5\) / 0.25`"
    with pytest.warns(UserWarning, match=followed):
        trainer, share = stored_fit(tmp_path, RepeatedInSteps(), grey, monitors, said)
    assert tuple(monitors[0].probe(trainer).images.shape) == (4, 3, 24, 24)
    assert share == pytest.approx(64 / 576, abs=0.03)
    assert all(m.events > 0 and not m.disabled for m in monitors)


class LastRepeatedInSteps(PermutedInSteps):
    """Grey images (H, W, 1); the steps permute and repeat them to three, and normalise."""

    def prep(self, x):
        return (x.permute(0, 3, 1, 2).repeat(1, 3, 1, 1) - 0.5) / 0.25


class FlatRepeatedInSteps(PermutedInSteps):
    """Grey images (H, W); the steps add the axis and repeat it to three, and normalise."""

    def prep(self, x):
        return (x[:, None].repeat(1, 3, 1, 1) - 0.5) / 0.25


@pytest.mark.parametrize(
    "model, keep, stored",
    [(LastRepeatedInSteps, lambda x: x[..., :1], r"channels last with one channel, \(24, 24, 1\)"),
     (FlatRepeatedInSteps, lambda x: x[..., 0], r"without a channel axis, \(24, 24\)")],
    ids=["channels_last", "no_channel_axis"],
)  # fmt: skip
def test_collated_grey_stored_otherwise_repeated_in_the_steps_probed_with_three(
    tmp_path, model, keep, stored
):
    # setups hunt 36: grey digits stored (28, 28, 1) or (28, 28), permuted or given their
    # axis and repeated in the steps: three probe monitors stepped aside
    def grey(n, seed):
        x, y = squares(n, seed).tensors
        return TensorDataset(keep(x).contiguous(), y)

    monitors = [GradCAMMonitor(every_n_steps=4, num_samples=4), FeatureMapMonitor(every_n_steps=4)]
    said = rf"stored {stored}, and the model's `forward` takes them as \(3, 24, 24\)"
    with pytest.warns(UserWarning, match="the training step hands `forward` its images"):
        trainer, share = stored_fit(tmp_path, model(), grey, monitors, said)
    assert tuple(monitors[0].probe(trainer).images.shape) == (4, 3, 24, 24)
    assert share == pytest.approx(64 / 576, abs=0.03)
    assert all(m.events > 0 and not m.disabled for m in monitors)


def test_collated_view_keeps_no_dataset_alive():
    # the view cached for a dataset held the dataset, its key: every fold's set stayed
    items = ListItems()
    view = collated_view(items, _to_tensors)
    assert isinstance(view, Collated) and tuple(view[0][0].shape) == (1, 2, 2)
    assert collated_view(items, _to_tensors).dataset is items  # decided once, a fresh view
    ref = weakref.ref(items)
    del items, view
    gc.collect()
    assert ref() is None


class ListItems:
    """Items of nested lists, which only the loader's collate makes tensors."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return [[float(i), 0.0], [0.0, 1.0]], i % 2


def _to_tensors(batch):
    return torch.tensor([x for x, _ in batch]).unsqueeze(1), torch.tensor([y for _, y in batch])


def _normalising(batch):
    x, y = default_collate(batch)
    return (x - 0.13) / 0.31, y


def _noising(batch):
    x, y = default_collate(batch)
    return x + 0.1 * torch.randn_like(x), y


def test_collated_view_read_through_a_collate_that_normalises_not_one_that_draws():
    # held out (setups hunt 34): a collate_fn normalising float images left the probes on
    # the raw items while the model trained on normalised ones, and nothing was said
    data = TensorDataset(torch.rand(8, 1, 4, 4), torch.arange(8))
    view = collated_view(data, _normalising)
    assert isinstance(view, Collated)
    assert torch.allclose(view[3][0], (data[3][0] - 0.13) / 0.31)
    other = TensorDataset(torch.rand(8, 1, 4, 4), torch.arange(8))
    state = torch.random.get_rng_state()
    assert collated_view(other, _noising) is other  # augmentation: left to the loader
    assert torch.equal(torch.random.get_rng_state(), state)


class FlipThenNormalise:
    """A collate drawing from its own generator (a random flip), counting its calls."""

    def __init__(self):
        self.generator, self.calls = torch.Generator().manual_seed(0), 0

    def __call__(self, batch):
        self.calls += 1
        x, y = default_collate(batch)
        if torch.rand((), generator=self.generator) < 0.5:
            x = x.flip(-1)
        return (x - 0.13) / 0.31, y


def test_collated_view_leaves_a_collates_own_state_and_its_random_flips_alone():
    # setups hunt 35: reading through a collate moved its own generator and counter (not
    # bit-identical any more), and two agreeing calls took a random flip for none
    collate = FlipThenNormalise()
    state = collate.generator.get_state()
    data = TensorDataset(torch.rand(8, 1, 4, 4), torch.arange(8))
    assert collated_view(data, collate) is data  # the flip drawn anew: left to the loader
    assert collate.calls == 0 and torch.equal(collate.generator.get_state(), state)


def _flip_norm(batch, generator):
    x, y = default_collate(batch)
    flip = torch.rand(len(x), generator=generator) < 0.5
    return (torch.where(flip[:, None, None, None], x.flip(-1), x) - 0.13) / 0.31, y


class DictCounter:
    """A normalising collate whose scale follows its calls, counted in a dict."""

    def __init__(self):
        self.state = {"calls": 0}

    def __call__(self, batch):
        self.state["calls"] += 1
        x, y = default_collate(batch)
        return (x - 0.13) / 0.31 * (1 + 0.01 * self.state["calls"]), y


class RunningNorm:
    """An online normaliser: running statistics in tensors, updated in place."""

    def __init__(self):
        self.mean, self.var = torch.zeros(()), torch.ones(())

    def __call__(self, batch):
        x, y = default_collate(batch)
        self.mean.mul_(0.9).add_(0.1 * x.mean())
        self.var.mul_(0.9).add_(0.1 * x.var())
        return (x - self.mean) / self.var.sqrt(), y


def _closure():
    generator = torch.Generator().manual_seed(1)
    return lambda batch: _flip_norm(batch, generator)


def _counted():
    calls = itertools.count()
    return lambda batch: (lambda x, y: (x * (1 + next(calls)), y))(*default_collate(batch))


def _deep():
    pipeline = {"a": [{"b": [{"c": torch.Generator().manual_seed(1)}]}]}
    return lambda batch: _flip_norm(batch, pipeline["a"][0]["b"][0]["c"])


class Holder:
    """A datamodule-like object whose method is the collate: its own generator, a counter."""

    def __init__(self):
        self.generator, self.calls = torch.Generator().manual_seed(1), np.int64(0)
        self.recent = collections.deque([1.0], maxlen=4)

    def collate(self, batch):
        self.calls += 1
        self.recent.append(float(self.calls))
        return _flip_norm(batch, self.generator)


class NumpyRunning:
    """Running statistics in NumPy arrays, updated in place."""

    def __init__(self):
        self.mean = np.zeros(1)

    def __call__(self, batch):
        x, y = default_collate(batch)
        self.mean *= 0.9
        self.mean += 0.1 * float(x.mean())
        return x - float(self.mean[0]), y


@dataclasses.dataclass(slots=True)
class Slotted:
    """A dataclass with slots holding its generator."""

    generator: torch.Generator

    def __call__(self, batch):
        return _flip_norm(batch, self.generator)


@pytest.mark.parametrize(
    "make",
    [_closure, lambda: functools.partial(_flip_norm, generator=torch.Generator().manual_seed(1)),
     DictCounter, RunningNorm, _counted, _deep, lambda: Holder().collate, NumpyRunning,
     lambda: Slotted(torch.Generator().manual_seed(1))],
    ids=["closure", "partial", "dict", "tensors", "itertools.count", "deep", "bound_method",
         "numpy", "slots"],
)  # fmt: skip
def test_collated_view_leaves_collate_state_anywhere_as_it_was(make):
    # setups hunt 36: a collate's generator in a closure, a partial or 6 levels deep, a
    # counter in a dict or an `itertools.count`, running statistics in tensors; setups
    # hunt 37: a bound method's object, NumPy statistics, a dataclass with slots: the
    # probes' reads moved them, and training with the monitors differed
    data = TensorDataset(torch.rand(8, 1, 4, 4), torch.arange(8))
    batch = [data[i] for i in range(4)]
    read, twin = make(), make()
    view = collated_view(data, read)
    with rng_untouched(view):
        _ = [view[i] for i in range(len(view))]
    for _ in range(3):  # the collate goes on as if nothing had read through it
        assert all(torch.equal(a, b) for a, b in zip(read(batch), twin(batch), strict=True))


@dataclasses.dataclass
class Pair:
    image: torch.Tensor
    label: torch.Tensor


def test_collated_whole_batches_of_a_dataclass_are_read_row_by_row():
    # setups hunt 72: `batch_size=None` over dataclass batches was not unbatched: three
    # monitors stepped aside blaming the model's `forward`
    from lightning_cnnviz.core.collated import unbatched_view
    from lightning_cnnviz.core.items import split_sample

    batches = [Pair(torch.rand(4, 1, 5, 5), torch.arange(4) + i) for i in range(3)]
    view = unbatched_view(batches)
    assert len(view) == 12
    image, label = split_sample(view[6])
    assert tuple(image.shape) == (1, 5, 5) and label == 3
    assert torch.equal(image, batches[1].image[2])
