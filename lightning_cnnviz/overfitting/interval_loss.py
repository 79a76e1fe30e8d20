"""The training loss since the last evaluation, kept on the device until it is read.

Nothing here knows about Lightning.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["IntervalLoss"]


class IntervalLoss:
    """The mean training loss over the steps since it was last read, kept on the device.

    A validation in the middle of an epoch finds only one batch's value under a
    step-logged key: a healthy BatchNorm CNN validated every quarter epoch read 0.057 at
    its best val loss and 0.054 later ("the train loss still falls") while the means
    over those intervals went 0.070 -> 0.098. Each step adds the loss ``training_step``
    returned (no host transfer); ``read`` takes the mean and starts a new interval;
    ``same_as_last`` tells whether a logged value is that loss (the key logs it).
    ``recent`` is the loss over about the last ``1 / RECENT`` steps, across reads: a
    figure compared with one read now (the interval's mean still holds its early descent);
    ``start`` the mean of the run's first ``START`` steps.

    Example::

        >>> interval = IntervalLoss()
        >>> for loss in (1.0, 2.0, 3.0):
        ...     interval.add(torch.tensor(loss))
        >>> interval.same_as_last(torch.tensor(3.0)), interval.same_as_last(torch.tensor(0.5))
        (True, False)
        >>> float(interval.read()), interval.read(), round(float(interval.recent), 2)
        (2.0, None, 1.56)
    """

    RECENT = 0.2  # each step's weight in ``recent``
    START = 10  # steps in ``start``, the mean the run began at (one batch's loss is noisy)

    def __init__(self) -> None:
        self.total: Tensor | None = None
        self.last: Tensor | None = None
        self.first: Tensor | None = None  # the run's first step's: never read off
        self.fresh = True  # a run from its first step (a resumed one keeps no ``first``)
        self.recent: Tensor | None = None  # the last steps' (``RECENT``): never read off
        self.steps = 0
        self._start: Tensor | None = None  # the first ``START`` steps' sum: never read off
        self._started = 0

    def add(self, loss: Tensor | None) -> None:
        """Add one step's loss (``core.step_loss.step_loss``'s; None is skipped)."""
        if loss is None or not loss.is_floating_point():
            return
        loss = loss.detach().float().reshape(())
        self.total = loss if self.total is None else self.total + loss
        self.last, self.steps = loss, self.steps + 1
        self.first = loss if self.first is None and self.fresh else self.first
        if self.fresh and self._started < self.START:
            self._start = loss if self._start is None else self._start + loss
            self._started += 1
        recent = self.recent
        self.recent = loss if recent is None else torch.lerp(recent, loss, self.RECENT)

    @property
    def start(self) -> Tensor | None:
        """The mean loss of the run's first ``START`` steps (``None``: fewer, or resumed)."""
        return None if self._started < self.START else self._start / self._started

    def same_as_last(self, logged: Tensor) -> bool:
        """Whether ``logged`` is the latest step's loss (one host transfer)."""
        if self.last is None:
            return False
        return bool(torch.isclose(logged.float(), self.last.to(logged.device), rtol=1e-4))

    def read(self) -> Tensor | None:
        """The mean since the last read (``None``: no step), and a new interval."""
        total, steps = self.total, self.steps
        self.total, self.last, self.steps = None, None, 0
        return None if total is None else total / steps
