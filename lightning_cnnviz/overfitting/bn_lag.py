"""How long a BatchNorm lag lasts: waiting closes it, or it is one that lasts.

Nothing here knows about Lightning. The running statistics trail weights that move fast
in a run's first half (``settling``) and catch up; a lag the momentum keeps (``init_held``,
a momentum of at most ``SMALL_MOMENTUM``), statistics frozen (a momentum of 0) or as
initialised in every training layer (``norm_states``: a reset) lasts (``lags_long``), and
``bn_levels.bn_mismatch`` tells it at once.

Example::

    >>> lags_long(Evaluation(250, 1, bn_momentum=0.01)), settling(Evaluation(50, 0, run_share=0.2))
    (True, True)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.too_soon import START_STEPS

__all__ = [
    "FADE_STEPS",
    "INIT_HELD",
    "SETTLING",
    "SMALL_MOMENTUM",
    "frozen",
    "init_held",
    "lags_long",
    "norm_states",
    "settling",
]


SETTLING = 0.5
"""The share of a planned run in which a lag of the running statistics is a note at first."""


def settling(e: Evaluation) -> bool:
    """Whether ``e`` is in the run's first half (unknown length: ``2 * START_STEPS`` steps).

    There weights that move fast leave the running statistics behind, and they catch up:
    held out (hunt 83), 7 of 10 healthy BatchNorm runs (SGD with momentum, Adam, OneCycle,
    warm restarts) read eval mode 15-40 points below batch statistics for two or three
    validations within their first half, level after. A lag that lasts into the second
    half, or to the end of fit, hurts the model fit hands back.

    Example::

        >>> settling(Evaluation(150, 1, run_share=0.3)), settling(Evaluation(94, 1, run_share=0.67))
        (True, False)
    """
    if e.run_share is not None:
        return e.run_share < SETTLING
    return e.step < 2 * START_STEPS


INIT_HELD = 0.1
"""The share of their initial values the running statistics still hold, ``(1 - momentum) **
steps``, past which the lag is the momentum's: it lasts about ``1 / momentum`` steps more."""


def init_held(e: Evaluation) -> bool:
    """Whether BatchNorm's running statistics still hold ``INIT_HELD`` of their initial values.

    Read from the smallest ``momentum`` of the model's BatchNorm layers (``bn_momentum``;
    ``None``: a cumulative average, or not known) and the steps so far (one update a
    step at least: more under gradient accumulation, so this errs towards waiting).

    Example::

        >>> [init_held(Evaluation(step, 1, bn_momentum=m)) for step, m in ((94, 0.01), (32, 0.1))]
        [True, False]
    """
    m = e.bn_momentum
    return m is not None and 0 <= m < 1 and (1 - m) ** e.step >= INIT_HELD  # 0: never updated


SMALL_MOMENTUM = 0.01
"""A BatchNorm momentum this small (TF and Keras ports, MobileNetV3) averages over hundreds
of steps: a lag of the running statistics lasts as long, and waiting does not see it close."""


FADE_STEPS = 100
"""Steps the initial values take to fade to ``INIT_HELD`` past which ``init_held`` is a long lag."""


def lags_long(e: Evaluation) -> bool:
    """Whether the running statistics' lag is the momentum's, which waiting will not close.

    ``init_held`` at a momentum whose initial values take ``FADE_STEPS`` or more to fade,
    or a momentum of at most ``SMALL_MOMENTUM`` (hunt 49: MobileNetV3, eval mode at chance
    at steps 125, 250, 375, batch statistics at 90%, told at 375). At the default 0.1 the
    initial values are gone within 22 steps: a lag read then is the run's first moves
    (hunt 90: validated every 6 steps, a healthy BatchNorm CNN and a timm resnet10t were
    warned a problem at step 13, level later).

    Example::

        >>> lags_long(Evaluation(250, 1, bn_momentum=0.01)), lags_long(Evaluation(250, 1))
        (True, False)
        >>> [lags_long(Evaluation(13, 1, bn_momentum=m)) for m in (0.1, 0.02)]
        [False, True]
    """
    m = e.bn_momentum
    slow = m is not None and 0 < m < 1 and math.log(INIT_HELD) / math.log(1 - m) >= FADE_STEPS
    held = init_held(e) and slow
    return held or (m is not None and 0 < m <= SMALL_MOMENTUM) or bool(e.bn_initial)


def frozen(e: Evaluation) -> bool:
    """Whether the running statistics cannot move: a lag nothing will close.

    As initialised in every training layer (``norm_states``), or their momentum read as 0
    (``track_running_stats`` turned off).

    Example::

        >>> frozen(Evaluation(200, 2, bn_momentum=0.0)), frozen(Evaluation(200, 2, bn_momentum=0.1))
        (True, False)
    """
    return bool(e.bn_initial) or e.bn_momentum == 0


def norm_states(model: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """BatchNorm layers whose running statistics hold NaN/Inf, and training ones at their start.

    The second: the layers in training mode where every one's running mean is all 0 and
    variance all 1, as initialised (reset, or never updated: a lag no waiting closes; hunt
    85, a callback calling `reset_running_stats()` before each validation was told at half
    the run). One host read for both.

    Example::

        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.BatchNorm2d(2))
        >>> norm_states(net)
        ((), ('1', '2'))
        >>> net[1].running_var[0] = float("nan")
        >>> norm_states(net)  # one not at its start: no reset
        (('1',), ())
    """
    norms = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._NormBase)
        and m.running_var is not None
        and m.running_mean is not None
    ]
    if not norms:
        return (), ()
    kept = [torch.stack([torch.isfinite(m.running_var).all() & torch.isfinite(m.running_mean).all(),
                         (m.running_mean == 0).all() & (m.running_var == 1).all()])
            for _, m in norms]  # fmt: skip
    read = torch.stack(kept).tolist()
    nonfinite = tuple(name for (name, _), (ok, _) in zip(norms, read, strict=True) if not ok)
    training = [(name, start) for (name, m), (_, start) in zip(norms, read, strict=True)
                if m.training]  # fmt: skip
    # every one at its start (a reset): one unused layer alone is no lag
    initial = tuple(name for name, _ in training) if all(s for _, s in training) else ()
    return nonfinite, initial
