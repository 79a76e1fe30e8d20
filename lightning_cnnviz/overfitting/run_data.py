"""What the run's data look like: a part of ``OverfittingMonitor``, read once per fit.

``RunData`` reads the training labels' class shares as the training loader draws them
(``class_figures.py``), compares the two probes' images (``split_inputs.py``) and checks
whether the val data are the training data (``val_leak.py``); what is read before the
first step is ``setup_checks.py``. Each is read lazily, once per fit (the class shares
again for each new training loader), on the training thread, with the global random
generators untouched.
A fit that validates nothing leaves the monitor nothing to read: said once (``no_val.py``).
"""

from __future__ import annotations

import weakref
from typing import Any, ClassVar

import torch
from lightning.pytorch import Trainer
from torch import Tensor

from lightning_cnnviz.core.collated import source_dataset
from lightning_cnnviz.core.findings import Finding, record_check, report
from lightning_cnnviz.core.input_shift import split_shift
from lightning_cnnviz.core.probe import generator_for, labels_in_order
from lightning_cnnviz.core.run_datasets import (
    NoDataset,
    collate_unread,
    find_dataset,
    has_val_data,
    items_known,
    no_val_why,
)
from lightning_cnnviz.core.say import say
from lightning_cnnviz.overfitting import class_figures
from lightning_cnnviz.overfitting.no_val import never_validated, unread, validation_off
from lightning_cnnviz.overfitting.val_leak import (
    COMPARED,
    LEAKED_IMAGES,
    LEAKED_SHARE,
    leaked_share,
    leaked_text,
    same_items,
    shared_images,
    val_is_train_text,
)

__all__ = ["LABEL_POOL", "RunData"]


class RunData:
    """The run's data, read once per fit (a part of ``OverfittingMonitor``).

    Uses the monitor's ``seed``, ``section``, probes, ``phase``, ``sink``, ``tag``,
    ``disabled``, ``events``, ``warn_once`` and ``_validated`` (a validation of this fit
    ended); keeps ``_shares`` (read again for a new training loader) and ``_shift`` (``False`` until
    read, reset at each fit).
    """

    seed: int
    section: str
    disabled: bool
    events: int
    # no validation ran, said (``_say_unvalidated``): no second warning at fit end
    silence_said: ClassVar[tuple[str, ...]] = ("past_the_run", "no_val")
    _validated: bool
    _shares: _LabelRead | bool  # the training labels as read (False: not read yet)
    _shift: dict[str, float] | bool | None  # ``_input_shift`` (False: not compared yet)
    _mild_shift: dict[str, float] | None  # the same past ``input_shift``'s milder bars
    _items_moved: bool  # the val items changed since the probe read them (``probe_logits``)
    _train_moved_at: int | None  # the training items changed, read at this step (``train_items``)

    def _say_unvalidated(self, trainer: Trainer, ended: bool) -> None:
        """Say once that no validation will run (training start) or ran (``ended``: fit end).

        At the start only what Lightning's settings decide: a run that validates at epoch
        ends only has validated nothing yet. At the end where none ran and nothing was logged.
        """
        if self.disabled or (ended and (self._validated or self.events)):
            return
        if why := (_never_validated if ended else validation_off)(trainer):
            self.warn_once("no_val", unread(why))  # type: ignore[attr-defined]

    def never_logged_reason(self, trainer: Trainer) -> str:
        """Why the monitor never logged, for the summary: mostly, no validation ran."""
        if self._validated:  # one ran, and no evaluation was due (the schedule)
            return super().never_logged_reason(trainer)  # type: ignore[misc]
        return _never_validated(trainer)

    def _input_shift(self, trainer: Trainer) -> dict[str, float] | None:
        """How the val probe's images differ from the train probe's, compared once per fit.

        Where they agree, how the val batches moved since the first validation, or how the
        steps' own code hands them to the model (``step_inputs.py``); where they differ and
        the steps' code makes what the two splits' first layers meet alike
        (``_steps_undo_shift``), only how the batches moved. ``{}``: they agree;
        ``None``: the run has no val data of its own.
        Past the milder bars too (``_mild_shift``), for a BatchNorm gap to tell.
        """
        if self._shift is False:
            self._shift = self._mild_shift = None
            # a loader's collate_fn drawing at random (noise after a normalisation) is not
            # in the probes: their comparison would be the collate's, the batches as loaded
            # are compared instead (``_step_shift``; hunt 35: a false "preprocessed
            # differently", and a val set left unnormalised missed)
            self._loaded_only = any(collate_unread(trainer, s) for s in ("train", "val"))
            if self._loaded_only:
                self._shift = {}
            elif has_val_data(trainer):
                with self.phase("compute"):
                    train, val = (self.probe(trainer, s).images for s in ("train", "val"))
                    if getattr(trainer, "_cnnviz_unfit", None) or train.dim() < 3:
                        # no channel axis known (flat vectors the steps reshape, a layout
                        # the model refuses): whole images compared (setups hunt 35: 784
                        # pixels read as channels, a false "preprocessed differently")
                        train, val = train.flatten(1)[:, None], val.flatten(1)[:, None]
                    self._shift = split_shift(train, val)
                    self._mild_shift = split_shift(train, val, mild=True)
                    self._check_shared(trainer, train, val)
        if self._shift == {}:
            # the val items changed with their channels' statistics alike (held-out hunt 125:
            # inverted normalised digits, mean and spread as before): the loop's prints tell
            items = {"items_moved": 1.0} if self._items_moved else {}
            return self._moved("val") or items or self._moved("train") or self._step_shift()
        if self._steps_undo_shift():  # the steps' code makes what the model meets alike
            return self._moved("val") or self._moved("train")
        if self._train_moved_at is not None and (moved := self._moved("train")):
            # the train probe read the changed training items again (``train_items``): the
            # batches' move says it, a change that did no harm untold (hunt 35)
            return moved
        return self._shift  # type: ignore[return-value]

    def _train_shares(self, trainer: Trainer, classes: int) -> Tensor | None:
        """The training labels' class shares, as the training loader draws them now.

        From the dataset's labels where it exposes them, else from up to ``LABEL_POOL``
        items read in a random order; weighted by a ``WeightedRandomSampler``'s weights as
        they are now. The labels are read again where the training loader is another one
        than they were read from: a loader rebuilt with a sampler set from an epoch on draws
        other shares (held-out hunt 125: classes 5-9 drawn at 1% from step 128, the shares
        read at step 32 calling them common, told as memorisation). ``None`` where the
        items carry no class labels.
        """
        loader = trainer.train_dataloader
        if self._shares is False or not self._shares.read_from(loader):  # type: ignore[union-attr]
            with self.phase("probe"):
                try:
                    data = find_dataset(trainer, "train")
                except NoDataset:  # a plain iterable of batches: no items to count
                    self._shares = _LabelRead(loader, None, None)
                    return None
                order = torch.randperm(len(data), generator=generator_for(self.seed, "probe/train"))
                at, labels = labels_in_order(data, order, LABEL_POOL, self.probe_label_key(data))
                self._shares = _LabelRead(loader, at, labels, len(data))
        return self._shares.shares(classes)  # type: ignore[union-attr]

    def _check_val_data(self, trainer: Trainer) -> None:
        """Report val data that are the training data (``val_leak.py``), before the first step.

        Not under ``overfit_batches``, which validates on training batches by design.
        """
        if not has_val_data(trainer) or trainer.overfit_batches:
            return
        try:
            train, val = find_dataset(trainer, "train"), find_dataset(trainer, "val")
        except NoDataset as err:
            record_check(trainer, type(self).__name__, "val data apart from training", False,
                         str(err))  # fmt: skip
            return
        same = source_dataset(train) is source_dataset(val)
        if same and _split_unknown(trainer):
            why = "needs samplers whose indices it can read, where both loaders share a dataset"
            record_check(trainer, type(self).__name__, "val data apart from training", False, why)
            return
        compared = 0 if same else same_items(train, val, self.probe_label_key(train))
        why = f"needs {COMPARED} items in each set that read as an image and a label"
        ran = compared is not None
        record_check(trainer, type(self).__name__, "val data apart from training", ran, why)
        if same or compared:
            message = val_is_train_text(same, compared)
            figures = {"same_set": float(same), "compared": float(compared)}
            self._tell_data(trainer, Finding(self.section, "val_is_train", 0, 0, message,
                                                 figures))  # fmt: skip

    def _check_shared(self, trainer: Trainer, train: Tensor, val: Tensor) -> None:
        """Report a val set of which a part are training items (``val_leak.shared_images``).

        Once per fit, on the two probes, where ``_check_val_data`` found no whole copy.
        Held out (hunt 22): 500 of 1000 val digits were training digits, shuffled in: val
        95.3% against 91.4% on the fresh half, and nothing was said.
        """
        if any(f.kind == "val_is_train" for f in self._own_findings()) or _split_unknown(trainer):
            return
        shared = shared_images(train, val)
        size = len(find_dataset(trainer, "train"))
        share = leaked_share(shared, len(val), len(train), size)
        if shared >= LEAKED_IMAGES and share >= LEAKED_SHARE:
            message = leaked_text(shared, len(val), len(train), size, share)
            figures = {"shared": float(shared), "leaked_share": share}
            step, epoch = trainer.global_step, trainer.current_epoch
            self._tell_data(trainer, Finding(self.section, "val_is_train", step, epoch,
                                                 message, figures))  # fmt: skip

    def _tell_data(self, trainer: Trainer, finding: Finding) -> None:
        report(trainer, finding)
        if finding.severity == "problem":  # notes go to the summary and the text only
            say(f"{finding.message} See `{self.tag('diagnosis')}`.")
        self.sink.text(self.tag("diagnosis"), f"**{finding.message}**", trainer.global_step)


LABEL_POOL = 2048  # training items read for their labels where the dataset exposes none


class _LabelRead:
    """The training labels read from one training loader, and their shares as it draws.

    Holds the loader weakly where it can: a rebuilt loader is another object, read anew.

    Example::

        >>> from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler
        >>> data = TensorDataset(torch.zeros(4, 1), torch.tensor([0, 0, 1, 1]))
        >>> loader = DataLoader(data, sampler=WeightedRandomSampler([1.0, 1, 3, 3], 4))
        >>> read = _LabelRead(loader, torch.arange(4), torch.tensor([0, 0, 1, 1]), 4)
        >>> read.shares(2).tolist(), read.read_from(loader), read.read_from(DataLoader(data))
        ([0.25, 0.75], True, False)
    """

    def __init__(self, loader: Any, at: Tensor | None, labels: Tensor | None, size: int = 0):
        try:
            self._loader: Any = weakref.ref(loader)
        except TypeError:  # None, a list of loaders: compared by identity while it lives
            self._loader = lambda: loader
        self.at, self.labels, self.size = at, labels, size

    def read_from(self, loader: Any) -> bool:
        """Whether these labels were read from ``loader``."""
        return self._loader() is loader

    def shares(self, classes: int) -> Tensor | None:
        """The class shares, weighted by the loader's sampler weights as they are now.

        Read at each call: a sampler's ``weights`` can be set in place during the run.
        """
        loader = self._loader()
        if self.labels is None or self.at is None:
            return None
        weights = _sampler_weights(loader)
        if weights is not None:
            weights = weights[self.at] if len(weights) == self.size else None
        return class_figures.class_shares(self.labels, classes, weights)


def _split_unknown(trainer: Trainer) -> bool:
    """Whether the loaders share one dataset through samplers whose indices are not known.

    Both probes are then drawn from the whole set: neither tells a leak (setups hunt 36: a
    split by samplers holding ``self.idx`` told "the val loader reads the training set").
    """
    if items_known(trainer, "train") and items_known(trainer, "val"):
        return False
    try:
        train, val = find_dataset(trainer, "train"), find_dataset(trainer, "val")
    except NoDataset:
        return True
    return source_dataset(train) is source_dataset(val)


def _sampler_weights(loader: Any) -> Tensor | None:
    """A ``WeightedRandomSampler``'s weights behind the training loader (``None``: none).

    Looks through Lightning's distributed wrapper, which keeps the user's sampler.
    """
    sampler = getattr(loader, "sampler", None)
    for _ in range(3):
        if isinstance(sampler, torch.utils.data.WeightedRandomSampler):
            return torch.as_tensor(sampler.weights)
        inner = getattr(sampler, "dataset", None)
        sampler = getattr(inner, "_sampler", None) or getattr(sampler, "sampler", None)
    return None


def _never_validated(trainer: Trainer) -> str:
    """``no_val.never_validated``, or an empty val set where the settings let it validate.

    Lightning skips validation on a val loader of no item, without a word (hunt 58: told
    "training stopped at `max_steps=60` before the first validation" after 3 epochs).
    """
    if not validation_off(trainer) and not has_val_data(trainer):
        return f"{no_val_why(trainer)}, so no validation ran"
    return never_validated(trainer)
