"""Why a fit validates nothing, in words: ``OverfittingMonitor`` reads nothing else.

Every figure of the monitor comes from a validation's end, so a fit without one
leaves it with nothing to write; it says so once (setups hunt 23: it was silent,
the reason only in the end-of-fit summary). Two moments tell it:

* at training start, what Lightning's settings already decide (``validation_off``:
  ``Trainer.enable_validation`` is false: ``limit_val_batches=0``, no
  ``validation_step``, no val loader);
* at the end of a fit in which no validation ran (``never_validated``), e.g.
  ``max_steps`` reached before the first one. Never at the start: a run that
  validates at epoch ends only has validated nothing yet, and is healthy.

The trainer is read by duck typing (both Lightning namespaces).

Example::

    >>> from types import SimpleNamespace
    >>> class Module:
    ...     def validation_step(self, batch, batch_idx): ...
    >>> trainer = SimpleNamespace(enable_validation=False, limit_val_batches=0,
    ...                           lightning_module=Module(), max_steps=-1, global_step=3)
    >>> validation_off(trainer)
    '`limit_val_batches=0` turns validation off'
    >>> trainer.enable_validation, trainer.max_steps = True, 3
    >>> never_validated(trainer)
    'training stopped at `max_steps=3` before the first validation'
"""

from __future__ import annotations

from typing import Any

__all__ = ["never_validated", "unread", "validation_off"]

_LIGHTNING = ("lightning.", "pytorch_lightning.")


def _defines_validation_step(module: Any) -> bool:
    """Whether a class of the user's (not Lightning's own stub) defines ``validation_step``."""
    return any(
        "validation_step" in vars(klass)
        for klass in type(module).__mro__
        if not klass.__module__.startswith(_LIGHTNING)
    )


def validation_off(trainer: Any) -> str:
    """Why Lightning will not validate in this fit, known at its start (``""``: it may)."""
    if getattr(trainer, "enable_validation", True):
        return ""
    limit = trainer.limit_val_batches
    if limit is not None and limit == 0:
        return f"`limit_val_batches={limit!r}` turns validation off"
    if not _defines_validation_step(trainer.lightning_module):
        return "the module defines no `validation_step`"
    return "the run has no validation data"


def never_validated(trainer: Any) -> str:
    """Why no validation ran in a fit that has ended (``validation_off``'s reasons first)."""
    if why := validation_off(trainer):
        return why
    steps = trainer.max_steps
    if steps is not None and steps >= 0 and trainer.global_step >= steps:
        return f"training stopped at `max_steps={steps}` before the first validation"
    return "validation never ran after training started"


def unread(why: str) -> str:
    """The warning: ``why``, and what the monitor therefore cannot do.

    Example::

        >>> unread("the run has no validation data")[:45]
        'the run has no validation data: it reads each'
    """
    return (
        f"{why}: it reads each validation's end, so it writes nothing and diagnoses nothing "
        "in this run"
    )
