"""When a monitor logs: every ``n`` optimizer steps or at the end of every ``n`` epochs.

Steps are ``trainer.global_step`` (never ``batch_idx``, which restarts every
epoch). "Every ``n`` steps" means at every multiple of ``n``, or at the first
chance after it for a monitor that can only log at certain moments (the
overfitting check logs at validation ends), and never twice at one step.

Example::

    >>> schedule = Schedule(every_n_steps=100)
    >>> [schedule.due_on_step(s, last=-1) for s in (0, 99, 100, 150)]
    [False, False, True, False]
    >>> schedule.due_on_step(150, last=-1, first_chance=True)  # no log since step 0
    True
    >>> Schedule(every_n_epochs=2).due_on_epoch(epoch=1, step=60, last=-1)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

from lightning_cnnviz.core.checks import check_int

__all__ = ["Schedule"]


@dataclass(frozen=True)
class Schedule:
    """Every ``every_n_steps`` optimizer steps or every ``every_n_epochs`` epochs (one of them)."""

    every_n_steps: int | None = None
    every_n_epochs: int | None = None

    @classmethod
    def chosen(
        cls, every_n_steps: int | None, every_n_epochs: int | None, default: Schedule
    ) -> Schedule:
        """The user's schedule (checked: at most one of the two), else ``default``.

        Example::

            >>> Schedule.chosen(None, 2, default=Schedule(every_n_steps=200)).every_n_epochs
            2
        """
        check_int("every_n_steps", every_n_steps, allow_none=True)
        check_int("every_n_epochs", every_n_epochs, allow_none=True)
        if every_n_steps is not None and every_n_epochs is not None:
            raise ValueError(
                "Set only one of `every_n_steps` and `every_n_epochs`, got "
                f"every_n_steps={every_n_steps!r} and every_n_epochs={every_n_epochs!r}"
            )
        if every_n_steps is None and every_n_epochs is None:
            return default
        return cls(every_n_steps, every_n_epochs)

    def due_on_step(self, step: int, last: int, first_chance: bool = False) -> bool:
        """Whether to log at ``step``, given the step of the last log (``-1``: none yet).

        With ``first_chance`` (a monitor that can only log at certain moments), the
        first chance of the run counts, and so does a multiple of ``n`` passed since ``last``.
        """
        n = self.every_n_steps
        if n is None or step <= 0 or step == last:
            return False
        if first_chance:
            return last < 0 or step // n > last // n
        return step % n == 0

    def due_on_epoch(self, epoch: int, step: int, last: int) -> bool:
        """Whether to log at the end of ``epoch`` (0-based), never twice at one step."""
        return self.due_after_epoch(epoch) and step != last

    def next_step(self, step: int) -> int | None:
        """The first step after ``step`` at which a step schedule logs; None for an epoch one.

        For a monitor that prepares ahead of a log (hooks the batches before it);
        the same steps as ``due_on_step`` without ``first_chance``.

        Example::

            >>> Schedule(every_n_steps=100).next_step(100), Schedule(every_n_steps=100).next_step(0)
            (200, 100)
            >>> Schedule(every_n_epochs=1).next_step(5) is None
            True
        """
        n = self.every_n_steps
        return None if n is None else (step // n + 1) * n

    def due_after_epoch(self, epoch: int) -> bool:
        """Whether an epoch schedule logs at the end of ``epoch`` (0-based), whatever the step.

        Known from the epoch's first batch on, for a monitor that prepares ahead of a log.

        Example::

            >>> [Schedule(every_n_epochs=2).due_after_epoch(e) for e in range(4)]
            [False, True, False, True]
        """
        n = self.every_n_epochs
        return n is not None and (epoch + 1) % n == 0
