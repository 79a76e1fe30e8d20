"""The ``gradcam/misclassified`` samples: validation images the model currently gets wrong.

Nothing here knows about Lightning. A pool of validation samples is drawn once, by
index, with the monitor's own generator (stream ``"gradcam/misclassified"``, never
the global RNG); at each log one forward pass over the pool finds the ones the
model gets wrong, and the first few of them get a CAM.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(1, 2, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[1].weight.copy_(torch.tensor([[1.0], [-1.0]]))  # x > 0: class 0, else 1
    >>> pool = Probe([10, 11, 12], torch.tensor([1.0, -1.0, 2.0]).view(3, 1, 1, 1),
    ...              torch.tensor([0, 0, 1]))
    >>> find_misclassified(net, pool.images, pool.labels).tolist()
    [1, 2]
    >>> misclassified_probe(net, pool, 1).indices
    [11]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lightning_cnnviz.core.inputs import model_device, to_model
from lightning_cnnviz.core.outputs import logits_from
from lightning_cnnviz.core.probe import Probe, generator_for, probe_from_indices
from lightning_cnnviz.core.probe_pass import probe_mode

__all__ = ["draw_pool", "find_misclassified", "misclassified_probe"]


def draw_pool(dataset: Any, size: int, seed: int, label_key: Any = None) -> Probe:
    """Up to ``size`` samples of ``dataset``, drawn by index once per ``seed``."""
    order = torch.randperm(len(dataset), generator=generator_for(seed, "gradcam/misclassified"))
    return probe_from_indices(dataset, order[:size].tolist(), label_key)


def find_misclassified(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    output_key: str | int | None = None,
    batch_size: int = 128,
) -> Tensor:
    """Positions (CPU, ascending) of the ``images`` that ``model`` gets wrong.

    Runs in probe mode (eval, no autograd) in batches on the model's device,
    in its parameter dtype; one host transfer at the end.
    """
    device = model_device(model)
    wrong = []
    with probe_mode(model):
        for start in range(0, len(images), batch_size):
            xb = to_model(images[start : start + batch_size], model)
            pred = logits_from(model(xb), output_key).argmax(1)
            wrong.append(pred != labels[start : start + batch_size].to(device))
    if not wrong:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat(wrong).nonzero()[:, 0].cpu()


def misclassified_probe(
    model: nn.Module, pool: Probe, count: int, output_key: str | int | None = None
) -> Probe | None:
    """The first ``count`` samples of ``pool`` that ``model`` gets wrong (``None``: no such one).

    ``None`` too for a pool without labels (nothing tells right from wrong).
    """
    if pool.labels is None:
        return None
    found = find_misclassified(model, pool.images, pool.labels, output_key=output_key)
    found = found[:count].tolist()
    if not found:
        return None
    return Probe([pool.indices[i] for i in found], pool.images[found], pool.labels[found])
