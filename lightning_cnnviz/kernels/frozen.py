"""Layers whose weights never change: frozen, left out of the optimiser, or cut off.

Nothing here knows about Lightning. ``KernelMonitor`` hands each event's
``relative_change`` per layer to ``still_layers``; a layer whose weights were exactly
the same at ``STILL_EVENTS`` events in a row is not being trained, which ``frozen_text``
says as a note (a frozen backbone is often deliberate; a forgotten ``requires_grad=False``
or a parameter group left out of the optimiser is a bug the loss alone hides: the head
still learns). Measured (user-side hunt): a CNN whose conv layers were frozen by mistake
reached 66% val accuracy (94% trained) and nothing was said, while every conv layer's
``relative_change`` read exactly 0 at every log.

Example::

    >>> counts = {}
    >>> [still_layers(counts, {"conv1": 0.0, "fc": 0.02}) for _ in range(3)]
    [[], ['conv1'], []]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["STILL_EVENTS", "frozen_text", "still_layers"]

STILL_EVENTS = 2  # events in a row without any change: one could be a learning rate at 0


def still_layers(counts: dict[str, int], changes: Mapping[str, float]) -> list[str]:
    """The layers that just reached ``STILL_EVENTS`` events in a row without change.

    ``counts`` (events in a row without change, per layer) is updated in place; a layer
    that moves starts again from 0.
    """
    reached = []
    for name, change in changes.items():
        counts[name] = counts.get(name, 0) + 1 if change == 0.0 else 0
        if counts[name] == STILL_EVENTS:
            reached.append(name)
    return reached


def frozen_text(
    names: Sequence[str], no_grad: Sequence[str], watched: int, since: int, step: int, epoch: int
) -> str:
    """The note for ``names`` (of ``watched`` layers) unchanged since step ``since``.

    ``no_grad``: those of them whose weight has ``requires_grad=False``.

    Example::

        >>> frozen_text(["conv1", "conv2"], ["conv1", "conv2"], 3, 20, 60, 1)[:60]
        'Frozen layers at step 60 (epoch 1): 2 of 3 watched layers ha'
    """
    shown = ", ".join(f"`{n}`" for n in names[:8]) + (
        f" and {len(names) - 8} more" if len(names) > 8 else ""
    )
    if len(no_grad) == len(names):
        why = "their weights have `requires_grad=False`"
    elif no_grad:
        why = (f"{len(no_grad)} of them have `requires_grad=False`; the others get no update "
               "(left out of the optimiser's parameter groups, a learning rate of 0, or no "
               "gradient reaching them)")  # fmt: skip
    else:
        why = ("they get no update: left out of the optimiser's parameter groups, a learning "
               "rate of 0, or no gradient reaching them (units dead before them)")  # fmt: skip
    return (
        f"Frozen layers at step {step} (epoch {epoch}): {len(names)} of {watched} watched "
        f"layers have not changed at all since step {since}: {shown}; {why}. A note: right "
        "when you freeze a backbone on purpose; if not, set `requires_grad=True` and pass "
        "their parameters to the optimiser in `configure_optimizers`."
    )
