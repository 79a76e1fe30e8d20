import io
import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core import rendering
from lightning_cnnviz.core.capture import hook_count
from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.kernels import dense, draw, figures
from lightning_cnnviz.kernels.callback import KernelMonitor
from tests.tb import events, image_tags

EDGE = torch.tensor([[-1.0, 0.0, 1.0]] * 3)  # vertical edge detector: - left, + right


def coolwarm(value01: float) -> list[int]:
    return rendering.apply_colormap(torch.tensor([[value01]]), "coolwarm")[:, 0, 0].tolist()


def pixel(img: torch.Tensor, y: int, x: int) -> list[int]:
    return img[:, y, x].tolist()


# A 3x3 kernel is upscaled 8x to 24 px; tile k of a row starts at 1 + k * 25 (1 px separator).
def centre(tile_row: int, tile_col: int, r: int, c: int) -> tuple[int, int]:
    return 1 + tile_row * 25 + 8 * r + 4, 1 + tile_col * 25 + 8 * c + 4


def test_kernels_edge_kernel_per_filter_gray_pixels():
    img = draw.render_kernels(EDGE.reshape(1, 1, 3, 3))
    assert img.dtype == torch.uint8 and img.shape == (3, 26, 26)
    for r in range(3):
        assert pixel(img, *centre(0, 0, r, 0)) == [0, 0, 0]  # -1: black
        assert pixel(img, *centre(0, 0, r, 1)) == [128, 128, 128]  # 0: mid gray
        assert pixel(img, *centre(0, 0, r, 2)) == [255, 255, 255]  # +1: white
    sep = [rendering.SEPARATOR] * 3
    assert pixel(img, 0, 0) == sep and pixel(img, 25, 13) == sep and pixel(img, 13, 25) == sep
    # every kernel tap covers exactly an 8x8 block
    assert torch.equal(img[:, 1:9, 1:9], img[:, 1:2, 1:2].expand(3, 8, 8))


def test_kernels_layer_symmetric_zero_is_neutral_and_scale_is_shared():
    w = torch.zeros(2, 1, 3, 3)
    w[0, 0] = EDGE  # |max| 1
    w[1, 0] = 0.5 * EDGE  # half as strong: half as saturated, same layer scale
    img = draw.render_kernels(w, normalization="layer_symmetric")
    assert img.shape == (3, 26, 51)  # 2 filters: a 2-wide square grid
    assert pixel(img, *centre(0, 0, 1, 1)) == coolwarm(0.5)  # zero weight -> neutral colour
    assert pixel(img, *centre(0, 1, 1, 1)) == coolwarm(0.5)
    assert pixel(img, *centre(0, 0, 0, 0)) == coolwarm(0.0)  # -1 -> coldest
    assert pixel(img, *centre(0, 0, 0, 2)) == coolwarm(1.0)  # +1 -> hottest
    assert pixel(img, *centre(0, 1, 0, 0)) == coolwarm(0.25)  # -0.5 on the layer scale
    assert pixel(img, *centre(0, 1, 0, 2)) == coolwarm(0.75)
    # the layer scale comes from every filter, also from those past max_filters
    only_first = draw.render_kernels(w.flip(0), normalization="layer_symmetric", max_filters=1)
    assert pixel(only_first, *centre(0, 0, 0, 2)) == coolwarm(0.75)


def test_kernels_rgb_first_layer_and_constant_and_nan_filters():
    w = torch.zeros(3, 3, 3, 3)
    w[0, 0, 0, 0] = 1.0  # red tap top left
    w[0, 2, 2, 2] = 1.0  # blue tap bottom right
    w[1] = 0.7  # constant filter -> mid gray, no division by zero
    w[2, 1, 1, 1] = float("nan")
    img = draw.render_kernels(w)
    assert img.shape == (3, 51, 51)  # 3 filters in a 2x2 grid
    assert pixel(img, *centre(0, 0, 0, 0)) == [255, 0, 0]
    assert pixel(img, *centre(0, 0, 2, 2)) == [0, 0, 255]
    assert pixel(img, *centre(0, 0, 1, 1)) == [0, 0, 0]
    assert pixel(img, *centre(0, 1, 1, 1)) == [128, 128, 128]
    assert pixel(img, *centre(1, 0, 1, 1)) == [128, 128, 128]  # NaN -> 0, constant filter
    gray = draw.render_kernels(w, rgb=False)  # tiled per input channel instead
    assert gray.shape == (3, 76, 76)


def test_kernels_tile_and_norm_modes_with_caps():
    w = torch.randn(40, 16, 3, 3, generator=torch.Generator().manual_seed(0))
    tiled = draw.render_kernels(w, max_filters=10, max_in_channels=4)
    assert tiled.shape == (3, 10 * 25 + 1, 4 * 25 + 1)  # a row per filter, a slice per channel
    normed = draw.render_kernels(w, in_channel_mode="norm", max_filters=10)
    assert normed.shape == (3, 3 * 25 + 1, 4 * 25 + 1)  # one map per filter, square grid
    slices = draw.kernel_slices(w, in_channel_mode="norm")
    assert torch.allclose(slices[:, 0, 0], torch.linalg.vector_norm(w, dim=1))
    capped = draw.render_kernels(w)
    assert capped.shape == (3, 40 * 25 + 1, 8 * 25 + 1)  # defaults: 64 filters, 8 channels


def test_kernels_conv1d_conv3d_grouped_dilated_depthwise():
    conv1d = nn.Conv1d(2, 4, 5)
    s = draw.kernel_slices(conv1d.weight)
    assert s.shape == (4, 2, 1, 1, 5)
    img = draw.render_kernels(conv1d.weight)
    assert img.shape == (3, 4 * 6 + 1, 2 * 26 + 1)  # 1x5 upscaled 5x to 5x25, one row a filter

    conv3d = nn.Conv3d(2, 3, (2, 3, 3))
    s = draw.kernel_slices(conv3d.weight)
    assert s.shape == (3, 4, 1, 3, 3)  # channel-major, depth inner
    assert torch.equal(s[1, 1, 0], conv3d.weight[1, 0, 1].detach())
    assert torch.equal(s[1, 2, 0], conv3d.weight[1, 1, 0].detach())

    grouped = nn.Conv2d(4, 6, 3, groups=2)
    assert draw.kernel_slices(grouped.weight).shape == (6, 2, 1, 3, 3)
    depthwise = nn.Conv2d(5, 5, 3, groups=5)
    assert draw.kernel_slices(depthwise.weight).shape == (5, 1, 1, 3, 3)
    assert draw.render_kernels(depthwise.weight).shape == (3, 51, 76)  # 3-wide grid

    w = torch.ones(1, 1, 3, 3)
    w[0, 0, 0] = -1.0  # top row negative
    img = draw.render_kernels(w, dilation=(2, 2))  # 5x5 footprint, zeros between taps
    assert img.shape == (3, 1 + 25 + 1, 1 + 25 + 1)  # 5 px upscaled 5x
    assert pixel(img, 1 + 2, 1 + 2) == [0, 0, 0]  # tap (0, 0) = -1 at footprint (0, 0)
    assert pixel(img, 1 + 5 + 2, 1 + 2) == [128, 128, 128]  # a hole: 0
    assert pixel(img, 1 + 10 + 2, 1 + 10 + 2) == [255, 255, 255]  # tap (1, 1) = +1


def test_kernels_hf_energy_values():
    delta = torch.zeros(1, 1, 3, 3)
    delta[0, 0, 1, 1] = 1.0
    assert float(figures.hf_energy(delta)) == pytest.approx(207 / 256)
    smooth = float(figures.hf_energy(torch.ones(2, 3, 3, 3)))
    checker = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, 1.0]])
    rough = float(figures.hf_energy(checker.reshape(1, 1, 3, 3)))
    assert smooth < 0.3 and rough > 0.9
    # zero filters are left out of the mean; noise sits at the delta's level on average
    mixed = torch.stack([delta[0], torch.zeros(1, 3, 3)])
    assert float(figures.hf_energy(mixed)) == pytest.approx(207 / 256)
    noise = torch.randn(512, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    assert float(figures.hf_energy(noise)) == pytest.approx(207 / 256, abs=0.02)
    assert figures.hf_energy(torch.randn(4, 4, 1, 1)) is None
    assert 0 < float(figures.hf_energy(torch.randn(3, 2, 5))) < 1  # Conv1d
    assert 0 < float(figures.hf_energy(torch.randn(3, 2, 3, 3, 3))) < 1  # Conv3d
    # chunking over filters gives the same mean as one pass
    wide = torch.randn(300, 64, 3, 3, generator=torch.Generator().manual_seed(1))
    parts = [float(figures.hf_energy(c)) for c in wide.split(100)]
    assert float(figures.hf_energy(wide)) == pytest.approx(sum(parts) / 3, rel=1e-5)


def test_kernels_change_and_mean_abs():
    prev = torch.tensor([[3.0, 4.0]])
    assert float(figures.relative_change(prev + torch.tensor([[0.3, 0.4]]), prev)) == (
        pytest.approx(0.1)
    )
    assert float(figures.relative_change(torch.zeros(2), torch.zeros(2))) == 0.0
    assert float(figures.mean_abs(torch.tensor([-1.0, 3.0]))) == 2.0


def test_kernels_linear_views():
    assert dense.feature_grid_shape(1568, 32) == (7, 7)
    assert dense.feature_grid_shape(1568, 30) is None
    w = torch.zeros(3, 2 * 2 * 2)
    w[0, 3] = 1.0  # unit 0, channel 0, position (1, 1)
    w[0, 4] = -1.0  # unit 0, channel 1, position (0, 0)
    s = dense.linear_unit_slices(w, 2, (2, 2), max_units=2, max_in_channels=8)
    assert s.shape == (2, 2, 1, 2, 2)
    assert s[0, 0, 0, 1, 1] == 1.0 and s[0, 1, 0, 0, 0] == -1.0
    heat = dense.linear_heatmap(torch.tensor([[-2.0, 0.0, 1.0]]), scale=torch.tensor(2.0))
    assert heat.shape == (3, 32, 33)  # each axis stretched to >= 32 px
    assert pixel(heat, 0, 0) == coolwarm(0.0)
    assert pixel(heat, 0, 16) == coolwarm(0.5)
    assert pixel(heat, 31, 32) == coolwarm(0.75)
    big = dense.linear_heatmap(torch.randn(128, 1568))
    assert big.shape == (3, 128, 392) and big.dtype == torch.uint8
    assert math.prod(big.shape) < 200_000


def test_kernels_dense_pictures_have_contrast():
    """fc1-like weights (many small, a few large, averaged 4:1) span the colour scale."""
    torch.manual_seed(0)
    w = torch.randn(128, 1568) * 0.02
    w[:, ::97] *= 20  # a few large weights must not grey out the rest
    heat = dense.linear_heatmap(w)
    red = heat[0].float()
    assert float(red.min()) < 80 and float(red.max()) > 230  # coolwarm's blue and red ends
    by_largest = dense.linear_heatmap(w, scale=w.abs().max())[0].float()  # the old scale
    assert float(red.std()) > 5 * float(by_largest.std())  # 25 vs 2 grey levels
    units = dense.render_units(w, (32, 7, 7), max_units=8, max_in_channels=8)
    assert float(units[0].float().std()) > 40
    assert float(dense.matrix_scale(w)) < float(w.abs().max()) / 5


def test_kernels_dense_units_picture_is_about_square():
    """64 units x 8 maps in one column would be ~8 card widths tall in TensorBoard."""
    w = torch.randn(128, 64 * 7 * 7)
    image = dense.render_units(w, (64, 7, 7), max_units=64, max_in_channels=8)
    height, width = image.shape[1:]
    assert 0.6 < height / width < 1.4, (height, width)
    white = (image == 255).all(0)  # the gaps between columns of units
    assert white[:, : width // 2].all(0).any() and white[:, width // 2 :].all(0).any()
    few = dense.render_units(w, (64, 7, 7), max_units=2, max_in_channels=8)
    assert few.shape[2] > few.shape[1]  # two units: one column, two rows of 8 maps


# ----------------------------------------------------------------------------- KernelMonitor


class EdgeNet(L.LightningModule):
    """conv1 holds the hand-set edge kernel (filter 0) and its negative (filter 1)."""

    def __init__(self, lr: float = 0.0) -> None:
        super().__init__()
        self.lr = lr
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)
        self.hooks: list[int] = []
        with torch.no_grad():
            self.conv1.weight.copy_(torch.stack([EDGE, -EDGE])[:, None])

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))

    def training_step(self, batch, batch_idx):
        self.hooks.append(sum(hook_count(self).values()))
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def loader(n: int = 32) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 1, 16, 16, generator=g), torch.arange(n) % 3)
    return DataLoader(data, batch_size=4)


def run(tmp_path, monitor, model=None, steps=6, ckpt=None):
    model = model or EdgeNet()
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        max_steps=steps,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=monitor if isinstance(monitor, list) else [monitor],
    )
    trainer.fit(model, loader(), ckpt_path=ckpt)
    return model, trainer, events(tmp_path)


def read_images(acc, tag) -> list[tuple[int, np.ndarray]]:
    return [
        (e.step, np.asarray(Image.open(io.BytesIO(e.encoded_image_string)).convert("RGB")))
        for e in acc.Images(tag)
    ]


def test_kernels_monitor_images_and_scalars_read_back(tmp_path):
    model, _, acc = run(tmp_path, KernelMonitor(every_n_steps=2))
    assert sorted(image_tags(acc)) == ["kernels/conv1", "kernels/conv2"]
    conv1 = read_images(acc, "kernels/conv1")
    assert [step for step, _ in conv1] == [2, 4, 6]  # one image per tag per log
    _, img = conv1[0]
    assert img.shape == (26, 51, 3)  # 2 filters side by side, 24 px each + separators
    for r in range(3):  # filter 0: - left, + right; filter 1 the opposite
        y, x0 = centre(0, 0, r, 0)
        assert img[y, x0].tolist() == [0, 0, 0] and img[y, x0 + 16].tolist() == [255] * 3
        y, x1 = centre(0, 1, r, 0)
        assert img[y, x1].tolist() == [255] * 3 and img[y, x1 + 16].tolist() == [0, 0, 0]
    _, img2 = read_images(acc, "kernels/conv2")[0]
    assert img2.shape == (4 * 25 + 1, 2 * 25 + 1, 3)  # a row per filter, a slice per input
    scalars = acc.Tags()["scalars"]
    for layer in ("conv1", "conv2"):
        for key in ("mean_abs", "hf_energy", "relative_change"):
            assert f"kernels/{layer}/{key}" in scalars
    mean_abs = acc.Scalars("kernels/conv1/mean_abs")
    assert [e.step for e in mean_abs] == [2, 4, 6]
    assert mean_abs[0].value == pytest.approx(6 / 9)
    hf = acc.Scalars("kernels/conv1/hf_energy")[0].value
    assert hf == pytest.approx(float(figures.hf_energy(model.conv1.weight)), rel=1e-6)
    change = acc.Scalars("kernels/conv1/relative_change")
    assert [e.step for e in change] == [4, 6] and change[0].value == 0.0  # lr = 0
    assert model.hooks and set(model.hooks) == {0}  # weights only: never a hook


def test_kernels_monitor_relative_change_delta_and_symmetric(tmp_path):
    model = EdgeNet(lr=0.02)
    before = model.conv2.weight.detach().clone()
    monitor = KernelMonitor(every_n_steps=3, normalization="layer_symmetric", log_delta=True)
    _, _, acc = run(tmp_path, monitor, model=model)
    change = acc.Scalars("kernels/conv2/relative_change")
    assert [e.step for e in change] == [6] and change[0].value > 0
    assert "kernels/conv2/delta" in image_tags(acc) and "kernels/conv1/delta" in image_tags(acc)
    assert [e.step for e in acc.Images("kernels/conv2/delta")] == [6]
    _, img = read_images(acc, "kernels/conv1")[0]
    neutral = coolwarm(0.5)
    for r in range(3):  # the middle column of the edge kernel moved little from 0
        y, x = centre(0, 0, r, 1)
        assert np.abs(img[y, x].astype(int) - neutral).max() < 40
    assert not torch.equal(before, model.conv2.weight)


def test_kernels_monitor_linear_option(tmp_path):
    monitor = KernelMonitor(every_n_steps=3, linear=True, max_filters=2)
    _, _, acc = run(tmp_path, monitor)
    assert sorted(image_tags(acc)) == [
        "kernels/conv1", "kernels/conv2", "kernels/fc", "kernels/fc/units",
    ]  # fmt: skip
    _, heat = read_images(acc, "kernels/fc")[0]
    assert heat.shape == (33, 64, 3)  # 3 units x 64 inputs, rows stretched 11x
    _, units = read_images(acc, "kernels/fc/units")[0]
    assert units.shape == (2 * 25 + 1, 4 * 25 + 1, 3)  # 2 units, 4 channels of 4x4 (6x)
    assert "kernels/fc/mean_abs" in acc.Tags()["scalars"]
    assert "kernels/fc/hf_energy" not in acc.Tags()["scalars"]


def test_kernels_monitor_resume_keeps_previous(tmp_path):
    monitor = KernelMonitor(every_n_steps=2)
    model, _, _ = run(tmp_path / "a", monitor, model=EdgeNet(lr=0.1), steps=2)
    state = monitor.state_dict()
    assert set(state["extra"]["previous"]) == {"conv1", "conv2"}
    again = KernelMonitor(every_n_steps=2)
    again.load_state_dict(state)
    assert torch.equal(again._previous["conv1"], model.conv1.weight.detach())


def test_kernels_monitor_arguments():
    for kwargs, name, value in [
        ({"normalization": "minmax"}, "normalization", "minmax"),
        ({"in_channel_mode": "sum"}, "in_channel_mode", "sum"),
        ({"max_filters": 0}, "max_filters", 0),
        ({"max_in_channels": -1}, "max_in_channels", -1),
        ({"cmap": "jet"}, "cmap", "jet"),
        ({"log_delta": "yes"}, "log_delta", "yes"),
        ({"every_n_steps": 0}, "every_n_steps", 0),
    ]:
        with pytest.raises(ValueError, match=f"`{name}`.*{value!r}"):
            KernelMonitor(**kwargs)


def test_kernels_monitor_rejects_non_weight_layers(tmp_path):
    model = EdgeNet()
    model.act = nn.ReLU()
    wanted = r"Conv1d/2d/3d, ConvTranspose1d/2d/3d or Linear modules, got \['act'\]"
    with pytest.raises(ValueError, match=wanted):
        run(tmp_path, KernelMonitor(layers=["conv1", "act"], every_n_steps=2), model=model)


def test_kernels_transposed_conv_drawn_with_its_filters_first(tmp_path):
    # held out: a GAN generator's ConvTranspose2d: "found no layer", and naming it raised
    model = EdgeNet(lr=0.05)
    model.conv2 = nn.ConvTranspose2d(2, 4, 3, padding=1)  # weight (in 2, out 4, 3, 3)
    _, _, acc = run(tmp_path / "t", KernelMonitor(every_n_steps=2), model)
    _, _, plain = run(tmp_path / "p", KernelMonitor(every_n_steps=2), EdgeNet(lr=0.05))
    (shot,), (expected,) = (read_images(a, "kernels/conv2")[-1:] for a in (acc, plain))
    assert shot[1].shape == expected[1].shape  # 4 filters of 2 input channels, as a conv's
    weight = model.conv2.weight.detach()
    mean_abs = acc.Scalars("kernels/conv2/mean_abs")[-1].value
    assert mean_abs == pytest.approx(weight.abs().mean().item(), rel=1e-5)


class WideNet(EdgeNet):
    """EdgeNet's shape with conv layers wide enough to tell trained kernels from random ones."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__(lr)
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 4, 3, padding=1)


def test_kernels_frozen_at_random_initialisation_is_a_problem(tmp_path):
    # a backbone frozen without its pretrained weights (held out: 50% val vs 99% trained)
    model = WideNet()
    for conv in (model.conv1, model.conv2):
        conv.weight.requires_grad_(False)
    with pytest.warns(UserWarning, match="Their kernels look untrained"):
        _, trainer, _ = run(tmp_path / "random", KernelMonitor(every_n_steps=2), model, steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and abs(found.figures["neighbour_r"]) < 0.1
    assert "compute fixed random features" in found.message
    # the same layers holding smooth (trained-looking) kernels: frozen on purpose, a note
    model = WideNet()
    with torch.no_grad():
        for conv in (model.conv1, model.conv2):
            conv.weight.copy_(torch.arange(9.0).reshape(3, 3).expand_as(conv.weight) / 9)
            conv.weight.requires_grad_(False)
    _, trainer, _ = run(tmp_path / "smooth", KernelMonitor(every_n_steps=2), model, steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "note" and "neighbour_r" not in found.figures


class Stateless(WideNet):
    """Calls a network of its own with weights it keeps apart (``torch.func.functional_call``)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.conv1, self.conv2, self.fc = WideNet(), None, None, None
        self.weights = nn.ParameterDict(
            {n.replace(".", "_"): nn.Parameter(p.detach().clone())
             for n, p in self.inner.named_parameters()}
        )  # fmt: skip
        self.inner.requires_grad_(False)  # placeholders: never used, never trained

    def forward(self, x):
        params = {n: self.weights[n.replace(".", "_")] for n, _ in self.inner.named_parameters()}
        return torch.func.functional_call(self.inner, params, (x,))


def test_kernels_weights_a_stateless_call_replaces_are_not_told_frozen(tmp_path):
    # setups hunt 23: the placeholders were told "frozen ... load the pretrained weights"
    with pytest.warns(UserWarning, match="with other weights than their own") as said:
        _, trainer, _ = run(tmp_path, KernelMonitor(every_n_steps=2), Stateless(), steps=10)
    assert not [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    (message,) = [str(w.message) for w in said if "other weights" in str(w.message)]
    assert "`inner.conv1`, `inner.conv2`" in message and "functional_call" in message
    # the same layers frozen in a model that calls them with them: told as before
    model = WideNet()
    for conv in (model.conv1, model.conv2):
        conv.weight.requires_grad_(False)
    _, trainer, _ = run(tmp_path / "frozen", KernelMonitor(every_n_steps=2), model, steps=10)
    assert [f for f in findings_of(trainer) if f.kind == "frozen_layers"]


def test_kernels_frozen_layers_are_a_note_naming_them_and_why(tmp_path):
    # a conv layer frozen by mistake: its weights never move while the rest trains
    model = EdgeNet(lr=0.05)
    model.conv1.weight.requires_grad_(False)
    _, trainer, acc = run(tmp_path / "frozen", KernelMonitor(every_n_steps=2), model, steps=8)
    assert [e.value for e in acc.Scalars("kernels/conv1/relative_change")] == [0.0, 0.0, 0.0]
    assert all(e.value > 0 for e in acc.Scalars("kernels/conv2/relative_change"))
    (note,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    # `requires_grad=False` is known: the first unchanged event (step 4) confirms it
    assert (note.severity, note.step, note.figures) == (
        "note",
        4,
        {"layers": 1, "watched": 2, "no_grad": 1, "names": ["conv1"]},
    )
    assert "1 of 2 watched layers have not changed at all since step 2: `conv1`" in note.message
    assert "`requires_grad=False`" in note.message
    # a learning rate of 0, every layer: said as that
    _, trainer, _ = run(tmp_path / "still", KernelMonitor(every_n_steps=2), EdgeNet(0.0), steps=8)
    (note,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert "2 of 2" in note.message and "`conv2`; their learning rate is 0." in note.message
    monitor = KernelMonitor(every_n_steps=2)
    _, trainer, _ = run(tmp_path / "trained", monitor, EdgeNet(0.05), steps=8)
    assert [f for f in findings_of(trainer) if f.kind == "frozen_layers"] == []


class Unfreeze(L.Callback):
    """Trains ``conv1`` from ``step`` on (as ``BackboneFinetuning`` does at an epoch)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            pl_module.conv1.weight.requires_grad_(True)


def test_kernels_frozen_layers_changing_again_become_a_note(tmp_path):
    # held out: BackboneFinetuning froze the convs for an epoch, then trained them; the
    # summary kept "frozen_layers" as a problem to the end
    model = WideNet()
    model.conv1.weight.requires_grad_(False)
    monitor = KernelMonitor(every_n_steps=2, layers=["conv1"])
    _, trainer, acc = run(tmp_path, [monitor, Unfreeze(6)], model, steps=12)
    changes = [e.value for e in acc.Scalars("kernels/conv1/relative_change")]
    assert changes[:2] == [0.0, 0.0] and all(c > 0 for c in changes[3:])
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "note" and found.figures["moving_since"] == 8
    assert found.message.startswith("Layers change again at step 8 (epoch 0): `conv1`, still at")


class DetachedLoss(EdgeNet):
    """Returns the loss's value as a new leaf: the backward reaches no parameter."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return torch.tensor(loss.item(), requires_grad=True)


def test_kernels_nothing_learns_when_no_parameter_gets_a_gradient_is_a_problem(tmp_path):
    # held out: a detached loss and `zero_grad()` between backward and step froze every
    # layer; a note pointed at `vanishing_gradients` and `dead_units`, which never came
    with pytest.warns(UserWarning, match="no parameter of the model holds a gradient"):
        _, trainer, _ = run(tmp_path, KernelMonitor(every_n_steps=2), DetachedLoss(0.05), steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and "`torch.tensor(loss.item())`" in found.message
    assert "vanishing_gradients" not in found.message


class ConstantLoss(EdgeNet):
    """A loss that stays 0 whatever the weights: every gradient exists and is 0."""

    def training_step(self, batch, batch_idx):
        return 0.0 * super().training_step(batch, batch_idx)


def test_kernels_a_constant_loss_is_told_apart_from_a_detached_one(tmp_path):
    # setups hunt 20: one class (cross-entropy over one logit: always 0) was told "the
    # loss is cut from the model ... or zero_grad() between backward and step"
    with pytest.warns(UserWarning, match="every gradient is exactly 0 after the backward"):
        _, trainer, _ = run(tmp_path, KernelMonitor(every_n_steps=2), ConstantLoss(0.05), steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and "`.detach()`" not in found.message


class BackboneAtZero(WideNet):
    """WideNet whose convs sit in a parameter group at learning rate 0 (the head learns)."""

    def configure_optimizers(self):
        convs = [*self.conv1.parameters(), *self.conv2.parameters()]
        groups = [{"params": convs, "lr": 0.0}, {"params": self.fc.parameters()}]
        return torch.optim.SGD(groups, lr=self.lr)


def test_kernels_a_backbone_group_at_learning_rate_0_from_random_init_is_a_problem(tmp_path):
    # held out (hunt 15): the convs' group at lr 0, the head at 1e-3: 79% val vs 96.5%,
    # told as a note about schedules
    with pytest.warns(UserWarning, match="Their kernels look untrained"):
        _, trainer, _ = run(tmp_path, KernelMonitor(every_n_steps=2), BackboneAtZero(), steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and "their learning rate is 0" in found.message
    assert "with a learning rate above 0" in found.message


class HeadOnly(WideNet):
    """WideNet whose optimiser holds only ``fc``: the convs are left out of it."""

    def configure_optimizers(self):
        return torch.optim.SGD(self.fc.parameters(), lr=self.lr)


class BackboneOnly(WideNet):
    """WideNet whose optimiser holds only the convs: the head ``fc`` is left out of it."""

    def configure_optimizers(self):
        convs = [*self.conv1.parameters(), *self.conv2.parameters()]
        return torch.optim.SGD(convs, lr=self.lr)


def test_kernels_parameters_no_optimiser_holds_are_a_note_naming_them(tmp_path):
    # held out: a classifier head never passed to the optimiser (unwatched: a Linear),
    # 20-26 points of val accuracy lost and "no problems found"
    _, trainer, _ = run(tmp_path / "head", KernelMonitor(every_n_steps=2), BackboneOnly())
    (found,) = [f for f in findings_of(trainer) if f.kind == "not_optimised"]
    assert (found.severity, found.step, found.figures["parameters"]) == ("note", 2, 2)
    assert "`fc.weight`, `fc.bias`" in found.message and "never change" in found.message
    # watched layers left out are the frozen-layers finding's; a full optimiser: quiet
    for model, name in ((HeadOnly(), "convs"), (WideNet(), "all")):
        _, trainer, _ = run(tmp_path / name, KernelMonitor(every_n_steps=2), model, steps=8)
        assert "not_optimised" not in {f.kind for f in findings_of(trainer)}


class SlowBackbone(WideNet):
    """WideNet whose convs sit in a parameter group at ``ratio`` of the head's rate (Adam)."""

    def __init__(self, ratio: float) -> None:
        super().__init__(lr=1e-3)
        self.ratio = ratio

    def configure_optimizers(self):
        convs = [*self.conv1.parameters(), *self.conv2.parameters()]
        groups = [{"params": convs, "lr": self.lr * self.ratio}, {"params": self.fc.parameters()}]
        return torch.optim.Adam(groups, lr=self.lr)


def test_kernels_frozen_layers_at_a_tiny_rate_are_a_problem_at_random_init(tmp_path):
    # a random-init backbone's group at 1e-7 beside a head at 1e-3 (Adam) moved its kernels
    # 1e-5 to 1e-4 of their size a log, 94.6% val vs 96.3%, and nothing was said
    with pytest.warns(UserWarning, match="Their kernels look untrained"):
        _, trainer, acc = run(
            tmp_path / "tiny", KernelMonitor(every_n_steps=2), SlowBackbone(1e-4), steps=8
        )
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and found.step == 6
    assert "barely changed" in found.message and "1,000x or more below" in found.message
    assert "a learning rate near the others'" in found.message
    change = [e.value for e in acc.Scalars("kernels/conv1/relative_change")]
    assert 0 < max(change) < 1e-3  # moving, but all but still
    # 100x below the head: a gentle fine-tuning rate, whose kernels move; quiet
    _, trainer, _ = run(
        tmp_path / "gentle", KernelMonitor(every_n_steps=2), SlowBackbone(1e-2), steps=8
    )
    assert "frozen_layers" not in {f.kind for f in findings_of(trainer)}


class DeadAfterConvs(WideNet):
    """WideNet whose last conv's ReLU is silenced (bias -100): no gradient reaches the convs."""

    def __init__(self) -> None:
        super().__init__()
        with torch.no_grad():
            self.conv2.bias.fill_(-100.0)


def test_kernels_frozen_layers_name_the_reason_and_blame_only_the_set_up(tmp_path):
    # left out of the optimiser at random init: the set-up keeps them, a problem
    with pytest.warns(UserWarning, match="left out of the optimiser"):
        _, trainer, _ = run(tmp_path / "out", KernelMonitor(every_n_steps=2), HeadOnly(), steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and found.step == 6
    assert "they are left out of the optimiser's parameter groups" in found.message
    # held out: biases of -5 killed every ReLU; the convs stayed at their init, a
    # consequence (a note pointing at the dead units), not "frozen random features"
    _, trainer, _ = run(
        tmp_path / "dead", KernelMonitor(every_n_steps=2), DeadAfterConvs(), steps=8
    )
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "note" and "neighbour_r" not in found.figures
    assert "no gradient reaches them" in found.message and "dead_strip" in found.message


class DetachedConvs(WideNet):
    """WideNet whose forward detaches the convs' output (a user's slip): they never train."""

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2).detach()
        return self.fc(x.flatten(1))


def test_kernels_frozen_layers_cut_off_by_a_detach_are_a_problem_naming_it(tmp_path):
    # held out: `.detach()` after a conv stem kept it at its random init (92% val: random
    # features) and was told as a note pointing at dead units
    with pytest.warns(UserWarning, match="Their kernels look untrained"):
        _, trainer, _ = run(tmp_path, KernelMonitor(every_n_steps=2), DetachedConvs(), steps=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.severity == "problem" and "`.grad` stays None" in found.message
    assert found.message.endswith(
        "remove the `.detach()` or `torch.no_grad()` that cuts their output off from the loss "
        "(or pass `use_reentrant=False` to `checkpoint`)."
    )
    # setups hunt 47: a block under reentrant checkpointing over inputs that need no
    # gradient gets none, told without naming it
    assert "`checkpoint(..., use_reentrant=True)` whose inputs need no gradient" in found.message
