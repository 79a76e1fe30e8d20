"""``OverfittingMonitor``: the diagnosis read from validation and the probes.

Overfitting, memorisation, not learning and BatchNorm train/eval mismatch, with
calibration, per-class accuracy and the most confused classes as evidence.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from typing_extensions import override

from lightning_cnnviz.core.batches import batch_size
from lightning_cnnviz.core.checks import check_int, check_key, check_number
from lightning_cnnviz.core.findings import Finding
from lightning_cnnviz.core.monitor import Monitor
from lightning_cnnviz.core.probe import Probe, draw_probe, generator_for
from lightning_cnnviz.core.run_datasets import find_dataset
from lightning_cnnviz.core.selection import unwrap_model
from lightning_cnnviz.core.settings import read_settings
from lightning_cnnviz.core.step_loss import step_loss
from lightning_cnnviz.overfitting import passes
from lightning_cnnviz.overfitting.ascent_setting import group_rates
from lightning_cnnviz.overfitting.confusion import MAX_DRAWN, confusion_image
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.draw import custom_scalars_layout, per_class_image, split_scalars
from lightning_cnnviz.overfitting.interval_loss import IntervalLoss
from lightning_cnnviz.overfitting.loop_logits import LoopLogits
from lightning_cnnviz.overfitting.loop_tap import LoopTap
from lightning_cnnviz.overfitting.measures import Measures
from lightning_cnnviz.overfitting.metric_names import DEFAULT_KEYS
from lightning_cnnviz.overfitting.run_data import RunData
from lightning_cnnviz.overfitting.setup_checks import SetupChecks
from lightning_cnnviz.overfitting.telling import Telling
from lightning_cnnviz.overfitting.validation_ends import ValidationEnds

_KEYS = tuple(DEFAULT_KEYS)


class OverfittingMonitor(
    ValidationEnds, Telling, Measures, SetupChecks, RunData, LoopTap, Monitor, section="overfitting"
):
    """Tells in plain words when validation shows that training goes wrong, and why.

    At each validation end (training steps never carry anything) it reads the train
    and val loss/accuracy the module logs and the model's outputs on a val and a train
    probe (eval mode, no gradients, no hooks), and on the val probe with BatchNorm on
    batch statistics (copies of its buffers: the running statistics are never touched).
    The val probe's eval-mode logits come from the validation loop (``loop_logits.py``:
    a tap on the module's forward during that validation only, the rows of the probe's
    images kept on the device; a pass of its own where the loop cannot stand for it,
    ``_loop.why`` says why); the other two
    passes run only when their figures are needed (``passes.py``: the batch-statistics
    pass when a screen says a mismatch could be starting, the train probe every 4th
    evaluation when the module logs its train accuracy; ``plan.why`` says why). A
    ``Detector`` runs the rules of ``rules.py`` on the whole series:
    ``overfitting`` (val loss rising beyond its own noise while train loss falls),
    ``memorisation`` (val accuracy falling while train accuracy climbs past it),
    ``not_learning`` (val probe at chance accuracy, or non-finite outputs),
    ``bn_mismatch`` (eval mode far worse than batch statistics), ``class_imbalance``
    (rare training classes never predicted on the val probe, ``imbalance.py``) and
    ``loss_mismatch`` (a loss fed probabilities, ``loss_reads.py``), among others. Each is
    reported once as a ``Finding``, then updated in place while it worsens, and turned
    into a note when it goes away (``telling.py``). Calibration (signed: over- or
    under-confident) and the most confused classes are evidence in the
    ``overfitting/diagnosis`` entry, never a finding of their own. Rules, thresholds and
    why: ``docs/diagnosis.md``.

    Its work on the training thread is timed in ``timings``: ``total`` per evaluation
    (within it ``probe``, drawing the probes once, ``capture``, the forward passes,
    ``compute``, ``render`` and ``write``, and ``loop``: drawing the probe before the
    first validation and keeping the loop's outputs, timed there and counted in the
    ``total`` of the evaluation that reads them), and outside the evaluations ``setup``,
    ``summary`` (recording which checks ran) and ``flush``
    (waiting for the sink's thread at the end of fit, and the run's summary when this is
    the last monitor).

    Args:
        train_loss_key, val_loss_key, train_acc_key, val_acc_key: logged metric names
            (``name_epoch``/``name_step`` variants are found too). A name left at its
            default that the module does not log is read from the one logged name with
            the same words (``val_loss``, ``valid/accuracy``, ``loss/val``:
            ``metric_names.metric_alias``), said once.
        tolerance: the smallest relative rise of val loss above its best that counts
            as overfitting (the rule also waits for the rise to exceed the curve's noise).
        patience: evaluations a rule's smoothed signal must hold (2: reported one
            validation after its onset at the earliest).
        num_samples: images per probe (val and train), class-balanced; the whole set when
            it is smaller. The probe passes (no gradients) are most of an evaluation's
            cost: the val probe's own pass only where the validation loop cannot stand
            for it (a shuffled or distributed val loader), the train probe at every
            evaluation when no train accuracy is logged (else every 4th, and when an
            overfitting or memorisation finding is first reported), the BatchNorm
            batch-statistics pass at the first evaluation and when the logged train
            accuracy stands far enough above the eval-mode val probe's
            (``overfitting/bn_screen``), or when there is no train accuracy to screen
            with. The rules read means over the probe (accuracy, confidence, loss) whose
            standard errors they account for.
        **kwargs: the shared arguments of ``Monitor`` (schedule, ``tag_prefix``, ``strict``,
            ``seed``, ``budget``). Evaluations happen at validation ends only:
            ``every_n_steps=n`` takes the first validation of the run and the first after
            each multiple of ``n`` steps, ``every_n_epochs=n`` the validations of every n-th
            epoch (automatic, the default: every validation). No ``layers``: the monitor
            reads the model's outputs only.

    Example::

        >>> from lightning_cnnviz import OverfittingMonitor
        >>> monitor = OverfittingMonitor(tolerance=0.1, patience=2)
        >>> monitor.tag("gap_loss")
        'overfitting/gap_loss'
    """

    needs_call_sites = watches_layers = False

    def __init__(
        self,
        train_loss_key: str = DEFAULT_KEYS["train_loss"],
        val_loss_key: str = DEFAULT_KEYS["val_loss"],
        train_acc_key: str = DEFAULT_KEYS["train_acc"],
        val_acc_key: str = DEFAULT_KEYS["val_acc"],
        tolerance: float = 0.05,
        patience: int = 2,
        num_samples: int = 128,
        **kwargs: Any,
    ) -> None:
        if "layers" in kwargs:
            raise TypeError(
                "OverfittingMonitor reads the model's outputs only: it takes no `layers`"
            )
        super().__init__("auto", num_samples=num_samples, **kwargs)
        keys = (train_loss_key, val_loss_key, train_acc_key, val_acc_key)
        for name, key in zip(_KEYS, keys, strict=True):
            check_key(f"{name}_key", key)
        check_number("tolerance", tolerance, low=0.0)
        check_int("patience", patience)
        self.keys = dict(zip(_KEYS, keys, strict=True))
        # the names left at their defaults: read under another spelling where logged so
        self._aliasable = {n for n, k in self.keys.items() if k == DEFAULT_KEYS[n]}
        self.tolerance, self.patience = tolerance, patience
        self.reset()

    @override
    def reset(self) -> None:
        self.detector = Detector(self.tolerance, self.patience)
        self._lr_start: float | None = None  # the learning rate when training started
        self._update_read: float | None = None  # the update a step before validation made
        self._rates_start: dict[str, float] = {}  # every group's, for a sign turned (ascent)
        self._resumed_at: int | None = None  # the step a fit resumed at with no history
        self._pending = self._epoch_end = self._layout = self._validated = False
        self._others_told = 0
        self._findings: dict[str, Finding] = {}
        self._bn_why = ""  # why the BatchNorm check could not run
        self.prior: dict[str, float | str] = {}  # the val pass against non-class targets
        if hasattr(self, "_loop"):
            self._loop.stop()
        self._loop = LoopLogits()  # the val probe's logits from the validation loop
        self.val_from_loop = False  # whether the latest evaluation read them (else a probe pass)
        self.plan: passes.Plan | None = None  # the latest evaluation's passes, and why
        self._interval = IntervalLoss()  # the training loss since the last evaluation
        self._batch_images: int | None = None  # sizes the extra passes (``passes.pass_images``)
        self._latest_images: int | None = None  # the latest training batch's (a short last one)
        self._shares: Any = False  # the training labels' class shares (``imbalance.py``)
        self._shift: Any = False  # how the two probes' inputs differ (``split_inputs.py``)
        self._loaded_only = False  # a collate the probes do not read: the batches compared
        self._mild_shift: dict[str, float] | None = None  # the same past milder bars
        self._loop_check: dict[str, float] | None = None  # loop vs own pass (``val_source.py``)
        self._read_prints, self._items_moved = None, False  # val items changed (probe_logits)
        self._train_held, self._train_moved_at = None, None  # training items (train_items)
        self._repeat_checked = False  # two eval-mode passes compared (``val_mode.py``)
        self._reset_steps()  # the first layer's inputs in the steps (``step_inputs.py``)
        self.val_reached: bool | None = None  # validation calls a trained layer (``val_reach``)
        self.reach_seen: bool | None = None  # ... the taps see a training call at all
        self._not_accuracy: set[str] = set()  # logged "accuracies" that are none

    @override
    def describe_layers(self) -> str:
        keys = ", ".join(f"`{k}`" for k in self.keys.values())
        return f"**OverfittingMonitor** (overfitting): reads {keys}; model outputs on the probes"

    @override
    def probe(self, trainer: Trainer, split: str = "val") -> Probe:
        if split in self._probes:
            return self._probes[split]
        with self.phase("probe"):  # once per fit: `dataset[i]` for every probe image
            return self._draw(trainer, split)

    def _draw(self, trainer: Trainer, split: str) -> Probe:
        """Draw the probe of ``split`` (untimed: the caller counts it)."""
        data = find_dataset(trainer, split)
        if not self.kept_indices(split, data):  # a small set: use all of it
            gen = generator_for(self.seed, f"probe/{split}")
            size, key = min(self.num_samples, len(data)), self.probe_label_key(data)
            self._probes[split] = draw_probe(data, size, gen, label_key=key)
            self._probe_indices[split] = self._probes[split].indices
            self._probe_sizes[split] = len(data)
        return super().probe(trainer, split)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        with self.phase("setup"):
            super().setup(trainer, pl_module, stage)

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self._lr_start is None:  # the start a schedule without `initial_lr` cuts from
            self._lr_start = read_settings(trainer.optimizers, unwrap_model(pl_module)).lr
        self._rates_start = self._rates_start or group_rates(trainer.optimizers)
        self._interval.fresh = trainer.global_step == 0  # resumed: no first step's loss
        # resumed without this monitor's history: "from the start" is from that step
        history = self.detector.history
        self._resumed_at = trainer.global_step if trainer.global_step and not history else None
        told = {f.kind for f in self._own_findings()}  # a resumed run told them already
        self._say_unvalidated(trainer, ended=False)  # `limit_val_batches=0`, no val loader
        if not self.disabled and trainer.is_global_zero:
            with self.phase("setup"):
                self._check_setup(trainer, told)

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:  # never an evaluation on train steps
        self._remove_tap()
        self.find_pending_layers(trainer, pl_module)
        self.budget.step_ended()
        if not trainer.sanity_checking and not self.disabled:
            self._interval.add(step_loss(outputs, trainer))  # a device op, no sync
            self._latest_images = batch_size(batch)
            if self._batch_images is None:
                self._batch_images = self._latest_images

    @override
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._flush(trainer, pl_module, epoch_end=False)  # after a mid-epoch validation
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        if not trainer.sanity_checking:
            self._tap_batch(trainer, pl_module, batch, "train", batch_idx)
            self._tap_reach(trainer, pl_module, "train")
            self._read_items(trainer, batch)
            if batch_idx == 0:  # each epoch's first: a training pipeline changed mid-run
                self._read_batch(trainer, batch, "train")

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer, pl_module, epoch_end=False)
        self._say_unvalidated(trainer, ended=True)  # e.g. `max_steps` reached before any
        if not self.disabled and trainer.is_global_zero:
            self._conclude(trainer)
        with self.phase("summary"):
            self._record_checks(trainer)
        with self.phase("flush"):  # the sink's thread; the run's summary if this monitor is last
            super().on_fit_end(trainer, pl_module)

    @override
    def log_event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        ev, per_class, counts, pairs = self._measure(trainer, pl_module)
        step, epoch = ev.step, ev.epoch
        names = ("gap_loss", "gap_acc", "ece_val", "ece_train", "overconfidence_val")
        scalars = {k: getattr(ev, k) for k in (*names, "overconfidence_train", "bn_gap_acc")}
        scalars["bn_screen"] = self.plan.screen if self.plan else None
        images = {}
        with self.phase("render"):
            if per_class:
                images["per_class"] = per_class_image(torch.tensor(per_class), epoch)
            if counts is not None and len(counts) <= MAX_DRAWN:
                images["confusion"] = confusion_image(counts, epoch)
            elif counts is not None:
                self.warn_once("confusion", f"the confusion matrix is not drawn for more than "
                               f"{MAX_DRAWN} classes ({len(counts)} here); "
                               "`overfitting/confused_pairs` names the most confused")  # fmt: skip
            if pairs:
                images["confused_pairs"] = self._pairs_image(trainer, pairs, epoch)
        with self.phase("write"):
            self.sink.scalars({self.tag(k): v for k, v in scalars.items() if v is not None}, step)
            for split, twins in split_scalars(ev, self.tag).items():
                self.sink.split_scalars(split, twins, step)
            for name, image in images.items():
                if image is not None:
                    self.sink.image(self.tag(name), image, step)
            self._write_layout()
        self._check_ascent(trainer, ev)  # a rate turned negative, a maximising optimiser
        self._diagnose(trainer, ev, pairs)

    def _write_layout(self) -> None:
        if not self._layout:
            self._layout = self.sink.layout(
                lambda prefix: custom_scalars_layout(tag=lambda name: prefix + self.tag(name))
            )

    @override
    def extra_state(self) -> dict[str, Any]:
        state = {"lr_start": self._lr_start, "rates_start": self._rates_start}
        return {**self.detector.state_dict(), **state}

    @override
    def load_extra_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self._lr_start = state.pop("lr_start", None)
        self._rates_start = state.pop("rates_start", None) or {}
        self.detector.load_state_dict(state)
        self._findings = {f.kind: f for f in self._own_findings()}  # updated, not duplicated
