"""Activation kinds are told by what a module computes, not by its class name."""

import pytest
import torch
from timm.layers import activations as timm_act
from torch import nn

from lightning_cnnviz.core.activation_kind import activation_kind, is_activation, saturation_range


class Custom(nn.Module):
    """A user's own activation, unknown by name: x * sigmoid(x) (Swish)."""

    def forward(self, x):
        return x * torch.sigmoid(x)


@pytest.mark.parametrize(
    ("module", "kind"),
    [
        (nn.ReLU(), "rectifier"), (nn.ReLU(inplace=True), "rectifier"), (nn.ReLU6(), "rectifier"),
        (nn.LeakyReLU(0.01), "leaky"), (nn.PReLU(8), "leaky"), (nn.ELU(), "leaky"),
        (nn.SELU(), "leaky"), (nn.GELU(), "leaky"), (nn.SiLU(), "leaky"), (nn.Mish(), "leaky"),
        (nn.Hardswish(), "leaky"), (nn.Softplus(), "leaky"), (timm_act.GELU(), "leaky"),
        (timm_act.Swish(), "leaky"), (timm_act.HardSwish(), "leaky"), (Custom(), "leaky"),
        (nn.Sigmoid(), "saturating"), (nn.Tanh(), "saturating"), (nn.Hardtanh(), "saturating"),
        (nn.Hardsigmoid(), "saturating"), (timm_act.Sigmoid(), "saturating"),
        (nn.Identity(), None), (nn.Dropout(0.5), None), (nn.MaxPool2d(2), None),
        (nn.AdaptiveAvgPool2d(1), None), (nn.Softmax(dim=1), None), (nn.Flatten(), None),
    ],
)  # fmt: skip
def test_activation_kind_by_what_the_module_computes(module, kind):
    module.train()
    state = torch.random.get_rng_state()
    assert activation_kind(module, channels=8) == kind
    assert module.training  # its mode is restored
    assert torch.equal(torch.random.get_rng_state(), state)  # no random number drawn


def test_activation_kind_is_activation_needs_a_parameter_free_leaf():
    assert is_activation(timm_act.GELU()) and is_activation(Custom())
    assert not is_activation(nn.PReLU())  # it has a parameter: picked by type instead
    assert not is_activation(nn.Sequential(nn.ReLU()))


def test_activation_kind_saturation_range_read_from_the_rails():
    assert saturation_range(nn.Tanh()) == (-1.0, 1.0)
    assert saturation_range(nn.Hardtanh(-2.0, 3.0)) == (-2.0, 3.0)
    assert saturation_range(nn.GELU()) is None


class Step(nn.Module):
    """A comparison made a float: 0 or 1, no slope anywhere."""

    def forward(self, x):
        return (x > 0).float()


class Sign(nn.Module):
    def forward(self, x):
        return torch.sign(x)


def test_activation_kind_a_step_has_no_rails_to_saturate_at():
    # hunt 34: `(x > 0).float()` read as a rectifier capped at 1 was told "saturated at a
    # rail of ReLU6, a clamp"; its block of the gradient is the frozen layers' finding
    from lightning_cnnviz.core.activation_kind import upper_rail

    assert activation_kind(Step()) == "rectifier" and upper_rail(Step()) is None
    assert activation_kind(Sign()) == "saturating" and saturation_range(Sign()) is None
    assert upper_rail(nn.ReLU6()) == 6.0 and upper_rail(nn.Hardtanh(0.0, 1.0)) == 1.0  # a clamp


def test_activation_kind_leaves_the_modules_hooks_alone():
    # setups hunt 56: another monitor's hook on the module counted the test tensor
    relu, seen = nn.ReLU(), []
    relu.register_forward_hook(lambda module, args, out: seen.append(tuple(out.shape)))
    assert activation_kind(relu, channels=8) == "rectifier" and seen == []
