"""What the training diagnosis reads once, at the first log: the model as training found it.

Nothing here knows about Lightning. The class count and the probe's cross-entropy (the
chance level), the scale of the raw probe images, BatchNorm layers held in eval mode with
their initial statistics (``frozen_norms.py``), weights whose initialisation stops
learning (``init_weights.init_reads``), and the weights' scale at step 0 (read then).

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2).eval())
    >>> x = torch.rand(4, 1, 8, 8)
    >>> reads = first_log_reads(net, ["0"], x, (10, 0.1, 2.3), run=lambda: net(x))
    >>> reads["chance"], reads["frozen_norms"]
    ((10, 2.3), ['1'])
    >>> first_log_reads(net, ["0"], x, None, run=lambda: net[0](x))["frozen_norms"]  # uncalled
    []
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from lightning_cnnviz.activations.frozen_norms import frozen_norms
from lightning_cnnviz.activations.init_weights import init_reads
from lightning_cnnviz.core.capture import LayerCapture
from lightning_cnnviz.core.inputs import raw_scale
from lightning_cnnviz.core.layer_calls import count_call_sites, in_weight_average
from lightning_cnnviz.core.layer_types import CONV_TYPES
from lightning_cnnviz.core.probe_pass import probe_mode
from lightning_cnnviz.core.selection import named_layers

__all__ = ["first_log_reads"]


def first_log_reads(
    model: nn.Module,
    depth: Sequence[str],
    images: Tensor | None,
    scores: tuple[int, float, float] | None,
    run: Callable[[], Any] | None = None,
    growth: Tensor | None = None,
) -> dict[str, Any]:
    """The first log's reads, as ``TrainingDiagnosis.review`` takes them.

    ``images``: the raw probe images (``None`` where the run's hooks or training step
    rescale the inputs, so the probe's pixels are not what training sees); ``scores``:
    ``(K, probe accuracy, probe cross-entropy)`` (``None``: no class labels); ``run``: one
    forward pass of the model, which tells the BatchNorm layers it calls; ``growth``: the
    weights' scale read at step 0 (``initial_scale.init_growth``), before any update.
    """
    # the whole model in eval mode too (setups hunt 68: `model.eval()` before `fit`, kept by
    # Lightning); a weight average's copy (timm's ModelEmaV3) is in eval mode by design
    # (setups hunt 56: its BatchNorm told frozen before the module first updated it)
    layers = named_layers(model)
    norms = [n for n in frozen_norms(list(layers.items())) if not in_weight_average(model, n)]
    if norms and run is not None:  # nor a spare layer forward never calls (setups hunt 69)
        try:
            calls = count_call_sites(model, {n: layers[n] for n in norms}, run)
            norms = [n for n in norms if calls[n]]
        except Exception:  # a forward the monitors cannot call: each layer as it stands
            pass
    return {
        "chance": None if scores is None else (scores[0], scores[2]),
        "input_scale": None if images is None else _input_scale(model, images, run),
        "frozen_norms": norms,
        "init_growth": None if growth is None else float(growth),
        **init_reads(model, depth),
    }


def _input_scale(model: nn.Module, images: Tensor, run: Callable[[], Any] | None) -> Any:
    """``raw_scale`` of the images, unless the model brings them to unit scale itself.

    What its first convolution takes on one probe image is read where ``run`` is given:
    a ``forward`` that divides uint8 pixels by 255 and normalises them needs no scaling
    from the user (setups hunt 71: told "scale them
    (`x / 255`)" of images the model normalised first).

    Example::

        >>> import torch
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3))
        >>> raw = torch.randint(0, 256, (2, 1, 6, 6)).float()
        >>> _input_scale(net, raw, lambda: net(raw[:1]))["input_max"] > 200
        True
        >>> class Scaled(nn.Module):  # normalises the pixels itself
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = nn.Conv2d(1, 2, 3)
        ...     def forward(self, x):
        ...         return self.conv((x / 255 - 0.5) / 0.25)
        >>> scaled = Scaled()
        >>> _input_scale(scaled, raw, lambda: scaled(raw[:1])) is None
        True
    """
    found = raw_scale(images)
    if found is None or run is None:
        return found
    paths = named_layers(model).items()
    conv = next(
        (m for p, m in paths if isinstance(m, CONV_TYPES) and not in_weight_average(model, p)), None
    )
    if conv is None:
        return found
    try:
        with (
            probe_mode(model),
            LayerCapture({"first": conv}, inputs=True, on_output=_ignore) as cap,
        ):
            run()
    except Exception:  # a forward the monitors cannot call: the images as they are
        return found
    seen = cap.inputs.get("first")
    return found if seen is None or raw_scale(seen) is not None else None


def _ignore(site: str, output: Tensor) -> None:
    """The first convolution's output is not read."""
