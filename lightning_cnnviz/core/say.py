"""Warnings go through ``say`` (a ``CnnvizWarning``); information through ``tell``.

A leaf module (nothing of the package imported) so that any part can speak. ``tell``
writes to the ``lightning_cnnviz`` logger, set up as Lightning sets up its own: shown on
the console where the program configured no logging, else handed to the root logger. A
script that quiets Lightning's chatter (``logging.getLogger("lightning.pytorch")``
set to ``ERROR``) still gets the end-of-fit summary; the ``lightning_cnnviz`` logger set
so quiets it.
"""

from __future__ import annotations

import logging

from lightning.pytorch.utilities.rank_zero import rank_zero_only, rank_zero_warn

__all__ = ["CnnvizWarning", "say", "tell"]

_log = logging.getLogger("lightning_cnnviz")
_log.setLevel(logging.INFO)
if not logging.getLogger().hasHandlers():  # setups hunt 24: quieting Lightning hid the summary
    _log.addHandler(logging.StreamHandler())
    _log.propagate = False


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


@rank_zero_only
def tell(message: str) -> None:
    """Tell ``message`` (rank zero) as information on the ``lightning_cnnviz`` logger."""
    _log.info(message)
