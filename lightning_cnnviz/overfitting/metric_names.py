"""Which logged metric a name means: Lightning's suffixes, separators, word order, synonyms.

Nothing here knows about Lightning. ``logged_name`` drops the ``_step``/``_epoch``
suffixes ``self.log(..., on_step=True, on_epoch=True)`` adds; ``metric_alias`` finds
the one logged name with the same words as a key the module does not log
(``val_loss`` for ``val/loss``); ``suggested`` offers the first such name where the
monitor has to ask.

Example::

    >>> logged_name("train/acc_epoch"), metric_alias("val/acc", ["valid_accuracy"])
    ('train/acc', 'valid_accuracy')
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DEFAULT_KEYS", "logged_name", "metric_alias", "suggested"]

# ``OverfittingMonitor``'s metric names unless told otherwise (read under another
# spelling, ``metric_alias``, only while left at these)
DEFAULT_KEYS = {
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "train_acc": "train/acc",
    "val_acc": "val/acc",
}

# Words a metric's name spells in more than one way (``val_acc`` / ``valid/accuracy``)
_SYNONYMS = {"valid": "val", "validation": "val", "training": "train", "accuracy": "acc"}


_FIRST_LOADER = "/dataloader_idx_0"


def logged_name(key: str) -> str:
    """The name as logged, without Lightning's ``_step``/``_epoch`` suffix."""
    for suffix in ("_step", "_epoch"):
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def _words(key: str) -> frozenset[str]:
    """A metric name's words, without Lightning's ``_step``/``_epoch``, spelt one way."""
    words = "".join(c if c.isalnum() else " " for c in logged_name(key).lower()).split()
    return frozenset(_SYNONYMS.get(w, w) for w in words)


def metric_alias(key: str, logged: Iterable[str]) -> str | None:
    """The one logged name that says ``key`` in other words, where ``key`` is not logged.

    Same words, whatever the separators, order, case, ``valid``/``validation`` for
    ``val``, ``accuracy`` for ``acc`` and Lightning's ``_step``/``_epoch`` suffixes; the
    name returned is the one to read (without those suffixes). ``None`` where ``key``
    itself is logged (in any of Lightning's forms), or where no name, or more than
    one, matches.

    Example::

        >>> metric_alias("val/loss", ["val_loss", "train_loss_step", "train_loss_epoch"])
        'val_loss'
        >>> metric_alias("val/acc", ["valid_accuracy"]), metric_alias("train/loss", ["loss/train"])
        ('valid_accuracy', 'loss/train')
        >>> metric_alias("val/loss", ["val/loss", "val_loss"]) is None  # logged as it is
        True
        >>> metric_alias("val/acc", ["val_acc", "val/accuracy"]) is None  # which one?
        True
        >>> metric_alias("val/loss", ["val_loss/dataloader_idx_0", "val_loss/dataloader_idx_1"])
        'val_loss'
    """
    # several val loaders: Lightning suffixes each value; the first loader's name is read
    names = {logged_name(n.removesuffix(_FIRST_LOADER)) for n in logged}
    if key in names:
        return None
    words = _words(key)
    found = sorted(n for n in names if "dataloader_idx" not in n and _words(n) == words)
    return found[0] if len(found) == 1 else None


def suggested(key: str, logged: Iterable[str]) -> str | None:
    """A logged name (without suffixes) with the same words as ``key``, the first in order.

    Example::

        >>> suggested("val/acc", ["val_acc_epoch", "val/accuracy"]), suggested("x", ["y"])
        ('val/accuracy', None)
    """
    words = _words(key)
    found = sorted({logged_name(n) for n in logged if _words(n) == words})
    return found[0] if found else None
