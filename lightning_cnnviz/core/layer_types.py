"""The layer-type families the monitors' ``auto`` rules pick from: convolutions, pools, activations.

A convolution of another library is known by what it holds (``ConvLike``), not by its
class: the families are read with ``isinstance`` everywhere.

Example::

    >>> from torch import nn
    >>> isinstance(nn.Conv2d(1, 2, 3), CONV_TYPES), isinstance(nn.ReLU(), ACTIVATION_TYPES)
    (True, True)
"""

from __future__ import annotations

from torch import nn

__all__ = [
    "ACTIVATION_TYPES",
    "CONV_TYPES",
    "MAX_KERNEL",
    "POOL_TYPES",
    "TORCH_CONV_TYPES",
    "ConvLike",
    "first_torch_conv",
    "kernel_weight",
]


MAX_KERNEL = 15  # kernel sides up to this, where no `kernel_size` names them


def kernel_weight(module: nn.Module) -> nn.Parameter | None:
    """A module's own ``weight`` parameter where it is shaped ``(out, in, *kernel)``.

    Read from ``_parameters``, not ``module.weight``: a parametrization would run.

    Example::

        >>> kernel_weight(nn.Conv2d(1, 2, 3)).shape, kernel_weight(nn.Linear(2, 2))
        (torch.Size([2, 1, 3, 3]), None)
    """
    params = module._parameters
    weight = params["weight"] if "weight" in params else None  # noqa: SIM401 (a ScriptModule's has no .get)
    return weight if isinstance(weight, nn.Parameter) and 3 <= weight.dim() <= 5 else None


class _ConvLikeType(type):
    def __instancecheck__(cls, module: object) -> bool:
        if not isinstance(module, nn.Module) or isinstance(module, nn.modules.conv._ConvNd):
            return False  # torch's own convolutions (and transposed ones) by their class
        if isinstance(module, nn.Bilinear) or hasattr(module, "output_padding"):
            return False  # a (out, in1, in2) weight; a transposed convolution
        weight = kernel_weight(module)
        if weight is None:
            return False
        knobs = all(hasattr(module, a) for a in ("kernel_size", "stride", "padding"))
        return knobs or max(weight.shape[2:]) <= MAX_KERNEL


class ConvLike(metaclass=_ConvLikeType):
    """A convolution of another library, known by what it holds, not by its class.

    A ``(out, in / groups, *kernel)`` weight of 1-3 spatial axes beside a kernel size,
    stride and padding, or with sides up to ``MAX_KERNEL`` where none names them; no
    output padding (a transposed one): torchvision's ``DeformConv2d``, MMCV's modulated
    ones, a convolution by ``F.conv2d`` or ``F.unfold`` on a weight of its own (setups
    hunts 29, 30: a ``DeformConv2d`` was left out of every view while its offset
    predictor was drawn in its place; a module doing ``F.conv2d`` was skipped unsaid).

    Example::

        >>> from torchvision.ops import DeformConv2d
        >>> isinstance(DeformConv2d(1, 2, 3), ConvLike), isinstance(nn.Linear(2, 2), ConvLike)
        (True, False)
    """


TORCH_CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""torch's own convolutions, whose ``in_channels`` and ``kernel_size`` say what they take."""
CONV_TYPES: tuple[type, ...] = (*TORCH_CONV_TYPES, ConvLike)


def first_torch_conv(model: nn.Module) -> nn.Module | None:
    """``model``'s first torch convolution in module order, whose input shape it names.

    Example::

        >>> first_torch_conv(nn.Sequential(nn.Linear(2, 2), nn.Conv1d(4, 8, 3))).in_channels
        4
    """
    return next((m for m in model.modules() if isinstance(m, TORCH_CONV_TYPES)), None)


POOL_TYPES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.Sigmoid,
    nn.Tanh,
)
