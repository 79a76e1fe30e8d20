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

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from lightning_cnnviz.core import rendering

__all__ = [
    "Norm",
    "as_pictures",
    "display_channels",
    "input_bounds",
    "model_device",
    "model_dtype",
    "norm_stats",
    "raw_scale",
    "scale_text",
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
    """Inputs ``(N, C, H, W)`` as float ``[0, 1]`` pictures ``(N, 1|3, H, W)``.

    De-normalised (``x * std + mean``, clamped) when ``norm`` fits the channels,
    else each image rescaled to its own range. Non-finite values become 0. Inputs of
    other than 1 or 3 channels show their first three as RGB (RGBA, RGB + infrared),
    or their first (2 channels).

    Example::

        >>> to_image01(torch.rand(2, 4, 5, 5), None).shape
        torch.Size([2, 3, 5, 5])
    """
    x = x.float()
    if norm is not None and norm.fits(x.shape[-3]):
        image = x * _per_channel(norm.std, x) + _per_channel(norm.mean, x)
        image = torch.nan_to_num(image, nan=0.0).clamp(0, 1)
    else:
        image = rendering.normalize(x, "per_image", dims=3)
    return display_channels(image)


def display_channels(x: Tensor) -> Tensor:
    """The channels of ``(N, C, H, W)`` a picture shows: all of 1 or 3, else the first 3 (or 1)."""
    channels = x.shape[-3]
    return x if channels in (1, 3) else x[..., : 3 if channels > 3 else 1, :, :]


RAW_SCALE = 20.0  # inputs beyond this |x|: raw values (normalised images stay within ~3)
FLAT = 1e-2  # inputs whose spread is below this: scaled twice (x / 255 / 255), or constant


def raw_scale(x: Tensor) -> dict[str, float] | None:
    """Figures of inputs far from unit scale, else None.

    Beyond ``RAW_SCALE`` (raw 0..255 pixels, say), or a spread (standard deviation over
    images and positions) below ``FLAT``: pixels divided by 255 twice before the usual
    normalisation vary by 0.004 about -0.42, and a plain CNN sat at chance on them.

    Example::

        >>> raw_scale(torch.rand(2, 1, 4, 4)) is None
        True
        >>> raw_scale(torch.full((1, 1, 2, 2), 255.0))["input_max"]
        255.0
        >>> raw_scale(torch.rand(2, 1, 4, 4) / 255)["input_std"] < FLAT
        True
        >>> raw_scale(torch.randint(4, 200, (2, 40))) is None  # token ids: no pixel scale
        True
    """
    if not (x.is_floating_point() or x.dtype == torch.uint8):
        return None
    x = torch.nan_to_num(x.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)
    if x.numel() < 2:
        return None
    peak, std = float(x.abs().amax()), float(x.std())
    if peak <= RAW_SCALE and std >= FLAT:
        return None
    return {"input_mean": float(x.mean()), "input_std": std, "input_max": peak}


def scale_text(f: Mapping[str, float]) -> str:
    """The note on ``raw_scale``'s figures: where a divergence or dead units may start.

    Example::

        >>> scale_text(raw_scale(torch.full((1, 1, 2, 2), 255.0) + torch.rand(1, 1, 2, 2)))[:34]
        'The inputs are far from unit scale'
    """
    if f["input_std"] < FLAT:
        return (
            f"The inputs barely vary: the probe images have a standard deviation of "
            f"{f['input_std']:.2g} about {f['input_mean']:.3g} (|x| up to {f['input_max']:.3g}): "
            "scaled twice (`x / 255` applied on top of a transform that already did it), "
            "normalised with the wrong constants, or constant. Unless the model normalises "
            "them itself (a BatchNorm first), its first layer sees almost the same input for "
            "every image, and it learns slowly or not at all: normalise with the data's own "
            "statistics (`(x - mean) / std`)."
        )
    return (
        f"The inputs are far from unit scale: the probe images reach |x| = {f['input_max']:.3g} "
        f"(mean {f['input_mean']:.3g}, std {f['input_std']:.3g}), raw pixel values perhaps. "
        "Unless the model normalises them itself, its first layer's outputs are that much "
        "larger than its initialisation assumes, which makes divergence and dead units "
        "likelier: scale them (`x / 255`) and normalise (`(x - mean) / std`)."
    )


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
    """The floating dtype of the model's first layer's parameters, ``None`` if it has none.

    A layer's, not the first parameter's: ``named_parameters`` lists the model's own before
    its layers', and a float64 temperature scalar beside a float32 CNN (setups hunt 84)
    cast every probe image to float64, so each image monitor stepped aside saying
    ``forward`` fails. The model's own parameters only where no layer has any.

    Example::

        >>> class Tempered(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.log_t = nn.Parameter(torch.zeros((), dtype=torch.float64))
        ...         self.conv = nn.Conv2d(1, 2, 3)
        >>> model_dtype(Tempered()), model_dtype(nn.ReLU())
        (torch.float32, None)
    """
    layers = (m for m in model.modules() if m is not model)
    owned = (p for m in layers for p in m.parameters(recurse=False))
    param = next(owned, None)
    if param is None:
        param = next(model.parameters(), None)
    return param.dtype if param is not None and param.is_floating_point() else None


def id_inputs(x: Tensor) -> str:
    """Where ``x`` holds integer ids (a text CNN's tokens), that, in words ("" otherwise).

    Example::

        >>> id_inputs(torch.zeros(2, 40, dtype=torch.long))[:46]
        'its inputs are integer ids, (40,) per sample ('
        >>> id_inputs(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))  # raw pixels
        ''
        >>> id_inputs(torch.zeros(2, 1, 4, 4, dtype=torch.int16))  # a 12-bit scan
        ''
    """
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.uint8 or x.dim() > 2:
        return ""  # integer images (uint8 photos, int16 scans) are pixels, read as floats
    return (
        f"its inputs are integer ids, {tuple(x.shape[1:])} per sample (tokens for an "
        "embedding?), not images or signals"
    )


def to_model(x: Tensor, model: nn.Module, default_dtype: torch.dtype | None = None) -> Tensor:
    """``x`` on the model's device, in its parameter dtype (else ``default_dtype`` or as it is).

    Integer inputs stay integers: token ids for an ``nn.Embedding`` (a text CNN), as the
    training batches hold them.
    """
    if id_inputs(x):
        return x.to(model_device(model))
    return x.to(model_device(model), model_dtype(model) or default_dtype)


def slice_indices(depth: int, count: int = 4) -> list[int]:
    """At most ``count`` evenly spaced depth indices of a volume (first and last included).

    Example::

        >>> slice_indices(8), slice_indices(2)
        ([0, 2, 5, 7], [0, 1])
    """
    if depth <= count:
        return list(range(depth))
    return [round(i * (depth - 1) / (count - 1)) for i in range(count)]


def as_pictures(
    x: Tensor, maps: Tensor | None = None, strip: int = 8, stack_channels: bool = True
) -> tuple[Tensor, Tensor | None]:
    """Inputs of any dimensionality as 2-D pictures, with per-position ``maps`` following them.

    * signals (N, C, L): each channel a strip ``strip`` rows high, stacked: (N, 1, C*strip, L)
      (``stack_channels=False``: one strip per channel, (N, C, strip, L), as feature maps
      are drawn); a map (N, L) becomes a heat strip over time, (N, C*strip, L);
    * images (N, C, H, W): unchanged;
    * volumes (N, C, D, H, W): up to 4 evenly spaced depth slices side by side: (N, C, H, k*W),
      and a map (N, D, H, W) the same slices.

    Example::

        >>> pics, heat = as_pictures(torch.zeros(2, 3, 10), torch.ones(2, 10), strip=2)
        >>> tuple(pics.shape), tuple(heat.shape)
        ((2, 1, 6, 10), (2, 6, 10))
        >>> tuple(as_pictures(torch.zeros(2, 3, 10), strip=2, stack_channels=False)[0].shape)
        (2, 3, 2, 10)
        >>> pics, heat = as_pictures(torch.zeros(2, 1, 8, 5, 6), torch.ones(2, 8, 5, 6))
        >>> tuple(pics.shape), tuple(heat.shape)
        ((2, 1, 5, 24), (2, 5, 24))
    """
    if x.dim() == 3:
        n, c, length = x.shape
        pics = x.unsqueeze(2).expand(n, c, strip, length)
        if not stack_channels:
            return pics, None
        pics = pics.reshape(n, 1, c * strip, length)
        heat = None if maps is None else maps.unsqueeze(1).expand(n, c * strip, length)
        return pics, heat
    if x.dim() == 5:
        picked = slice_indices(x.shape[2])
        pics = torch.cat([x[:, :, d] for d in picked], dim=-1)
        heat = None if maps is None else torch.cat([maps[:, d] for d in picked], dim=-1)
        return pics, heat
    return x, maps
