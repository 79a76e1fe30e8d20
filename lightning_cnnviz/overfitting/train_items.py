"""The train probe read again where the training items at its positions changed.

The probes are read once and cached, so a training set whose items change mid-run (a
cue switched on for training images only, a transform set anew, the set re-made when
the loaders reload) left the train probe holding images the model no longer trains
on: every check comparing the two probes read the old ones. Held out (held-out hunt
125): a class-coded square on every training image from step 96 was told as a
BatchNorm lag with "raise momentum" remedies, the clean train probe failing in eval
mode as the val probe did, while eval mode kept the cue-carrying training batches at
94-100%. The val side follows its items through the loop's prints
(``ProbeLogits._reread_moved``); here ``TrainItems`` reads the first ``SENTINELS``
training items at each evaluation, twice in a row (the random generators put back after):
two reads that differ are a random augmentation (never a change to tell, never re-read),
two alike that differ from the probe's, after they held once, are the items changed.
The whole train probe is then read again (same indices) and the two probes compared
anew; ``_train_moved_at`` keeps the step, for the words (``split_inputs``). Training's
random state and data order are untouched: items are read by index, never by the loader.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Trainer
from torch import Tensor

from lightning_cnnviz.core.items import split_sample
from lightning_cnnviz.core.probe import Probe, probe_from_indices
from lightning_cnnviz.core.random_state import rng_untouched
from lightning_cnnviz.core.run_datasets import find_dataset
from lightning_cnnviz.overfitting.loop_logits import fingerprint, items_moved

__all__ = ["SENTINELS", "TrainItems", "twice_read"]

SENTINELS = 8  # training items read twice at each evaluation: 16 reads, whatever the probe


def twice_read(dataset: Any, indices: Sequence[int], label_key: Any = None) -> Tensor | None:
    """Prints of two reads in a row of the items at ``indices``, ``(2, N, 2)`` (or ``None``).

    In one ``rng_untouched`` block: the second read draws where the first left the random
    generators (global or the dataset's own), so a random augmentation reads apart, and
    the run's generators are as before. ``None`` where an item has no input tensor or the
    items' shapes differ.

    Example::

        >>> from torch.utils.data import TensorDataset
        >>> data = TensorDataset(torch.arange(12.0).view(3, 4), torch.zeros(3))
        >>> prints = twice_read(data, [2, 0])
        >>> items_moved(prints[0], prints[1]), prints[0].tolist()
        (False, [[38.0, 366.0], [6.0, 14.0]])
        >>> class Jitter(TensorDataset):
        ...     def __getitem__(self, i):
        ...         x, y = super().__getitem__(i)
        ...         return x + torch.rand(x.shape), y
        >>> state = torch.get_rng_state()
        >>> prints = twice_read(Jitter(*data.tensors), [2, 0])
        >>> items_moved(prints[0], prints[1]), torch.equal(torch.get_rng_state(), state)
        (True, True)
    """
    try:
        with rng_untouched(dataset):
            reads = [[dataset[int(i)] for i in indices] for _ in range(2)]
        images = [[torch.as_tensor(split_sample(r, label_key)[0]) for r in read] for read in reads]
    except Exception:  # an item it cannot read: the probe stays as read
        return None
    if not images[0] or len({tuple(x.shape) for read in images for x in read}) != 1:
        return None
    return torch.stack([fingerprint(torch.stack(read)) for read in images])


class TrainItems:
    """Reads the train probe again where its training items changed (a part of ``Measures``).

    Uses the monitor's ``_probes``, ``probe_label_key`` and ``phase``; resets ``_shift``
    (the two probes compared anew) and keeps ``_train_moved_at`` (the step of the first
    evaluation that read changed training items, ``None`` while they hold).
    """

    _probes: dict[str, Probe]
    _shift: Any
    _train_moved_at: int | None = None
    # the train probe checked, whether its items held at an evaluation since it was read
    _train_held: tuple[Probe, bool] | None = None
    # training sets whose items read apart twice in a row: augmented at random, not checked
    _drawn_at_random: weakref.WeakSet[Any] | None = None

    def _reread_train(self, trainer: Trainer) -> None:
        """At an evaluation: the train probe read again where its items changed since."""
        probe = self._probes.get("train")
        if probe is None:
            return
        held = self._train_held
        if held is None or held[0] is not probe:  # a probe drawn anew (a new fit): its own
            held = self._train_held = (probe, False)
        try:
            data = find_dataset(trainer, "train")
            random = self._drawn_at_random = self._drawn_at_random or weakref.WeakSet()
            if data in random:
                return
        except Exception:  # no dataset (an iterable of batches), or one that is unhashable
            return
        key = self.probe_label_key(data)  # type: ignore[attr-defined]
        with self.phase("probe"):  # type: ignore[attr-defined]
            prints = twice_read(data, probe.indices[:SENTINELS], key)
        if prints is None or prints.shape[1] != min(SENTINELS, len(probe)):
            return
        if items_moved(prints[1], prints[0]):  # drawn at random: changes say nothing
            with contextlib.suppress(TypeError):  # a plain list holds no weak reference
                random.add(data)
            return
        if not items_moved(prints[0], fingerprint(probe.images[:SENTINELS])):
            self._train_held = (probe, True)
            return
        if not held[1]:  # never held: a random augmentation that read alike twice by chance
            return
        with self.phase("probe"):  # type: ignore[attr-defined]
            again = probe_from_indices(data, probe.indices, key)
        if again.indices != probe.indices:
            return
        self._probes["train"] = again
        self._train_held = (again, True)
        self._shift = False  # the two probes compared again (``RunData._input_shift``)
        if self._train_moved_at is None:
            self._train_moved_at = trainer.global_step
