"""Grad-CAM by hand on fixed-weight models (core/cam.py), the auto rule (core/target_layer.py),
the metrics (gradcam/metrics.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_cnnviz.core.cam import grad_cam, layer_cams
from lightning_cnnviz.core.capture import hook_count
from lightning_cnnviz.core.logits import SingleLogit
from lightning_cnnviz.core.selection import named_layers
from lightning_cnnviz.core.target_layer import block_output, trace_calls
from lightning_cnnviz.gradcam.metrics import concentration, drift, means_to_host, on_object
from lightning_cnnviz.gradcam.objects import foreground
from tests.monitors import TinyCNN, fit, make_monitor

# A 4x4 single-channel image with positive and negative pixels.
X = torch.tensor(
    [[1.0, -2.0, 0.0, 3.0], [0.5, 4.0, -1.0, 0.0], [-3.0, 0.0, 2.0, 1.0], [0.0, -0.5, 1.5, -4.0]]
)
# Class weights on the two channels relu(x) and relu(-x).
W = torch.tensor([[2.0, 1.0], [0.0, -1.0], [-1.0, 3.0]])


class Fixed(nn.Module):
    """conv 1x1 (weights +1, -1, no bias) -> ReLU -> [pool] -> global mean -> linear ``W``.

    Channel 0 is relu(x), channel 1 relu(-x); the score of class c is
    ``sum_k W[c, k] * mean(A_k)``, so dy/dA_k = W[c, k] / (h * w) everywhere.
    """

    def __init__(self, pool: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.fc = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(W)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).mean((2, 3)))


def expected_cam(cls: int) -> torch.Tensor:
    """Grad-CAM of the ReLU output by hand: relu(sum_k W[c, k] / 16 * A_k)."""
    a0, a1 = X.clamp_min(0), (-X).clamp_min(0)
    return (W[cls, 0] / 16 * a0 + W[cls, 1] / 16 * a1).clamp_min(0)


def test_attribution_grad_cam_exact_on_fixed_model():
    net = Fixed()
    x = X.view(1, 1, 4, 4).repeat(3, 1, 1, 1)
    cam, logits = grad_cam(net, net.relu, x, torch.tensor([0, 1, 2]))
    for c in range(3):
        torch.testing.assert_close(cam[c], expected_cam(c), rtol=0, atol=1e-7)
    # logits by hand: mean(relu(x)) = 13 / 16, mean(relu(-x)) = 10.5 / 16
    means = torch.tensor([13.0, 10.5]) / 16
    torch.testing.assert_close(logits, (W @ means).expand(3, 3), rtol=0, atol=1e-6)
    assert cam.dtype == torch.float32 and logits.dtype == torch.float32
    # class 1 only has a negative weight on a non-negative channel: an all-zero CAM
    assert cam[1].abs().sum() == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_attribution_layer_cams_equal_captums_methods(seed):
    """One backward pass gives what LayerGradCam and LayerGradientXActivation give apart."""
    from captum.attr import LayerAttribution, LayerGradCam, LayerGradientXActivation

    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(6 * 5 * 5, 4)).eval()  # fmt: skip
    x, target = torch.randn(5, 3, 10, 10), torch.tensor([0, 1, 2, 3, 0])
    cams, logits = layer_cams(net, net[2], x, target)
    score = lambda inp: net(inp).gather(1, target.view(-1, 1))  # noqa: E731
    want = {
        "gradcam": LayerGradCam(score, net[2]).attribute(x, 0, relu_attributions=True),
        "hirescam": LayerGradientXActivation(score, net[2]).attribute(x, 0).sum(1, True).relu(),
    }
    for method, attr in want.items():
        up = LayerAttribution.interpolate(attr, (10, 10), interpolate_mode="bilinear")[:, 0]
        torch.testing.assert_close(cams[method], up.detach(), msg=method)
    torch.testing.assert_close(logits, net(x).detach())
    assert not torch.equal(cams["gradcam"], cams["hirescam"])


class FlipAveraged(nn.Module):
    """Test-time augmentation in ``forward``: the scores of the image and of its mirror."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return (self.net(x) + self.net(x.flip(-1))) / 2


def test_attribution_layer_called_twice_is_read_at_its_first_call():
    # setups hunt 29: the CAM of a flip-averaging model was the mirrored image's, laid over
    # the image as given (0.013 of the CAM on the digit against 0.25)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                        nn.Flatten(), nn.Linear(6 * 4 * 4, 3)).eval()  # fmt: skip
    x, target = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    plain, _ = layer_cams(net, net[1], x, target)
    averaged, _ = layer_cams(FlipAveraged(net), net[1], x, target)
    for method in ("gradcam", "hirescam"):  # half the score flows through the first call
        torch.testing.assert_close(2 * averaged[method], plain[method], msg=method)
    assert not torch.allclose(plain["gradcam"], plain["gradcam"].flip(-1))
    assert sum(hook_count(net).values()) == 0


def test_attribution_grad_cam_targets_pred_and_int():
    net = Fixed()
    x = X.view(1, 1, 4, 4)
    # logits: [2*13 + 10.5, -10.5, -13 + 3*10.5] / 16: class 0 (36.5/16) beats class 2 (18.5/16)
    pred, _ = grad_cam(net, net.relu, x)
    torch.testing.assert_close(pred[0], expected_cam(0), rtol=0, atol=1e-7)
    two, _ = grad_cam(net, net.relu, x, 2)
    torch.testing.assert_close(two[0], expected_cam(2), rtol=0, atol=1e-7)


def test_attribution_grad_cam_one_binary_logit_scores_each_class_by_its_evidence():
    # a BCEWithLogits model's one logit z: class 1's CAM is z's, class 0's is -z's
    # (pytorch-grad-cam's BinaryClassifierOutputTarget); fixed class 0 row of W: z
    net = Fixed()
    net.fc = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.fc.weight.copy_(W[:1])  # z = (2 * 13 + 10.5) / 16 > 0: predicted class 1
    x = X.view(1, 1, 4, 4).repeat(2, 1, 1, 1)
    cam, logits = grad_cam(net, net.relu, x, torch.tensor([1, 0]), output_key=SingleLogit())
    z = 36.5 / 16
    torch.testing.assert_close(logits, torch.tensor([[-z / 2, z / 2]] * 2))
    by_hand = (W[0, 0] / 16 * X.clamp_min(0) + W[0, 1] / 16 * (-X).clamp_min(0)).clamp_min(0)
    torch.testing.assert_close(cam[0], by_hand / 2, rtol=0, atol=1e-7)
    torch.testing.assert_close(cam[1], torch.zeros(4, 4))  # -z: both weights push class 1
    pred, _ = grad_cam(net, net.relu, x[:1], output_key=SingleLogit())
    torch.testing.assert_close(pred[0], cam[0])  # the predicted class is z > 0's


def test_attribution_grad_cam_bilinear_upsampling_by_hand():
    net = Fixed(pool=True)
    x = X.view(1, 1, 4, 4)
    cam, _ = grad_cam(net, net.pool, x, 0)
    # pooled maps (2x2): max of each 2x2 block of relu(x) and relu(-x); dy/dA = W / 4
    p0 = F.max_pool2d(X.clamp_min(0).view(1, 1, 4, 4), 2)[0, 0]
    p1 = F.max_pool2d((-X).clamp_min(0).view(1, 1, 4, 4), 2)[0, 0]
    small = (2 / 4 * p0 + 1 / 4 * p1).clamp_min(0)
    # block maxima of relu(x) / relu(-x): [[4, 3], [0, 2]] / [[2, 1], [3, 4]]
    torch.testing.assert_close(small, torch.tensor([[2.5, 1.75], [0.75, 2.0]]))
    # bilinear 2 -> 4 (align_corners=False): rows/cols are v0, .75 v0 + .25 v1, .25 v0 + .75 v1, v1
    m = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    torch.testing.assert_close(cam[0], m @ small @ m.T, rtol=0, atol=1e-6)


def test_attribution_guided_grad_cam_by_hand():
    net = Fixed()
    x = X.view(1, 1, 4, 4)
    cam, _ = grad_cam(net, net.relu, x, 0, method="guided_gradcam")
    # guided backprop to the input: 2/16 where x > 0 (channel +x), -1/16 where x < 0 (channel -x)
    guided = 2 / 16 * (X > 0).float() - 1 / 16 * (X < 0).float()
    torch.testing.assert_close(cam[0], guided.abs() * expected_cam(0), rtol=0, atol=1e-8)


def test_attribution_grad_cam_is_safe():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 3),
    )  # fmt: skip
    net.train()
    net[0].requires_grad_(False)  # a frozen backbone still gets a CAM
    net[5].weight.grad = torch.ones_like(net[5].weight)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    hooks = hook_count(net)
    x = torch.randn(2, 1, 6, 6)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        cam, logits = grad_cam(net, net[2], x)
    assert cam.dtype == torch.float32 and torch.isfinite(cam).all() and cam.sum() > 0
    assert logits.dtype == torch.float32
    assert net.training and all(m.training for m in net.modules())
    assert torch.equal(net[5].weight.grad, torch.ones_like(net[5].weight))
    assert net[5].bias.grad is None and net[0].weight.grad is None
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert hook_count(net) == hooks
    assert not net[0].weight.requires_grad


def test_attribution_grad_cam_output_key_and_errors():
    class Dict(Fixed):
        def forward(self, x):
            return {"aux": x, "logits": super().forward(x)}

    net = Dict()
    cam, _ = grad_cam(net, net.relu, X.view(1, 1, 4, 4), 0, output_key="logits")
    torch.testing.assert_close(cam[0], expected_cam(0), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="output_key"):
        grad_cam(net, net.relu, X.view(1, 1, 4, 4), 0, output_key="aux")
    with pytest.raises(ValueError, match="4-D like the input"):
        grad_cam(net, net.fc, X.view(1, 1, 4, 4), 0, output_key="logits")


def test_attribution_grad_cam_layer_detached_in_forward_names_the_detach():
    class Detached(Fixed):  # a user's `.detach()` after the layer: no gradient reaches it
        def forward(self, x):
            return self.fc(self.relu(self.conv(x)).detach().mean((2, 3)))

    net = Detached()
    with pytest.raises(ValueError, match=r"cut off before them \(a `\.detach\(\)`"):
        grad_cam(net, net.relu, X.view(1, 1, 4, 4), 0)


class Reference(nn.Module):
    """The reference CNN's layout (conv, relu, pool) x 2, fc, relu, fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu1, self.pool1 = (
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.conv2, self.relu2, self.pool2 = (
            nn.Conv2d(4, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc1, self.relu3, self.fc2 = nn.Linear(8 * 7 * 7, 16), nn.ReLU(), nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc2(self.relu3(self.fc1(x.flatten(1))))


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 7 * 7, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        return self.fc(F.max_pool2d(F.relu(self.conv2(x)), 2).flatten(1))


class Block(nn.Module):
    """A block that ends in a functional ReLU: its own output is the rectified one."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Blocks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(Block(1, 4), nn.MaxPool2d(2), Block(4, 8), nn.Dropout2d())
        self.logits = nn.Conv2d(8, 10, 1)  # a 1x1 conv logits head, then global pooling
        self.gap = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.gap(self.logits(self.features(x))).flatten(1)


class SqueezeExcite(nn.Module):
    """A block whose squeeze-excitation ``fc1`` is a 1x1 conv to as many channels as classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(1, 16, 3, padding=1), nn.ReLU()
        self.fc1, self.fc2 = nn.Conv2d(16, 10, 1), nn.Conv2d(10, 16, 1)
        self.conv2, self.relu2 = nn.Conv2d(16, 8, 3, padding=1), nn.ReLU()
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        x = x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return self.head(self.relu2(self.conv2(x)).mean((2, 3)))


class MixerBlocks(nn.Module):
    """ConvMixer's order: conv, GELU, then BatchNorm last in each block, inside containers."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *(nn.Sequential(nn.Conv2d(c, 8, 3, padding=1), nn.GELU(), nn.BatchNorm2d(8))
              for c in (1, 8))
        )  # fmt: skip
        self.pool, self.head = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 10)

    def forward(self, x):
        return self.head(self.pool(self.blocks(x)).flatten(1))


class Pyramid(nn.Module):
    """A backbone returning a list of maps (timm's ``features_only``), a head on the last."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = PyramidBackbone()
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        return self.head(self.backbone(x)[-1].mean((2, 3)))


class PyramidBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.act1 = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()
        self.down, self.act2 = nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU()

    def forward(self, x):
        first = self.act1(self.stem(x))
        return [first, self.act2(self.down(first))]


@pytest.mark.parametrize(
    ("model", "expected", "warns"),
    [
        (Reference, "pool2", False),
        # setups hunt 21: "a functional op follows it" was said of ConvMixer's last BatchNorm
        (MixerBlocks, "blocks.1.2", False),
        # setups hunt 21: the list-returning backbone was picked: Captum raised a ValueError
        (Pyramid, "backbone.act2", False),
        (SqueezeExcite, "relu2", False),
        (Functional, "conv2", True),
        (Blocks, "features.2", False),
        (
            lambda: nn.Sequential(
                nn.Conv2d(1, 4, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)
            ),
            "1",
            False,
        ),
    ],
)
def test_attribution_block_output_picks_last_block(model, expected, warns):
    net = model()
    layers = named_layers(net)
    hooks = hook_count(net)
    calls, shape = trace_calls(net, layers, torch.randn(1, 1, 28, 28))
    assert hook_count(net) == hooks
    name, note = block_output(calls, layers, shape[-1])
    assert name == expected
    assert (note is not None) == warns
    if warns:
        assert "F.relu" in note and "layers" in note


class _PyramidClassifier(nn.Module):
    """An FPN-like backbone whose head reads the coarse level only; the fine one, made last,
    is left unused (setups hunt 28: Grad-CAM took it and failed, writing no CAM)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.c2 = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.lat1, self.out1 = nn.Conv2d(4, 8, 1), nn.Conv2d(8, 8, 3, padding=1)
        self.out2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        f1 = self.c1(x)
        f2 = self.c2(f1)
        coarse = self.out2(f2)
        self.out1(self.lat1(f1) + F.interpolate(f2, size=f1.shape[-2:]))  # made, never read
        return self.head(coarse.mean((2, 3)))


@pytest.mark.parametrize("frozen", [False, True])
def test_attribution_block_output_takes_a_map_the_scores_read(frozen):
    net = _PyramidClassifier().requires_grad_(not frozen)  # frozen: the graph from the input
    layers = named_layers(net)
    calls, shape = trace_calls(net, layers, torch.randn(1, 1, 16, 16))
    assert [c.name for c in calls if not c.reaches] == ["lat1", "out1"]
    assert block_output(calls, layers, shape[-1]) == ("out2.1", None)  # its ReLU


def test_attribution_block_output_skips_logits_conv_and_1x1():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Conv2d(4, 10, 1))
    layers = named_layers(net)
    calls, _ = trace_calls(net, layers, torch.randn(1, 1, 8, 8))
    assert block_output(calls, layers, 10) == ("1", None)


def test_attribution_grad_cam_shared_module_last_call():
    relu, pool = nn.ReLU(), nn.MaxPool2d(2)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), relu, pool, nn.Conv2d(2, 3, 3, padding=1),
                        relu, pool, nn.Flatten(), nn.Linear(3 * 2 * 2, 4))  # fmt: skip
    layers = named_layers(net)
    calls, _ = trace_calls(net, layers, torch.randn(1, 1, 8, 8))
    assert block_output(calls, layers, 4) == ("2", None)
    x = torch.randn(2, 1, 8, 8)
    cam, _ = grad_cam(net, pool, x, 1)
    # by hand on the second call: A = output of net[:6], dy/dA = fc weight of class 1
    with torch.no_grad():
        a = net[:6](x)
    alpha = net[7].weight[1].detach().view(3, 2, 2).mean((1, 2))
    small = (alpha.view(1, 3, 1, 1) * a).sum(1, keepdim=True).clamp_min(0)
    up = F.interpolate(small, size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(cam, up, rtol=1e-5, atol=1e-6)


def test_attribution_metrics_by_hand():
    flat = torch.ones(1, 10, 10)
    spike = torch.zeros(1, 10, 10)
    spike[0, 0, :5] = 1.0  # 5 pixels carry all the mass; the top 10 pixels hold all of it
    zero = torch.zeros(1, 10, 10)
    cams = torch.cat([flat, spike, zero])
    conc = concentration(cams)
    assert conc[:2].tolist() == pytest.approx([0.1, 1.0]) and math.isnan(conc[2])
    ramp = torch.arange(100.0).view(1, 10, 10)
    # top 10 pixels: 90..99 sum 945 of 4950
    assert float(concentration(ramp)) == pytest.approx(945 / 4950)

    image = torch.zeros(3, 1, 10, 10)
    image[:, 0, :2] = 0.9  # the two top rows are the object
    mask = foreground(image, 0.2)
    assert mask.shape == (3, 10, 10) and int(mask[0].sum()) == 20
    obj = on_object(cams, mask)
    assert obj[:2].tolist() == pytest.approx([0.2, 1.0]) and math.isnan(obj[2])

    a = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    assert float(drift(a, a * 2 + 1)) == pytest.approx(0.0, abs=1e-7)
    assert float(drift(a, -a)) == pytest.approx(2.0)
    b = torch.tensor([[[1.0, -1.0, -1.0, 1.0]]])  # uncorrelated with a ramp
    assert float(drift(a, b)) == pytest.approx(1.0)
    assert math.isnan(float(drift(a, torch.zeros(1, 1, 4))))

    means = means_to_host({"c": conc, "o": obj, "none": torch.tensor([math.nan])})
    assert means == pytest.approx({"c": 0.55, "o": 0.6})


class _FlipAveragedCNN(TinyCNN):
    def forward(self, x):
        return (super().forward(x) + super().forward(x.flip(-1))) / 2


def test_attribution_monitor_says_once_its_layer_runs_on_parallel_copies(tmp_path):
    # setups hunt 30: a rotation TTA whose identity call came last had the rotated copy's
    # CAM laid over the image as given, unsaid (0.089 of the CAM on the digit vs 0.25)
    monitor = make_monitor("GradCAMMonitor")
    _, _, messages = fit(tmp_path, [monitor], model=_FlipAveragedCNN())
    said = [m for m in messages if "parallel copies" in m]
    assert len(said) == 1 and "runs on 2 parallel copies of the images" in said[0], messages
    assert monitor.events > 0 and not monitor.disabled
    _, _, plain = fit(tmp_path / "plain", [make_monitor("GradCAMMonitor")], model=TinyCNN())
    assert not [m for m in plain if "parallel copies" in m]
