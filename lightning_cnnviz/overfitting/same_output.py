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
from lightning_cnnviz.overfitting.levels import _trailing
from lightning_cnnviz.overfitting.too_soon import fell, stalled, waits
from lightning_cnnviz.overfitting.verdict import Verdict

__all__ = ["ALIKE", "CONSTANT", "FALLING", "UNIT_ROWS", "alike", "output_spread", "same_output"]

ALIKE = 0.05
"""Outputs varying across images by under this share of what their targets do (each
measured against its own size, so the units do not matter) give one output for all."""
UNIT_ROWS = 0.05
"""Embeddings on the unit sphere within this distance of their mean point: one point (a
healthy one spreads over much of the sphere, 0.5-1)."""
CONSTANT = 1e-3
"""Other outputs (no targets of their shape) varying by under this share of their size:
one output (an offset a metric loss ignores may dwarf a healthy spread of a few percent)."""
FALLING = 0.05  # the loss returned fell this share since the evaluation before: learning


def _relative_spread(x: Tensor) -> float:
    """How much ``x`` varies across its first axis, over its size (both root mean squares)."""
    x = x.flatten(1)
    size = float(x.pow(2).mean().sqrt())
    return float(x.std(0).pow(2).mean().sqrt()) / size if size > 0 else 0.0


def output_spread(outputs: Tensor, targets: Tensor | None) -> dict[str, float]:
    """How much one probe pass's outputs vary across its images (``{}``: not read).

    ``probe_spread_val``: each output entry's standard deviation across the images, as a
    root mean square over the entries, over the outputs' own root mean square; for
    targets that are real values of the outputs' shape, ``target_spread_val``, theirs;
    for other (N, D) outputs, ``probe_unit_rows`` (1.0: every row of unit length, a
    normalised embedding, whose relative spread is its distance from its mean point).

    Example::

        >>> import torch
        >>> rows = torch.nn.functional.normalize(torch.ones(4, 8) + 0.001 * torch.randn(4, 8))
        >>> f = output_spread(rows, torch.arange(4))
        >>> f["probe_unit_rows"], f["probe_spread_val"] < UNIT_ROWS
        (1.0, True)
    """
    o = outputs.detach().double()
    if len(o) < 2 or o.dim() < 2 or not bool(torch.isfinite(o).all()):
        return {}
    found = {"probe_spread_val": _relative_spread(o)}
    if targets is not None and targets.shape == outputs.shape and targets.is_floating_point():
        found["target_spread_val"] = _relative_spread(targets.to(o.device).double())
    elif o.dim() == 2:
        unit = bool(((o.norm(dim=1) - 1).abs() < 1e-3).all())
        found["probe_unit_rows"] = float(unit)
    return found


def alike(e: Evaluation) -> bool | None:
    """Whether ``e``'s val probe outputs are one output for every image (``None``: not judged).

    Judged where no chance level reads them: no class labels, or outputs at least twice
    as wide as the labels' classes or scoring something else (``chance_levels``).
    """
    spread = e.probe_spread_val
    if spread is None or not (e.classes is None or wide(e) or scores_elsewhere(e)):
        return None
    if e.target_spread_val is not None:
        return spread < ALIKE * e.target_spread_val if e.target_spread_val > 0 else None
    return spread < (UNIT_ROWS if e.probe_unit_rows else CONSTANT)


def same_output(history: Sequence[Evaluation], patience: int = 2) -> Verdict | None:
    """One output for every image at ``patience`` evaluations, the loss returned not falling.

    Figures: ``same_output``, ``spread``, ``target_spread``, ``unit_rows``,
    ``loss_before``, ``evaluations``.
    """
    judged, streak = _trailing(history, alike)
    if streak < patience:
        return None
    evs = judged[-streak:]
    before, now = evs[-2], evs[-1]
    if (fell(before.returned_loss, now.returned_loss) or 0.0) >= FALLING or waits(evs):
        return None
    figures = {
        "same_output": True,
        "from_start": streak == len(judged),
        "non_finite": False,
        "spread": now.probe_spread_val,
        "target_spread": now.target_spread_val,
        "unit_rows": bool(now.probe_unit_rows),
        "loss_before": before.returned_loss,
        "evaluations": streak,
    }
    return stalled(evs[0], now, figures)
