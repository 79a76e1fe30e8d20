"""Kernel pictures and figures as pure functions: grids, scales, modes, hf_energy, dense layers."""

import math

import pytest
import torch
from torch import nn

from lightning_cnnviz.core import rendering
from lightning_cnnviz.kernels import dense, draw, figures
from tests.kernels.kernel_nets import EDGE, centre, coolwarm, pixel


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
