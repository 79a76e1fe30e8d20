"""``Monitor``: what every lightning-cnnviz callback shares.

A monitor is a thin ``schedule -> capture -> compute -> render -> sink``. This
base class owns the shared arguments, ``setup()`` and the sink; when its events fire
and what they cost (the schedule, on ``trainer.global_step``, and the budget) is
``monitor_events.py``, how it speaks and steps aside is ``voice.py``, its checkpoint state
``monitor_state.py``, its probe sets ``model_io.py``, the layers it watches
``monitor_layers.py``, what the steps do to the images ``step_following.py`` and what it
says of the whole run ``monitor_summary.py``.
A subclass names its TensorBoard section (``class X(Monitor, section="x")``),
optionally an ``auto`` layer rule, and implements ``log_event``.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import weakref
from collections import defaultdict
from typing import Any, ClassVar

from lightning.pytorch import LightningModule, Trainer
from torch import nn
from typing_extensions import override

from lightning_cnnviz.core.budget import DEFAULT_SHARE, Budget
from lightning_cnnviz.core.checks import check_int, check_layers, check_number, check_str
from lightning_cnnviz.core.findings import start_record
from lightning_cnnviz.core.hand_back import HandBack
from lightning_cnnviz.core.hook_guard import guard_hooks
from lightning_cnnviz.core.layer_changes import LayerChanges
from lightning_cnnviz.core.model_io import UNSET, ProbeReader
from lightning_cnnviz.core.model_state import kept_state
from lightning_cnnviz.core.monitor_events import EventFiring
from lightning_cnnviz.core.monitor_layers import (
    LayerWatcher,
    builds_late,
    has_lazy_weights,
)
from lightning_cnnviz.core.monitor_state import Checkpointed
from lightning_cnnviz.core.monitor_summary import RunSummary, say_fit_only
from lightning_cnnviz.core.namespaces import Callback
from lightning_cnnviz.core.outputs import NotApplicable
from lightning_cnnviz.core.own_hooks import drop_copied_hooks
from lightning_cnnviz.core.probe import Probe
from lightning_cnnviz.core.probe_pass import probe_mode
from lightning_cnnviz.core.schedule import Schedule
from lightning_cnnviz.core.selection import LayerSpec, unwrap_model
from lightning_cnnviz.core.sinks import Sink
from lightning_cnnviz.core.step_following import StepFollowing
from lightning_cnnviz.core.voice import Voice

__all__ = ["Monitor", "NotApplicable", "with_probe"]


class Monitor(
    Voice,
    Checkpointed,
    ProbeReader,
    StepFollowing,
    LayerWatcher,
    LayerChanges,
    RunSummary,
    EventFiring,
    Callback,
):
    """Base class of every lightning-cnnviz monitor.

    Args:
        layers: ``"auto"`` (the monitor's default), a module name, glob or type
            name, or a list of them.
        every_n_steps: log every this many optimizer steps (``trainer.global_step``).
        every_n_epochs: log at the end of every this many training epochs.
            Set at most one of the two; with neither, the automatic schedule applies:
            dense early, then fitted to the run's length and to ``budget``
            (``core/schedule.py``).
        num_samples: probe size.
        tag_prefix: prepended to every TensorBoard tag, as a section of its own
            (``"dense"`` and ``"dense/"`` both write ``dense/activations/...``).
        strict: raise when the monitor itself fails, instead of warning once and
            stepping aside while training goes on.
        seed: seed of the monitor's own generator (probe draws).
        budget: the share of training time the monitor may spend (default 0.25%; the
            presets share 1% among their monitors). The automatic schedule spaces
            events out to stay within it; an explicit schedule is kept as given.
        output_key: where the logits are in a model that returns a tuple, list or dict
            (an index or a key: ``1``, ``"logits"``). ``None``: a tensor output is the
            logits; of a tuple/dict, the entry whose class dim equals the number of
            classes, else one named like logits, else the first (the guess is said once).
        label_key: where the class label is in a dict data item (``"cls"``), or its index
            in a tuple item. ``None``: the usual keys (``label``, ``target``, ``y``, ...),
            else the one integer scalar entry (the guess is said once).
    """

    section: ClassVar[str] = "monitor"  # its TensorBoard section: `class X(Monitor, section=...)`
    # Whether every rank must run ``log_event`` (collectives); else rank zero only.
    all_ranks: ClassVar[bool] = False

    def __init__(
        self,
        layers: str | list[str] = "auto",
        every_n_steps: int | None = None,
        every_n_epochs: int | None = None,
        num_samples: int = 16,
        tag_prefix: str = "",
        strict: bool = False,
        seed: int = 0,
        budget: float = DEFAULT_SHARE,
        output_key: str | int | None = None,
        label_key: str | int | None = None,
    ) -> None:
        super().__init__()
        for name, key in (("output_key", output_key), ("label_key", label_key)):
            if key is not None and (not isinstance(key, str | int) or key == ""):
                raise ValueError(
                    f"`{name}` must be a key (str), an index (int) or None, got {key!r}"
                )
        check_layers(layers)
        self.schedule = Schedule.chosen(every_n_steps, every_n_epochs)
        check_number("budget", budget, low=0.0, high=1.0, low_open=True)
        self.budget = Budget(budget)
        check_int("num_samples", num_samples)
        check_str("tag_prefix", tag_prefix)
        check_int("seed", seed, minimum=None)
        self.layers: LayerSpec = layers
        self.num_samples = num_samples
        # a section of its own in TensorBoard: "run1" -> "run1/", "/a/" -> "a/" ("run1"
        # glued on made "run1activations/...", a leading "/" a section with no name)
        stripped = tag_prefix.strip("/")
        self.tag_prefix = f"{stripped}/" if stripped else ""
        self.strict = strict
        self.seed = seed
        self.output_key, self.label_key = output_key, label_key
        self._logits_key: Any = UNSET  # output_key, or the guess (per fit)
        self._label_key: Any = UNSET
        self._trainer_ref: Any = None  # the fit's trainer, for step-aside notes in the summary
        self.dense_output = False  # set with the logits key
        self.scores_misfit = ""  # set with it too: why the outputs are not one row per image
        self._input_shape: tuple[int, ...] | None = None  # the probe images', with it
        self.disabled = False
        self.aside_reason = ""  # why it stepped aside, for the end-of-fit summary
        self.last_logged_step = -1
        self.selected: dict[str, nn.Module] = {}
        self.shared: set[str] = set()
        self.timings: dict[str, float] = defaultdict(float)
        self.events = 0
        self.fit_batches = 0  # training batches this fit (a fit resumed at its end runs none)
        self._probes: dict[str, Probe] = {}
        self._probe_indices: dict[str, list[int]] = {}
        self._probe_sizes: dict[str, int] = {}  # the sets' lengths the indices were drawn from
        self._sink: Sink | None = None
        self._layers_logged = self._summarised = False
        self._call_counts: dict[str, int] = {}
        self._warned: set[str] = set()
        self._initial_state: dict[str, Any] | None = None  # state_dict before the first fit
        self._model: weakref.ref[nn.Module] | None = None  # the model of the last fit
        self.hand_back_to = HandBack.here(self)  # where a spawned fit leaves its findings

    @property
    def every_n_steps(self) -> int | None:
        """The schedule's step interval (``None`` for an epoch schedule)."""
        return self.schedule.every_n_steps

    @property
    def every_n_epochs(self) -> int | None:
        """The schedule's epoch interval (``None`` for a step schedule)."""
        return self.schedule.every_n_epochs

    def __init_subclass__(cls, section: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if section is not None:
            cls.section = section
        guard_hooks(cls)  # a hook's failure steps the monitor aside, never aborts the fit

    @classmethod
    def arguments(cls) -> set[str]:
        """The keyword arguments ``cls(...)`` takes: its own and, through ``**kwargs``, Monitor's.

        Example::

            >>> from lightning_cnnviz import ActivationMonitor, OverfittingMonitor
            >>> {"window", "every_n_steps", "budget"} <= ActivationMonitor.arguments()
            True
            >>> "layers" in OverfittingMonitor.arguments()
            False
        """
        names: set[str] = set()
        for klass in cls.__mro__:
            if "__init__" not in vars(klass):
                continue
            params = list(inspect.signature(klass.__init__).parameters.values())[1:]
            names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
            if klass is Monitor or not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return names if cls.watches_layers else names - {"layers"}

    # ----------------------------------------------------------------- for subclasses
    def log_event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Do one logging event: capture, compute, render, write."""
        raise NotImplementedError

    def reset(self) -> None:
        """Put per-fit state back to its start (called at the setup of every fit)."""

    def tag(self, *parts: str) -> str:
        """``tag_prefix`` + ``section/part/...``."""
        return self.tag_prefix + "/".join((self.section, *parts))

    # ----------------------------------------------------------------- Lightning hooks
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            say_fit_only(trainer, stage)
            return
        self._check_tags_unique(trainer.callbacks)
        start_record(trainer, pl_module)  # the trainer's record: another model's is not this fit's
        # a second fit of the same model on the same trainer goes on from where the first
        # ended, as a resumed one does (setups hunt 76: its diagnosis started anew on the
        # converged model, a gradient of 5e-9 the baseline, and told the loss's first bump
        # "exploding gradients, grew 402331x")
        same = self._start_model(pl_module) and self._trainer_ref is trainer  # state kept
        kept = copy.deepcopy(self.extra_state()) if same and trainer.global_step > 0 else None
        self._call_counts: dict[str, int] = {}
        self._probes = {}
        self._layers_logged = self._summarised = False
        self._patterns_lost = frozenset()  # ``LayerChanges``: each fit starts from `layers`
        if not same:  # each run says once what it could not do (a Tuner's trial fit, then
            self._warned.clear()  # the fit: once; setups hunt 76: twice)
        self._logits_key = self._label_key = UNSET
        self.scores_misfit = ""
        self._input_shape = None
        self._trainer_ref = trainer
        self.reset()
        if kept is not None:
            self.load_extra_state(kept)
        self.last_logged_step = -1  # a checkpoint restored after setup() overrides this
        self.budget = Budget(self.budget.share)
        self._sink = Sink.of(trainer)
        self.disabled = not self._sink.active
        self.aside_reason = "" if self._sink.active else "fast_dev_run: nothing would be kept"
        # a model built in its `configure_model` or `setup` (Lightning calls both after this)
        # has no layers yet: they are found at fit start, once it exists; lazy modules take
        # their shapes at the first training step, and nothing here runs the model before it
        self._layers_pending = builds_late(pl_module) or has_lazy_weights(pl_module)
        if not self._layers_pending:
            self._find_layers(trainer, pl_module)

    def _find_layers(self, trainer: Trainer, pl_module: LightningModule) -> None:
        with kept_state(unwrap_model(pl_module)):
            self.fit_inputs(trainer, pl_module)  # before any probe pass: how forward is called
            self._resolve_layers(pl_module)
        self.remember_modules(pl_module)
        self.layers_found(trainer, pl_module)

    def layers_found(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """What depends on ``selected``, once it is resolved (a subclass's own checks)."""

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.fit_batches = 0
        if self._layers_pending and not has_lazy_weights(pl_module):
            self._layers_pending = False
            self._find_layers(trainer, pl_module)

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.find_pending_layers(trainer, pl_module)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def _event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.follow_changes(trainer, pl_module):
            super()._event(trainer, pl_module)

    def find_pending_layers(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Layers (and how ``forward`` is called) once the first training step made them.

        And the hook that read what the fit's first step does to the images comes off
        (``StepFollowing.tap_step``), and copies the step made of hooked modules keep none
        of the package's hooks (``own_hooks.drop_copied_hooks``).
        """
        if self._layers_pending:  # lazy modules, made by the step that just ran
            self._layers_pending = False
            self._find_layers(trainer, pl_module)
        self.untap_step(trainer)
        drop_copied_hooks()

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: Any) -> None:
        super().on_exception(trainer, pl_module, exception)  # the followed batch let go
        if self._sink is not None:
            self._sink.wait()  # the run's own error is the one to show
        self._end_of_failed_fit(trainer, pl_module, exception)


def with_probe(
    model: nn.Module, grad: bool = False
) -> contextlib.AbstractContextManager[nn.Module]:
    """``probe_mode`` on the unwrapped model (the one place monitors enter it)."""
    return probe_mode(unwrap_model(model), grad=grad)
