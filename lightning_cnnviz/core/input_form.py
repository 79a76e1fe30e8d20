"""How a model's ``forward`` takes the probe images, found once per fit before any probe pass.

``InputForm`` is a part of ``ProbeReader`` (a mixin): one trial pass on one image of the
val set tells whether ``forward`` takes the images as they are, as the data item
(``{key: images}``), by a keyword only (``forward(*, pixel_values)``), as the batch
``[images, labels]`` it unpacks itself, or stored otherwise
than its convolutions see them (channels last, a Keras port that permutes them; without a
channel axis, which ``forward`` adds); ``probe_pass.takes_items`` then hands every probe
pass the images so. Where none runs, ``probe_call.why_not`` (or ``why_not_one``, for a
``forward`` taking the item's several images as one argument) says why. The batch-transfer
hooks the probes skip are said once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import Tensor, nn

from lightning_cnnviz.core import stored_form
from lightning_cnnviz.core.capture import first_tensor
from lightning_cnnviz.core.inputs import to_model
from lightning_cnnviz.core.item_fields import image_key
from lightning_cnnviz.core.items import read_item, split_sample
from lightning_cnnviz.core.probe_call import (
    CUT_OFF,
    REENTRANT,
    call_error,
    checkpoints_reentrant,
    keyword_input,
    reaches_input,
    why_not,
    why_not_one,
)
from lightning_cnnviz.core.probe_pass import (
    Batch,
    Keyword,
    Stored,
    follow_step,
    probe_mode,
    takes_items,
)
from lightning_cnnviz.core.run_datasets import find_dataset, train_batch_size
from lightning_cnnviz.core.selection import unwrap_model
from lightning_cnnviz.core.trace_images import trace_images
from lightning_cnnviz.core.voice import listed

__all__ = ["InputForm", "batch_hooks"]


def batch_hooks(trainer: Any) -> list[str]:
    """The batch-transfer hooks the run's module or DataModule overrides, by name.

    Lightning applies them to every batch; the probes, read from the datasets, skip them
    (applied there, an augmentation gated on ``trainer.training`` would draw a new probe
    at every event, from the run's own random state).
    """
    names = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")
    owners = [("module", trainer.lightning_module, LightningModule)]
    if trainer.datamodule is not None:
        owners.append(("DataModule", trainer.datamodule, LightningDataModule))
    return [
        f"{owner}.{name}"
        for owner, obj, parent in owners
        for name in names
        if is_overridden(name, obj, parent)
    ]


class InputForm:
    """How ``forward`` takes the probe images (a part of ``ProbeReader``).

    Uses the monitor's ``say_once_per_run``; keeps what it found on the trainer, for
    the fit's other monitors (``_cnnviz_inputs_of``, ``_cnnviz_unfit``,
    ``_cnnviz_stored``).
    """

    say_once_per_run: Callable[[str, str], None]  # ``voice.Voice``'s
    probe_input: Callable[..., Tensor]  # ``model_io.ProbeReader``'s
    untap_step: Callable[..., None]  # ``step_following.StepFollowing``'s

    def fit_inputs(self, trainer: Any, pl_module: nn.Module) -> None:
        """Find how ``forward`` takes the probe images, or why it cannot (once per fit).

        Where the items are dicts and ``forward`` fails on one image but runs on
        ``{key: image}``, every probe pass hands it the images so (``probe_pass.takes_items``),
        said once. Held out: ``forward(self, batch)`` reading ``batch["image"]`` made every
        probe-based monitor fail with "too many indices for tensor of dimension 4". Where
        neither runs, ``probe_call.why_not`` tells why (a second required input, a fixed
        batch size): the monitors step aside with it instead of the call's error.
        """
        model = unwrap_model(pl_module)
        if getattr(trainer, "_cnnviz_inputs_of", None) is model:
            return  # another monitor of this fit found it
        trainer._cnnviz_inputs_of, trainer._cnnviz_unfit = model, None
        trainer._cnnviz_stored = None
        takes_items(model, None)  # a model of an earlier fit on other data starts afresh
        follow_step(model, None)
        self.untap_step(trainer, drop=True)
        trainer._cnnviz_steps = None  # made anew at the fit's first batch (``tap_step``)
        if hooks := batch_hooks(trainer):
            self.say_once_per_run(
                "batch_hooks",
                f"the monitors read their probe images from the datasets, without the "
                f"run's {listed(hooks)}: where those normalise or convert the inputs, the "
                "probe passes see other inputs than training does (move that step into the "
                "dataset's transform or `forward` for the monitors to see what the model does)",
            )
        try:
            dataset = find_dataset(trainer, "val")
            item = read_item(dataset, 0)
        except Exception:  # no data, or an iterable set: the probes say it in their words
            return
        key = image_key(item)
        try:
            image = item[key] if key is not None else split_sample(item)[0]
        except Exception:  # items only a collate_fn reads: the probes read them so
            return
        if not isinstance(image, Tensor):
            return
        x = to_model(image[None], model)
        if call_error(model, x) is None:
            self._stored_form(trainer, model, x)
            return
        form = stored_form.form_of(x[0], model, converted=True)
        if form is not None and call_error(model, stored_form.seen_batch(x, form)) is None:
            self._stored_form(trainer, model, x, in_steps=True)
            return
        if (name := keyword_input(model)) is not None:
            takes_items(model, Keyword(name))
            if call_error(model, x) is None:
                self.say_once_per_run(
                    "takes_keyword",
                    f"the model's forward takes its images as the keyword `{name}` only: the "
                    f"monitors call it as `forward({name}=images)`",
                )
                return
            takes_items(model, None)
        if key is not None:
            takes_items(model, key)
            if call_error(model, x) is None:
                self.say_once_per_run(
                    "takes_items",
                    f"the model's forward takes the data item (a dict), not an image tensor: "
                    f"the monitors call it with {{{key!r}: images}}",
                )
                return
            takes_items(model, None)
        if isinstance(item, tuple | list) and len(item) == 2 and _takes_batch(model, x):
            self.say_once_per_run(
                "takes_batch",
                "the model's forward unpacks the batch `(images, labels)` itself and its "
                "outputs do not depend on the labels: the monitors call it with "
                "`[images, labels]`, the labels placeholders",
            )
            return
        # the monitors step aside with this reason where known, else say the call's error
        trainer._cnnviz_unfit = why_not_one(model, _images(item, image, model)) or why_not(
            model, x, train_batch_size(trainer)
        )

    def gradients_refused(self, trainer: Any, to_input: bool = False) -> str:
        """Why no gradient pass runs through the model ("" where none is known).

        Asked where a monitor whose passes differentiate failed: reentrant activation
        checkpointing (setups hunt 29: Grad-CAM told "a `.detach()` or `torch.no_grad()`
        after the layer", two monitors torch's "incompatible with .grad()").

        Args:
            trainer: the run's trainer (its module, unwrapped, takes one probe image).
            to_input: the pass differentiates w.r.t. the input images (saliency), so a
                ``forward`` that cuts them off (a stem under ``torch.no_grad()``) refuses it
                too (setups hunt 75: torch's "appears to not have been used in the graph").
        """
        try:
            model = unwrap_model(trainer.lightning_module)
            x = self.probe_input(trainer, trainer.lightning_module)
            x = x[: trace_images(trainer.lightning_module)]
            if checkpoints_reentrant(model, x):
                return REENTRANT
            if to_input and not reaches_input(model, x):
                return CUT_OFF
        except Exception:
            return ""
        return ""

    def _stored_form(
        self, trainer: Any, model: nn.Module, x: Tensor, in_steps: bool = False
    ) -> None:
        """Probes as the convolutions see the images, where ``forward`` or the steps change them.

        ``x``: one image as the data holds it. Stored channels last (permuted) or without a
        channel axis (added), the probes hold them as the convolutions see them (drawn, and
        Grad-CAM's maps laid over them, the right way up). Where ``model`` takes ``x``, its
        ``forward`` converts them and every probe pass hands it them as stored; ``in_steps``:
        it takes them only converted (the steps convert them), and the probe passes hand it
        them so. Held out (setups hunt 33): NHWC digits permuted in both steps made every
        probe monitor step aside, and image rows were compared as 28 channels.
        """
        shape = tuple(x.shape[1:])
        form = stored_form.form_of(x[0], model, converted=in_steps)
        if form is None:
            return
        seen = tuple(stored_form.seen_batch(x, form).shape[1:])
        stored, how = stored_form.WORDS[form]
        said = f"the inputs are stored {stored}, {shape}"
        trainer._cnnviz_stored = form
        if in_steps:
            takes_items(model, None)
            self.say_once_per_run(
                "stored_form",
                f"{said}, and the model's `forward` takes them as {seen}: the steps' code "
                f"{how} for its convolutions, and the monitors show, measure and hand them "
                f"to `forward` as {seen}",
            )
            return
        takes_items(model, Stored(form))
        self.say_once_per_run(
            "stored_form",
            f"{said}, and the model's `forward` {how} for its convolutions: the monitors "
            f"show and measure them as {seen}, and hand them to `forward` as stored",
        )


def _takes_batch(model: nn.Module, x: Tensor) -> bool:
    """Whether ``forward`` takes ``[images, labels]`` and its outputs ignore the labels.

    Set for the probe passes where so (``probe_pass.Batch``). Held out (setups hunt 26):
    ``forward(self, batch)`` unpacking ``x, y = batch`` made four monitors step aside on
    "not enough values to unpack", blamed on noise or token inputs. Two placeholder label
    sets must give the same outputs: a ``forward`` conditioned on the labels is not read.
    """
    outputs = []
    for fill in (0, 1):
        takes_items(model, Batch(fill))
        try:
            with probe_mode(model):
                outputs.append(first_tensor(model(x)).detach().clone())
        except Exception:
            takes_items(model, None)
            return False
    if outputs[0].shape != outputs[1].shape or not torch.equal(outputs[0], outputs[1]):
        takes_items(model, None)
        return False
    takes_items(model, Batch(0))
    return True


def _images(item: Any, image: Tensor, model: nn.Module) -> list[Tensor]:
    """The entries of a tuple or list item shaped as its ``image``, each a batch of one."""
    if not isinstance(item, (tuple, list)):
        return []
    # NumPy entries as the default collate reads them (``split_sample`` reads the image so)
    arrays = [np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v for v in item]
    found = [torch.as_tensor(v) for v in arrays if isinstance(v, (Tensor, np.ndarray))]
    return [to_model(v[None], model) for v in found if v.shape == image.shape]
