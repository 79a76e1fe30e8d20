"""Every warning of lightning-cnnviz goes through ``say``, as a ``CnnvizWarning``.

A leaf module (nothing of the package imported) so that any part can speak.
"""

from __future__ import annotations

import logging

from lightning.pytorch.utilities.rank_zero import rank_zero_warn

__all__ = ["CnnvizWarning", "say"]

_log = logging.getLogger("lightning_cnnviz")


class CnnvizWarning(UserWarning):
    """What lightning-cnnviz's monitors tell: findings, and what they could not do."""


def say(message: str) -> None:
    """Warn ``message`` (rank zero) as a ``CnnvizWarning``; never raises.

    Where the user's filters turn warnings into errors (``python -W error``, pytest's
    ``filterwarnings = error``), the message goes to the ``lightning_cnnviz`` logger
    instead: a monitor never aborts the run it watches.

    Example::

        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("error")
        ...     say("told, not raised")
    """
    try:
        rank_zero_warn(message, category=CnnvizWarning)
    except Warning:
        _log.warning(message)
