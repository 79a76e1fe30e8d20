"""A normalisation layer's shift far below zero before a rectifier (``negative_biases``)."""

from torch import nn

from lightning_cnnviz.activations.init_weights import negative_biases
from lightning_cnnviz.core.findings import findings_of
from tests.activations.test_init_weights import fit
from tests.tb import events, texts


def bn_cnn(shift: float) -> nn.Sequential:
    """Conv -> BatchNorm -> ReLU twice, every BatchNorm's shift (bias) at ``shift``."""
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 49, 10),
    )  # fmt: skip
    for bn in (net[1], net[5]):
        nn.init.constant_(bn.bias, shift)
    return net


def test_negative_biases_a_norm_layers_shift_before_a_relu_is_told(tmp_path):
    # held-out hunt 122: BatchNorm1d biases at -3 (3 sd below zero) left 0.08% and 0.86%
    # of two ReLUs' outputs positive; every unit was positive somewhere, so none was dead,
    # and the run ended "no problems found" at 60% val against 100% with the default init
    trainer, said = fit(tmp_path, bn_cnn(-3.0))
    found = {f.kind: f for f in findings_of(trainer)}
    bias = found["negative_biases"]
    assert (bias.severity, bias.step) == ("problem", 6)
    assert "`net.1`, `net.5` start with biases far below zero" in bias.message
    assert bias.message in texts(events(tmp_path), "activations/diagnosis")[0]
    assert any(bias.message in m for m in said)


def test_negative_biases_a_norm_layers_small_or_default_shift_says_nothing(tmp_path):
    import timm
    import torchvision

    trainer, _ = fit(tmp_path, bn_cnn(-1.0))  # 1 sd below zero: sparse on purpose
    assert [f for f in findings_of(trainer) if f.kind == "negative_biases"] == []
    for net in (bn_cnn(0.0), nn.Sequential(nn.Conv3d(1, 4, 3), nn.GroupNorm(2, 4), nn.SiLU())):
        assert negative_biases(list(net.named_modules())) == []
    # a last BatchNorm at scale 0 (residual branches closed), timm's BatchNormAct2d
    for net in (
        torchvision.models.resnet18(weights=None, zero_init_residual=True),
        timm.create_model("resnet10t", pretrained=False),
        timm.create_model("efficientnet_b0", pretrained=False),
    ):
        assert negative_biases(list(net.named_modules())) == []
    # a shift added to the residual, not rectified by the layer's next module, is left out
    block = torchvision.models.resnet18(weights=None).layer1[0]
    nn.init.constant_(block.bn2.bias, -3.0)
    nn.init.constant_(block.bn1.bias, -3.0)
    assert negative_biases(list(block.named_modules())) == ["bn1"]
    net = nn.Sequential(nn.Conv1d(1, 4, 3), nn.LayerNorm(6), nn.GELU())
    nn.init.constant_(net[1].bias, -3.0)
    assert negative_biases(list(net.named_modules())) == ["1"]
    # every bias at -3: the output layer's are the classes' priors, no silenced unit
    net = bn_cnn(-3.0)
    nn.init.constant_(net[9].bias, -3.0)
    assert negative_biases(list(net.named_modules())) == ["1", "5"]
