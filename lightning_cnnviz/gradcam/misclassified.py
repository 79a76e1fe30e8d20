"""The ``gradcam/misclassified`` samples: validation images the model currently gets wrong.

Nothing here knows about Lightning. A pool of validation samples is drawn once, by
index, with the monitor's own generator (stream ``"gradcam/misclassified"``, never
the global RNG); at each log one forward pass over the pool finds the ones the
model gets wrong, and the first few of them get a CAM. Right and wrong are told only
where the labels index the outputs (``core.logits.class_logits``: one logit with 0/1
labels read by its sign); elsewhere (setups hunt 83: a one-logit discriminator on
digits 0-9, whose argmax is always 0) ``Untold`` says why.

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
    >>> digits = Probe([0], pool.images[:1], torch.tensor([9]))  # one logit, labels to 9
    >>> try:
    ...     misclassified_probe(net[:1], digits, 1)
    ... except Untold as err:
    ...     print(str(err)[:69])
    the val labels run from 9 to 9 and the model gives 1 output per image
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lightning_cnnviz.core.inputs import to_model
from lightning_cnnviz.core.logits import class_logits
from lightning_cnnviz.core.outputs import logits_from
from lightning_cnnviz.core.probe import Probe, generator_for, probe_from_indices
from lightning_cnnviz.core.probe_pass import probe_mode

__all__ = ["Untold", "draw_pool", "find_misclassified", "misclassified_probe"]


class Untold(ValueError):
    """Right and wrong cannot be told: the pool's labels are no indices of the model's outputs."""


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
    in its parameter dtype; one host transfer at the end. Raises ``Untold`` where the
    ``labels`` index no output of the model (``core.logits.class_logits``).
    """
    outputs = []
    with probe_mode(model):
        for start in range(0, len(images), batch_size):
            xb = to_model(images[start : start + batch_size], model)
            # as the model gives them: ``class_logits`` reads one logit as two classes where
            # the labels are 0/1, and the words of ``Untold`` name the model's own width
            # (held-out hunt 126: "gives 2 outputs per image" of a one-logit head, -1/+1 labels)
            out = logits_from(model(xb), output_key, raw=True)
            outputs.append(out.reshape(-1, 1) if out.dim() < 2 else out)  # (N,): one logit
    if not outputs:
        return torch.zeros(0, dtype=torch.long)
    logits = torch.cat(outputs)
    read = class_logits(logits, labels)
    if read is None:
        raise Untold(_untold_text(logits, labels))
    return (read[0].argmax(1) != read[1]).nonzero()[:, 0].cpu()


def _untold_text(logits: Tensor, labels: Tensor) -> str:
    """Why right and wrong cannot be told on these labels, in words."""
    if labels.ndim != 1 or logits.dim() != 2:
        return (
            f"the val targets ({tuple(labels.shape[1:])} per item) are no one class per "
            f"image of the outputs {tuple(logits.shape[1:])}, so right and wrong cannot be told"
        )
    width = logits.shape[1]
    guess = " (a one-logit discriminator or binary head?)" if width == 1 else ""
    return (
        f"the val labels run from {int(labels.min())} to {int(labels.max())} and the model "
        f"gives {width} output{'' if width == 1 else 's'} per image{guess}: they are no "
        "indices of its outputs, so right and wrong cannot be told"
    )


def misclassified_probe(
    model: nn.Module, pool: Probe, count: int, output_key: str | int | None = None
) -> Probe | None:
    """The first ``count`` samples of ``pool`` that ``model`` gets wrong (``None``: no such one).

    ``None`` too for a pool without labels (nothing tells right from wrong); ``Untold``
    where its labels index no output (``find_misclassified``).
    """
    if pool.labels is None:
        return None
    found = find_misclassified(model, pool.images, pool.labels, output_key=output_key)
    found = found[:count].tolist()
    if not found:
        return None
    return Probe([pool.indices[i] for i in found], pool.images[found], pool.labels[found])
