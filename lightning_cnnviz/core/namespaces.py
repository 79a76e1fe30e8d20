"""Lightning ships under two package names: ``lightning.pytorch`` and ``pytorch_lightning``.

Their classes are copies, not aliases: a ``pytorch_lightning`` ``TensorBoardLogger``
is no ``lightning.pytorch`` one for ``isinstance``. Every check of a Lightning object
(loggers, the callback base class) goes through this module, so monitors work
with whichever package the user's ``Trainer`` comes from.

How each Trainer accepts callbacks: a list is taken as given (no type check); a
single callback passed on its own is wrapped in a list only if it is an instance of
that package's ``Callback``. ``Callback`` here derives from both packages' classes
(where ``pytorch_lightning`` is installed), so a monitor is a callback for both.

Example::

    >>> import lightning.pytorch as lp
    >>> from lightning.pytorch.loggers import CSVLogger
    >>> is_logger(CSVLogger("."), "TensorBoardLogger"), is_logger(CSVLogger("."), "CSVLogger")
    (False, True)
    >>> issubclass(Callback, lp.Callback)
    True
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

from lightning.pytorch.callbacks import Callback as _LightningCallback

__all__ = ["NAMESPACES", "Callback", "is_logger", "lightning_types"]

NAMESPACES = ("lightning.pytorch", "pytorch_lightning")


def _both_callbacks() -> type:
    if importlib.util.find_spec("pytorch_lightning") is None:
        return _LightningCallback
    # Importing a Lightning package points the rank-zero messages of both (one shared
    # module-level logger) at its own logger name: keep them where they were, so that
    # importing lightning-cnnviz changes nothing in a `lightning.pytorch` user's logs.
    from lightning_utilities.core import rank_zero

    log = rank_zero.log
    # ~0.07 s once `lightning` is imported (they share their dependencies).
    from pytorch_lightning.callbacks import Callback as _PLCallback

    rank_zero.log = log

    class Callback(_LightningCallback, _PLCallback):  # type: ignore[misc]
        """A callback for ``lightning.pytorch`` and ``pytorch_lightning`` Trainers alike."""

    return Callback


Callback: type[_LightningCallback] = _both_callbacks()


def lightning_types(module: str, name: str) -> tuple[type, ...]:
    """Class ``name`` of ``<namespace>.<module>`` for each Lightning package already imported.

    A package nobody imported made no object of its own to check, so it is not imported.

    Example::

        >>> lightning_types("loggers", "CSVLogger")[0].__module__
        'lightning.pytorch.loggers.csv_logs'
    """
    found = []
    for namespace in NAMESPACES:
        if namespace in sys.modules:
            cls = getattr(importlib.import_module(f"{namespace}.{module}"), name, None)
            if cls is not None:
                found.append(cls)
    return tuple(found)


def is_logger(logger: Any, name: str) -> bool:
    """Whether ``logger`` is a ``name`` logger (``"TensorBoardLogger"``, ...) of either package."""
    module = "loggers.logger" if name == "DummyLogger" else "loggers"
    return isinstance(logger, lightning_types(module, name))
