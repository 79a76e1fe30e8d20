"""The model's outputs with BatchNorm on batch statistics, its running buffers untouched.

Nothing here knows about Lightning. In eval mode BatchNorm normalises with its
running statistics; in training it uses each batch's. When the two part (running
statistics lagging behind fast-changing weights), eval-mode accuracy falls while
training looks fine. ``batch_stats_logits`` runs a probe with the BatchNorm layers
that train in training mode, everything else as the caller set it (eval: dropout
off), through ``torch.func.functional_call`` on *copies* of their buffers: the
running statistics and ``num_batches_tracked`` the model trains with are never
written.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    >>> before = net[1].running_mean.clone()
    >>> out = batch_stats_logits(net, [net[1]], torch.randn(8, 3) * 5 + 2)
    >>> torch.equal(net[1].running_mean, before), int(net[1].num_batches_tracked), net[1].training
    (True, 0, False)
    >>> bool(out.mean(0).abs().max() < 1e-5)  # normalised by the batch's own statistics
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["batch_norms", "batch_stats_logits"]


def batch_norms(model: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers of ``model`` that train (training flag set, running statistics).

    By their buffers, not ``track_running_stats``: eval mode normalises with the running
    statistics wherever they exist, and a layer whose flag is turned off mid-run keeps them,
    frozen (hunt 85: eval mode at 12-44% against 77-96% on batch statistics, the check
    blind, told as a gap, overfitting and rare classes). An ``InstanceNorm`` keeping running
    statistics parts train and eval mode alike (setups hunt 78: 28% against 76%, told as
    an auxiliary head never trained).

    Example::

        >>> frozen = nn.BatchNorm2d(2)
        >>> frozen.track_running_stats = False  # off after construction: the buffers stay
        >>> len(batch_norms(nn.Sequential(frozen))), len(batch_norms(
        ...     nn.Sequential(nn.BatchNorm2d(2, track_running_stats=False))))
        (1, 0)
    """
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._NormBase)
        and m.training
        and m.running_mean is not None
        and m.running_var is not None
    ]


def no_batch_norm_why(model: nn.Module) -> str:
    """Why ``model`` has no ``batch_norms``, in words (the BatchNorm check's "did not run").

    Example::

        >>> no_batch_norm_why(nn.Sequential(nn.BatchNorm2d(2, track_running_stats=False)))
        'its BatchNorm layers keep no running statistics (`track_running_stats=False`)'
        >>> no_batch_norm_why(nn.Sequential(nn.BatchNorm2d(2)).eval())
        'its BatchNorm layers are in eval mode during training: their statistics never move'
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    kept = any(m.running_mean is not None for m in norms)  # an InstanceNorm's, where kept
    if not kept and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in norms):
        return "no BatchNorm layer"
    if not kept:
        return "its BatchNorm layers keep no running statistics (`track_running_stats=False`)"
    return "its BatchNorm layers are in eval mode during training: their statistics never move"


def batch_stats_logits(
    model: nn.Module,
    norms: Sequence[nn.Module],
    x: Tensor,
    chunk: int = 128,
    output: Callable[[object], Tensor] = lambda out: out,  # type: ignore[assignment,return-value]
) -> Tensor:
    """``model(x)`` (in chunks) with ``norms`` on batch statistics; flags restored after.

    The caller has put the model in eval mode (and no-grad); ``norms`` are switched to
    training mode for the call only and their buffers are replaced by copies.
    """
    wanted = {id(m) for m in norms}
    copies = {
        f"{name}.{buffer_name}" if name else buffer_name: buffer.clone()
        for name, module in model.named_modules()
        if id(module) in wanted
        for buffer_name, buffer in module.named_buffers(recurse=False)
    }
    flags = [(m, m.training) for m in norms]
    try:
        for m in norms:
            m.training = True
        outs = [output(functional_call(model, copies, (c,))).float() for c in x.split(chunk)]
    finally:
        for m, flag in flags:
            m.training = flag
    return torch.cat(outs)
