"""The probe passes of one ``OverfittingMonitor`` evaluation: a part of ``Measures``.

``ProbeLogits`` gets the logits the figures are read from: the val probe's kept from the
validation loop (``loop_logits.py``) or from a pass of its own, the train probe's, the val
probe's with BatchNorm on batch statistics (``batch_stats.py``) and re-standardised to the
training images' statistics; ``_host`` turns the extra passes into host figures in one
transfer. Which passes run is ``passes.plan``'s choice; ``Measures`` (``measures.py``) runs
them and builds the ``Evaluation``.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor

from lightning_cnnviz.core.input_shift import channel_stats, restandardise
from lightning_cnnviz.core.monitor import with_probe
from lightning_cnnviz.core.selection import unwrap_model
from lightning_cnnviz.overfitting import class_figures, passes
from lightning_cnnviz.overfitting.batch_stats import (
    batch_norms,
    batch_stats_logits,
    no_batch_norm_why,
)
from lightning_cnnviz.overfitting.blind_level import blind_losses
from lightning_cnnviz.overfitting.label_prior import prior_figures
from lightning_cnnviz.overfitting.logged_reads import LoggedReads
from lightning_cnnviz.overfitting.loop_logits import items_moved
from lightning_cnnviz.overfitting.metrics import discordant_shares, figures
from lightning_cnnviz.overfitting.same_output import output_spread

__all__ = ["DRAWS", "NOISE_LIKE", "ProbeLogits"]

DRAWS = 4  # noise draws on each train probe image (``_noised``)


NOISE_LIKE = 0.5  # this share of the val images' extra variance between neighbours: noise


def _noise_like(train: Tensor, val: Tensor) -> bool:
    """Whether the val images' extra spread sits between neighbouring values, as noise does.

    Pixel noise of variance ``v`` adds ``2 v`` to the variance of the difference of two
    neighbours (along the last axis); a wider but smooth content (thicker strokes, more
    contrast) adds little there. ``NOISE_LIKE`` of ``2 x`` the extra variance, in some
    channel that spreads wider: held out (hunt 94), other writers' MNIST digits (more
    ink, 1.2x the spread) were told "the val inputs carry noise" at 93-96% val.

    Example::

        >>> g = torch.Generator().manual_seed(0)
        >>> clean = torch.rand(64, 1, 8, 8, generator=g).cumsum(-1) / 4  # smooth rows
        >>> _noise_like(clean, clean + 0.3 * torch.randn(64, 1, 8, 8, generator=g))
        True
        >>> _noise_like(clean, clean * 1.3)  # wider, as smooth
        False
    """

    def variances(s: Tensor) -> tuple[Tensor, Tensor]:
        s = s.float().transpose(0, 1)
        steps = (s[..., 1:] - s[..., :-1]).reshape(len(s), -1)
        return s.reshape(len(s), -1).var(1), steps.var(1)

    (whole_t, step_t), (whole_v, step_v) = variances(train), variances(val)
    wider = whole_v > whole_t
    share = (step_v - step_t) / (2 * (whole_v - whole_t)).clamp_min(1e-12)
    return bool((wider & (share >= NOISE_LIKE)).any())


class ProbeLogits(LoggedReads):
    """Gets one evaluation's probe logits (a part of ``Measures``).

    Reads the monitor's probes, loop tap and phases; sets ``_bn_why`` where no
    batch-statistics pass runs.
    """

    _bn_why: str
    prior: dict[str, float | str]  # the val probe against targets that are no class labels
    ranked_val: tuple[Tensor, Tensor] | None = None  # its multi-hot outputs and targets
    scores_misfit: str
    # the loop's input prints at the val probe's positions when it read the probe's images:
    # (that probe, prints, whether they held at a validation since)
    _read_prints: tuple[Any, Tensor, bool] | None = None
    _items_moved = False  # val items that held between validations changed (``run_data``)

    def _images(self, trainer: Trainer, split: str) -> int:
        """Images of the ``split`` probe an extra pass sees (``passes.pass_images``)."""
        return passes.pass_images(len(self.probe(trainer, split)), self._batch_images)

    def _logits(
        self, trainer: Trainer, pl_module: LightningModule, split: str, images: int | None = None
    ) -> Tensor | None:
        """The ``split`` probe's eval-mode logits, of its first ``images`` (``None``: all)."""
        labels = self.probe(trainer, split).labels
        x = self.probe_input(trainer, pl_module, split)[:images]
        with self.phase("capture"):
            self.logits_key(trainer, pl_module)
        if self.scores_misfit:  # the val-curve rules go on without the scores
            self.warn_once("scores_misfit", f"the checks that read the model's scores do not "
                           f"run: {self.scores_misfit}.")  # fmt: skip
            return None
        with self.phase("capture"), with_probe(pl_module):
            outputs = [self.logits_of(pl_module(c), image_level=False) for c in x.split(128)]
            logits = torch.cat([o.float() for o in outputs])
        targets = self.probe(trainer, split).targets
        if split == "val":  # one answer for all? a blind model's loss? one output for all?
            with self.phase("compute"):
                shown = None if targets is None else targets[: len(logits)]
                if shown is not None:
                    self.prior = prior_figures(logits, shown) or blind_losses(logits, shown) or {}
                # multi-hot: kept for the batch-statistics pass's paired AUC (hunt 110)
                labelled = self.prior.get("prior_task") == "labels" and shown is not None
                self.ranked_val = (logits, shown) if labelled else None  # type: ignore[assignment]
                self.prior |= output_spread(logits, shown)  # (maps beside labels too: hunt 102)
        if logits.dim() != 2:
            self.warn_once("dense", "calibration (ECE) and per-class accuracy need one score "
                           f"per class per sample; the model's logits have shape "
                           f"{tuple(logits.shape[1:])} per sample ({self.dense_words(logits)}): "
                           "they are skipped")  # fmt: skip
            return None
        ok = labels is not None and logits.shape[1] > int(labels[:images].max())
        return logits if ok else None

    def _loop_logits(self, trainer: Trainer) -> Tensor | None:
        """The val probe's logits kept from the validation loop, if they are the probe's."""
        kept = self._loop.take()
        # the loop's share, timed there and counted here (validation is no logging event)
        self.timings["loop"] += self._loop.seconds
        self.timings["total"] += self._loop.seconds
        self._loop.seconds = 0.0
        if kept is None:
            return None
        logits, loop_labels, prints = kept
        self._reread_moved(trainer, prints)
        labels = self.probe(trainer, "val").labels
        if labels is None:
            return None
        with self.phase("capture"):  # one transfer: the rows must be the probe's images
            same = torch.equal(loop_labels.cpu(), labels) and logits.shape[1] > int(labels.max())
        if not same:
            self._loop.why = "the val loop's labels at the probe's indices differ from the probe's"
        return logits if same else None

    def _reread_moved(self, trainer: Trainer, prints: Tensor | None) -> None:
        """Read the val probe's images again where the loop's at its positions moved.

        The loop's logits are of the images as they are now; the other passes read the
        probe's, cached when first drawn. A val set whose items change between
        validations (a transform switched, a val curriculum, a dataset re-made) leaves
        them apart, and every figure of one evaluation must read the same images
        (held-out hunt 125: inverted val images read 97% "with their own batch
        statistics" on the cached clean ones, 8-15% on their own, told as a BatchNorm
        mismatch). The prints are the model's inputs, which the probe's dataset items
        are not (a normalisation in the step), so they are compared with the loop's own
        prints at the validation the probe was read at.
        """
        probe = self._probes.get("val")
        read = self._read_prints
        if prints is None or probe is None:
            return
        if read is None or read[0] is not probe:  # the probe read at this validation
            self._read_prints = (probe, prints, False)
            return
        with self.phase("capture"):  # one small transfer
            moved = items_moved(prints, read[1])
        if not moved:
            self._read_prints = (probe, read[1], True)
            return
        # items that held once and changed: the val pipeline changed (a transform drawing
        # at random moves at every validation, and is no change to tell)
        self._items_moved = self._items_moved or read[2]
        self._probes.pop("val")  # same indices (same length), the items as they are now
        self._read_prints = (self.probe(trainer, "val"), prints, False)

    def _batch_stats(
        self, trainer: Trainer, pl_module: LightningModule, images: int
    ) -> Tensor | None:
        """The val probe's first ``images`` with BatchNorm on batch statistics (or ``None``)."""
        norms = batch_norms(unwrap_model(pl_module))
        if not norms or self.scores_misfit:
            self._bn_why = self.scores_misfit or no_batch_norm_why(unwrap_model(pl_module))
            return None
        if trainer.world_size > 1:  # rank zero alone: a training-mode BatchNorm may all-reduce
            self._bn_why = "distributed run: batch statistics may need every rank"
            return None
        x = self.probe_input(trainer, pl_module, "val")[:images]
        try:
            with self.phase("capture"), with_probe(pl_module):
                output = lambda out: self.logits_of(out, image_level=False)  # noqa: E731
                return batch_stats_logits(pl_module, norms, x, output=output)
        except Exception as err:  # e.g. a batch of one: the other checks go on
            self._bn_why = f"batch statistics failed: {type(err).__name__}: {err}"
            return None

    def _restandardised(
        self, trainer: Trainer, pl_module: LightningModule, given: Tensor, labels: Tensor
    ) -> dict[str, float]:
        """The val probe's first images re-standardised to the train probe's statistics.

        Where the two probes' images part past the milder bars (``mild_shift``): the
        model's accuracy on them with each channel's mean and spread moved to the training
        images' (``core.input_shift.restandardise``) against ``given``, its logits on the
        same images as they are; the paired shares tell a lift from noise
        (``split_inputs.restandardised``). ``{}`` for inputs that are not float images.
        """
        x = self.probe_input(trainer, pl_module, "val")[: len(given)]
        if not x.is_floating_point():
            return {}
        train, val = (self.probe(trainer, s).images for s in ("train", "val"))
        x = restandardise(x, val.float(), train.float())
        with self.phase("capture"), with_probe(pl_module):
            out = [self.logits_of(pl_module(c), image_level=False).float() for c in x.split(128)]
        logits = torch.cat(out)
        if logits.shape != given.shape:
            return {}
        with self.phase("compute"):
            truth = labels.to(logits.device)
            apart = discordant_shares(given, logits, truth)  # right in one pass only
            accs = [(out.float().argmax(1) == truth).float().mean() for out in (logits, given)]
            values = torch.stack([*accs, apart["bn_only"], apart["eval_only"]]).tolist()
        names = ("restd_acc", "given_acc", "restd_only", "given_only")
        return {**dict(zip(names, values, strict=True)), "restd_size": float(len(given))}

    def _noised(
        self, trainer: Trainer, pl_module: LightningModule, labels: Tensor | None
    ) -> dict[str, float]:
        """The train probe's first images as given and with the val images' extra spread.

        Where the two probes' images part past the milder bars (``mild_shift``) and a val
        channel spreads wider: seeded Gaussian noise of each channel's extra spread,
        ``sqrt(val_std ** 2 - train_std ** 2)``, added to the training images (from a
        generator of its own: the run's random state untouched). What that costs the
        model on images it trained on is what noise in the val images costs it
        (``split_inputs.noise_costs``), which re-standardising cannot undo (hunt 91: val
        noise sd 0.8 on a CNN without BatchNorm, 82.6% against 93.4% clean, told nothing).
        ``DRAWS`` draws on each image. ``{}`` where no val channel spreads wider, or the
        images are no float images.
        """
        # both splits as the model takes them: the spreads in the inputs' own scale
        x, val = (self.probe_input(trainer, pl_module, s) for s in ("train", "val"))
        if labels is None or not x.is_floating_point() or x.dim() < 3 or val.dim() != x.dim():
            return {}
        (_, t_std), (_, v_std) = channel_stats(x.float()), channel_stats(val.float())
        extra = (v_std**2 - t_std**2).clamp_min(0).sqrt().cpu()
        if not bool((extra > 0).any()) or len(extra) != x.shape[1] or not _noise_like(x, val):
            return {}
        # several draws of the noise on each image: its cost, not one draw's luck
        x, labels = x[: len(labels)].repeat(DRAWS, *[1] * (x.dim() - 1)), labels.repeat(DRAWS)
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(x.shape, generator=g) * extra.view(1, -1, *[1] * (x.dim() - 2))
        noisy = x + noise.to(device=x.device, dtype=x.dtype)
        with self.phase("capture"), with_probe(pl_module):
            out = [
                torch.cat([self.logits_of(pl_module(c), image_level=False).float()
                           for c in batch.split(128)])
                for batch in (noisy, x)
            ]  # fmt: skip
        if out[0].shape != out[1].shape or out[0].shape[0] != len(labels):
            return {}
        with self.phase("compute"):
            truth = labels.to(out[0].device)
            apart = discordant_shares(out[1], out[0], truth)  # right with the noise only
            accs = [(o.argmax(1) == truth).float().mean() for o in out]
            values = torch.stack([*accs, apart["bn_only"], apart["eval_only"]]).tolist()
        names = ("noisy_acc", "clean_acc", "noisy_only", "clean_only")
        return {**dict(zip(names, values, strict=True)), "noisy_size": float(len(labels))}

    def _host(
        self,
        logits: dict[str, Tensor | None],
        labels: dict[str, Any],
        val: Tensor | None = None,
        left: list[int] | None = None,
    ) -> dict[str, float]:
        """The figures of the extra passes (train probe, batch statistics) on the host.

        With ``val`` (the eval-mode val logits) and a batch-statistics pass, also the
        shares of the probe right in one of the two only (the rule's paired error); with
        ``left`` (classes the val probe leaves out), the train probe's loss on them.
        """
        if all(v is None for v in logits.values()):
            return {}
        with self.phase("compute"):
            host = figures({}, logits, labels)[0]
            bn, truth = logits.get("bn"), labels.get("val")
            if bn is not None and val is not None and truth is not None:
                shares = discordant_shares(val, bn, truth)
                host.update(zip(shares, torch.stack(list(shares.values())).tolist(), strict=True))
            train, train_labels = logits.get("train"), labels.get("train")
            if train is not None:  # a fixed probe's accuracy: its paired error (memorisation)
                host["probe_size_train"] = float(len(train))
            if left and train is not None and train_labels is not None:
                host.update(class_figures.left_out_loss(train, train_labels, left))
            return host
