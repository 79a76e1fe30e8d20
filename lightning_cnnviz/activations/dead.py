"""Dead units over time: the dead-strip history and the alerts.

A dead unit is active on no entry of a log's window (``stats``). ``DeadHistory``
keeps, per call site, a strip of per-channel active shares (one column per log,
``strip_column`` / ``strip_append``) and the dead fractions of the last log, from
which ``dead_alerts`` says when units died; whether they hurt is
``dead_rules.py``'s, the words ``dead_words.py``'s.

Example::

    >>> dead_alerts({"relu1": 0.5, "relu2": 0.0}, previous={}, threshold=0.25)
    [('relu1', 0.5, None)]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["DeadHistory", "dead_alerts", "strip_append", "strip_column"]


def strip_column(active_share: Tensor, max_rows: int = 256) -> Tensor:
    """One dead-strip column: per-channel active share as uint8, at most ``max_rows`` rows.

    Wider layers are shown in groups of consecutive channels (mean share per group).
    A channel that is active at all gets at least 1, so only dead channels are 0.

    Example::

        >>> strip_column(torch.tensor([0.0, 1.0, 0.001])).tolist()
        [0, 255, 1]
    """
    share = active_share.detach().float().cpu()
    if share.numel() > max_rows:
        share = share.clamp(0, 1).nan_to_num(0.0)
        group = -(-share.numel() // max_rows)
        rows = -(-share.numel() // group)
        pad = group * rows - share.numel()
        share = torch.cat([share, share.new_full((pad,), float("nan"))]).view(rows, group)
        share = share.nanmean(dim=1)
    # at most max_rows values: plain Python beats a dozen tiny tensor ops (NaN -> 0)
    column = [max(1, round(min(v, 1.0) * 255)) if v > 0 else 0 for v in share.tolist()]
    return torch.tensor(column, dtype=torch.uint8)


def strip_append(history: Tensor | None, column: Tensor, max_columns: int = 256) -> Tensor:
    """Append a column to a ``(rows, time)`` uint8 history, keeping the last ``max_columns``.

    A column of a different height (the layer changed) restarts the history.

    Example::

        >>> h = strip_append(None, torch.tensor([0, 255], dtype=torch.uint8))
        >>> strip_append(h, torch.tensor([9, 9], dtype=torch.uint8), max_columns=1).tolist()
        [[9], [9]]
    """
    column = column.reshape(-1, 1)
    if history is None or history.shape[0] != column.shape[0]:
        return column.clone()
    return torch.cat([history, column], dim=1)[:, -max_columns:]


def dead_alerts(
    fractions: Mapping[str, float],
    previous: Mapping[str, float],
    threshold: float,
    rise: float = 0.1,
) -> list[tuple[str, float, float | None]]:
    """Sites whose dead fraction crossed ``threshold`` or rose by over ``rise`` since the last log.

    Example::

        >>> dead_alerts({"a": 0.3, "b": 0.2, "c": 0.3}, {"b": 0.05, "c": 0.28}, 0.25)
        [('a', 0.3, None), ('b', 0.2, 0.05)]
    """
    alerts = []
    for site, fraction in fractions.items():
        before = previous.get(site)
        crossed = fraction >= threshold and (before is None or before < threshold)
        if crossed or (before is not None and fraction - before > rise):
            alerts.append((site, fraction, before))
    return alerts


class DeadHistory:
    """What persists across logs: the dead-strip history and the last dead fractions per site.

    Args:
        threshold: dead fraction whose crossing is an alert.
        strip_length: columns (logs) kept per strip.
        rise: a rise of the dead fraction above this since the last log is an alert.

    Example::

        >>> from lightning_cnnviz.activations.stats import ActivationStats
        >>> stats = ActivationStats(channels=2)
        >>> stats.update(torch.tensor([[0.0, 1.0], [0.0, 2.0]]))  # unit 0 never active
        >>> history = DeadHistory(threshold=0.25)
        >>> history.update({"relu": stats.compute(tau=0.025)})
        [('relu', 0.5, None)]
        >>> history.strips["relu"].tolist(), history.dead
        ([[0], [255]], {'relu': [0]})
    """

    def __init__(self, threshold: float, strip_length: int = 128, rise: float = 0.1) -> None:
        self.threshold, self.strip_length, self.rise = threshold, strip_length, rise
        self.strips: dict[str, Tensor] = {}
        self.previous: dict[str, float] = {}
        self.dead: dict[str, list[int]] = {}  # dead channels per site at the last log

    def update(
        self,
        figures: Mapping[str, Mapping[str, Tensor]],
        kinds: Mapping[str, str | None] | None = None,
    ) -> list[tuple[str, float, float | None]]:
        """Take one log's figures per site (host tensors); return the ``dead_alerts``.

        ``kinds`` (``SiteInfo.kind`` per site): ``"leaky"`` sites are measured by their
        dormant share (they cannot die), ``"saturating"`` ones not at all (the gradient
        rules read their saturation), nor ``"linear"`` ones (no activation reads them);
        the rest by their dead share.
        """
        fractions = {}
        for site, f in figures.items():
            column = strip_column(f["active_share"])
            self.strips[site] = strip_append(self.strips.get(site), column, self.strip_length)
            self.dead[site] = f["dead"].nonzero().flatten().tolist()
            kind = (kinds or {}).get(site, "rectifier")
            if kind in ("saturating", "linear"):
                continue
            fractions[site] = float(f["dormant_fraction" if kind == "leaky" else "dead_fraction"])
        alerts = dead_alerts(fractions, self.previous, self.threshold, self.rise)
        self.previous.update(fractions)
        return alerts

    def state_dict(self) -> dict[str, Any]:
        """Strips (uint8 tensors), last fractions and dead channels, for a checkpoint."""
        return {
            "strips": {k: v.clone() for k, v in self.strips.items()},
            "previous": dict(self.previous),
            "dead": {k: list(v) for k, v in self.dead.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.strips = {k: v.clone() for k, v in state.get("strips", {}).items()}
        self.previous = dict(state.get("previous", {}))
        self.dead = {k: list(v) for k, v in state.get("dead", {}).items()}
