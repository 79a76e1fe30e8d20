"""Real-valued targets: what a blind model scores, and a model that scores no better.

Nothing here knows about Lightning. A regression or an autoencoder has no chance level;
what predicting the same for every image scores on the val probe's targets stands in for
one (``blind_losses``: the MSE of their mean, the mean absolute error of their median).
A loss far under it has been learnt (``learnt``: ``flat_loss.not_moving`` leaves it
alone); predictions scoring about as much, their MSE not falling, are a model that has
learnt the targets' mean and not to read them from the images (``at_mean``).

Example::

    >>> def ev(step, own):  # an MSE logged as the val loss; the L1s alike
    ...     return Evaluation(step, 0, probe_mse_val=own, blind_mse=0.393, probe_l1_val=own,
    ...                       blind_l1=0.393, val_loss=own, run_share=step / 300)
    >>> at_mean([ev(150, 0.398), ev(200, 0.395)]).severity
    'problem'
    >>> at_mean([ev(150, 0.398), ev(200, 0.2)]) is None  # learning
    True
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.levels import _trailing
from lightning_cnnviz.overfitting.too_soon import fell, stalled, waits
from lightning_cnnviz.overfitting.verdict import Verdict
from lightning_cnnviz.overfitting.words import finite

__all__ = ["AT_MEAN", "LEARNT", "at_mean", "blind_losses", "learnt", "stuck_at_mean"]

LEARNT = 0.5
"""A loss under this share of what a blind model scores (``blind_losses``) has been learnt."""


def blind_losses(outputs: Tensor, targets: Tensor) -> dict[str, float] | None:
    """What predicting the same for every image would score on real-valued targets.

    The mean squared error of the targets' mean and the mean absolute error of their
    median, over the probe, and the outputs' own two (``None`` where the targets are no
    real values of the outputs' shape). A loss far under both is one the
    model has learnt, flat or not (hunt 79: a converged autoencoder fine-tuned at Adam
    1e-5, its MSE flat at 0.0078 against 0.067 for the mean image, was told "not
    learning").

    Example::

        >>> import torch
        >>> targets = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
        >>> blind_losses(torch.zeros(4, 1), targets)  # doctest: +NORMALIZE_WHITESPACE
        {'blind_mse': 1.25, 'blind_l1': 1.0, 'probe_mse_val': 3.5, 'probe_l1_val': 1.5,
         'probe_in_units': 0.0}
    """
    if targets.shape != outputs.shape or not targets.is_floating_point() or len(targets) < 2:
        return None
    t = targets.to(outputs.device).double().flatten(1)
    mse = (t - t.mean(0)).pow(2).mean()
    l1 = (t - t.median(0).values).abs().mean()
    o = outputs.double().flatten(1)
    miss = o - t
    own_mse, own_l1 = miss.pow(2).mean(), miss.abs().mean()
    return {"blind_mse": float(mse), "blind_l1": float(l1),
            "probe_mse_val": float(own_mse), "probe_l1_val": float(own_l1),
            "probe_in_units": float(_in_units(o, t))}  # fmt: skip


def _in_units(outputs: Tensor, targets: Tensor) -> bool:
    """Whether outputs sit where the targets do: their mean within half the targets' spread.

    And their spread at most ``UNITS`` times the targets'.

    Logits under BCE sit far off targets in [0, 1] (a digit's pixels' logits near -4 against
    a mean of 0.13); outputs in the targets' units, however the loss scales them, do not.
    """
    spread = float(targets.std())
    if not spread > 0:
        return False
    near = abs(float(outputs.mean()) - float(targets.mean())) <= 0.5 * spread
    return near and float(outputs.std()) <= UNITS * spread


def learnt(e: Evaluation) -> bool:
    """Whether the loss returned is under ``LEARNT`` of both blind losses (``blind_losses``)."""
    blind = [b for b in (e.blind_mse, e.blind_l1) if b is not None and finite(b)]
    loss = e.returned_loss
    return bool(blind) and loss is not None and finite(loss) and loss < LEARNT * min(blind)


AT_MEAN = 0.99
"""Predictions whose MSE is at least this share of the targets' mean's explain nothing (a
noisy target's healthy fit explained 3.4% of its variance at step 100: hunt 79)."""
FALLING = 0.05  # ... unless it fell this share since the evaluation before: learning


TRAINED = 0.9  # a training loss under this share of the mean's: the training images fitted
UNITS = 2.0
"""The run's own loss within this factor of the outputs' MSE or L1 against the targets:
the outputs are in the targets' units (not logits under BCE, not standardised targets)."""


def stuck_at_mean(e: Evaluation) -> bool | None:
    """Whether ``e``'s val probe predictions score no better than the targets' mean and median.

    ``None`` where not comparable: the figures missing, or the loss the run logs (its val
    loss, else the one `training_step` returns) not within ``UNITS`` of the outputs' own
    MSE or L1 against the targets: outputs in other units (held out, hunt 87: logits under
    BCE against targets in [0, 1]; targets standardised in `training_step`) read as
    predictions far worse than the mean; unless the outputs sit where the targets do
    (``probe_in_units``): a loss scaled (hunt 101: heatmap MSE x 100 on images that do not
    show the keypoints, val 1.19-1.40 against the mean's 0.94 x 100, untold). Both the MSE
    (the mean's) and the L1 (the median's) must be no better: an L1 fit of skewed targets
    learns their median, its MSE above the mean's.
    """
    own = [e.probe_mse_val, e.probe_l1_val]
    blind = [e.blind_mse, e.blind_l1]
    if any(v is None or not finite(v) for v in own + blind) or min(blind) <= 0:  # type: ignore[operator, arg-type]
        return None
    if not _in_targets_units(e, own):  # type: ignore[arg-type]
        return None
    return all(o >= AT_MEAN * b for o, b in zip(own, blind, strict=True))  # type: ignore[operator]


def _in_targets_units(e: Evaluation, own: list[float]) -> bool:
    """Whether ``e``'s outputs are in the targets' units, read from the outputs themselves.

    Where measured (``probe_in_units``); else by the loss the run logs (its val loss, else
    the one `training_step` returns), within ``UNITS`` of the outputs' own MSE or L1. The
    outputs first: a BCE-with-logits autoencoder's loss (0.52) fell within 2x of its logits'
    MSE (0.92) by chance, and its learning was told "not even the targets' mean" (hunt 102).
    """
    if e.probe_in_units is not None:
        return bool(e.probe_in_units)
    loss = e.val_loss if e.val_loss is not None and finite(e.val_loss) else e.returned_loss
    if loss is None or not finite(loss) or loss <= 0:
        return False
    return any(1 / UNITS <= loss / o <= UNITS for o in own if o > 0)


def _fits_training(e: Evaluation) -> bool:
    """Whether the training loss sits well under what the mean scores, in its own units.

    Predictions no better than the mean on validation images while the training images'
    are fitted: noise learnt, not nothing (hunt 87: a noisy-target regression, R^2 at
    most 8%, its val MSE 1.256 past the mean's 1.135 at step 350).
    """
    loss, pair = e.returned_loss, e.blind_pair
    if loss is None or not finite(loss) or pair is None:
        return False
    blind, own = pair
    scale = e.val_loss / own  # type: ignore[operator]
    if 1 / UNITS <= scale <= UNITS:
        scale = 1.0  # the loss in the targets' units; else a loss scaled (x 100) read as such
    return loss < TRAINED * blind * scale  # type: ignore[operator]


def at_mean(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """Predictions at the targets' mean at ``patience`` evaluations, their MSE not falling.

    Held out (hunt 86): a regression net that never saw its images (inputs x 0) sat at a
    val MSE of 0.394-0.398 for 300 steps, the targets' variance 0.393, its weights moving
    normally: nothing was told (``flat_loss.not_moving`` wants tiny updates). Figures:
    ``at_mean``, ``own_mse``, ``blind_mse``, ``evaluations``.
    """
    judged, streak = _trailing(history, stuck_at_mean)
    if streak < patience:
        return None
    evs = judged[-streak:]
    # over two intervals: a slow learner coming down to the mean's level from above falls
    # under 5% a validation (hunt 101: a U-Net, 0.0698 -> 0.0442 over 10, told at the mean)
    before, now = evs[-min(3, len(evs))], evs[-1]
    falling = fell(before.probe_mse_val, now.probe_mse_val) or 0.0
    if falling >= FALLING or waits(evs) or _fits_training(now):
        return None
    figures = {
        "at_mean": True,
        "from_start": streak == len(judged),
        "non_finite": False,
        "own_mse": now.probe_mse_val,
        "blind_mse": now.blind_mse,
        "evaluations": streak,
    }
    return stalled(_plateau(evs), now, figures)


def _plateau(evs: Sequence[Evaluation]) -> Evaluation:
    """The first of ``evs`` from which the val probe's MSE no longer fell ``FALLING`` a step.

    The onset: a model coming down to the mean's level scores no better than it on the
    way (hunt 102: a heatmap net collapsing to zero, 5x the mean's MSE and falling fast at
    its first validation, was "not learning since" then, its plateau two validations on).

    Example::

        >>> evs = [Evaluation(s, 0, probe_mse_val=v) for s, v in ((32, 0.033), (64, 0.0072),
        ...                                                      (96, 0.0071), (128, 0.0070))]
        >>> _plateau(evs).step
        64
    """
    start = len(evs) - 1
    while start and (fell(evs[start - 1].probe_mse_val, evs[start].probe_mse_val) or 0) < FALLING:
        start -= 1
    return evs[start]
