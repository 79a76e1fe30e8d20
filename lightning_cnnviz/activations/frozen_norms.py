"""BatchNorm layers held in eval mode from the start: they never normalise.

Nothing here knows about Lightning. A ``model.eval()`` before ``fit`` (Lightning keeps the
mode each module is in when ``fit`` starts), or ``.train(False)`` inside training (in
``training_step``, in ``on_train_epoch_start``), or a freeze meant for pretrained BatchNorm
applied to a model trained from scratch, leaves BatchNorm layers in eval mode with their
initial running statistics (mean 0, variance 1, never updated): they pass their input
through with only their affine scale, in training and in evaluation. Held out (hunt 14):
a BatchNorm CNN trained so ended at 40-49% val against 93-95% trained normally, and the
summary said "no problems found" (and "no BatchNorm layer in training mode"). Read at the
first log, while the model trains, in eval mode as a whole too (setups hunt 68).
Pretrained statistics frozen on purpose are not at their initial values: never named.

Example::

    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.BatchNorm2d(2))
    >>> _ = net[1].eval()
    >>> frozen_norms([("0", net[0]), ("1", net[1]), ("2", net[2])])
    ['1']
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_cnnviz.core.voice import listed

__all__ = ["frozen_norms", "frozen_norms_text"]


def frozen_norms(layers: Sequence[tuple[str, nn.Module]]) -> list[str]:
    """The BatchNorm layers in eval mode whose running statistics never moved (one host read)."""
    norms = [
        (name, m)
        for name, m in layers
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and not m.training
        and m.running_mean is not None
        and m.running_var is not None
    ]
    if not norms:
        return []
    unmoved = torch.stack(
        [
            (m.running_mean == 0).all() & (m.running_var == 1).all()  # type: ignore[operator]
            for _, m in norms
        ]
    ).tolist()
    return [name for (name, _), still in zip(norms, unmoved, strict=True) if still]


def frozen_norms_text(names: Sequence[str], step: int, epoch: int) -> str:
    """The ``frozen_batch_norm`` problem in words.

    Example::

        >>> frozen_norms_text(["bn1", "bn2"], 10, 0)[:60]
        'BatchNorm frozen at step 10 (epoch 0): `bn1`, `bn2` are in e'
    """
    shown = listed(names, 6)
    return (
        f"BatchNorm frozen at step {step} (epoch {epoch}): {shown} are in eval mode while "
        "the model trains and hold their initial statistics (running mean 0, variance 1, "
        "never updated): they do not normalise, in training or in evaluation. Usual causes: a "
        "`model.eval()` before `fit` (Lightning keeps the mode each module is in when `fit` "
        "starts) or inside training (`training_step`, `on_train_epoch_start`), or a freeze "
        "meant for pretrained BatchNorm on a model trained from scratch. Try: leave BatchNorm "
        "in training mode (`model.train()` before `fit`), or freeze it only after loading "
        "pretrained statistics."
    )
