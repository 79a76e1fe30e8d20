"""Which layers a monitor watches: ``layers`` resolved at setup, and their call sites.

``LayerWatcher`` is a part of ``Monitor`` (a mixin), in a file of its own so that
``monitor.py`` keeps the schedule and the firing of events: the ``auto`` rule a
subclass overrides, ``layers`` resolved at each fit's setup (or stepping aside when
``auto`` finds nothing), a module called more than once named per call site
(``relu#0``, ``relu#1``), and the selection in words for ``cnnviz/layers``, written at
a fit's first event.
It reads the monitor's ``layers``, ``selected``, ``shared``, ``section``, ``disabled``,
``_call_counts`` and ``_layers_logged``, and uses its ``sink``, ``probe_input``,
``step_aside``, ``warn_once`` and ``_step_aside``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from lightning.pytorch import LightningModule, Trainer
from torch import nn

from lightning_cnnviz.core.capture import module_name, site_name
from lightning_cnnviz.core.inputs import id_inputs
from lightning_cnnviz.core.layer_calls import count_call_sites
from lightning_cnnviz.core.layer_types import CONV_TYPES, kernel_weight
from lightning_cnnviz.core.module_paths import registered
from lightning_cnnviz.core.monitor_summary import run_prefix
from lightning_cnnviz.core.selection import (
    LayerNotFoundError,
    LayerSpec,
    NoAutoLayers,
    named_layers,
    resolve_layers,
    scripted_layers,
    unwrap_model,
)
from lightning_cnnviz.core.voice import listed

__all__ = ["LayerWatcher", "builds_late", "has_lazy_weights", "replaced"]


def builds_late(pl_module: nn.Module) -> bool:
    """Whether ``pl_module`` overrides ``configure_model`` or ``setup`` (its layers may come then).

    Lightning calls both after the callbacks' ``setup`` (setups hunt 23: a network made in
    the module's ``setup`` was "no layer it can watch" to four monitors). Read off the
    class, so a module of the ``pytorch_lightning`` package counts too.

    Example::

        >>> class Lazy(LightningModule):
        ...     def configure_model(self):
        ...         self.net = nn.Linear(2, 2)
        >>> class InSetup(LightningModule):
        ...     def setup(self, stage):
        ...         self.net = nn.Linear(2, 2)
        >>> builds_late(Lazy()), builds_late(InSetup()), builds_late(LightningModule())
        (True, True, False)
    """
    base = next((c for c in type(pl_module).__mro__ if c.__name__ == "LightningModule"), None)
    if base is None:
        return False
    return any(
        getattr(type(pl_module), hook, None) is not getattr(base, hook, None)
        for hook in ("configure_model", "setup")
    )


def has_lazy_weights(model: nn.Module) -> bool:
    """Whether ``model`` holds lazy modules' weights not made yet (``nn.LazyConv2d`` & co.).

    They take their shapes at the run's first forward: a pass of the monitors' before it
    would make them from a fork of the random state, so the run would start from other
    weights than without the monitors.

    Example::

        >>> has_lazy_weights(nn.LazyLinear(2)), has_lazy_weights(nn.Linear(2, 2))
        (True, False)
    """
    tensors = [*model.parameters(), *model.buffers()]
    return any(nn.parameter.is_lazy(t) for t in tensors)


def _complex_weights(module: nn.Module) -> bool:
    return any(p.is_complex() for p in module.parameters(recurse=False))


def replaced(pl_module: nn.Module, selected: dict[str, nn.Module]) -> list[str]:
    """The names of ``selected`` whose module in ``pl_module`` is another object now.

    Example::

        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3))
        >>> selected = {"0": net[0]}
        >>> net[0] = nn.Conv2d(1, 2, 3)
        >>> replaced(net, selected)
        ['0']
    """
    model = unwrap_model(pl_module)
    return [name for name, module in selected.items() if registered(model, name) is not module]


class LayerWatcher:
    """The layers of one monitor (see the module docstring)."""

    # False for a monitor that reads the model's outputs only (no `layers` to resolve).
    watches_layers: ClassVar[bool] = True
    # What `layers="auto"` looks for, in words (said when it finds nothing).
    auto_description: ClassVar[str] = "it looks for conv layers"
    # Monitors that hook layers during a forward pass need per-call-site names.
    needs_call_sites: ClassVar[bool] = True
    # What a monitor still does where `layers="auto"` finds nothing ("": it steps aside).
    without_layers: ClassVar[str] = ""
    # its maps are laid on the input images: none where `forward` makes the maps' images
    maps_on_input: ClassVar[bool] = False
    # whether layers other than those its auto rule finds can be named (attention maps are
    # read from the forms ``auto_description`` names only)
    others_by_name: ClassVar[bool] = True

    section: str
    layers: LayerSpec
    selected: dict[str, nn.Module]
    shared: set[str]
    disabled: bool
    _call_counts: dict[str, int]
    _layers_logged: bool
    _probes: dict[str, Any]

    def auto_layers(self, model: nn.Module, available: dict[str, nn.Module]) -> list[str]:
        """Names ``layers="auto"`` picks (override per monitor; default: none)."""
        return []

    def sites(self) -> list[str]:
        """Selected layers by call site (``relu#0``, ``relu#1`` for a module called twice)."""
        names: list[str] = []
        for name in self.selected:
            count = self._call_counts.get(name, 1) if name in self.shared else 1
            names += [site_name(name, i, self.shared) for i in range(count)]
        return names

    def find_call_sites(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Run one probe pass to learn which selected modules are called more than once."""
        model = unwrap_model(pl_module)
        x = self.probe_input(trainer, pl_module)[:1]
        counts = count_call_sites(model, self.selected, lambda: model(x))
        self._call_counts = counts
        self.shared = {name for name, count in counts.items() if count > 1}

    def watched_modules(self) -> dict[str, nn.Module]:
        """The modules the monitor reads by name: one replaced mid-fit makes it find them anew."""
        return self.selected

    def module_at(self, site: str) -> nn.Module:
        """The selected module a call site (``relu#1``) is a call of."""
        return self.selected[module_name(site, self.selected)]

    def describe_layers(self) -> str:
        """The text logged once to ``cnnviz/layers``."""
        parts = [f"`{s}` ({type(self.module_at(s)).__name__})" for s in self.sites()]
        return f"**{type(self).__name__}** ({self.section}): " + ", ".join(parts)

    def _log_layers_once(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """At a fit's first event: find the call sites (if needed), write ``cnnviz/layers``."""
        if not self._layers_logged:
            self._layers_logged = True
            if self.selected and self.needs_call_sites:
                self.find_call_sites(trainer, pl_module)
                self._pass_over_uncalled(trainer, pl_module)
            if not self.disabled:
                prefix = run_prefix(trainer)  # the run's record, as its summary
                self.sink.layers(self.describe_layers(), trainer.global_step, prefix)

    def _pass_over_uncalled(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Leave out selected layers the probe pass never calls (a training-only head).

        ``auto`` chooses again among the layers ``forward`` calls in eval mode; named ones
        are said once, and where none is called the monitor steps aside (setups hunt 23:
        an auxiliary ``Linear`` called in training only was picked, nothing was written and
        nothing said).
        """
        uncalled = [name for name, count in self._call_counts.items() if count == 0]
        if not uncalled:
            return
        model = unwrap_model(pl_module)
        words = (
            f"{listed(uncalled)} {'is' if len(uncalled) == 1 else 'are'} "
            "not called by the model's forward() in eval mode (the probe passes)"
        )
        if self.layers == "auto" or list(self.layers) == ["auto"]:
            available = named_layers(model)
            x = self.probe_input(trainer, pl_module)[:1]
            counts = count_call_sites(model, available, lambda: model(x))
            called = {name: m for name, m in available.items() if counts[name]}
            picked = self.auto_layers(model, called)
            if not picked:
                self._none_called(f"`layers='auto'` picked {words}, nor any other it can watch")
                return
            self.selected = {name: called[name] for name in picked}
            self.find_call_sites(trainer, pl_module)
            self.warn_once("uncalled", f"{words}: `layers='auto'` watches {listed(picked)} instead")
            return
        if len(uncalled) == len(self.selected):
            self._none_called(f"{words}; name layers with `layers=` that it calls")
            return
        self.selected = {n: m for n, m in self.selected.items() if n not in uncalled}
        self.warn_once("uncalled", f"{words}: nothing is recorded for them")

    def _none_called(self, reason: str) -> None:
        """No selected layer is called: on without layers where the monitor can, else aside."""
        if not self.without_layers:
            self.step_aside(reason)
            return
        self.selected = {}
        self.warn_once("no_layers", f"{reason}: {self.without_layers}")

    def _input_words(self, model: nn.Module) -> tuple[str, bool]:
        """What about the probe's inputs explains finding nothing, in words ("" if nothing).

        And whether the inputs have fewer dimensions than the convolutions' maps (no map can
        be laid on them).

        Integer ids (a text CNN's tokens); or inputs of another dimension than the
        convolutions take: clips (N, T, C, H, W) through 2-D convolutions (frames folded into
        the batch give T maps per input, none of the input's shape), flat vectors (N, 784)
        or images without a channel dimension that ``forward`` reshapes.
        """
        images = getattr(next(iter(self._probes.values()), None), "images", None)
        if images is None:
            return "", False
        if words := id_inputs(images):
            return f"; {words}", False
        weights = [kernel_weight(m) for m in model.modules() if isinstance(m, CONV_TYPES)]
        dims = {w.dim() - 2 for w in weights if w is not None}
        if len(dims) != 1 or images.dim() == (conv := dims.pop()) + 2:
            return "", False
        shape = f"{images.dim()}-D ({tuple(images.shape[1:])} per sample)"
        if images.dim() == conv + 3:
            return (
                f"; its inputs are {shape} and its convolutions {conv}-D: frames folded into "
                "the batch give maps of frames, none of the input's shape"
            ), False
        return (
            f"; its inputs are {shape} and its convolutions {conv}-D: `forward` turns the "
            "inputs into maps of another shape (a flat vector reshaped, a signal made a "
            "spectrogram), so no map has the input's shape"
        ), images.dim() < conv + 2

    def _resolve_layers(self, pl_module: LightningModule) -> None:
        """Set ``selected`` from ``layers`` (at each fit's setup, for a monitor that watches)."""
        if not self.watches_layers:
            return
        # A pattern that matches nothing is the user's error: raise, never step aside.
        # "auto" finding nothing (a model this monitor cannot read) steps aside, saying why.
        try:
            self.selected = resolve_layers(
                pl_module, self.layers_now(), self.auto_layers, owner=type(self).__name__
            )
            if complex_ := [n for n, m in self.selected.items() if _complex_weights(m)]:
                self.selected = {}  # setups hunt 28: `.float()` drew the real part, unsaid
                self.step_aside(
                    f"{listed(complex_)} {'has' if len(complex_) == 1 else 'have'} "
                    "complex-valued weights, and it draws and measures real values only"
                )
                return
            if scripted := scripted_layers(unwrap_model(pl_module)):
                # left out of every monitor alike (setups hunt 24: said by none that watched)
                self.say_once_per_run(
                    "scripted",
                    f"the model's {listed(scripted)} {'is' if len(scripted) == 1 else 'are'} "
                    "compiled to TorchScript (`torch.jit.script` or `torch.jit.trace`), which "
                    "takes no hooks: the monitors leave "
                    f"{'it' if len(scripted) == 1 else 'them'} out",
                )
        except NoAutoLayers:
            self.selected = {}
            if self.without_layers:  # its main figures need no layer
                self.warn_once(
                    "no_layers",
                    f"`layers='auto'` found no layer ({self.auto_description}): "
                    f"{self.without_layers}",
                )
                return
            scripted = scripted_layers(unwrap_model(pl_module))
            held = (
                f"; {listed(scripted)} {'is' if len(scripted) == 1 else 'are'} compiled to "
                "TorchScript (`torch.jit.script` or `torch.jit.trace`), which takes no hooks"
                if scripted
                else ""
            )
            inputs, made = self._input_words(unwrap_model(pl_module))
            named = self.others_by_name and not (made and self.maps_on_input)
            advice = "; name layers with `layers=` to watch others" if named else ""
            self.step_aside(
                f"`layers='auto'` found no layer it can watch in this model "
                f"({self.auto_description}{held}{inputs}){advice}"
            )
        except LayerNotFoundError:
            raise
        except Exception as err:  # the auto rule's probe pass failed: step aside (or raise)
            self.selected = {}
            self._step_aside(err)
