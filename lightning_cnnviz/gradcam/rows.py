"""The rows of a Grad-CAM image: each layer's CAMs of a probe, their metrics, saliency rows.

``CamRows`` is the part of ``GradCAMMonitor`` that computes (on the training thread,
in probe mode) what one row of ``gradcam/{split}`` shows and what it measures:
``_row`` for a layer, ``_class_rows`` for a segmentation net's predicted classes,
``_saliency_rows`` for the opt-in input-gradient methods. The monitor itself
(``gradcam/callback.py``) schedules and draws; ``gradcam/judging.py`` turns the metrics
into findings.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import Trainer
from torch import Tensor, nn

from lightning_cnnviz.core.cam import layer_cams
from lightning_cnnviz.core.inputs import as_pictures, input_bounds, norm_stats, to_image01, to_model
from lightning_cnnviz.core.outputs import logits_from
from lightning_cnnviz.core.probe import Probe
from lightning_cnnviz.core.probe_pass import probe_mode
from lightning_cnnviz.core.say import tell
from lightning_cnnviz.core.token_cam import any_grad_cam, cam_layouts
from lightning_cnnviz.gradcam.draw import blank_cams
from lightning_cnnviz.gradcam.fixed_spot import fixed_blocker, grid_agreements, region
from lightning_cnnviz.gradcam.metrics import cam_metrics, kept_size, on_object
from lightning_cnnviz.gradcam.objects import foreground, without_object
from lightning_cnnviz.gradcam.saliency import clip_peaks, input_saliency

__all__ = ["CamRows", "Row"]

# One row of a split's image: (image01, heat, logits, labels, caption or None), host copies.
Row = tuple[Tensor, Tensor, Tensor, Tensor | None, str | None]


LEARNT = 0.9  # a probe accuracy past which blank CAMs are no early-training matter


class CamRows:
    """Computes the rows of ``GradCAMMonitor``'s images (a part of it, not used alone).

    Reads the monitor's settings (``method``, ``target``, ``saliency``, ``smooth``,
    ``foreground_threshold``), its selected layers and probe readers, and keeps what
    the rows need across logs: the previous CAMs (``drift``), the token layouts and
    the probe objects' masks.
    """

    def _row(self, trainer: Trainer, model: nn.Module, probe: Probe, split: str, name: str,
             values: dict[str, Tensor] | None, target: Any = None, title: str | None = None
             ) -> Row:  # fmt: skip
        """The CAMs of one layer, their metrics into ``values``, and what ``_draw`` needs."""
        x, labels = to_model(probe.images, model), probe.labels
        if target is None and self.target != "pred":  # "true": its labels, said once if none
            target = self._true_labels(probe) if self.target == "true" else self.target
        with self.phase("compute"):
            if self._layouts is None:  # one traced pass: which layers output tokens
                self._layouts = cam_layouts(model, self.selected, x, self._logits_key)
            layer, layout, hires = self.selected[name], self._layouts.get(name), None
            if values is not None and split != "misclassified" and self._wants_hires(name, x):
                # the shortcut rules' map from the same backward pass as the drawn one
                cams, logits = layer_cams(model, layer, x, target, output_key=self._logits_key)
                cam, hires = cams["gradcam"], cams["hirescam"]
            else:
                cam, logits = any_grad_cam(model, layer, x, target, output_key=self._logits_key,
                                           method=self.method, layout=layout)  # fmt: skip
            pictures, cam = as_pictures(x, cam)  # signals and volumes as 2-D pictures
            image01 = to_image01(pictures, norm_stats(trainer))
            if split != "misclassified" and values is not None:
                values.update(self._metrics(split, name, cam, image01, x.dim() == 4))
                if hires is not None and (mask := self._foreground(split, image01)) is not None:
                    values[self.tag(split, "on_object_hirescam")] = on_object(hires, mask)
                classes = labels if labels is not None else logits.argmax(1)
                spot = cam if hires is None else hires
                self._fixed_spot(split, name, x, spot, image01, classes, values)
                if split == "train" and name == list(self.selected)[-1]:  # what the rule reads
                    self._without_object(model, split, x, labels, image01, values)
        with self.phase("render"):  # host copies for the sink's thread
            row = (image01.cpu(), cam.cpu(), logits.cpu(), labels, title)
            if split in ("train", "val") and values is not None and labels is not None:
                # the findings' gate: are the eval-mode predictions worth explaining?
                right = row[2].argmax(1) == labels.to(row[2].device)
                classes = int(row[2].shape[1])
                # labels that index no output (a GAN discriminator's one logit, digits 0-9)
                fits = int(labels.max()) < classes and not self.dense_output
                accuracy = float(right.float().mean()) if fits else None
                if split == "train":
                    self._classes, self._probe_acc = classes, accuracy
                    ok = fits and int(labels.min()) >= 0  # (-100: an ignore index)
                    shares = labels.bincount().float() / len(labels) if ok else None
                    self._probe_commonest = None if shares is None else float(shares.max())
                else:  # read beside the train probe's: a cue validation images lack
                    self._val_acc = accuracy
            bad = int(blank_cams(row[1]).sum())
            broken = int((~torch.isfinite(row[1].flatten(1)).all(1)).sum()) if bad else 0
        if broken:
            self.warn_once("nonfinite", f"{broken} CAM(s) of `{name}` ({split}) are not finite "
                                        "(NaN or Inf gradients); they show blank")  # fmt: skip
        elif (
            bad and title is None and "blank" not in self._warned
        ):  # class rows: by design  # normal, so said once as information
            self._warned.add("blank")
            tell(f"{type(self).__name__}: "
                           f"{bad} of {len(row[1])} Grad-CAMs of `{name}` ({split}) "
                           "are zero everywhere (no region raises the target class's score, "
                           "common early in training); those tiles show no heat")  # fmt: skip
        learnt = split == "train" and self._probe_acc is not None and self._probe_acc >= LEARNT
        if bad == len(row[1]) and title is None and learnt and self.method == "gradcam":
            self.warn_once(  # not early any more: Grad-CAM's channel weights read <= 0
                "blank_learnt",
                f"every Grad-CAM of `{name}` is zero at step {trainer.global_step} while the "
                f"model gets {self._probe_acc:.0%} of the probe right: Grad-CAM's channel "
                "weights (gradients averaged over positions) come out <= 0, as behind a "
                "flatten -> linear head where the class depends on position; "
                "`method='hirescam'` shows where the model looks",
            )
        return row

    def _class_rows(self, trainer: Trainer, model: nn.Module, probe: Probe, split: str
                    ) -> list[Row]:  # fmt: skip
        """Segmentation: the deepest layer's CAM for each class predicted in the probe (up to 4)."""
        if not self.dense_output or split == "misclassified":
            return []
        x = to_model(probe.images, model)
        with self.phase("compute"), probe_mode(model):
            predicted = self.logits_of(model(x), image_level=False).argmax(1)
        counts = torch.bincount(predicted.flatten().cpu())
        classes = [int(c) for c in counts.argsort(descending=True) if counts[c] > 0][:4]
        name = list(self.selected)[-1]
        return [
            self._row(
                trainer,
                model,
                probe,
                split,
                name,
                None,
                torch.full((len(x),), c, dtype=torch.long),
                f"class {c}",
            )
            for c in classes
        ]

    def _true_labels(self, probe: Probe) -> Tensor | None:
        """``target="true"``'s labels; ``None`` (CAMs of the predicted class) said once.

        Setups hunt 83: on masks (a segmentation net) or items without labels (an
        autoencoder, SimCLR views) ``"true"`` silently acted as ``"pred"``.
        """
        if probe.labels is not None:
            return probe.labels
        what = f"the items' targets are {probe.target}" if probe.target else "the items have none"
        why = f"needs one class label per image, and {what}"
        self._record("`target='true'`", False, why)  # type: ignore[attr-defined]
        self.warn_once("true_unread", f"`target='true'` {why}: its CAMs are of the "
                       "predicted class instead, as `target='pred'`'s")  # fmt: skip
        return None

    def _saliency_rows(self, trainer: Trainer, model: nn.Module, probe: Probe) -> list[Row]:
        """One captioned row per ``saliency`` method, for the same target as the CAMs.

        None, said once, where the model refuses gradients to its input (reentrant
        checkpointing, or a ``forward`` that cuts them off: a stem under ``torch.no_grad()``
        or ``.detach()``): the CAM rows are drawn without them.
        """
        if not self.saliency or "saliency_refused" in self._warned:
            return []
        if self.dense_output:
            self.warn_once("saliency_dense", "`saliency` rows need (N, classes) logits; a "
                           "per-pixel output (a segmentation's class maps, a reconstruction) "
                           "gets the Grad-CAM rows only")  # fmt: skip
            return []
        x, labels, norm = to_model(probe.images, model), probe.labels, norm_stats(trainer)
        if x.is_complex():  # setups hunt 79: "min_all" not implemented for complex values
            self.warn_once("saliency_complex", "the `saliency` rows need real-valued images, "
                           "these are complex: Grad-CAM rows drawn without them")  # fmt: skip
            return []
        with self.phase("compute"):
            with probe_mode(model):
                logits = self.logits_of(model(x)).float()
            if self.target == "true" and self._true_labels(probe) is not None:
                target = labels
            elif isinstance(self.target, int):
                target = torch.full((len(x),), self.target, dtype=torch.long)
            else:
                target = logits.argmax(1)
            bounds = input_bounds(norm, x.shape[1])  # Integrated Gradients from a black image
            black = float(x.min()) if bounds is None else bounds[0].to(x).expand_as(x[:1])
            try:
                maps = {
                    name: as_pictures(x, clip_peaks(input_saliency(
                        model, x, target, name, output_key=self._logits_key, baseline=black,
                        smooth=self.smooth, seed=self.seed)))[1]
                    for name in self.saliency
                }  # fmt: skip
            except Exception:
                # setups hunt 74: reentrant checkpointing refuses the gradient to the images
                # only; the CAM's, taken at a layer past the checkpoint, never crosses it.
                # Setups hunt 91: so does a frozen stem under `torch.no_grad()`/`.detach()`
                refused = self.gradients_refused(trainer, to_input=True)
                if not refused:
                    raise
                said = "the `saliency` rows (gradients to the images) are left out, the "
                self.warn_once("saliency_refused", f"{said}Grad-CAM rows drawn: {refused}")
                return []
            image01 = to_image01(as_pictures(x)[0], norm)
        with self.phase("render"):
            suffix = " (SmoothGrad)" if self.smooth else ""
            image01, logits = image01.cpu(), logits.cpu()
            return [
                (image01, heat.cpu(), logits, labels, name.replace("_", " ") + suffix)
                for name, heat in maps.items()
            ]

    def _metrics(self, split: str, name: str, cam: Tensor, image01: Tensor, images: bool = True
                 ) -> dict[str, Tensor]:  # fmt: skip
        key = f"{split}/{name}"
        peak = cam.flatten(1).amax(1).clamp_min(1e-30).view(-1, 1, 1)  # drift is scale-free
        previous, self._previous[key] = self._previous.get(key), kept_size(cam / peak).half().cpu()
        mask = self._foreground(split, image01) if images else None  # "on the object": images
        out = cam_metrics(cam, mask, previous)
        tags = {self.tag(key, m): v for m, v in out.items()} if len(self.selected) > 1 else {}
        last = name == list(self.selected)[-1]  # the deepest layer also gets the plain tags
        return tags | ({self.tag(split, m): v for m, v in out.items()} if last else {})

    def _without_object(self, model: nn.Module, split: str, x: Tensor, labels: Tensor | None,
                        image01: Tensor, values: dict[str, Tensor]) -> None:  # fmt: skip
        """``right_without_object``: the train probe still classified right, object removed.

        The probe pass on images whose object (the foreground mask) took the background
        (``gradcam.objects.without_object``): a model that reads the object falls to about
        chance; one that reads a cue elsewhere (a marker, a border) stays right. 2-D images
        with class labels and an object mask only.
        """
        if self.dense_output or labels is None or x.dim() != 4:
            return  # per-pixel outputs: no one class per image to keep
        mask = self._foreground(split, image01)
        if mask is None or mask.shape[-2:] != x.shape[-2:]:
            return
        with probe_mode(model):
            out = logits_from(model(without_object(x, mask)), self._logits_key)
        if out.dim() != 2:
            return  # a measure beside the CAMs: never a reason for the monitor to step aside
        right = (out.argmax(1) == labels.to(out.device)).float()
        whole = mask.flatten(1).all(1).to(right.device)  # no object found: nothing to remove
        values[self.tag(split, "right_without_object")] = right.masked_fill(whole, math.nan)

    def _wants_hires(self, name: str, x: Tensor) -> bool:
        """Whether the shortcut rules need HiResCAM beside the drawn Grad-CAM here.

        Grad-CAM averages each channel's gradient over the image, so a cue read by its
        position (a marker whose place codes the class) stays invisible to it; HiResCAM
        keeps the gradient per position. The deepest layer's CNN map of images only
        (``on_object`` needs an object mask); with ``method="hirescam"`` the drawn map
        is already it.
        """
        layout = (self._layouts or {}).get(name)
        return (
            name == list(self.selected)[-1]
            and x.dim() == 4
            and self.method == "gradcam"
            and (layout is None or layout.kind == "nchw")
        )

    def _fixed_spot(self, split: str, name: str, x: Tensor, cam: Tensor, image01: Tensor,
                    labels: Tensor, values: dict[str, Tensor]) -> None:  # fmt: skip
        """``cam_agreement`` / ``content_agreement`` of the deepest CNN layer's HiResCAM.

        What ``gradcam.fixed_spot`` reads (a CAM on one spot whatever the image); sets
        ``_spot[split]`` to ``(hw, region)``, ``hw`` ``None`` where the map cannot be judged.
        """
        layout = (self._layouts or {}).get(name)
        hires = self.method == "hirescam" or self._wants_hires(name, x)
        ok = name == list(self.selected)[-1] and x.dim() == 4 and hires and layout is not None
        hw = layout.hw if ok and layout.kind == "nchw" else None  # type: ignore[union-attr]
        self._spot[split] = (hw, "")
        if hw is None or fixed_blocker(hw):
            return
        agree, content = grid_agreements(cam, image01, labels, hw)
        values[self.tag(split, "cam_agreement")] = torch.tensor([agree])
        values[self.tag(split, "content_agreement")] = torch.tensor([content])
        self._spot[split] = (hw, region(cam))

    def _foreground(self, split: str, image01: Tensor) -> Tensor | None:
        """The probe objects' mask, found once: the probe images stay the same all run."""
        if self.foreground_threshold is None:
            return None
        images, mask = self._masks.get(split, (None, None))
        if images is None or images.shape != image01.shape or not torch.equal(images, image01):
            mask = foreground(image01, self.foreground_threshold)
            self._masks[split] = (image01, mask)
        return mask
