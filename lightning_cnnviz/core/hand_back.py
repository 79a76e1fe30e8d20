"""A fit's findings made in processes Lightning started, handed back to the one that started them.

Under ``strategy="ddp_spawn"`` or ``"ddp_notebook"`` the fit runs in child processes, on
copies of the trainer and its callbacks; the launching process (a notebook's kernel)
gets back the weights, the trainer's state and ``callback_metrics`` only, so
``findings_of(trainer)`` there read nothing (setups hunt 47). Each monitor carries an
address (``HandBack``): the launching process's id and a file name in the temporary
folder. Rank 0's child, whose parent that process is, writes the run's records there at
the end of fit (``hand_back``); ``findings_of`` in the launching process reads and removes
the file (``take_back``). Single-process runs and the script launcher's processes (each
runs its own copy of the script, monitors included) never write.

Example::

    >>> import os
    >>> to = HandBack.here()
    >>> to.pid == os.getpid() and to.path.endswith(".pkl")
    True
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

__all__ = ["HandBack", "hand_back", "take_back"]


@dataclass(frozen=True)
class HandBack:
    """Where a child process leaves a fit's records for ``pid``, the process that started it."""

    pid: int
    path: str

    @classmethod
    def here(cls, owner: object | None = None) -> HandBack:
        """An address for this process; a file left there goes when ``owner`` does."""
        name = f"lightning_cnnviz-{os.getpid()}-{uuid.uuid4().hex}.pkl"
        to = cls(os.getpid(), os.path.join(tempfile.gettempdir(), name))
        if owner is not None:  # a fit's records nobody read: not left in the folder
            weakref.finalize(owner, _discard, to)
        return to


def _discard(to: HandBack) -> None:
    """Remove the file at ``to`` in the process it belongs to (a forked copy leaves it)."""
    if os.getpid() == to.pid:
        with contextlib.suppress(OSError):
            os.remove(to.path)


def _started_by_lightning(trainer: Any) -> bool:
    """Whether the fit runs under Lightning's multiprocessing launcher (spawn or fork)."""
    launcher = getattr(getattr(trainer, "strategy", None), "launcher", None)
    return launcher is not None and hasattr(launcher, "_start_method")


def hand_back(trainer: Any, records: dict[str, Any], to: HandBack | None) -> None:
    """Write ``records`` for the process that started this one (rank 0 only; else nothing)."""
    if to is None or os.getppid() != to.pid or not _started_by_lightning(trainer):
        return
    if not getattr(trainer, "is_global_zero", False):
        return
    part = f"{to.path}.{os.getpid()}.part"
    try:
        with open(part, "wb") as file:
            pickle.dump(records, file)
        os.replace(part, to.path)  # whole or absent for the reader
    except (OSError, pickle.PicklingError, TypeError) as err:  # never the run's end
        from lightning_cnnviz.core.say import say  # (Lightning: not where findings are read)

        say(f"lightning-cnnviz could not hand the findings back to the launching process ({err})")


def take_back(trainer: Any) -> dict[str, Any] | None:
    """The records a child left for this process (the file is removed), else None.

    Read from the addresses (``hand_back_to``) of the trainer's callbacks.
    """
    if not _started_by_lightning(trainer):
        return None
    for callback in getattr(trainer, "callbacks", ()):
        to = getattr(callback, "hand_back_to", None)
        if not isinstance(to, HandBack) or to.pid != os.getpid():
            continue
        try:
            with open(to.path, "rb") as file:
                records = pickle.load(file)
        except FileNotFoundError:
            continue
        os.remove(to.path)
        return records
    return None
