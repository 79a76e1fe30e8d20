"""The shortcut rules' trackers, log by log: each a pure test on ``on_object`` values.

Nothing here knows about Lightning. ``shortcut.on_object_findings`` calls them at every
Grad-CAM log with the state dict it keeps (checkpointed by the monitor): a CAM that
fell off the object (``fell_off``), one lower on training images than on val
(``lower_on_train``, ``train_val_gap``, read on objects of one size: ``on_val_scale``),
one no more on the object than an even spread on both splits (``below_area``), and a
model still right with the object removed (``kept_without``).

Example::

    >>> state = {}
    >>> [train_val_gap(state, t, 0.3) for t in (0.12, 0.1)]
    [False, True]
"""

from __future__ import annotations

from typing import Any

from lightning_cnnviz.gradcam.gates import needs_object

__all__ = [
    "AREA_PATIENCE",
    "AREA_RATIO",
    "DROP_MARGIN",
    "DROP_PATIENCE",
    "DROP_RATIO",
    "GAP_MARGIN",
    "GAP_PATIENCE",
    "GAP_RATIO",
    "below_area",
    "fell_off",
    "kept_without",
    "lower_on_train",
    "on_val_scale",
    "train_val_gap",
]

# ``cam_off_object``: train on_object below 0.5x its first value (and 0.1 under it) or 0.2
# below its maximum, 2 logs in a row (hunt 27: a healthy U-Net-like net's CAM dipped
# 0.076 -> 0.025 for one log, a run's one standing problem)
DROP_RATIO, DROP_MARGIN, DROP_PATIENCE = 0.5, 0.2, 2
# ``cam_shortcut``: train on_object below val's by 0.1 and below 0.75x val's, 2 logs in a row.
GAP_MARGIN, GAP_RATIO, GAP_PATIENCE = 0.1, 0.75, 2
# ``cam_shortcut`` on both splits: on_object below 1.2x the object's area share, 2 logs in a row
# (healthy runs 1.6x and more, a cue on both splits 0.9-0.96x: see the module doc).
AREA_RATIO, AREA_PATIENCE = 1.2, 2


def fell_off(
    state: dict[str, Any], value: float, ratio: float = 0.5, margin: float = 0.2, patience: int = 1
) -> bool:
    """Track ``on_object`` over time; ``True`` when it has just stayed low ``patience`` logs.

    Low: below ``ratio`` x its first value and ``margin / 2`` under it (a ratio of small
    shares is noise), or more than ``margin`` below its running maximum. ``state``
    (``first``, ``max``, ``low``, ``low_run``) is updated in place; after a fall it
    reports again only once the value has recovered.

    Example::

        >>> state = {}
        >>> [fell_off(state, v) for v in (0.3, 0.5, 0.28, 0.25, 0.4, 0.1)]
        [False, False, True, False, False, True]
        >>> state = {}
        >>> [fell_off(state, v, patience=2) for v in (0.3, 0.5, 0.28, 0.4, 0.1, 0.12)]
        [False, False, False, False, False, True]
    """
    first = state["first"] = value if state.get("first") is None else state["first"]
    state["max"] = max(value, state.get("max") or value)
    low = (value < ratio * first and value < first - margin / 2) or value < state["max"] - margin
    state["low_run"] = state.get("low_run", 0) + 1 if low else 0
    state["low"] = low
    return state["low_run"] == patience


def lower_on_train(
    train: float, val: float, margin: float = GAP_MARGIN, ratio: float = GAP_RATIO
) -> bool:
    """Whether the CAM sits markedly lower on the object on training images than on val."""
    return train < val - margin and train < ratio * val


def on_val_scale(train: float, areas: tuple[float | None, float | None]) -> float:
    """Train ``on_object`` as it would read on objects of the val probe's size.

    ``train x val object_share / train object_share`` where both shares are known: a CAM
    spread alike puts more of its mass on a larger object, and the two probes' digits
    differ in size (0.134 vs 0.192 of the image: a healthy network-in-network CNN's
    diffuse CAM read 0.25 vs 0.41, 1.9x and 2.1x its object's share, and was called a
    shortcut on training images).

    Example::

        >>> round(on_val_scale(0.25, (0.134, 0.192)), 3), on_val_scale(0.25, (None, None))
        (0.358, 0.25)
    """
    area, val_area = areas
    return train * val_area / area if area and val_area else train


def train_val_gap(
    state: dict[str, Any],
    train: float,
    val: float,
    margin: float = 0.1,
    ratio: float = 0.75,
    patience: int = 2,
) -> bool:
    """Track train vs val ``on_object``; ``True`` when train has stayed markedly below val.

    Markedly below: ``train < val - margin`` and ``train < ratio * val``, at
    ``patience`` consecutive logs. ``state`` (``gap_run``) is updated in place;
    reports once per run of such logs.

    Example::

        >>> state = {}
        >>> pairs = [(0.3, 0.35), (0.1, 0.3), (0.15, 0.3), (0.12, 0.3), (0.3, 0.3), (0.1, 0.4)]
        >>> [train_val_gap(state, t, v) for t, v in [*pairs, (0.1, 0.4)]]
        [False, False, True, False, False, False, True]
    """
    low = lower_on_train(train, val, margin, ratio)
    state["gap_run"] = state.get("gap_run", 0) + 1 if low else 0
    return state["gap_run"] == patience


def below_area(
    state: dict[str, Any],
    values: tuple[float, float],
    areas: tuple[float, float],
    ratio: float = AREA_RATIO,
    patience: int = AREA_PATIENCE,
    needed: bool = False,
) -> bool:
    """Track (train, val) ``on_object``; ``True`` once both sit below their area share.

    Below: under ``ratio`` x the ``object_share`` of the split, at ``patience``
    consecutive logs, while the model does not need the object (``needed``:
    ``needs_object``). ``state`` (``area_run``) is updated in place; reports once per
    run of such logs.

    Example::

        >>> state = {}
        >>> [below_area(state, v, (0.2, 0.2)) for v in [(0.1, 0.3), (0.1, 0.15), (0.12, 0.16)]]
        [False, False, True]
    """
    low = all(v < ratio * a for v, a in zip(values, areas, strict=True)) and not needed
    state["area_run"] = state.get("area_run", 0) + 1 if low else 0
    return state["area_run"] == patience


def kept_without(
    state: dict[str, Any], right: float, classes: int, patience: int = AREA_PATIENCE
) -> bool:
    """Track ``right_without_object``; ``True`` once the model kept its class ``patience`` logs.

    Kept: not ``needs_object`` with 3 classes or more (two classes at 8 probe images are
    too coarse: a background read as one class is half of them right). ``state``
    (``kept_run``) is updated in place; reports once per run of such logs.

    Example::

        >>> state = {}
        >>> [kept_without(state, v, 10) for v in (0.125, 0.625, 0.625, 0.625)]
        [False, False, True, False]
        >>> kept_without({}, 1.0, 2, patience=1)
        False
    """
    kept = classes >= 3 and not needs_object(right, classes)
    state["kept_run"] = state.get("kept_run", 0) + 1 if kept else 0
    return state["kept_run"] == patience
