"""``StepFollowing``: the monitor's hooks that follow what the steps do to the images.

A ``training_step`` (or ``validation_step``) that normalises its batch before
``self(x)`` hands the model other inputs than the probe passes, which read the images
from the datasets. The hooks here tap the fit's first training batches (and, where
their change is none a scale and shift repeats, a validation batch) on their way into
the model (``core.step_follower``), take the taps off at each batch's end, at
validation, on failure and at teardown, and, at the first event after them, have every
later probe pass do alike (``probe_pass.follow_step``), said once. Shared by every
monitor of a fit: the follower lives on the trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from lightning_cnnviz.core.items import split_sample
from lightning_cnnviz.core.own_hooks import drop_copied_hooks
from lightning_cnnviz.core.probe_pass import follow_step
from lightning_cnnviz.core.run_datasets import has_val_data
from lightning_cnnviz.core.selection import unwrap_model
from lightning_cnnviz.core.step_follower import StepFollower
from lightning_cnnviz.core.step_transform import step_text

__all__ = ["StepFollowing"]


class StepFollowing:
    """The hooks and reads that follow the steps' own change of the images (a mixin)."""

    say_once_per_run: Callable[[str, str], None]  # ``Voice``'s

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.tap_step(trainer, pl_module, batch)
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)  # type: ignore[misc]

    @override
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # a tapped batch Lightning ended without its end hook (`on_train_batch_start`
        # returning -1): validation batches are no training inputs
        self.untap_step(trainer)
        super().on_validation_start(trainer, pl_module)  # type: ignore[misc]

    @override
    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self.tap_val_step(trainer, pl_module, batch)
        super().on_validation_batch_start(  # type: ignore[misc]
            trainer, pl_module, batch, batch_idx, dataloader_idx
        )

    @override
    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        self.untap_step(trainer)
        drop_copied_hooks()  # copies a validation step made keep none of the package's hooks
        super().on_validation_batch_end(  # type: ignore[misc]
            trainer, pl_module, outputs, batch, batch_idx, dataloader_idx
        )

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.untap_step(trainer, drop=True)  # no hook outlives the fit
        drop_copied_hooks()
        super().teardown(trainer, pl_module, stage)  # type: ignore[misc]

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: Any) -> None:
        self.untap_step(trainer, drop=True)  # the batch it followed failed
        super().on_exception(trainer, pl_module, exception)  # type: ignore[misc]

    def tap_step(self, trainer: Any, pl_module: nn.Module, batch: Any) -> None:
        """Follow the fit's first training batches into the model (``core.step_follower``).

        Off at each batch's end (``untap_step``); compared at the first event after them
        (``follow_step_inputs``).
        """
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        follower: StepFollower | None = getattr(trainer, "_cnnviz_steps", None)
        if follower is None:  # each fit anew, also a second fit on one trainer
            follower = trainer._cnnviz_steps = StepFollower()
        if not follower.reading:  # every batch after the first two: nothing to do
            return
        model = unwrap_model(pl_module)
        try:
            images = split_sample(batch)[0]
        except TypeError:
            return
        if isinstance(images, Tensor) and images.dim() >= 3:
            batch = (trainer.current_epoch, trainer.global_step)
            follower.start(model, images, batch, getattr(trainer, "_cnnviz_stored", None))

    def untap_step(self, trainer: Any, drop: bool = False) -> None:
        """The tapped batch ended (``drop``: or the fit, whose follower is let go)."""
        follower: StepFollower | None = getattr(trainer, "_cnnviz_steps", None)
        if drop and trainer.lightning_module is not None:
            follow_step(unwrap_model(trainer.lightning_module), None)  # this fit's, not the next's
        if follower is not None and drop:
            if (waiting := follower.drop()) is not None:  # no validation batch came
                self.say_once_per_run("step_transform", step_text(waiting))
            trainer._cnnviz_steps = None
        elif follower is not None:
            follower.end_batch()

    def follow_step_inputs(self, trainer: Any, pl_module: nn.Module) -> None:
        """At the first event after the tapped batches: probes changed as training's inputs.

        Held out: a ``training_step`` normalising the batch before ``self(x)`` left every
        probe pass on the raw images, which the model never trained on (feature maps,
        activation statistics and Grad-CAM of other inputs), unsaid. The passes that
        compare run here, not after the tapped batches: no work between events.
        """
        follower: StepFollower | None = getattr(trainer, "_cnnviz_steps", None)
        if follower is None:
            return
        stored = getattr(trainer, "_cnnviz_stored", None)
        model = unwrap_model(pl_module)
        if (found := follower.follow(model, stored, has_val_data(trainer))) is not None:
            self.say_once_per_run("step_transform", step_text(found))

    def tap_val_step(self, trainer: Any, pl_module: nn.Module, batch: Any) -> None:
        """Follow a validation batch into the model, where training's change was not followed.

        Off at the batch's end (``untap_step``); compared at the next event
        (``follow_step_inputs``).
        """
        follower: StepFollower | None = getattr(trainer, "_cnnviz_steps", None)
        if follower is None or follower.unfollowed is None or trainer.sanity_checking:
            return
        try:
            images = split_sample(batch)[0]
        except TypeError:
            return
        if isinstance(images, Tensor) and images.dim() >= 3:
            stored = getattr(trainer, "_cnnviz_stored", None)
            follower.start_val(unwrap_model(pl_module), images, stored)
