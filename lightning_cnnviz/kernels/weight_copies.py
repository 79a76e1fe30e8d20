"""What KernelMonitor keeps of each layer's weight between events, to tell how far it moved.

Nothing here knows about Lightning. A float32 copy of each weight the optimiser moves, made
at one event and compared at the next (``figures.relative_change``), the buffer reused.
Weights that take no gradient are copied too, up to ``FROZEN_KEPT`` elements in all: a
mean teacher written through ``.data`` moves no version counter (setups hunt 75: its 22%
read as 0, "frozen ... untrained"). Beyond that they are followed by their version counter
and storage instead: while neither moves one is where it was (its change 0, exactly), with
no copy of its size kept (setups hunt 55: a frozen backbone of 288 MB had KernelMonitor
alone add 1.2 GB to peak memory); one seen written (an EMA's copy, updated in place) is
copied from then on. There only, a write through ``.data`` reads as no change.

Example::

    >>> w = torch.ones(2, 2)
    >>> copies = WeightCopies()
    >>> copies.follow("w", w, frozen=True), copies.change("w", w)  # nothing to compare yet
    (False, None)
    >>> copies.keep("w", w, frozen=True)
    >>> _ = w.data.mul_(2)  # no version counter moves
    >>> still = copies.follow("w", w, frozen=True)
    >>> still, float(copies.change("w", w, still)), "w" in copies.copies  # small: compared
    (False, 1.0, True)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_cnnviz.kernels import figures

__all__ = ["FROZEN_KEPT", "WeightCopies"]

FROZEN_KEPT = 1 << 24
"""Elements of weights that take no gradient copied all the same, in all: a layer unfrozen
later (a backbone fine-tuned after its head) is measured from its first step on."""


def _mark(weight: Tensor) -> tuple[int, int]:
    """What an in-place write or a new storage moves."""
    return weight._version, weight.data_ptr()


class WeightCopies:
    """Each layer's weight as at the last event, where it can have moved since."""

    def __init__(self) -> None:
        self.copies: dict[str, Tensor] = {}
        self.moving: set[str] = set()  # weights taking no gradient seen written
        self._marks: dict[str, tuple[int, int]] = {}
        self._frozen_kept: set[str] = set()  # frozen weights copied all the same (``FROZEN_KEPT``)

    def follow(self, name: str, learnt: Tensor, frozen: bool) -> bool:
        """Whether ``learnt`` is ``frozen``, not copied and unwritten since the last event."""
        if not frozen:
            return False
        mark, last = _mark(learnt), self._marks.get(name)
        self._marks[name] = mark
        if last is not None and last != mark:
            self.moving.add(name)
        return last is not None and name not in self.moving and name not in self.copies

    def change(self, name: str, learnt: Tensor, still: bool = False) -> Tensor | None:
        """``learnt``'s relative change since the last event (``None``: nothing to compare).

        ``still``: ``follow``'s answer this event (0, with no copy to compare).
        """
        if still:
            return torch.zeros((), device=learnt.device)
        previous = self.copies.get(name)
        if previous is None or previous.shape != learnt.shape:
            return None
        self.copies[name] = previous = previous.to(learnt.device)
        return figures.relative_change(learnt, previous)

    def keep(self, name: str, learnt: Tensor, frozen: bool) -> None:
        """Copy ``learnt`` for the next event; a ``frozen`` one within ``FROZEN_KEPT`` only."""
        kept = self.copies.get(name)
        if frozen and name not in self.moving:
            others = (self.copies[n].numel() for n in self._frozen_kept - {name})
            if sum(others) + learnt.numel() > FROZEN_KEPT:
                self.copies.pop(name, None)
                self._frozen_kept.discard(name)
                return
            self._frozen_kept.add(name)
        else:
            self._frozen_kept.discard(name)
        if kept is not None and kept.shape == learnt.shape and kept.device == learnt.device:
            kept.copy_(learnt)  # reuse the buffer: no allocation of the model's size
        else:
            self.copies[name] = learnt.to(torch.float32, copy=True)

    def state_dict(self) -> dict[str, Any]:
        """Copies on the CPU (the buffers are updated in place at the next event)."""
        return {"previous": {k: v.to("cpu", copy=True) for k, v in self.copies.items()},
                "moving": sorted(self.moving)}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Copies and the weights seen written, as ``state_dict`` gave them."""
        self.copies = {
            k: v.to(torch.float32, copy=True) for k, v in state.get("previous", {}).items()
        }
        self.moving = set(state.get("moving", ()))
