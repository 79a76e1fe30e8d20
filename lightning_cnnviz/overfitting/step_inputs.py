"""What the steps' own code does to the images: a part of ``OverfittingMonitor``.

The probes read images from the datasets, so a normalisation written in
``training_step`` only (``x = (x - mean) / std`` there, raw images in ``validation_step``)
leaves them alike: a BatchNorm net at 83% val accuracy (97% normalised in both steps) was
told as a BatchNorm mismatch, whose remedies fix nothing, and a net without BatchNorm
logged a val loss 4x its own in silence. ``StepInputs`` reads one batch of each split, once per
fit: the batch's images as Lightning hands them to the step and what the model's first
layer (``first_layer``) receives of them (a tap on that layer for the one batch, removed at the
batch's end; probe passes skipped), compared by ``core.step_input_shift.step_shift``. The
training batch is read again on the batch a validation follows (``validates_after``), or
where Lightning's schedule cannot be read ahead (a time interval, batches counted across
epochs), on the first batch after each of the monitor's events: a ``training_step`` that
changes what it does mid-run (hunt 89: inputs scaled x255 there from step 300, told as a
BatchNorm mismatch) is compared as it is at that validation. The
result stands in for the probes' comparison where that finds nothing (``run_data.py``),
and the rule ``split_inputs.inputs_differ`` tells it.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from torch.utils.data import DataLoader

from lightning_cnnviz.core.capture import tap_forward
from lightning_cnnviz.core.findings import Finding
from lightning_cnnviz.core.image_keys import ImageKey, image_keys
from lightning_cnnviz.core.input_layer import compiled_entry, first_layer
from lightning_cnnviz.core.input_shift import channel_stats, moved_shift
from lightning_cnnviz.core.items import integer_dtype, parts, split_sample
from lightning_cnnviz.core.probe_pass import in_probe_pass
from lightning_cnnviz.core.run_datasets import find_dataset
from lightning_cnnviz.core.samplers import first_loader, sampler_known
from lightning_cnnviz.core.selection import is_compiled, unwrap_model
from lightning_cnnviz.core.split_batches import changes_inputs, layer_shift, loaded_shift
from lightning_cnnviz.core.step_input_shift import (
    StepInput,
    channel_values,
    same_formula,
    step_shift,
    values_fit,
)
from lightning_cnnviz.core.stored_form import seen_batch
from lightning_cnnviz.overfitting.repeated_items import (
    BATCHES,
    EARLY,
    drawn_reach,
    reach_text,
    repeated_items,
    repeated_text,
)
from lightning_cnnviz.overfitting.val_relabelled import LabelRead, changed_share, label_read

__all__ = ["StepInputs"]


def _labels(targets: Any, n: int) -> Tensor | None:
    """A batch's ``n`` class labels as they are (on their device), else ``None``."""
    if isinstance(targets, Tensor) and targets.shape == (n,) and integer_dtype(targets):
        return targets.detach()
    return None


def _items_known(trainer: Trainer, size: int) -> bool:
    """Whether the items the training loader reads are known (``sampler_known``)."""
    loader = first_loader(trainer.train_dataloader)
    return not isinstance(loader, DataLoader) or sampler_known(loader, size)


TRAIN_READ = 16  # training batches of fewer images are not compared across epochs


def validates_after(trainer: Trainer, batch_idx: int) -> bool | None:
    """Whether Lightning validates once this training batch ends (``None``: cannot tell).

    As ``_TrainingEpochLoop`` decides it where the batches are counted within each epoch:
    every ``val_check_batch`` batches, in an epoch ``check_val_every_n_epoch`` selects.

    Example::

        >>> from types import SimpleNamespace as Run
        >>> run = Run(check_val_every_n_epoch=1, val_check_batch=4, enable_validation=True,
        ...           current_epoch=0)
        >>> [validates_after(run, i) for i in range(4)]
        [False, False, False, True]
        >>> validates_after(Run(check_val_every_n_epoch=None, val_check_batch=4), 3) is None
        True
    """
    every, check = trainer.check_val_every_n_epoch, getattr(trainer, "val_check_batch", None)
    if (
        every is None
        or not isinstance(check, int)
        or getattr(trainer, "_val_check_time_interval", None)
    ):
        return None
    if not trainer.enable_validation or (trainer.current_epoch + 1) % every:
        return False
    return (batch_idx + 1) % check == 0


class StepInputs:
    """The first layer's input in one training and one validation batch (a part of the monitor).

    The monitor's batch hooks call ``_tap_batch`` at a batch's start and ``_remove_tap`` at
    its end, an exception or teardown. Uses the monitor's ``disabled``; keeps ``_steps`` (a
    ``StepInput`` per split), ``_step_tap`` (the handle while a batch runs) and
    ``_step_why`` (why none can be read).
    """

    disabled: bool
    section: str
    _tell_data: Any  # ``RunData``'s
    _steps: dict[str, StepInput]
    _train_before: StepInput | None  # the training batch read before ``_steps["train"]``
    _step_events: int  # the monitor's events when the training batch was last read
    events: int  # the monitor's
    _step_tap: Any
    _step_why: str
    # per split, a batch's channel statistics: the first read's ("first"), the latest's ("now")
    _reads: dict[str, dict[str, tuple[Tensor, Tensor]]]

    def _reset_steps(self) -> None:
        self._remove_tap()
        self._steps, self._step_why, self._step_events = {}, "", 0
        self._train_before = None
        self._reads = {"train": {}, "val": {}}
        self._val_labels: dict[str, LabelRead | None] = {}  # the first val batch's, as _reads
        self._item_keys: list[list[ImageKey | None]] = []
        self._item_labels: list[Tensor | None] = []  # each batch's classes of its keys

    def _read_items(self, trainer: Trainer, batch: Any) -> None:
        """The first training batches' images as keys: a loader repeating them is told.

        So is one drawing them from few of its set's items (``drawn_reach``, a note as
        ``loader_reach``'s), once ``BATCHES`` are read.
        """
        keys = getattr(self, "_item_keys", [])
        if len(keys) >= BATCHES or self.disabled or trainer.overfit_batches:
            return
        try:
            images = split_sample(batch)[0]
            if not isinstance(images, Tensor) or images.dim() < 2:
                return
            labels = _labels(parts(batch)[1], len(images))
            read = image_keys(images, plain=False)
            # images of one value (blank cells a set holds by design: hunt 35) say nothing
            kept = [i for i, key in enumerate(read) if key is not None]
            keys.append([read[i] for i in kept])
            # the labels stay on their device until all are read: one transfer, at the last
            kept_labels = None if labels is None else labels[kept]
            self._item_labels = [*getattr(self, "_item_labels", []), kept_labels]
            self._item_keys = keys
            told = {f.kind for f in self._own_findings()}
            if len(keys) < EARLY or told & {"repeated_batches", "repeated_items"}:
                return  # told, or the set itself repeats its images: that explains the batches
            size = len(find_dataset(trainer, "train"))
        except Exception:  # no image tensor, no set of known length: nothing to count
            return
        step, epoch = trainer.global_step, trainer.current_epoch
        if found := repeated_items(keys, max(len(k) for k in keys), size):
            text = repeated_text(found)
            self._tell_data(trainer, Finding(self.section, "repeated_batches", step, epoch,
                                             text, found))  # fmt: skip
        elif len(keys) == BATCHES and not _items_known(trainer, size):
            # a sampler of one's own (a set holding copies of its images, read by torch's
            # samplers, repeats by design: hunt 37, five copies of 2,000 digits)
            held = self._item_labels
            labels = None if any(y is None for y in held) else torch.cat(held).tolist()
            if found := drawn_reach(keys, labels, size):
                text = reach_text(found)
                self._tell_data(trainer, Finding(self.section, "repeated_items", step, epoch,
                                                 text, found, severity="note"))  # fmt: skip

    def _tap_batch(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        batch: Any,
        split: str,
        batch_idx: int = 0,
    ) -> None:
        """Tap the first layer for this batch, where its split is due a read (not in sanity).

        Due: not read yet; the training split also on the batch a validation follows, or
        (where that cannot be told) the first batch after an event; the val split on the
        first batch of each validation (hunt 91: channels reversed in `validation_step` from
        epoch 3 were told as memorisation, the val step read at the first validation only).
        """
        if self._step_why or self.disabled:
            return
        if split in self._steps:  # read already: again only where due (read ahead once)
            ahead = validates_after(trainer, batch_idx) if split == "train" else batch_idx == 0
            if not (ahead or (ahead is None and self.events > self._step_events)):
                return
        if trainer.state.fn != "fit":
            return
        if trainer.sanity_checking:  # the model at its start: an input BatchNorm not yet fitted
            return
        try:
            images = split_sample(batch)[0]
        except TypeError:
            self._step_why = "the batches hold no image tensor it can find"
            return
        # as the convolutions see them (``ProbeReader.fit_inputs``)
        images = seen_batch(images, getattr(trainer, "_cnnviz_stored", None))
        model = unwrap_model(pl_module)
        layer, why = None, ""
        if images.dim() >= 3 and integer_dtype(images):
            images = images.float()  # uint8 pixels the model scales itself (setups hunt 59)
        if images.dim() < 3 or not images.is_floating_point():
            why = "its inputs are not float images"
        elif is_compiled(model):  # the compiled network's entry, outside its graph (hunt 35)
            layer = compiled_entry(model)
            why = "" if layer is not None else "it runs through torch.compile"
        else:
            layer, why = first_layer(model, images.shape[1])
        if layer is None:
            self._step_why = f"the model's first layer cannot be read: {why}"
            return

        events, wanted = self.events, [True]  # the batch's first call only
        with torch.no_grad():  # as loaded: the step's code may change the batch in place
            loaded = channel_stats(images)  # (setups hunt 66: `x.mul_(2)` read as unchanged)
            before = channel_values(images)  # some values of each channel, at set positions

        def read(args: tuple[Any, ...], _output: Any) -> None:
            x = args[0] if args else None
            if not wanted[0] or in_probe_pass() or not isinstance(x, Tensor):
                return
            if x.dim() == images.dim() and x.shape[1] == images.shape[1]:
                wanted[0] = False
                with torch.no_grad():
                    # noise added is no scale and shift of the images (their formula none)
                    same = x.shape == images.shape
                    fit = values_fit(before, channel_values(x)) if same else (None, None)
                    if split == "train":  # the read before: is its formula steady
                        self._train_before = self._steps.get("train")
                    self._steps[split] = StepInput(*loaded, *channel_stats(x), *fit)
                if split == "train":
                    self._step_events = events

        self._remove_tap()  # a batch Lightning ended without its end hook left one
        self._step_tap = tap_forward(layer, read)

    def _read_batch(self, trainer: Trainer, batch: Any, split: str) -> None:
        """A batch's per-channel statistics as loaded: val's first, training's first each epoch.

        Kept on the device until an evaluation compares them with the first read's
        (``_moved``): the probes hold the images as their first read gave them, so a
        pipeline changed mid-run was seen by nothing (hunt 29: val digits served
        unnormalised from epoch 3, the val loss tripled, unsaid or told as BatchNorm;
        hunt 35: training digits inverted from epoch 3, told late as "updates too large").
        A training batch of fewer than ``TRAIN_READ`` images is not read: its statistics
        move with the images drawn.
        """
        if self.disabled or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        try:
            images = split_sample(batch)[0]
        except TypeError:
            return
        if not isinstance(images, Tensor) or images.dim() < 3 or not images.is_floating_point():
            return
        if split == "train" and len(images) < TRAIN_READ:
            return
        images = seen_batch(images, getattr(trainer, "_cnnviz_stored", None))
        with torch.no_grad():
            stats = channel_stats(images)
            if split == "val":  # and its labels, against a label map changed mid-run
                labels = label_read(images, _labels(parts(batch)[1], len(images)))
                self._val_labels.setdefault("first", labels)
                self._val_labels["now"] = labels
        self._reads[split].setdefault("first", stats)
        self._reads[split]["now"] = stats

    def _labels_changed(self) -> float | None:
        """The share of the first val batch's labels changed since the first validation."""
        first, now = self._val_labels.get("first"), self._val_labels.get("now")
        return None if first is now else changed_share(first, now)

    def _moved(self, split: str) -> dict[str, float]:
        """How a split's batches moved since its first read (``{}``: they did not)."""
        first, now = self._reads[split].get("first"), self._reads[split].get("now")
        if first is None or now is None or first is now:
            return {}
        found = moved_shift(first, now)
        return {**found, "moved" if split == "val" else "moved_train": 1.0} if found else {}

    def _remove_tap(self) -> None:
        if getattr(self, "_step_tap", None) is not None:
            self._step_tap.remove()
        self._step_tap = None

    def _steps_undo_shift(self) -> bool:
        """Whether the steps change the images and both splits' first layers meet them alike.

        Then the probes' difference, read on the datasets' images, is not what the model
        meets (``core.split_batches``; hunt 116: a normalisation in `training_step`, the
        val set normalised in its dataset, told "preprocessed differently").
        """
        train, val = self._steps.get("train"), self._steps.get("val")
        if train is None or val is None or not (changes_inputs(train) or changes_inputs(val)):
            return False
        return not layer_shift(train, val)

    def _step_shift(self) -> dict[str, float]:
        """How the steps' code hands the first layer the two splits' images (``{}``: alike)."""
        if "train" not in self._steps or "val" not in self._steps:
            return {}
        # the loaders' own work, which the probes do not see (``RunData._input_shift``)
        if getattr(self, "_loaded_only", False) and (
            loaded := loaded_shift(self._steps["train"], self._steps["val"])
        ):
            return {**loaded, "as_loaded": 1.0}
        train, before = self._steps["train"], self._train_before
        steady = before is not None and same_formula(before, train)
        found = step_shift(train, self._steps["val"], steady)
        return {**found, "in_steps": 1.0} if found else {}
