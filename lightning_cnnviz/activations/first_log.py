"""What the training diagnosis reads once, at the first log: the model as training found it.

Nothing here knows about Lightning. The class count and the probe's cross-entropy (the
chance level), the scale of the raw probe images, BatchNorm layers held in eval mode with
their initial statistics (``frozen_norms.py``), and weights whose initialisation stops
learning (``init_weights.init_reads``).

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2).eval())
    >>> reads = first_log_reads(net, ["0"], torch.rand(4, 1, 8, 8), (10, 0.1, 2.3))
    >>> reads["chance"], reads["frozen_norms"]
    ((10, 2.3), ['1'])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from lightning_cnnviz.activations.frozen_norms import frozen_norms
from lightning_cnnviz.activations.init_weights import init_reads
from lightning_cnnviz.core.inputs import raw_scale
from lightning_cnnviz.core.layer_calls import in_weight_average
from lightning_cnnviz.core.selection import named_layers

__all__ = ["first_log_reads"]


def first_log_reads(
    model: nn.Module,
    depth: Sequence[str],
    images: Tensor | None,
    scores: tuple[int, float, float] | None,
) -> dict[str, Any]:
    """The first log's reads, as ``TrainingDiagnosis.review`` takes them.

    ``images``: the raw probe images (``None`` where the run's hooks or training step
    rescale the inputs, so the probe's pixels are not what training sees); ``scores``:
    ``(K, probe accuracy, probe cross-entropy)`` (``None``: no class labels).
    """
    # the whole model in eval mode too (setups hunt 68: `model.eval()` before `fit`, kept by
    # Lightning); a weight average's copy (timm's ModelEmaV3) is in eval mode by design
    # (setups hunt 56: its BatchNorm told frozen before the module first updated it)
    norms = [n for n in frozen_norms(list(named_layers(model).items()))
             if not in_weight_average(model, n)]  # fmt: skip
    return {
        "chance": None if scores is None else (scores[0], scores[2]),
        "input_scale": None if images is None else raw_scale(images),
        "frozen_norms": norms,
        **init_reads(model, depth),
    }
