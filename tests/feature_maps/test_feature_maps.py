import io

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core import labels, rendering
from lightning_cnnviz.core.capture import hook_count
from lightning_cnnviz.core.inputs import Norm
from lightning_cnnviz.feature_maps import draw as fm
from lightning_cnnviz.feature_maps import layers
from lightning_cnnviz.feature_maps.callback import FeatureMapMonitor
from tests.monitors import failures, fit
from tests.tb import events, image_tags

EDGE = torch.tensor([[-1.0, 0.0, 1.0]] * 3)
HEADER = 13  # label strip above the grid (11 px glyphs + 2)


def colour(value01: float, cmap: str = "viridis") -> list[int]:
    return rendering.apply_colormap(torch.tensor([[value01]]), cmap)[:, 0, 0].tolist()


# ------------------------------------------------------------------------------ pure parts
def test_feature_maps_auto_layers_and_stage_pairs():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2, 2, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(2, 2, 1), nn.Flatten(),
    )  # fmt: skip
    available = dict(net.named_children())
    assert layers.auto_layers(net, available, 8) == ["0", "3", "4", "6", "7"]
    assert layers.auto_layers(net, available, 3) == ["0", "4", "7"]  # evenly spaced, first and last
    assert layers.auto_layers(net, available, 1) == ["7"]
    kinds = [layers.stage_kind(m) for m in net]
    assert kinds == ["conv", None, "act", "pool", "conv", "act", "pool", "conv", None]
    trace = [(n, k or "other") for n, k in zip(available, kinds, strict=True)]
    assert layers.stage_pairs(trace) == {"0": ("2", "3"), "4": ("5", "6"), "7": (None, None)}
    # a pooling straight after the conv; an activation after the pooling is not the conv's
    assert layers.stage_pairs([("c", "conv"), ("p", "pool"), ("a", "act")]) == {"c": (None, "p")}


def test_feature_maps_channel_choice_and_ranges():
    act = torch.zeros(2, 5, 3, 3)
    act[:, 1] = 1.0
    act[:, 3] = -4.0  # most active by |a|
    act[0, 4, 0, 0] = 0.5
    activity = fm.channel_activity(act)
    assert fm.choose_channels(activity, "top_k", k=2).tolist() == [1, 3]  # ascending
    assert fm.choose_channels(activity, "all", max_channels=3).tolist() == [0, 1, 2]
    assert fm.choose_channels(activity, [4, 0, 9], max_channels=8).tolist() == [4, 0]
    assert fm.choose_channels(activity, [9]).numel() == 0
    assert fm.dead_channels(act).tolist() == [True, False, True, False, False]
    assert fm.value_range(act).tolist() == [-4.0, 1.0]
    act[1, 1, 0, 0] = float("nan")
    assert fm.value_range(act).tolist() == [-4.0, 1.0]  # non-finite values ignored
    assert fm.value_range(torch.full((1, 1, 2, 2), float("nan"))).tolist() == [0.0, 0.0]
    fixed = fm.normalize_maps(torch.tensor([[-4.0, 1.0, 6.0]]), "fixed", torch.tensor([-4.0, 1.0]))
    assert fixed.tolist() == [[0.0, 1.0, 1.0]]  # clamped
    per_map = fm.normalize_maps(torch.tensor([[[2.0, 4.0]], [[3.0, 3.0]]]), "per_map")
    assert per_map.tolist() == [[[0.0, 1.0]], [[0.0, 0.0]]]  # constant map -> 0


def test_feature_maps_tiles_inputs_and_heat():
    assert fm.tile_shape(28, 28, 56) == (56, 56) and fm.tile_shape(7, 7, 56) == (56, 56)
    assert fm.tile_shape(224, 112, 56) == (112, 56)
    m = torch.arange(4.0).reshape(1, 2, 2)
    big = fm.resize(m, (4, 4))
    assert big[0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    assert fm.resize(big, (2, 2)).tolist() == m.tolist()  # area averaging when shrinking
    x = torch.full((1, 1, 2, 2), -0.1307 / 0.3081)
    assert fm.input_image(x, Norm((0.1307,), (0.3081,))).abs().max() < 1e-6  # de-normalised to 0
    assert fm.input_image(torch.randn(2, 5, 3, 3)).shape == (2, 3, 3, 3)  # the first three
    assert fm.input_image(torch.randn(2, 2, 3, 3)).shape == (2, 1, 3, 3)  # the first
    heat = fm.mean_heat(torch.tensor([[[[0.0, 2.0]], [[0.0, -4.0]]]]), (1, 2))
    assert heat.tolist() == [[[0.0, 1.0]]]


def test_feature_maps_dead_channels_are_dimmed_and_framed():
    maps01 = torch.full((1, 2, 4, 4), 1.0)
    image = fm.layer_grid(
        torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4), maps01, torch.tensor([False, True]),
        ["0", "1"],
    )  # fmt: skip
    assert image.shape == (3, HEADER + 6, 4 * 5 + 1)
    y = HEADER + 1
    alive, dead = 1 + 2 * 5, 1 + 3 * 5  # tile columns: input, mean, channel 0, channel 1
    assert image[:, y + 1, alive + 1].tolist() == colour(1.0)
    assert image[:, y, dead].tolist() == [255, 0, 0]  # red frame
    dimmed = rendering.dim(torch.tensor(colour(1.0), dtype=torch.uint8)[:, None, None])
    assert image[:, y + 1, dead + 1].tolist() == dimmed[:, 0, 0].tolist()


# ---------------------------------------------------------------------------- the callback
class HookLog:
    """Hooks seen per forward; a plain object (the monitors put a model's lists back)."""

    def __init__(self) -> None:
        self.train: list[int] = []
        self.probe: list[int] = []


class DeltaNet(L.LightningModule):
    """conv1: the edge kernel, its negative and a zero filter (dead after relu1)."""

    def __init__(self, lr: float = 0.0) -> None:
        super().__init__()
        self.lr = lr
        self.conv1 = nn.Conv2d(1, 3, 3, padding=1, bias=False)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.fc = nn.Linear(3 * 4 * 4, 2)
        self.hooks = HookLog()
        with torch.no_grad():
            self.conv1.weight.copy_(torch.stack([EDGE, -EDGE, torch.zeros(3, 3)])[:, None])

    def forward(self, x):
        (self.hooks.train if self.training else self.hooks.probe).append(
            sum(hook_count(self).values())
        )
        return self.fc(self.pool1(self.relu1(self.conv1(x))).flatten(1))

    def training_step(self, batch, batch_idx):
        if self.global_step == 4:  # the filters get stronger after the first log (step 3)
            with torch.no_grad():
                self.conv1.weight.mul_(1.5)
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def delta_loader() -> DataLoader:
    x = torch.zeros(8, 1, 8, 8)
    x[:, 0, 3, 3] = 1.0  # one bright pixel
    return DataLoader(TensorDataset(x, torch.arange(8) % 2), batch_size=4)


def run(tmp_path, monitor, model=None, steps=6, loader=None):
    model = model or DeltaNet()
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_steps=steps,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[monitor],
    )
    loader = loader or delta_loader()
    trainer.fit(model, loader, loader)
    return model, events(tmp_path)


def read_images(acc, tag):
    return [
        (e.step, np.asarray(Image.open(io.BytesIO(e.encoded_image_string)).convert("RGB")))
        for e in acc.Images(tag)
    ]


def test_feature_maps_monitor_edge_pattern_at_expected_pixels(tmp_path):
    monitor = FeatureMapMonitor(
        layers="conv1", every_n_steps=2, num_samples=4, top_k=2, tile_size=16, stages=False,
        normalization="per_map",
    )  # fmt: skip
    model, acc = run(tmp_path, monitor)
    assert image_tags(acc) == ["feature_maps/conv1"]
    images = read_images(acc, "feature_maps/conv1")
    assert [step for step, _ in images] == [2, 4, 6]  # one image per log
    img = images[0][1]
    # 4 sample rows, columns: input, mean, channel 0, channel 1; 8x8 maps upscaled 2x
    assert img.shape == (HEADER + 4 * 17 + 1, 4 * 17 + 1, 3)

    def at(row, col, i, j):  # centre of map pixel (i, j) in a tile
        return img[HEADER + 1 + row * 17 + 2 * i, 1 + col * 17 + 2 * j].tolist()

    for row in range(4):
        assert at(row, 0, 3, 3) == [255] * 3 and at(row, 0, 0, 0) == [0] * 3  # the input
        for i in (2, 3, 4):  # correlation with the delta: the kernel flipped around (3, 3)
            assert at(row, 2, i, 2) == colour(1.0) and at(row, 2, i, 4) == colour(0.0)
            assert at(row, 3, i, 2) == colour(0.0) and at(row, 3, i, 4) == colour(1.0)
        assert at(row, 2, 0, 0) == colour(0.5) and at(row, 2, 3, 3) == colour(0.5)  # zero
    assert set(model.hooks.train) == {0}  # never a hook in training
    # the fit's check that forward takes a probe image; at the first log the two passes
    # reading what the steps did to the images (the probe pass's hook, which copies the
    # inputs, and the reader's on the two modules the step reached), and a first traced
    # pass; then one per log: the probe pass's hook and the capture's
    assert model.hooks.probe == [1, 3, 3] + [2] * 4
    assert sum(hook_count(model).values()) == 0


def test_feature_maps_monitor_stages_dead_channels_and_fixed_ranges(tmp_path):
    monitor = FeatureMapMonitor(every_n_steps=3, num_samples=4, channel_select="all", tile_size=16)
    _, acc = run(tmp_path, monitor)
    assert sorted(image_tags(acc)) == [
        "feature_maps/conv1", "feature_maps/conv1/stages", "feature_maps/pool1",
    ]  # fmt: skip
    assert [e.step for e in acc.Images("feature_maps/conv1/stages")] == [3, 6]
    _, stages = read_images(acc, "feature_maps/conv1/stages")[0]
    name_w = labels.text_size("conv1")[0] + 4
    assert stages.shape == (HEADER + 3 * 17 + 1, name_w + 3 * 17 + 1, 3)  # conv, relu, pool
    x0, y_relu = name_w + 1 + 2 * 17, HEADER + 1 + 17  # channel 2 (all zero) in the relu row
    assert stages[y_relu, x0].tolist() == [255, 0, 0]  # dead on the whole probe: red frame
    _, pool = read_images(acc, "feature_maps/pool1")[0]
    assert pool.shape == (HEADER + 4 * 17 + 1, 5 * 17 + 1, 3)  # pool output 4x4 -> 16 px
    assert pool[HEADER + 1, 1 + 4 * 17].tolist() == [255, 0, 0]  # channel 2 framed
    assert pool[HEADER + 1, 1 + 2 * 17].tolist() != [255, 0, 0]
    # the per-layer ranges were fixed at the first log and kept (and checkpointed)
    assert monitor._ranges["conv1"].tolist() == [-1.0, 1.0]
    assert monitor.state_dict()["extra"]["ranges"]["pool1"] == [0.0, 1.0]
    _, later = read_images(acc, "feature_maps/pool1")[1]  # step 6: 1.5 x the first range
    first = pool[HEADER + 1 + 4, 1 + 2 * 17 + 4]  # channel 0, map pixel (1, 1) (value 1)
    assert first.tolist() == colour(1.0) and later[HEADER + 1 + 4, 1 + 2 * 17 + 4].tolist() == (
        colour(1.0)  # clamped at the kept range's top
    )
    assert later[HEADER + 1 + 4, 1 + 2 * 17 + 12].tolist() == colour(0.0)  # zero stays zero
    again = FeatureMapMonitor()
    again.load_state_dict(monitor.state_dict())
    assert again._ranges["conv1"].tolist() == [-1.0, 1.0]


class SharedNet(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 4 * 4, 2)

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)))
        return self.fc(self.pool(self.act(self.conv2(x))).flatten(1))

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_feature_maps_monitor_shared_modules_and_images_per_log(tmp_path):
    x = torch.randn(16, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(x, torch.arange(16) % 2), batch_size=4)
    monitor = FeatureMapMonitor(every_n_steps=2, num_samples=6, max_samples_shown=3)
    _, acc = run(tmp_path, monitor, model=SharedNet(), loader=loader, steps=4)
    assert monitor._stages == {"conv1": ["conv1", "act#0", "pool#0"], "conv2": [
        "conv2", "act#1", "pool#1"]}  # fmt: skip
    tags = sorted(image_tags(acc))
    assert tags == [
        "feature_maps/conv1", "feature_maps/conv1/stages", "feature_maps/conv2",
        "feature_maps/conv2/stages", "feature_maps/pool#0", "feature_maps/pool#1",
    ]  # fmt: skip
    for tag in tags:
        assert [e.step for e in acc.Images(tag)] == [2, 4]
    _, conv2 = read_images(acc, "feature_maps/conv2")[0]
    assert conv2.shape == (HEADER + 3 * 65 + 1, (2 + 6) * 65 + 1, 3)  # 16 px x 4; 6 channels
    _, stages = read_images(acc, "feature_maps/conv1/stages")[0]
    assert stages.shape[0] == HEADER + 3 * 65 + 1


def test_feature_maps_monitor_arguments():
    for kwargs, name, value in [
        ({"channel_select": "some"}, "channel_select", "some"),
        ({"channel_select": []}, "channel_select", []),
        ({"channel_select": [1, -2]}, "channel_select", [1, -2]),
        ({"normalization": "global"}, "normalization", "global"),
        ({"top_k": 0}, "top_k", 0),
        ({"max_layers": 0}, "max_layers", 0),
        ({"max_samples_shown": -1}, "max_samples_shown", -1),
        ({"tile_size": 0}, "tile_size", 0),
        ({"cmap": "jet"}, "cmap", "jet"),
        ({"stages": "yes"}, "stages", "yes"),
    ]:
        with pytest.raises(ValueError, match=rf"`{name}`.*{value!r}".replace("[", r"\[")):
            FeatureMapMonitor(**kwargs)
    assert FeatureMapMonitor(channel_select=[0, 3]).channel_select == [0, 3]


class NaNAfter(L.Callback):
    """Plants a NaN in a layer's weight once training reaches ``step`` (a divergence)."""

    def __init__(self, layer, step):
        self.layer, self.step = layer, step

    def on_train_batch_end(self, trainer, pl_module, *args):
        if trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.get_submodule(self.layer).weight[0].fill_(float("nan"))


def test_feature_maps_monitor_non_finite_activations_warned_once_and_still_drawn(tmp_path):
    monitor = FeatureMapMonitor(every_n_steps=2, num_samples=4, tile_size=16, strict=True)
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=8, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
        logger=TensorBoardLogger(tmp_path, name="tb"), callbacks=[NaNAfter("conv1", 3), monitor],
    )  # fmt: skip
    with pytest.warns(UserWarning, match="non-finite activations in .* at step 4") as caught:
        trainer.fit(DeltaNet(), delta_loader())
    assert not monitor.disabled and monitor.events == 4
    said = [str(w.message) for w in caught if "non-finite" in str(w.message)]
    assert len(said) == 1 and "FeatureMapMonitor" in said[0]
    acc = events(tmp_path / "tb")
    assert [step for step, _ in read_images(acc, image_tags(acc)[0])] == [2, 4, 6, 8]


def test_feature_maps_monitor_only_layers_without_maps_steps_aside_saying_so(tmp_path):
    # setups hunt 19: `layers="fc"` (a Linear: no map) wrote nothing all run, and the
    # summary listed FeatureMapMonitor among the checks that ran
    monitor = FeatureMapMonitor(layers="fc", every_n_steps=2)
    _, _, messages = fit(tmp_path, [monitor])
    assert not failures(messages, "FeatureMapMonitor") and monitor.disabled
    assert monitor.aside_reason == (
        "stepped aside: none of its layers gives a map: the output of `fc` is neither shaped "
        "like the input nor a token grid; name conv or pooling layers with `layers=`"
    )
    said = [m for m in messages if m.startswith("FeatureMapMonitor steps aside")]
    assert len(said) == 1


def test_feature_maps_stages_grid_of_rows_lower_than_a_name():
    # held out (setups hunt 22): 8 x 128 images (text lines, spectrogram strips) made the
    # stage names too tall for their rows, and the monitor stepped aside with a shape error
    maps = torch.rand(3, 4, 64)
    rows = [(name, maps, torch.zeros(3, dtype=torch.bool)) for name in ("conv", "relu")]
    grid = fm.stages_grid(rows, ["0", "1", "2"])
    name_w = labels.text_size("conv")[0] + 4
    assert grid.shape[-1] == name_w + 3 * 65 + 1 and grid.shape[-2] >= 2 * 5
    assert grid[:, -5:, :name_w].any()  # the name's lower rows, clipped to the row
