import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_cnnviz.activation_maximization.callback import ActivationMaximizationMonitor
from lightning_cnnviz.activation_maximization.optimize import (
    Target,
    maximize,
    top_channels,
    total_variation,
)
from lightning_cnnviz.core import labels
from lightning_cnnviz.core.guard import grads_untouched
from lightning_cnnviz.core.probe_call import CUT_CAUSES, CUT_OFF
from tests.monitors import ComplexImages, TinyCNN, complex_loader, failures, fit
from tests.tb import events
from tests.views_helpers import reference_model, run


class PixelSum(nn.Module):
    """Logit 0 = sum of the pixels, logit 1 = minus that: a constant gradient."""

    def forward(self, x):
        s = x.flatten(1).sum(1, keepdim=True)
        return torch.cat([s, -s], 1) + 0 * self.w

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))


def test_activation_maximization_adam_climbs_a_constant_gradient():
    # Adam's step on a constant gradient is lr (up to eps): each pixel moves lr per step
    # towards a higher score, from the seeded start noise, then is clamped to the bounds.
    targets = [Target(None, 0), Target(None, 1)]
    images, scores = maximize(
        PixelSum(), {}, targets, (1, 4, 4), steps=3, lr=0.1, jitter=0,
        tv_weight=0.0, l2_weight=0.0, seed=7,
    )  # fmt: skip
    start = 0.1 * torch.randn((2, 1, 4, 4), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(images[0], start[0] + 0.3, atol=1e-5, rtol=0)
    torch.testing.assert_close(images[1], start[1] - 0.3, atol=1e-5, rtol=0)
    # the reported score is the objective at the last step (before its update)
    torch.testing.assert_close(scores[0], (start[0] + 0.2).sum(), atol=1e-4, rtol=0)
    bounds = (torch.tensor(-0.05), torch.tensor(0.05))
    clamped, _ = maximize(PixelSum(), {}, targets, (1, 4, 4), steps=3, jitter=0, bounds=bounds)
    assert clamped[0].min() == 0.05 and clamped[1].max() == -0.05


def test_activation_maximization_params_untouched():
    model = reference_model()
    model.conv1.requires_grad_(False)
    sentinels = {n: torch.full_like(p, 0.5) for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = sentinels[n]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    targets = [Target("conv2", 3), Target("conv2", 5), Target(None, 2)]
    maximize(model, {"conv2": model.conv2}, targets, (1, 28, 28), steps=3)
    for n, p in model.named_parameters():
        assert p.grad is sentinels[n] and torch.equal(p.grad, torch.full_like(p, 0.5))
        assert torch.equal(p, before[n])
        assert p.requires_grad == (not n.startswith("conv1"))
    assert model.training and model.conv2.training and not model.conv2._forward_hooks


def test_activation_maximization_reaches_its_class():
    with torch.random.fork_rng():  # the weights must not depend on which tests ran before
        torch.manual_seed(0)
        model = reference_model()
    targets = [Target(None, k) for k in (0, 3, 6, 9)]
    images, _ = maximize(model, {}, targets, (1, 28, 28), steps=24)
    with torch.no_grad():
        predicted = model.eval()(images).argmax(1)
    assert predicted.tolist() == [0, 3, 6, 9]


def test_activation_maximization_guard_catches_a_backward_in_forward():
    class Sneaky(PixelSum):
        def forward(self, x):
            (self.w * 2).backward()
            return super().forward(x)

    with pytest.raises(RuntimeError, match="parameter gradient"):
        maximize(Sneaky(), {}, [Target(None, 0)], (1, 4, 4), steps=1)
    with grads_untouched(nn.Linear(1, 1)):
        pass


def test_activation_maximization_top_channels_and_tv():
    act = torch.zeros(2, 5, 3, 3)
    act[:, 3] = 2.0
    act[:, 1] = 1.0
    act[0, 4] = 5.0
    assert top_channels(act, 3).tolist() == [4, 3, 1]
    assert top_channels(act, 9).numel() == 5
    x = torch.zeros(1, 1, 3, 3)
    x[..., 1, 1] = 1.0  # one bright pixel: 2 of 6 pairs differ along each axis
    assert float(total_variation(x)) == pytest.approx(2 / 3)


def _size(tiles, text, nrow):
    tile = labels.caption(torch.zeros(3, 56, 56, dtype=torch.uint8), text)
    rows = -(-tiles // nrow)
    return nrow * (tile.shape[2] + 1) + 1, rows * (tile.shape[1] + 1) + 1


def test_activation_maximization_images_written(tmp_path):
    monitor = ActivationMaximizationMonitor(steps=8, num_samples=8, every_n_epochs=1)
    run(tmp_path, [monitor], steps=3, epochs=2)
    acc = events(tmp_path)
    layer, classes = (
        acc.Images("activation_maximization/conv2"),
        acc.Images("activation_maximization/classes"),
    )
    assert [e.step for e in layer] == [3, 6] and [e.step for e in classes] == [3, 6]
    assert (layer[0].width, layer[0].height) == _size(8, "ch 10", 8)
    assert (classes[0].width, classes[0].height) == _size(10, "class 0", 8)
    assert len(monitor.scores["conv2"]) == 8 and len(monitor.scores["classes"]) == 10
    assert all(monitor.timings[p] > 0 for p in ("capture", "compute", "render", "write"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": -1}, "`channels` must be an integer in [0, 256], got -1"),
        ({"classes": 1.5}, "`classes` must be an integer in [0, 1000], got 1.5"),
        ({"channels": 0, "classes": 0}, "nothing to visualise"),
        ({"steps": 0}, "`steps` must be a positive integer, got 0"),
        ({"tv_weight": -1.0}, "`tv_weight` must be a number in"),
        ({"jitter": "2"}, "`jitter` must be an integer in [0, 64], got '2'"),
    ],
)
def test_activation_maximization_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ActivationMaximizationMonitor(**kwargs)


class TwiceApplied(TinyCNN):
    """TinyCNN whose ``conv2`` runs twice per forward: call sites ``conv2#0``, ``conv2#1``."""

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.relu2(self.conv2(self.relu2(self.conv2(x))))
        return self.fc(self.pool2(x).flatten(1))


def test_activation_maximization_shared_conv_images_per_call_site(tmp_path):
    # Several optimisation steps: each step is a new forward, and every one of them
    # must name the calls `conv2#0`/`conv2#1` again (not `#2`, `#3`, ...).
    monitor = ActivationMaximizationMonitor(
        layers="conv2", steps=3, channels=2, classes=2, num_samples=4, every_n_steps=2
    )
    _, _, messages = fit(tmp_path, [monitor], model=TwiceApplied())
    assert not failures(messages, "ActivationMaximizationMonitor") and not monitor.aside_reason
    tags = set(events(tmp_path).Tags()["images"])
    assert {f"activation_maximization/conv2#{k}" for k in (0, 1)} <= tags
    assert len(monitor.scores["conv2#0"]) == len(monitor.scores["conv2#1"]) == 2


class Adaptive(TinyCNN):
    """``conv2`` runs twice on images with a bright pixel (the probe's), once on others."""

    def forward(self, x):
        calls = 2 if x.amax() > 0.7 else 1  # a number of calls the input decides
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        for _ in range(calls):
            x = self.relu2(self.conv2(x))
        return self.fc(self.pool2(x).flatten(1))


def test_activation_maximization_call_site_not_reached_left_out_said_once(tmp_path):
    # setups hunt 74: the optimised images (faint noise) run `conv2` once, so `conv2#1`,
    # found on the probe, was missing from their passes: a bare `KeyError: 'conv2#1'`
    # made the monitor step aside, and stopped the fit under `strict=True`
    monitor = ActivationMaximizationMonitor(
        layers="conv2", steps=3, channels=2, classes=2, num_samples=4, every_n_steps=2,
        strict=True,
    )  # fmt: skip
    _, _, messages = fit(tmp_path, [monitor], model=Adaptive())
    assert not monitor.disabled and monitor.events == 2
    (said,) = [m for m in messages if m.startswith("ActivationMaximizationMonitor")]
    assert "leaves out `conv2#1` at step 2" in said and "how many times the layer runs" in said
    acc = events(tmp_path)
    tags = set(acc.Tags()["images"])
    assert "activation_maximization/conv2#1" not in tags
    for tag in ("activation_maximization/conv2#0", "activation_maximization/classes"):
        assert [e.step for e in acc.Images(tag)] == [2, 4]
    assert set(monitor.scores) == {"conv2#0", "classes"}


class FrozenStem(TinyCNN):
    """The first block cut off from the images; ``skip``: the logits also read them directly."""

    def __init__(self, cut: str = "no_grad", skip: bool = False) -> None:
        super().__init__()
        self.cut = cut
        self.skip = nn.Linear(16, 4) if skip else None

    def forward(self, x):
        with torch.no_grad() if self.cut == "no_grad" else contextlib.nullcontext():
            h = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        h = h.detach() if self.cut == "detach" else h
        out = self.fc(self.pool2(self.relu2(self.bn2(self.conv2(h)))).flatten(1))
        return out if self.skip is None else out + self.skip(F.avg_pool2d(x, 4).flatten(1))


@pytest.mark.parametrize("cut", ["no_grad", "detach"])
def test_activation_maximization_steps_aside_where_forward_cuts_the_input_gradient(tmp_path, cut):
    # setups hunt 75: no score reached the images, so only the TV/L2 penalties moved them,
    # and their output was written as "maximised" images without a word
    monitor = ActivationMaximizationMonitor(
        steps=4, channels=2, classes=2, num_samples=4, every_n_steps=2
    )
    _, _, messages = fit(tmp_path, [monitor], model=FrozenStem(cut), max_steps=4)
    assert monitor.disabled and not failures(messages, "ActivationMaximizationMonitor")
    (said,) = [m for m in messages if m.startswith("ActivationMaximizationMonitor")]
    assert said.startswith("ActivationMaximizationMonitor steps aside") and CUT_OFF in said
    tags = events(tmp_path).Tags()["images"]
    assert not [t for t in tags if t.startswith("activation_maximization/")]


def test_activation_maximization_layer_cut_from_the_images_left_out_said_once(tmp_path):
    # setups hunt 75: `conv2` follows a stem under `torch.no_grad()`, the logits read the
    # images through a skip too: the class images are made, `conv2`'s left out
    monitor = ActivationMaximizationMonitor(
        layers="conv2", steps=4, channels=2, classes=2, num_samples=4, every_n_steps=2,
        strict=True,
    )  # fmt: skip
    _, _, messages = fit(tmp_path, [monitor], model=FrozenStem(skip=True), max_steps=4)
    assert not monitor.disabled and monitor.events == 2
    (said,) = [m for m in messages if m.startswith("ActivationMaximizationMonitor")]
    assert "leaves out `conv2` at step 2" in said and CUT_CAUSES in said
    acc = events(tmp_path)
    assert "activation_maximization/conv2" not in acc.Tags()["images"]
    assert [e.step for e in acc.Images("activation_maximization/classes")] == [2, 4]
    assert set(monitor.scores) == {"classes"}


def test_activation_maximization_steps_aside_on_complex_images_saying_so(tmp_path):
    # setups hunt 79: a complex first layer stepped it aside on a raw RuntimeError ("expected
    # ... complex"), where the other monitors named the complex values
    loader = complex_loader()
    monitor = ActivationMaximizationMonitor(steps=2, channels=1, classes=1, every_n_steps=2)
    _, _, messages = fit(tmp_path, [monitor], model=ComplexImages(), data=(loader, loader),
                         max_steps=2)  # fmt: skip
    assert monitor.disabled and not failures(messages, "ActivationMaximizationMonitor")
    (said,) = [m for m in messages if m.startswith("ActivationMaximizationMonitor")]
    assert "it optimises real-valued images; this model's inputs are complex" in said
