"""A fit's findings made in processes Lightning started, handed back to the one that started them.

Under ``strategy="ddp_spawn"`` or ``"ddp_notebook"`` the fit runs in child processes, on
copies of the trainer and its callbacks; the launching process (a notebook's kernel)
gets back the weights, the trainer's state and ``callback_metrics`` only, so
``findings_of(trainer)`` there read nothing (setups hunt 47). Each monitor carries an
address (``HandBack``): the launching process's id and a file name in the temporary
folder. Rank 0's child, whose parent that process is, writes the run's records to a file
of that fit's own beside it at the end of fit (``hand_back``), and names the file on the
trainer's state, which Lightning sends back to the trainer that ran the fit: two trainers
sharing monitors (a k-fold loop) each get their own fit's records. A fit that raised sends
no state back; the launching process's ``on_exception`` names the newest file on its
trainer then (``claim_failed``). ``findings_of`` there reads and removes the file
(``take_back``). Single-process runs and the script launcher's processes (each runs its
own copy of the script, monitors included) never write.

Example::

    >>> import os
    >>> to = HandBack.here()
    >>> to.pid == os.getpid() and to.holds(to.fit_path())
    True
"""

from __future__ import annotations

import contextlib
import glob
import os
import pickle
import tempfile
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

__all__ = ["HandBack", "claim_failed", "hand_back", "hand_back_now", "launched_here", "take_back"]

_FIT = "_cnnviz_hand_back"  # on the trainer's state: the file of the fit that state is of
_UNWRITABLE: set[HandBack] = set()  # addresses said once to be unwritable


@dataclass(frozen=True)
class HandBack:
    """Where a child process leaves fits' records for ``pid``, the process that started it.

    ``stem``: the files' common start, in the temporary folder; each fit writes its own.
    """

    pid: int
    stem: str

    @classmethod
    def here(cls, owner: object | None = None) -> HandBack:
        """An address for this process; files left there go when ``owner`` does."""
        name = f"lightning_cnnviz-{os.getpid()}-{uuid.uuid4().hex}"
        to = cls(os.getpid(), os.path.join(tempfile.gettempdir(), name))
        if owner is not None:  # a fit's records nobody read: not left in the folder
            weakref.finalize(owner, _discard, to)
        return to

    def fit_path(self) -> str:
        """A new file for one fit's records, named by the process writing it."""
        return f"{self.stem}-w{os.getpid()}-{uuid.uuid4().hex}.pkl"

    def holds(self, path: str) -> bool:
        """Whether ``path`` is one of this address's files."""
        return path.startswith(self.stem + "-") and path.endswith(".pkl")

    def files(self, pid: int | str = "*") -> list[str]:
        """This address's files (those process ``pid`` wrote), newest first."""
        found = glob.glob(f"{glob.escape(self.stem)}-w{pid}-*.pkl")
        return sorted(found, key=os.path.getmtime, reverse=True)


def _discard(to: HandBack) -> None:
    """Remove the files at ``to`` in the process they belong to (a forked copy leaves them)."""
    if os.getpid() == to.pid:
        for path in to.files():
            with contextlib.suppress(OSError):
                os.remove(path)


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
    state = getattr(trainer, "state", None)
    path = getattr(state, _FIT, None)
    if not (isinstance(path, str) and to.holds(path)):  # this fit's file, kept at a second call
        path = to.fit_path()
    part = f"{path}.{os.getpid()}.part"
    try:
        with open(part, "wb") as file:
            pickle.dump(records, file)
        os.replace(part, path)  # whole or absent for the reader
        setattr(state, _FIT, path)  # sent back with the state to the trainer of this fit
    except (OSError, pickle.PicklingError, TypeError, AttributeError) as err:  # never the end
        if to not in _UNWRITABLE:  # said once: each finding recorded tries again
            _UNWRITABLE.add(to)
            from lightning_cnnviz.core.say import say  # (Lightning: not where findings are read)

            say(
                f"lightning-cnnviz could not hand the findings back to the process that "
                f"launched the fit ({err})"
            )


def hand_back_now(trainer: Any, records: dict[str, Any]) -> None:
    """``hand_back`` the record as it stands, to the address of ``trainer``'s last monitor.

    A fit that raises in a child runs no hook there after it (Lightning calls
    ``on_exception`` in the launching process only): what was found before is left as
    each finding is recorded.
    """
    found = (getattr(c, "hand_back_to", None) for c in reversed(getattr(trainer, "callbacks", ())))
    hand_back(trainer, records, next((to for to in found if isinstance(to, HandBack)), None))


def launched_here(trainer: Any, to: HandBack | None) -> bool:
    """Whether this process launched ``trainer``'s fit into child processes (it ran none)."""
    return to is not None and to.pid == os.getpid() and _started_by_lightning(trainer)


def _addresses(trainer: Any) -> list[HandBack]:
    """The addresses of ``trainer``'s callbacks that belong to this process."""
    found = (getattr(c, "hand_back_to", None) for c in getattr(trainer, "callbacks", ()))
    return [to for to in found if isinstance(to, HandBack) and to.pid == os.getpid()]


def claim_failed(trainer: Any, to: HandBack | None, exception: BaseException) -> bool:
    """In the launching process, after a fit that raised: name its file on ``trainer``'s state.

    No state comes back from a fit that raised; its child wrote what it found before the
    exception reached this process, in a file named by its process id, which the
    exception carries (``ProcessRaisedException.error_pid``): another trainer's unread file is
    never taken for it (setups hunt 50: a fit that raised before recording anything was
    handed the other trainer's findings). False where there is none: the fit found
    nothing, raised on another rank, or never started (Lightning refuses a second spawned
    fit on one trainer before any child runs).
    """
    pid = getattr(exception, "error_pid", None)
    if not launched_here(trainer, to) or not isinstance(pid, int):
        return False
    newest = to.files(pid)[:1]  # type: ignore[union-attr]
    if newest:
        with contextlib.suppress(AttributeError):
            setattr(trainer.state, _FIT, newest[0])
    return bool(newest)


def take_back(trainer: Any) -> dict[str, Any] | None:
    """The records a child left for ``trainer``'s last fit (the file is removed), else None."""
    if not _started_by_lightning(trainer):
        return None
    path = getattr(getattr(trainer, "state", None), _FIT, None)
    if not isinstance(path, str) or not any(to.holds(path) for to in _addresses(trainer)):
        return None
    try:
        with open(path, "rb") as file:
            records = pickle.load(file)
    except FileNotFoundError:  # taken already
        return None
    os.remove(path)
    return records
