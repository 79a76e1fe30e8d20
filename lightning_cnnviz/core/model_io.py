"""What a monitor reads from the run: its probe images and labels, and the model's logits.

``ProbeReader`` is a part of ``Monitor`` (a mixin): the fixed probe of each split, drawn
once with the monitor's own generator; where the class label sits in the data's items
(``label_key``) and where the logits sit in the model's output (``output_key``), each
guessed and said once per run when not given. How ``forward`` takes the probe images
(once per fit, before any probe pass) is its part ``InputForm`` (``input_form.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from lightning_cnnviz.core.capture import first_tensor
from lightning_cnnviz.core.dataset_labels import dataset_labels
from lightning_cnnviz.core.input_form import InputForm
from lightning_cnnviz.core.inputs import to_model
from lightning_cnnviz.core.item_fields import LABEL_KEYS, named_fields
from lightning_cnnviz.core.items import label_key_misfit, read_item
from lightning_cnnviz.core.logits import SingleLogit, single_logit
from lightning_cnnviz.core.outputs import (
    NotApplicable,
    guess_label_key,
    guess_output_key,
    key_name,
    logits_from,
    no_class_scores,
)
from lightning_cnnviz.core.outside_head import outside_head
from lightning_cnnviz.core.probe import Probe, draw_probe, generator_for, probe_from_indices
from lightning_cnnviz.core.probe_pass import probe_mode
from lightning_cnnviz.core.random_state import restorable
from lightning_cnnviz.core.run_datasets import find_dataset, split_collate
from lightning_cnnviz.core.selection import unwrap_model
from lightning_cnnviz.core.trace_images import trace_images

__all__ = ["UNSET", "ProbeReader", "scores_misfit"]

UNSET: Any = object()  # a key not known yet in this fit


def scores_misfit(logits: Tensor, images: int, key: Any = None) -> str:
    """Why ``logits`` of ``images`` inputs are no scores, one row per image (``""``: they are).

    Integer outputs are class ids (a ``forward`` returning ``out.argmax(1)`` in eval mode:
    setups hunt 26, said as "a forward under `@torch.no_grad()`" and "shape () per
    sample"). A time-major output (``(T, N, C)``: ``nn.GRU(batch_first=False)`` feeding
    ``F.ctc_loss``) puts the batch second; read as rows it gave the time steps as images
    (setups hunt 26: Grad-CAM failed on "The size of tensor a (16) must match the size of
    tensor b (8)", and the val probe read a (64, 11) map per image).

    Example::

        >>> import torch
        >>> scores_misfit(torch.zeros(16, 1, 11), 1)[:60]
        "the model's output has shape (16, 1, 11) for 1 image: its fi"
        >>> scores_misfit(torch.zeros(1, 10), 1), scores_misfit(torch.zeros(10), 1)
        ('', '')
        >>> scores_misfit(torch.tensor([3]), 1)[:57]
        "the model's eval-mode output is integer (torch.int64, sha"
    """
    where = "" if key is None else f" [{key_name(key)}]"
    if not (logits.is_floating_point() or logits.is_complex()):
        return (
            f"the model's eval-mode output{where} is integer ({logits.dtype}, shape "
            f"{tuple(logits.shape)}): class ids, not scores; the monitors read the model in "
            "eval mode, so `forward` must return the scores there (take the `argmax` "
            "outside it, e.g. in `predict_step`)"
        )
    if logits.dim() < 2 or logits.shape[0] == images:
        return ""  # a squeezed output ((10,) for one image) is still read as before
    shape = tuple(logits.shape)
    second = logits.dim() > 1 and logits.shape[1] == images
    return (
        f"the model's output{where} has shape {shape} for {images} image"
        f"{'' if images == 1 else 's'}: its first dimension is not the batch"
        + (" (a time-major sequence, as `batch_first=False` RNNs and `ctc_loss` use?)"
           if second else "")
        + "; the monitors that read scores per image need the batch first: return "
        "`out.transpose(0, 1)` from `forward`, or name a batch-first output with `output_key`"
    )  # fmt: skip


class ProbeReader(InputForm):
    """Probe sets, labels and logits of one monitor (see the module docstring).

    Uses the monitor's ``seed``, ``num_samples``, ``output_key``, ``label_key``, its
    per-fit ``_probes``, ``_probe_indices``, ``_logits_key``, ``_label_key`` (``UNSET``
    at each fit's start) and ``say_once_per_run``.
    """

    seed: int
    num_samples: int
    output_key: Any
    label_key: Any
    dense_output: bool
    scores_misfit: str
    _input_shape: tuple[int, ...] | None
    _probes: dict[str, Probe]
    _probe_indices: dict[str, list[int]]
    _probe_sizes: dict[str, int]
    _logits_key: Any
    _label_key: Any

    def num_classes(self, trainer: Any) -> int | None:
        """The classes the labels show: the val set's where readable, else the probe's.

        ``None`` without labels. The whole set's, so that monitors with probes of
        different sizes (8 images miss classes of 10) guess the same logits.
        """
        labels = dataset_labels(find_dataset(trainer, "val"))
        if labels is None or not len(labels):
            labels = self.probe(trainer).labels
        return None if labels is None or not len(labels) else int(labels.max()) + 1

    def logits_key(self, trainer: Any, pl_module: nn.Module) -> Any:
        """Where the logits are in the model's output: ``output_key``, or a guess said once.

        One probe pass on one probe sample, once per fit; it also sets ``dense_output``
        (per-position logits, as a segmentation net's (N, classes, H, W)). Where
        ``forward`` cannot take the probe at all (``input_form.fit_inputs``), no pass: its
        reason is ``scores_misfit``, and the checks that need no scores go on.
        """
        unfit = getattr(trainer, "_cnnviz_unfit", None)
        if self._logits_key is UNSET and unfit:
            self._logits_key, self.scores_misfit = None, unfit
        if self._logits_key is UNSET:
            model = unwrap_model(pl_module)
            x = self.probe_input(trainer, pl_module)[: trace_images(pl_module)]
            with probe_mode(model):
                output = model(x)
            key = self.output_key
            if key is not None and isinstance(output, Tensor):
                self.warn_once(
                    "output_key",
                    f"`output_key={key!r}` has nothing to pick: the model returns one tensor "
                    f"{tuple(output.shape)}, read as the logits",
                )
                key = None
            unscored = ""
            if key is None:
                key, why = guess_output_key(output, self.num_classes(trainer))
                unscored = no_class_scores(output, key, self.num_classes(trainer))
                if isinstance(output, Tensor) and not unscored:  # features, a head outside
                    run = lambda: model(x)  # noqa: E731
                    unscored = outside_head(model, output, self.num_classes(trainer), run)
                if why and not unscored:  # (where none is the logits, the step-aside says so)
                    self.say_once_per_run(
                        f"output_key={key!r}",
                        f"the model returns an object of type `{type(output).__name__}`; the "
                        f"monitors read {key_name(key)} as the logits ({why}). Pass "
                        "`output_key` to choose.",
                    )
            if single_logit(first_tensor(output, key)) and self.num_classes(trainer) == 2:
                key = SingleLogit(key)  # a BCEWithLogitsLoss model: z read as [-z/2, z/2]
                self.say_once_per_run(
                    "single_logit",
                    "the model returns one logit per sample and the labels are 0/1; the "
                    "monitors read it as two classes' logits [-z/2, z/2] (softmax = "
                    "sigmoid(z); class 0's score is -z).",
                )
                unscored = ""
            self._logits_key = key
            logits = logits_from(output, key)
            self.dense_output = logits.dim() > 2 and not unscored
            self.scores_misfit = unscored or scores_misfit(logits, len(x), key)
            self._input_shape = tuple(x.shape[1:])
        return self._logits_key

    def logits_of(self, output: Any, image_level: bool = True) -> Tensor:
        """The logits in ``output`` (after ``logits_key``).

        Raises:
            NotApplicable: ``image_level`` and the logits are not (N, classes), e.g. a
                segmentation net's (N, classes, H, W), or the outputs are not one row per
                image (``scores_misfit``): the monitor steps aside, saying why.
        """
        if self.scores_misfit:
            raise NotApplicable(self.scores_misfit)
        key = None if self._logits_key is UNSET else self._logits_key
        logits = logits_from(output, key)
        if image_level and logits.dim() != 2:
            raise NotApplicable(
                "it needs one score per class per sample ((N, classes) logits), and the "
                f"model's output{'' if key is None else f' [{key!r}]'} has shape "
                f"{tuple(logits.shape)}"
                + (
                    f" ({self.dense_words(logits)})"
                    if logits.dim() > 2
                    else "; pick the logits with `output_key`"
                )
            )
        return logits

    def dense_words(self, logits: Tensor) -> str:
        """What (N, ...) logits of more than one dimension per sample are, in words."""
        shape, given = tuple(logits.shape[1:]), self._input_shape
        if shape == given:
            return "an image of the input's shape: a reconstruction, or per-position scores"
        if given and len(shape) == len(given) and shape[0] == given[0]:  # setups hunt 26
            return (
                "an image with the input's channels (upscaled or generated), or per-position scores"
            )
        return "per-position scores, as a segmentation net gives"

    def probe_label_key(self, dataset: Any) -> Any:
        """Where the label is in the dataset's items: ``label_key``, or a guess said once."""
        if self._label_key is UNSET:
            key = self.label_key
            item = read_item(dataset, 0) if len(dataset) else None
            if key is not None and item is not None and (why := label_key_misfit(item, key)):
                said = f"`label_key={key!r}` {why}: the usual places are read"
                self.say_once_per_run(f"label_key={key!r}/misfit", said)
                key = None
            # dict items, or named ones (a dataclass: hunt 100, its label field `cls` unread)
            fields = item if isinstance(item, Mapping | tuple) else named_fields(item)
            if (
                key is None
                and isinstance(fields, Mapping)
                and not any(k in fields for k in LABEL_KEYS)
            ):
                key, why = guess_label_key(fields)
                keys, kind = list(fields), "dicts" if fields is item else type(item).__name__
                if key is not None:
                    self.say_once_per_run(
                        f"label_key={key!r}",
                        f"the data items are {kind} with keys {keys}; the monitors read "
                        f"{key_name(key)} as the class label ({why}). Pass `label_key` to choose.",
                    )
                else:
                    self.say_once_per_run(
                        "label_key=None",
                        f"no class label found in the data items ({kind} with keys {keys}); "
                        "what needs labels is skipped. Pass `label_key` to name it.",
                    )
            self._label_key = key
        return self._label_key

    def probe(self, trainer: Any, split: str = "val") -> Probe:
        """The fixed probe of ``split``, drawn on first use with the monitor's own generator."""
        if split not in self._probes:
            dataset = find_dataset(trainer, split)
            collate = split_collate(trainer, split)
            if collate is not None and not restorable(collate):  # setups hunt 38: unsaid
                self.say_once_per_run(
                    f"collate_unread/{split}",
                    f"the {split} loader's `collate_fn` is never called by the monitors: it "
                    "holds state they could not put back after a call (an iterator, a module "
                    "global it assigns, a long list of objects of its own, or more than they "
                    "search), so the probes show the dataset's items "
                    "as stored, not as the collate hands them to the model; a normalisation "
                    "belongs in the dataset's transform or `on_after_batch_transfer`",
                )
            label_key = self.probe_label_key(dataset)
            indices = self.kept_indices(split, dataset)
            if indices:
                probe = probe_from_indices(dataset, indices, label_key)
                if len(indices) != min(self.num_samples, len(dataset)):
                    name = type(self).__name__
                    self.say_once_per_run(
                        f"resumed_probe/{name}/{split}",
                        f"{name} keeps the {len(indices)} {split} probe images of the "
                        f"checkpoint it resumed from (`num_samples={self.num_samples}` given), "
                        "so that its views compare across the resume; start the run afresh "
                        "to change them",
                    )
            else:
                generator = generator_for(self.seed, f"probe/{split}")
                size = min(self.num_samples, len(dataset))
                if size < self.num_samples:  # a val set of 8 images: all of them, said once
                    self.say_once_per_run(
                        f"probe/{split}",
                        f"the {split} set holds {size} items, fewer than `num_samples="
                        f"{self.num_samples}`: the probe is all of them",
                    )
                probe = draw_probe(dataset, size, generator, label_key=label_key)
            self._probes[split] = probe
            self._probe_indices[split] = probe.indices
            self._probe_sizes[split] = len(dataset)
        return self._probes[split]

    def kept_indices(self, split: str, dataset: Any) -> list[int] | None:
        """The probe indices kept for ``split`` where ``dataset`` is the set they index.

        Kept across fits of one model and a resume; another set under the same model (a
        subset, a second dataset) draws its own (setups hunt 77: indices of a 640-item set
        read from a 40-item one stepped four monitors aside with a bare `IndexError`, and a
        larger set kept the first one's images as if resumed). Told by its length.
        """
        indices = self._probe_indices.get(split)
        try:
            length = len(dataset)
        except TypeError:  # no length to tell by: as they are
            return indices
        if indices and max(indices) < length and self._probe_sizes.get(split) in (None, length):
            return indices
        self._probe_indices.pop(split, None)
        return None

    def probe_input(self, trainer: Any, pl_module: nn.Module, split: str = "val") -> Tensor:
        """The probe images on the model's device, in its parameter dtype."""
        return to_model(self.probe(trainer, split).images, unwrap_model(pl_module))
