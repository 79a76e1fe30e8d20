"""One output for every image: a model whose outputs no longer depend on its images.

Nothing here knows about Lightning. Where no chance level judges the outputs (no class
labels, or outputs that score something else than the labels' classes), outputs that no
longer vary from image to image have learnt nothing of the images, whatever the loss and
its units. Held out (hunt 101): a VAE at beta 200 (KL 0.000, every reconstruction the
same image), a triplet-loss embedding drawn to one point (mean distance 0.017 on the unit
sphere, the loss at its margin) and a sigmoid heatmap net whose output stayed constant for
its last quarter were told nothing. ``output_spread`` measures how much one val probe
pass varies across its images, against how much its targets do; ``same_output`` tells it
at ``patience`` evaluations in a row, the loss `training_step` returns no longer falling.

Example::

    >>> import torch
    >>> targets = torch.rand(8, 1, 4, 4)
    >>> f = output_spread(torch.full((8, 1, 4, 4), 0.3), targets)
    >>> f["probe_spread_val"], f["target_spread_val"] > 0.3
    (0.0, True)
    >>> def ev(step, loss):
    ...     return Evaluation(step, 0, returned_loss=loss, run_share=step / 400, **f)
    >>> same_output([ev(200, 72.4), ev(300, 72.3)]).severity
    'problem'
    >>> same_output([ev(200, 80.0), ev(300, 72.3)]) is None  # the loss still falls
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_cnnviz.overfitting.chance_levels import scores_elsewhere, wide
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.too_soon import stalled, stalled_streak
from lightning_cnnviz.overfitting.verdict import Verdict

__all__ = ["ALIKE", "CONSTANT", "UNIT_ROWS", "alike", "output_spread", "same_output"]

ALIKE = 0.01
"""Outputs varying across images by under this share of what their targets do give one
output for all, as values and against each one's size: logits beside targets in [0, 1],
an offset of 300 beside targets 300 +- 1 each misled one reading alone; a slow healthy
regression's read 2.7% at a third of its run (hunt 102)."""
UNIT_ROWS = 0.05
"""Embeddings on the unit sphere within this distance of their mean point: one point (a
healthy one spreads over much of the sphere, 0.5-1)."""
CONSTANT = 1e-5
"""Other outputs (no targets of their shape) varying by under this share of their size:
one output to float precision (an offset a metric loss ignores, + 50, dwarfs a healthy
spread: a triplet embedding at 96% 1-NN accuracy read 0.1% of its size, hunt 102)."""


def _spreads(x: Tensor) -> tuple[float, float]:
    """How much ``x`` varies across its first axis, and that over its size (root mean squares)."""
    x = x.flatten(1)
    size, spread = float(x.pow(2).mean().sqrt()), float(x.std(0).pow(2).mean().sqrt())
    return spread, spread / size if size > 0 else 0.0


def output_spread(outputs: Tensor, targets: Tensor | None) -> dict[str, float]:
    """How much one probe pass's outputs vary across its images (``{}``: not read).

    ``probe_spread_abs``: each output entry's standard deviation across the images, as a
    root mean square over the entries; ``probe_spread_val``: that over the outputs' own
    root mean square; for targets that are real values of the outputs' shape,
    ``target_spread_abs`` and ``target_spread_val``, theirs;
    for other (N, D) outputs, ``probe_unit_rows`` (1.0: every row of unit length, a
    normalised embedding, whose relative spread is its distance from its mean point).

    Example::

        >>> import torch
        >>> rows = torch.nn.functional.normalize(torch.ones(4, 8) + 0.001 * torch.randn(4, 8))
        >>> f = output_spread(rows, torch.arange(4))
        >>> f["probe_unit_rows"], f["probe_spread_val"] < UNIT_ROWS
        (1.0, True)
    """
    o = outputs.detach().float()  # (a segmentation probe's maps: no float64 copy of them)
    if len(o) < 2 or o.dim() < 2 or not bool(torch.isfinite(o).all()):
        return {}
    spread, relative = _spreads(o)
    found = {"probe_spread_val": relative, "probe_spread_abs": spread}
    if targets is not None and targets.shape == outputs.shape and targets.is_floating_point():
        spread, relative = _spreads(targets.to(o.device).float())
        found |= {"target_spread_val": relative, "target_spread_abs": spread}
    elif o.dim() == 2:
        unit = bool(((o.norm(dim=1) - 1).abs() < 1e-3).all())
        found["probe_unit_rows"] = float(unit)
    return found


def alike(e: Evaluation) -> bool | None:
    """Whether ``e``'s val probe outputs are one output for every image (``None``: not judged).

    Judged where no chance level reads them: no accuracy read from them (maps beside class
    labels: a VAE fed ``(image, label)`` batches, hunt 102), no class labels, or outputs at
    least twice as wide as the labels' classes or scoring something else (``chance_levels``).
    """
    spread = e.probe_spread_val
    read = e.probe_acc_val is not None and e.classes is not None
    if spread is None or (read and not wide(e) and not scores_elsewhere(e)):
        return None
    if e.target_spread_val is not None and e.target_spread_abs is not None:
        if not (e.target_spread_val > 0 and e.target_spread_abs > 0):
            return None  # targets all alike
        return (
            spread < ALIKE * e.target_spread_val
            and (e.probe_spread_abs or 0.0) < ALIKE * e.target_spread_abs
        )
    return spread < (UNIT_ROWS if e.probe_unit_rows else CONSTANT)


GROWING = 1.1  # outputs spreading this much more since the evaluation before: learning


def _spreading(before: Evaluation, now: Evaluation) -> bool:
    """Whether the outputs spread out more since ``before``: a slow start, not a collapse.

    A collapse holds or shrinks its spread (a VAE's 3.5e-4 -> 2.4e-4 of its size); a slow
    learner's grows (hunt 102: 0.026 -> 0.035 -> 0.054 of its targets' spread).
    """
    was, is_ = before.probe_spread_abs, now.probe_spread_abs
    return was is not None and is_ is not None and is_ > GROWING * was


def same_output(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """One output for every image at ``patience`` evaluations, learning stalled.

    Neither a loss falling (``too_soon.stalled_streak``) nor the outputs spreading out
    (``_spreading``). Figures: ``same_output``, ``spread``,
    ``target_spread``, ``spread_abs``, ``target_spread_abs``, ``unit_rows``,
    ``loss_before``, ``evaluations``.
    """
    found = stalled_streak(history, alike, patience)
    if found is None or _spreading(found[1], found[0][-1]):
        return None
    (evs, before, from_start), now = found, found[0][-1]
    figures = {
        "same_output": True,
        "from_start": from_start,
        "non_finite": False,
        "spread": now.probe_spread_val,
        "target_spread": now.target_spread_val,
        "spread_abs": now.probe_spread_abs,
        "target_spread_abs": now.target_spread_abs,
        "unit_rows": bool(now.probe_unit_rows),
        "loss_before": before.returned_loss,
        "evaluations": len(evs),
    }
    return stalled(evs[0], now, figures)
