"""Input saliency (Captum Saliency / IntegratedGradients / NoiseTunnel): exact values, safety."""

import contextlib

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lightning_cnnviz.core.probe_call import CUT_OFF, REENTRANT
from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from lightning_cnnviz.gradcam.saliency import input_saliency
from tests.monitors import TinyCNN, fit
from tests.tb import events


def _linear(weight: torch.Tensor) -> nn.Module:
    """Logits = weight @ flatten(x) (no bias), so every attribution is known by hand."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], weight.shape[0], bias=False))
    with torch.no_grad():
        net[1].weight.copy_(weight)
    return net


W = torch.tensor([[1.0, -2.0, 0.0, 3.0, 0.5, 0.5, -1.0, 0.0],
                  [0.0, 4.0, -1.0, 0.0, 0.0, 0.0, 0.0, 2.0]])  # fmt: skip
X = torch.arange(16.0).view(2, 2, 2, 2) / 4  # 2 images, 2 channels, 2x2


def test_saliency_gradient_is_the_weights_summed_over_channels():
    out = input_saliency(_linear(W), X, torch.tensor([0, 1]), "saliency")
    # |grad| per channel, summed over the 2 channels: class 0 -> |w[:4]| + |w[4:]|
    expected0 = (W[0, :4].abs() + W[0, 4:].abs()).view(2, 2)
    expected1 = (W[1, :4].abs() + W[1, 4:].abs()).view(2, 2)
    torch.testing.assert_close(out, torch.stack([expected0, expected1]))
    assert out.dtype == torch.float32 and out.shape == (2, 2, 2)


def test_saliency_integrated_gradients_exact_on_a_linear_model():
    baseline = -0.5
    out = input_saliency(_linear(W), X, torch.tensor([1, 0]), "integrated_gradients",
                         baseline=baseline, ig_steps=8)  # fmt: skip
    # linear model: IG = (x - baseline) * w exactly, whatever the number of steps
    attr = (X.flatten(1) - baseline) * W[[1, 0]]
    expected = attr.view(2, 2, 2, 2).abs().sum(1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def _conv_net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 8 * 8, 3))  # fmt: skip


def test_saliency_smoothgrad_seeded_and_global_rng_untouched():
    net, x = _conv_net(), torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([0, 1, 2])
    state = torch.get_rng_state()
    a = input_saliency(net, x, target, "saliency", smooth=True, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    b = input_saliency(net, x, target, "saliency", smooth=True, seed=1)
    c = input_saliency(net, x, target, "saliency", smooth=True, seed=2)
    plain = input_saliency(net, x, target, "saliency")
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, plain)
    assert torch.isfinite(a).all() and (a >= 0).all()
    # on a linear model the gradient does not depend on the input: noise changes nothing
    lin = input_saliency(_linear(W), X, torch.tensor([0, 1]), "saliency", smooth=True)
    torch.testing.assert_close(lin, input_saliency(_linear(W), X, torch.tensor([0, 1]), "saliency"))


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients"])
def test_saliency_leaves_grads_flags_and_buffers_alone_under_inference_mode(method):
    net = _conv_net()
    net.train()
    x = torch.randn(2, 1, 8, 8)
    net(x).sum().backward()  # a gradient mid-accumulation
    grads = [p.grad.clone() for p in net.parameters()]
    buffers = [b.clone() for b in net.buffers()]
    with torch.inference_mode():
        out = input_saliency(net, x, torch.tensor([0, 2]), method, smooth=True)
    assert out.shape == (2, 8, 8) and out.sum() > 0
    assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), grads, strict=True))
    assert all(torch.equal(b, c) for b, c in zip(net.buffers(), buffers, strict=True))
    assert all(m.training for m in net.modules())


def test_saliency_rejects_unknown_method():
    with pytest.raises(ValueError, match="`method` must be one of"):
        input_saliency(_linear(W), X, torch.tensor([0, 1]), "lime")


class MiddleReentrant(TinyCNN):
    """The second block under ``checkpoint(..., use_reentrant=True)``, the first outside it."""

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        block = lambda h: self.pool2(self.relu2(self.bn2(self.conv2(h))))  # noqa: E731
        return self.fc(checkpoint(block, x, use_reentrant=True).flatten(1))


def test_saliency_rows_left_out_alone_under_reentrant_checkpointing(tmp_path):
    # setups hunt 74: the saliency rows' refused input gradient made the whole monitor step
    # aside, so the `full` preset drew no Grad-CAM where the `standard` one drew it
    monitor = GradCAMMonitor(every_n_steps=2, num_samples=4, saliency=["saliency"])
    _, _, messages = fit(tmp_path, [monitor], model=MiddleReentrant(), max_steps=4)
    assert not monitor.disabled and monitor.events == 2
    said = [m for m in messages if m.startswith("GradCAMMonitor")]
    assert len(said) == 1 and "the `saliency` rows" in said[0] and REENTRANT in said[0]
    acc = events(tmp_path)
    for tag in ("gradcam/train", "gradcam/val"):
        assert [i.step for i in acc.Images(tag)] == [2, 4]
    assert [e.step for e in acc.Scalars("gradcam/train/concentration")] == [2, 4]


class FrozenStem(TinyCNN):
    """The first block cut off from the images (``torch.no_grad()`` or ``.detach()``)."""

    def __init__(self, cut: str) -> None:
        super().__init__()
        self.cut = cut

    def forward(self, x):
        with torch.no_grad() if self.cut == "no_grad" else contextlib.nullcontext():
            x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = x.detach() if self.cut == "detach" else x
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("cut", ["no_grad", "detach"])
def test_saliency_rows_left_out_alone_where_forward_cuts_the_input_gradient(tmp_path, cut):
    # setups hunt 75: a frozen stem under `torch.no_grad()`/`.detach()` stops the saliency
    # rows' gradient to the images, not the CAM's at `conv2`: the whole monitor stepped
    # aside with torch's "appears to not have been used in the graph", no Grad-CAM drawn
    monitor = GradCAMMonitor(every_n_steps=2, num_samples=4, saliency=["saliency"])
    _, _, messages = fit(tmp_path, [monitor], model=FrozenStem(cut), max_steps=4)
    assert not monitor.disabled and monitor.events == 2
    said = [m for m in messages if m.startswith("GradCAMMonitor")]
    assert len(said) == 1 and "the `saliency` rows" in said[0] and CUT_OFF in said[0]
    assert not any("used in the graph" in m for m in messages)
    acc = events(tmp_path)
    for tag in ("gradcam/train", "gradcam/val"):
        assert [i.step for i in acc.Images(tag)] == [2, 4]
    assert [e.step for e in acc.Scalars("gradcam/train/concentration")] == [2, 4]
