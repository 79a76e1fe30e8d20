"""Following what a training step does to the images, for the probe passes to do alike.

``StepTap`` reads, while one training batch runs, the modules of the model it reaches with
the batch's images and what they received (one global forward pre-hook: no hook on the
model's modules). ``StepFollower`` taps the fit's first two training batches and, at the
first event after them, runs probe passes of the same images, compares what the same
modules receive there (``step_transform.py``) and has every later probe pass apply a
per-channel scale and shift both batches show (``probe_pass.follow_step``). Its result is
said once by the monitor that runs it.

Example::

    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    >>> x = torch.rand(8, 3, 8, 8)
    >>> tap = StepTap(net, x)
    >>> _ = net((x - 0.5) / 0.25)  # the step normalises, then calls the model
    >>> tap.remove()
    >>> [(name, tuple(seen.shape)) for _, name, seen in tap.calls]
    [('', (4, 3, 8, 8)), ('0', (4, 3, 8, 8))]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.module import register_module_forward_pre_hook

from lightning_cnnviz.core.inputs import to_model
from lightning_cnnviz.core.own_hooks import own_hook
from lightning_cnnviz.core.probe_pass import follow_step, in_probe_pass, probe_mode
from lightning_cnnviz.core.selection import is_compiled, outside_compiled
from lightning_cnnviz.core.step_transform import Change, agreed, step_change
from lightning_cnnviz.core.stored_form import seen_batch

__all__ = ["KEEP", "StepFollower", "StepTap"]

KEEP = 4  # images of a batch compared; enough to fit a scale and shift per channel
CALLS = 4  # modules kept per batch, in the order the step calls them
BATCHES = 2  # batches read: a scale and shift drawn anew per batch is augmentation


class StepTap:
    """The modules of ``model`` one training batch reaches with its images, and what they got.

    Each module's first call whose first tensor argument holds the batch's items and
    channels (a float tensor of its number of dims: a resize in the step keeps them) is
    kept, its first ``KEEP`` items, up to ``CALLS`` modules, until ``remove``. Probe
    passes are passed over. In a compiled model, only the modules outside its graphs are
    read (each with its own hook: a global one would fire inside them too).
    """

    def __init__(self, model: nn.Module, images: Tensor, stored: str | None = None) -> None:
        self.images = images[:KEEP].detach().clone()
        # as stored, or as the convolutions see them where the step converts them
        self.shapes = {tuple(x.shape) for x in (images, seen_batch(images, stored))}
        self.calls: list[tuple[nn.Module, str, Tensor]] = []
        compiled = is_compiled(model)
        modules = {
            name: module
            for name, module in (
                outside_compiled(model).items() if compiled else model.named_modules()
            )
            if not isinstance(module, torch.jit.ScriptModule)  # which takes no hooks
        }
        self._names = {id(module): name for name, module in modules.items()}
        self._handles: list[Any] = (
            [module.register_forward_pre_hook(own_hook(self._read)) for module in modules.values()]
            if compiled
            else [register_module_forward_pre_hook(self._read)]
        )

    def _read(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if len(self.calls) >= CALLS or id(module) not in self._names or in_probe_pass():
            return
        if any(kept is module for kept, _, _ in self.calls):
            return
        x = next((a for a in args if isinstance(a, Tensor)), None)
        if x is None or not x.is_floating_point():
            return
        if any(x.dim() == len(shape) and tuple(x.shape[:2]) == shape[:2] for shape in self.shapes):
            self.calls.append((module, self._names[id(module)], x[:KEEP].detach().clone()))

    def remove(self) -> None:
        """Take the hook off (at the batch's end, or where the fit stops)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def change(self, model: nn.Module, stored: str | None) -> Change | None:
        """What the step did before the first kept module a probe pass calls too."""
        if not self.calls:
            return None
        got: dict[int, Tensor] = {}

        def read(m: nn.Module, args: tuple[Any, ...]) -> None:
            x = next((a for a in args if isinstance(a, Tensor)), None)
            if x is not None:
                got.setdefault(id(m), x[:KEEP].detach().clone())

        handles = []
        try:
            with probe_mode(model), torch.no_grad():
                # inside the probe pass: after its own hooks, which hand `forward` the
                # images as stored (channels last), as the step did
                handles += [
                    module.register_forward_pre_hook(own_hook(read)) for module, _, _ in self.calls
                ]
                model(to_model(seen_batch(self.images, stored), model))
        except Exception:  # the probes say why a pass fails, in their words
            return None
        finally:
            for handle in handles:
                handle.remove()
        for module, name, seen in self.calls:  # in the order the step called them
            if id(module) in got:
                return step_change(name, seen, got[id(module)])
        return None


class StepFollower:
    """The fit's first ``BATCHES`` training batches followed, and what the probes do after.

    Kept on the trainer (``InputForm``): ``start`` at a batch's start, ``end_batch`` at its
    end, ``follow`` at every event until it is settled, ``drop`` where the fit stops. An
    event after one read batch follows its scale and shift at once (an early event, or a
    fit of one step, would show raw probes); the second batch confirms it, or takes it
    back where the two disagree (a jitter drawn per batch).
    """

    def __init__(self) -> None:
        self.taps: list[StepTap] = []
        self.done = False
        self._batch: Any = None
        self._first: Change | None = None  # the first read batch's change, once compared
        # training's change where no scale and shift follows it, while a validation batch
        # is read for one (``start_val``); ``_val``: that batch's tap
        self.unfollowed: Change | None = None
        self._val: StepTap | None = None

    @property
    def reading(self) -> bool:
        """Whether a batch is still to be tapped (checked first: no work once read)."""
        return not self.done and len([tap for tap in self.taps if tap.calls]) < BATCHES

    def start(
        self, model: nn.Module, images: Tensor, batch: Any, stored: str | None = None
    ) -> None:
        """Tap batch ``batch`` (any key: every monitor starts it) where fewer are read."""
        if not self.reading or batch == self._batch:
            return
        self.end_batch()
        # a batch that never reached the model (skipped by `on_train_batch_start`
        # returning -1) is no reading
        self.taps = [tap for tap in self.taps if tap.calls]
        self._batch = batch
        self.taps.append(StepTap(model, images, stored))

    def start_val(self, model: nn.Module, images: Tensor, stored: str | None = None) -> None:
        """Tap a validation batch, where training's change could not be followed.

        A training step that augments, then normalises (noise, a flip, a jitter drawn
        per batch) is no scale and shift; its ``validation_step`` usually normalises
        alone, which the probe passes, run as validation runs, then do alike (setups
        hunt 34: probes left raw under a normalisation followed by noise or a flip).
        """
        if self.unfollowed is not None and self._val is None:
            self._val = StepTap(model, images, stored)

    def end_batch(self) -> None:
        """The running batch ended: its hook comes off (what it read waits for ``follow``)."""
        for tap in [*self.taps, *([self._val] if self._val is not None else [])]:
            tap.remove()

    def drop(self) -> Change | None:
        """No more to read in this fit: the hooks come off, the taps are let go.

        Returns training's change still waiting for a validation batch (to be said).
        """
        self.end_batch()
        waiting, self.unfollowed, self._val = self.unfollowed, None, None
        self.taps, self.done = [], True
        return waiting

    def follow(self, model: nn.Module, stored: str | None, val: bool = False) -> Change | None:
        """The change to say once settled (``None`` until then, and after).

        Reads the batches whose step ran (an event at a batch's end may come before this
        monitor's end hook); one that has not reached the model yet (an event at a batch's
        start) is left to it. ``val``: the run validates, so a change training's batches
        show but no scale and shift follows waits for a validation batch (``start_val``).
        """
        if self._val is not None and self._val.calls:
            return self._follow_val(model, stored)
        read = [tap for tap in self.taps if tap.calls]
        if self.done or not read:
            return None
        for tap in read:
            tap.remove()
        if self._first is None:
            self._first = read[0].change(model, stored) or Change("", None, None, {})
            if self._first.scale is not None and self._first.offset is not None:
                follow_step(model, (self._first.name, self._first.scale, self._first.offset))
        if len(read) < BATCHES:
            return None
        first = self._first if self._first.scale is not None or self._first.figures else None
        follow_step(model, None)  # the second batch read against the probes as they are
        found = agreed(first, read[1].change(model, stored))
        self.drop()
        if found is not None and found.scale is not None and found.offset is not None:
            follow_step(model, (found.name, found.scale, found.offset))
        elif val and found is not None and "size" not in found.figures:
            self.unfollowed = found  # what validation's step does may be followed
            return None
        return found  # taken back where the two batches show no scale and shift alike

    def _follow_val(self, model: nn.Module, stored: str | None) -> Change | None:
        """Follow the validation batch's scale and shift, or say training's change."""
        tap, waiting = self._val, self.unfollowed
        assert tap is not None
        tap.remove()
        found = tap.change(model, stored)
        self._val, self.unfollowed = None, None
        if found is not None and found.scale is not None and found.offset is not None:
            follow_step(model, (found.name, found.scale, found.offset))
            return Change(found.name, found.scale, found.offset, {**found.figures, "val": 1.0})
        return waiting
