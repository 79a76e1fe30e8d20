"""The run's input conventions: normalisation, inputs as pictures, the model's dtype and device.

Monitors that show or optimise inputs need to know how the data module
normalised them (``mean``/``std``, floats or per-channel sequences) and where and
in which dtype the model computes. Every monitor asks here; nothing else reads
``datamodule.mean`` or a parameter's dtype.

Example::

    >>> import torch
    >>> class Data:
    ...     mean, std = 0.5, 0.25
    >>> class Run:
    ...     datamodule = Data()
    >>> norm = norm_stats(Run())
    >>> norm
    Norm(mean=(0.5,), std=(0.25,))
    >>> to_image01(torch.tensor([[[[-2.0, 0.0, 2.0]]]]), norm).tolist()
    [[[[0.0, 0.5, 1.0]]]]
    >>> [t.flatten().tolist() for t in input_bounds(norm, 1)]
    [[-2.0], [2.0]]
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from lightning_cnnviz.core import rendering

__all__ = [
    "Norm",
    "input_bounds",
    "model_device",
    "model_dtype",
    "norm_stats",
    "to_image01",
    "to_model",
]


class Norm(NamedTuple):
    """Per-channel ``mean`` and ``std`` the inputs were normalised with (``(x - mean) / std``)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def fits(self, channels: int) -> bool:
        """Whether the statistics apply to inputs with ``channels`` channels."""
        return len(self.mean) in (1, channels) and len(self.std) in (1, channels)


def _floats(value: Any) -> tuple[float, ...]:
    if isinstance(value, int | float):
        return (float(value),)
    if isinstance(value, Tensor):
        return tuple(float(v) for v in value.flatten().tolist())
    return tuple(float(v) for v in value)


def norm_stats(trainer: Any) -> Norm | None:
    """``Norm`` from ``trainer.datamodule``'s ``mean`` and ``std`` when it has both, else ``None``.

    Each may be a number (one for every channel), a sequence or a tensor.
    """
    datamodule = getattr(trainer, "datamodule", None)
    mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
    if mean is None or std is None:
        return None
    try:
        return Norm(_floats(mean), _floats(std))
    except (TypeError, ValueError):
        return None  # not numbers: the inputs are shown rescaled instead


def _per_channel(values: tuple[float, ...], like: Tensor) -> Tensor:
    return torch.as_tensor(values, dtype=torch.float32, device=like.device).reshape(-1, 1, 1)


def to_image01(x: Tensor, norm: Norm | None) -> Tensor:
    """Inputs ``(N, C, H, W)`` as float ``[0, 1]`` pictures.

    De-normalised (``x * std + mean``, clamped) when ``norm`` fits the channels,
    else each image rescaled to its own range. Non-finite values become 0.
    """
    x = x.float()
    if norm is not None and norm.fits(x.shape[-3]):
        image = x * _per_channel(norm.std, x) + _per_channel(norm.mean, x)
        return torch.nan_to_num(image, nan=0.0).clamp(0, 1)
    return rendering.normalize(x, "per_image", dims=3)


def input_bounds(norm: Norm | None, channels: int) -> tuple[Tensor, Tensor] | None:
    """The valid pixel range ``[0, 1]`` in normalised units, ``(C|1, 1, 1)`` each, or ``None``."""
    if norm is None or not norm.fits(channels):
        return None
    mean = torch.tensor(norm.mean).reshape(-1, 1, 1)
    std = torch.tensor(norm.std).reshape(-1, 1, 1)
    return -mean / std, (1 - mean) / std


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model without either)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The floating dtype of the model's first parameter, ``None`` if it has none."""
    param = next(model.parameters(), None)
    return param.dtype if param is not None and param.is_floating_point() else None


def to_model(x: Tensor, model: nn.Module, default_dtype: torch.dtype | None = None) -> Tensor:
    """``x`` on the model's device, in its parameter dtype (else ``default_dtype`` or as it is)."""
    return x.to(model_device(model), model_dtype(model) or default_dtype)
