"""What a monitor keeps in a checkpoint and a pickle, and a fresh start with another model.

``Checkpointed`` is mixed into ``Monitor`` (Lightning calls ``state_dict`` /
``load_state_dict`` on callbacks and files what they return under ``state_key``): the
schedule, the probe indices (with the sets' lengths they index), the seed, the
monitor's own ``extra_state`` and its findings, so a resumed run continues the same
schedule and keeps what it reported. A
pickle (a spawned fit's) keeps the configuration and the state, not the last fit's objects.

Example::

    >>> from lightning_cnnviz import KernelMonitor
    >>> state = KernelMonitor(seed=3).state_dict()
    >>> sorted(state)
    ['extra', 'findings', 'last_logged_step', 'probe_indices', 'probe_sizes', 'schedule', 'seed']
    >>> state["seed"], state["last_logged_step"]
    (3, -1)
"""

from __future__ import annotations

import copy
import os
import weakref
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from lightning.pytorch import LightningModule
from torch import nn
from typing_extensions import override

from lightning_cnnviz.core.findings import Finding, findings_of
from lightning_cnnviz.core.hand_back import HandBack
from lightning_cnnviz.core.hook_guard import ConfigError
from lightning_cnnviz.core.schedule import Schedule
from lightning_cnnviz.core.selection import LayerSpec

__all__ = ["Checkpointed"]


class Checkpointed:
    """Checkpoint state shared by every monitor (a mixin of ``Monitor``)."""

    section: str
    seed: int
    last_logged_step: int
    schedule: Schedule
    _probes: dict[str, Any]
    _probe_indices: dict[str, list[int]]
    _probe_sizes: dict[str, int]
    _trainer_ref: Any
    _initial_state: dict[str, Any] | None
    _model: weakref.ref[nn.Module] | None
    tag_prefix: str
    layers: LayerSpec
    hand_back_to: HandBack

    _RUN_OBJECTS = ("_model", "_trainer", "_trainer_ref", "_sink")  # a fit's, set at setup
    _ATTACHED = ("log", "log_dict")  # the model's methods Lightning puts on every callback

    def __getstate__(self) -> dict[str, Any]:
        """What pickling keeps: the configuration and the state, not the last fit's objects.

        The trainer, the model's weak reference and the sink are the fit's (setup sets them
        again); they do not pickle, and a monitor handed to a spawned process (a k-fold or
        tuning loop) after a fit raised "cannot pickle 'weakref.ReferenceType' object".
        Nor the model's ``log`` / ``log_dict`` that Lightning attaches (the next fit does
        again), nor what ``run_state_dropped`` names: a pickle of a monitor after a fit
        carried the whole model (setups hunt 49: 3.4 MB for a 3.2 MB model).
        """
        if self.hand_back_to.pid != os.getpid():  # a copy sent on again: findings come here
            self.hand_back_to = HandBack.here(self)
        state = self.run_state_dropped(self.__dict__.copy())
        for name in self._RUN_OBJECTS:
            if name in state:
                state[name] = None
        for name in self._ATTACHED:
            state.pop(name, None)
        if "selected" in state:  # the watched modules: resolved again at setup
            state["selected"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A copy made in the process that owns the address gets an address of its own.

        A deep copy shared the original's, whose clean-up then removed the copy's unread
        findings (setups hunt 50); a spawned child keeps its parent's address to write to.
        """
        self.__dict__.update(state)
        if self.hand_back_to.pid == os.getpid():
            self.hand_back_to = HandBack.here(self)

    def run_state_dropped(self, state: dict[str, Any]) -> dict[str, Any]:
        """``state`` without a subclass's own references to the last fit's model."""
        return state

    @property
    @override
    def state_key(self) -> str:
        # Lightning reads it at every hook call (its profiler's names): built once per value.
        # An explicit schedule is part of it, so that a preset's monitor and a denser one
        # of the same type pass Lightning's check for one state per key (the automatic
        # schedule keeps the key older checkpoints were saved under)
        sched = self.schedule
        explicit = {"every_n_steps": sched.every_n_steps, "every_n_epochs": sched.every_n_epochs}
        explicit = {k: v for k, v in explicit.items() if v is not None}
        key = (self.tag_prefix, str(self.layers), tuple(explicit.items()))
        if getattr(self, "_state_key", (None, ""))[0] != key:
            generated = self._generate_state_key(tag_prefix=key[0], layers=key[1], **explicit)
            self._state_key = (key, generated)
        return self._state_key[1]

    def _check_tags_unique(self, callbacks: Sequence[Any]) -> None:
        """Raise where another monitor of this type writes under the same ``tag_prefix``."""
        twins = [c for c in callbacks if type(c) is type(self) and c.tag_prefix == self.tag_prefix]
        if len(twins) > 1 and twins[0] is not self:
            name = type(self).__name__
            raise ConfigError(
                f"Two {name}s in this Trainer write under the same TensorBoard tags "
                f"(`tag_prefix={self.tag_prefix!r}`): give the second one a `tag_prefix` of "
                f"its own, e.g. `{name}(..., tag_prefix='dense/')`, or leave the first out "
                "(a preset's: `callbacks(preset)` returns a list to edit)."
            )

    def extra_state(self) -> dict[str, Any]:
        """Monitor-specific state to checkpoint (accumulators, previous values)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``extra_state`` returned."""

    def _start_model(self, pl_module: LightningModule) -> bool:
        """Start the per-model state afresh when this fit trains another model than the last.

        The per-model state is what ``state_dict`` holds (previous kernels and CAMs,
        histories, probe indices): a resumed run, whose checkpoint is loaded after
        ``setup``, still continues from it. Returns whether the model is the last fit's.
        """
        same = self._model is not None and self._model() is pl_module
        if self._initial_state is None:
            self._initial_state = copy.deepcopy(self.state_dict())
        elif not same:
            self.load_state_dict(copy.deepcopy(self._initial_state))
        self._model = weakref.ref(pl_module)
        return same

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "last_logged_step": self.last_logged_step,
            "probe_indices": {k: list(v) for k, v in self._probe_indices.items()},
            "probe_sizes": dict(self._probe_sizes),
            "schedule": self.schedule.state_dict(),
            "extra": self.extra_state(),
            "findings": [asdict(f) for f in self._own_findings()],
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seed = state_dict.get("seed", self.seed)
        self.last_logged_step = state_dict.get("last_logged_step", -1)
        self._probe_indices = {k: list(v) for k, v in state_dict.get("probe_indices", {}).items()}
        self._probe_sizes = dict(state_dict.get("probe_sizes", {}))
        self._probes = {}
        self.schedule.load_state_dict(state_dict.get("schedule", {}))
        if self._trainer_ref is not None:  # restored after setup: the run's record goes on
            found = findings_of(self._trainer_ref)
            for record in state_dict.get("findings", []):
                if (finding := Finding(**record)) not in found:
                    found.append(finding)
        self.load_extra_state(state_dict.get("extra", {}))

    def _own_findings(self) -> list[Finding]:
        """This monitor's findings in the run's record (its section's)."""
        if self._trainer_ref is None:
            return []
        return [f for f in findings_of(self._trainer_ref) if f.source == self.section]
