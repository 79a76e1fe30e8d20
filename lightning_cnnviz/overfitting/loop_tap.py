"""The validation loop's tap: a part of ``OverfittingMonitor``.

``LoopTap`` starts ``loop_logits.LoopLogits`` on the module's forward at the start of a
validation that brings an evaluation (the val probe drawn first, where the logits sit
learnt), feeds it each batch of the first val loader, and stops it at the validation's
end, an exception or teardown: no tap outlives the validation. Where the loop's positions
are not the probe's indices (a shuffled or distributed val loader) it does not start, and
the evaluation runs a probe pass of its own.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from typing_extensions import override

from lightning_cnnviz.core.batches import batch_labels
from lightning_cnnviz.core.collated import source_dataset
from lightning_cnnviz.core.findings import Finding, report
from lightning_cnnviz.core.model_io import UNSET
from lightning_cnnviz.core.model_state import buffers_rewound
from lightning_cnnviz.core.monitor import with_probe
from lightning_cnnviz.core.run_datasets import find_dataset
from lightning_cnnviz.core.say import say
from lightning_cnnviz.overfitting.loop_logits import LoopLogits
from lightning_cnnviz.overfitting.step_inputs import StepInputs
from lightning_cnnviz.overfitting.val_mode import (
    REPEAT_SPREAD,
    deliberate,
    random_in_eval,
    repeat_spread,
    stochastic_text,
    train_mode_layers,
    train_mode_text,
)
from lightning_cnnviz.overfitting.val_reach import ValReach

__all__ = ["LoopTap"]

REPEAT_IMAGES = 16  # val probe images the two passes of the repeat check read


class LoopTap(ValReach, StepInputs):
    """The validation hooks that keep the val probe's logits (a part of the monitor).

    They also tap the first validation batch's inputs (``step_inputs.py``).
    Also tells a validation run in training mode, or a model random in eval mode
    (``val_mode.py``). Uses the monitor's
    ``_loop``, ``_probes``, ``_draw``, ``_event_due``, ``logits_key``, ``logits_of``,
    ``_label_key``, ``disabled``, ``_own_findings``, ``probe_input``, ``section``, ``tag`` and
    ``sink``.
    """

    _loop: LoopLogits
    _repeat_checked: bool
    _val_batches: int = 0  # batches the validation under way ran
    _validated_labels: list[Tensor]
    scores_misfit: str

    @override
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_start(trainer, pl_module)
        self._val_batches = 0  # a validation of no batch is not evaluated (``validation_ends``)
        self._validated_labels: list[Tensor] = []  # the labels this validation reads
        if self._event_due(trainer) and self._loop_readable(trainer):
            start = time.perf_counter()
            try:  # before the first evaluation: draw the probe, learn where the logits are
                with torch.inference_mode(False):
                    probe = self._probes.get("val") or self._draw(trainer, "val")
                self.logits_key(trainer, pl_module)
            except Exception as err:  # the evaluation's own probe pass says it, if it must
                self._loop.why = f"the val probe could not be drawn: {type(err).__name__}: {err}"
                return
            finally:  # counted in the evaluation that reads the loop (``loop``, ``total``)
                self._loop.seconds += time.perf_counter() - start
            if self.scores_misfit:
                self._loop.why = self.scores_misfit
                return
            logits = lambda out: self.logits_of(out, image_level=False)  # noqa: E731
            self._loop.start(pl_module, probe.indices, logits=logits, label_key=self._label_key)

    def _loop_readable(self, trainer: Trainer) -> bool:
        """Whether the val loop's positions are the probe's dataset indices (else a probe pass).

        One process only (under DDP each rank sees a shard of the val set).
        """
        if trainer.world_size > 1:
            return False
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, list | tuple) and loaders else loaders
        sampler = getattr(loader, "sampler", None)
        return isinstance(sampler, torch.utils.data.SequentialSampler) and getattr(
            loader, "dataset", None
        ) is source_dataset(find_dataset(trainer, "val"))

    @override
    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        super().on_validation_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)
        self._loop.batch_start(dataloader_idx)
        if dataloader_idx == 0:
            self._tap_batch(trainer, pl_module, batch, "val", batch_idx)
            if batch_idx == 0:
                self._read_batch(trainer, batch, "val")
                self._tap_reach(trainer, pl_module, "val")

    @override
    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        super().on_validation_batch_end(  # type: ignore[misc]
            trainer, pl_module, outputs, batch, batch_idx, dataloader_idx
        )
        self._remove_tap()
        self._val_batches += 1
        if dataloader_idx == 0 and self._event_due(trainer):  # references: no host read
            key = None if self._label_key is UNSET else self._label_key
            labels = batch_labels(batch, key)
            if labels is not None:
                self._validated_labels.append(labels.detach())
        self._loop.batch_end(batch, dataloader_idx)
        if batch_idx == 0 and dataloader_idx == 0 and not self.disabled:
            self._check_mode(trainer, pl_module)
            if not self._repeat_checked and self._event_due(trainer):
                self._repeat_checked = True  # once a fit, in an evaluation: two probe passes
                self._check_repeat(trainer, pl_module)

    def _check_repeat(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A model random in eval mode (functional dropout): two passes that disagree.

        Both passes in one probe pass's forked random state (``core.probe_pass.probe_mode``):
        the run's own stream is left as it was.
        """
        if any(f.kind == "train_mode_in_validation" for f in self._own_findings()):
            return  # told (this fit, or before a resume)
        start = time.perf_counter()
        try:
            with torch.inference_mode(False):
                x = self.probe_input(trainer, pl_module, "val")[:REPEAT_IMAGES]
                with with_probe(pl_module):  # one forked random state for both passes
                    with buffers_rewound(pl_module):  # observers (QAT) moved by the first
                        first = self.logits_of(pl_module(x)).float()
                    second = self.logits_of(pl_module(x)).float()
        except Exception:  # a probe the model cannot take here: the evaluation says why
            return
        finally:  # counted in the evaluation this validation brings (``loop``, ``total``)
            self._loop.seconds += time.perf_counter() - start
        spread = repeat_spread(first, second)
        if not spread >= REPEAT_SPREAD:  # NaN logits (a diverged model) compare as nothing
            return
        built_in = random_in_eval(pl_module)  # by design: a note naming them
        message = stochastic_text(spread, trainer.global_step, built_in)
        report(trainer, Finding(self.section, "train_mode_in_validation", trainer.global_step,
                                trainer.current_epoch, message, {"spread": spread},
                                "note" if built_in else "problem"))  # fmt: skip
        if not built_in:  # warnings for problems only
            say(f"{message} See `{self.tag('diagnosis')}`.")
        self.sink.text(self.tag("diagnosis"), f"**{message}**", trainer.global_step)

    def _check_mode(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Dropout/BatchNorm left in training mode by the validation step (``val_mode.py``).

        Read after the first batch of each validation (a module scan); told once. The
        loop's logits are then train-mode outputs: the evaluation runs its own probe pass.
        """
        layers = train_mode_layers(pl_module)
        if not layers:
            return
        self._loop.why = "validation ran the model in training mode"
        if any(f.kind == "train_mode_in_validation" for f in self._own_findings()):
            return  # told (this fit, or before a resume)
        chosen = deliberate(pl_module, layers)
        message = train_mode_text(layers, trainer.global_step, chosen)
        figures = {"layers": float(len(layers))}
        report(trainer, Finding(self.section, "train_mode_in_validation", trainer.global_step,
                                trainer.current_epoch, message, figures,
                                "note" if chosen else "problem"))  # fmt: skip
        if not chosen:
            say(f"{message} See `{self.tag('diagnosis')}`.")
        self.sink.text(self.tag("diagnosis"), f"**{message}**", trainer.global_step)

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: Any) -> None:
        self._loop.stop()
        self._remove_tap()
        super().on_exception(trainer, pl_module, exception)

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._loop.stop()
        self._remove_tap()
        super().teardown(trainer, pl_module, stage)
