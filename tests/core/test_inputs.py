import pytest
import torch
from torch import nn

from lightning_cnnviz.core.inputs import Norm, input_bounds, norm_stats, to_image01, to_model


class Run:
    def __init__(self, mean, std):
        self.datamodule = type("Data", (), {"mean": mean, "std": std})()


@pytest.mark.parametrize(
    ("mean", "std", "expected"),
    [
        (0.5, 0.25, Norm((0.5,), (0.25,))),
        ((0.1307,), (0.3081,), Norm((0.1307,), (0.3081,))),
        (torch.tensor([0.4, 0.5, 0.6]), [0.2, 0.2, 0.2], Norm((0.4, 0.5, 0.6), (0.2, 0.2, 0.2))),
        (None, 0.2, None),
        ("imagenet", 0.2, None),
    ],
)
def test_inputs_norm_stats_takes_floats_sequences_and_tensors(mean, std, expected):
    norm = norm_stats(Run(mean, std))
    if expected is None:
        assert norm is None
    else:
        assert norm.mean == pytest.approx(expected.mean) and norm.std == pytest.approx(expected.std)


def test_inputs_to_image01_denormalises_when_the_statistics_fit():
    x = torch.tensor([[[[-2.0, 0.0, 2.0, 4.0]]]])
    assert to_image01(x, Norm((0.5,), (0.25,))).flatten().tolist() == [0.0, 0.5, 1.0, 1.0]
    # three statistics for a one-channel input do not fit: each image is rescaled instead
    rescaled = to_image01(x, Norm((0.1, 0.2, 0.3), (1.0, 1.0, 1.0)))
    assert rescaled.flatten().tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])


def test_inputs_bounds_are_the_valid_pixels_in_normalised_units():
    low, high = input_bounds(Norm((0.5,), (0.25,)), channels=3)
    assert low.flatten().tolist() == [-2.0] and high.flatten().tolist() == [2.0]
    assert input_bounds(None, 3) is None


def test_inputs_to_model_uses_the_parameter_dtype():
    net = nn.Linear(2, 2).to(torch.float64)
    assert to_model(torch.zeros(1, 2), net).dtype == torch.float64
    assert to_model(torch.zeros(1, 2, dtype=torch.float16), nn.ReLU()).dtype == torch.float16


def test_inputs_to_model_takes_the_layers_dtype_not_a_scalar_beside_them():
    # setups hunt 84: a float64 temperature on the LightningModule beside a float32 CNN
    net = nn.Module()
    net.log_t = nn.Parameter(torch.zeros((), dtype=torch.float64))
    net.conv = nn.Conv2d(1, 2, 3)
    assert to_model(torch.zeros(1, 1, 4, 4), net).dtype == torch.float32
    only_own = nn.Module()
    only_own.w = nn.Parameter(torch.zeros(2, dtype=torch.float16))
    assert to_model(torch.zeros(1, 2), only_own).dtype == torch.float16
