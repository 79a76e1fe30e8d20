"""Every Lightning hook of a monitor guarded: a failure makes it step aside, training goes on.

A monitor's events are guarded where they fire (``EventFiring``); the other hooks read
the run as it passes (the optimiser's settings at the start, the loss at each step, the
validation loop's logits) and must not abort it either: a custom optimiser whose
``betas`` was one float stopped a fit at step 0 inside ``on_train_start`` (setups hunt
54). ``guard_hooks`` wraps each hook a monitor class defines or inherits from the
package (not Lightning's own no-ops): an exception makes the monitor step aside with the
error, said once (``Voice._step_aside``), or is raised with ``strict``. A
``ConfigError`` is the user's to fix before training and is always raised. Hooks that
call each other (``super()``) are guarded once, at the outermost call.

Example::

    >>> from lightning_cnnviz import KernelMonitor
    >>> KernelMonitor.on_train_start.guarded, KernelMonitor.on_train_start.__wrapped__.__name__
    (True, 'on_train_start')
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from lightning.pytorch.callbacks import Callback as _LightningCallback

__all__ = ["HOOKS", "ConfigError", "guard_hooks"]

HOOKS = frozenset(
    name
    for name, value in vars(_LightningCallback).items()
    if callable(value) and (name.startswith("on_") or name in ("setup", "teardown"))
)


# the monitors inside a guarded hook (by id: a copy made inside one is not)
_RUNNING: set[int] = set()


class ConfigError(ValueError):
    """A setting the user must change (two monitors writing the same tags): always raised."""


def guard_hooks(cls: type) -> None:
    """Guard every hook of ``HOOKS`` that ``cls`` runs from the package's code (in place)."""
    for name in HOOKS:
        hook = getattr(cls, name, None)
        if hook is None or getattr(hook, "guarded", False) or _is_lightning(hook):
            continue  # guarded already, or Lightning's no-op: nothing of ours runs
        setattr(cls, name, _guarded(hook))


def _is_lightning(hook: Callable[..., Any]) -> bool:
    """Whether ``hook`` is a Lightning package's own (``pytorch_lightning``'s no-ops too)."""
    module = getattr(hook, "__module__", "") or ""
    return module.startswith(("lightning.", "pytorch_lightning."))


def _guarded(hook: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(hook)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        if id(self) in _RUNNING:  # called from a guarded hook: that one catches
            return hook(self, *args, **kwargs)
        _RUNNING.add(id(self))
        try:
            return hook(self, *args, **kwargs)
        except ConfigError:
            raise
        except Exception as err:
            if self.strict:
                raise
            if not self.disabled:  # stepped aside already: said once
                self._step_aside(err)
            return None
        finally:
            _RUNNING.discard(id(self))

    run.guarded = True  # type: ignore[attr-defined]
    return run
