"""What a training step does to the images outside ``forward``: read, followed, said."""

import gc
import warnings

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.capture import hook_count
from lightning_cnnviz.core.probe_pass import in_probe_pass
from lightning_cnnviz.core.step_transform import StepTap, channel_affine, step_transform
from lightning_cnnviz.feature_maps.callback import FeatureMapMonitor
from tests.overfitting.test_monitor_rules import Net
from tests.overfitting.test_split_inputs import pictures

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


def test_step_transform_alike_followed_or_said():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    x = pictures(8)
    tap = StepTap(net, x)
    net(_normalised(x))  # the step normalises, then calls the model
    assert sum(hook_count(net).values()) == 0  # every hook off once one call is kept
    found = step_transform(tap, x[:4])
    assert found.module is net and found.name == "" and found.figures == {}
    assert torch.allclose(found.scale, 1 / torch.tensor(STD), atol=1e-4)
    assert step_transform(tap, _normalised(x)[:4]) is None  # forward itself normalises
    tap = StepTap(net, x)
    net(3 * x**2)  # not a scale and shift: said, with the figures, not followed
    found = step_transform(tap, x[:4])
    assert found.scale is None and found.figures["train_std"] > 2 * found.figures["val_std"]
    tap = StepTap(net, x)
    net(x.flip(-1))  # augmentation in the step: the probes stay as the data gives them
    assert step_transform(tap, x[:4]) is None


class Stepped(Net):
    """Changes its images in both steps (``how``); ``probed``: what probe passes hand ``net[0]``.

    Kept outside the model: a probe pass restores the model's own attributes.
    """

    def __init__(self, net, how, probed):
        super().__init__(net, 0.01)
        self.how = how

        def keep(module, args):
            if in_probe_pass():
                probed.append(args[0].detach().clone())

        net[0].register_forward_pre_hook(keep)

    def prep(self, x):
        if self.how == "noise":
            return x + 0.1 * torch.randn_like(x)
        return _normalised(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.how == "direct":  # the step calls the network, not `forward`
            logits = self.net(self.prep(x))
            return nn.functional.cross_entropy(logits, y)
        return self._step((self.prep(x), y), "train")

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self._step((self.prep(x), y), "val")


def _fit(tmp_path, how):
    torch.manual_seed(0)
    x, y = pictures(64), torch.arange(64) % 2
    val_x, val_y = pictures(64, seed=1), torch.arange(64) % 2
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 2))
    probed = []
    model = Stepped(net, how, probed)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_epochs=2, logger=False, num_sanity_val_steps=0,
        callbacks=[FeatureMapMonitor(num_samples=4)], enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(
            model, DataLoader(TensorDataset(x, y), 16), DataLoader(TensorDataset(val_x, val_y), 16)
        )
    assert sum(hook_count(net).values()) == 1  # the test's own hook only
    said = [str(w.message) for w in caught if "training step" in str(w.message)]
    return torch.cat(probed), said, val_x


def _as_val_images(probed, val_x):
    """Whether every probed image, normalised back, is one of the val images."""
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


def test_step_transform_quiet_for_noise_added_in_the_step(tmp_path):
    probed, said, _ = _fit(tmp_path, "noise")
    assert said == []
    assert probed.std() < 0.5  # the probes as the data gives them
