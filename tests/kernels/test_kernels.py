"""KernelMonitor in short fits: images and scalars read back, options, resume, arguments."""

import numpy as np
import pytest
import torch
from torch import nn

from lightning_cnnviz.kernels import figures
from lightning_cnnviz.kernels.callback import KernelMonitor
from tests.kernels.kernel_nets import EdgeNet, centre, coolwarm, read_images, run
from tests.tb import image_tags


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
    assert torch.equal(again._weights.copies["conv1"], model.conv1.weight.detach())


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
