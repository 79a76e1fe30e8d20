"""``EmbeddingMonitor``: penultimate features of validation samples in TensorBoard's projector."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from lightning_cnnviz.core import rendering
from lightning_cnnviz.core.capture import LayerCapture
from lightning_cnnviz.core.checks import check_int
from lightning_cnnviz.core.inputs import norm_stats, to_image01, to_model
from lightning_cnnviz.core.layer_types import CONV_TYPES
from lightning_cnnviz.core.monitor import Monitor, with_probe
from lightning_cnnviz.core.outputs import one_row_per_image
from lightning_cnnviz.core.probe import generator_for, probe_from_indices
from lightning_cnnviz.core.run_datasets import find_dataset
from lightning_cnnviz.core.selection import of_type, unwrap_model
from lightning_cnnviz.embeddings import features as embedding


class EmbeddingMonitor(Monitor, section="embeddings"):
    """Features of the probe and up to ``max_points`` validation samples, for the projector.

    Every event writes one embedding per selected layer (``embeddings/{layer}``)
    with label and prediction metadata and a sprite of the de-normalised input
    images, so that PCA / t-SNE / UMAP in TensorBoard's *Projector* tab show the
    classes pull apart as training goes on; and one scalar per layer,
    ``embeddings/{layer}/class_separation`` (mean distance between class
    centroids / mean distance of a point to its own class centroid). The points
    are drawn once by index with the monitor's own generator (kept in the
    checkpoint) and forwarded in probe mode, ``batch_size`` at a time.

    Args:
        layers: ``"auto"`` = the *input* of the last ``Linear`` (or of the last
            conv, for a convolutional logits head), tagged with that layer's name;
            else the output of the named layers, averaged over space if 4-D.
        max_points: points per embedding (the probe first, then other validation samples).
        batch_size: samples per probe forward pass.
        **kwargs: the shared arguments of ``Monitor`` (schedule, ``num_samples``, ``tag_prefix``,
            ``strict``, ``seed``, ``budget``).

    Example::

        >>> from lightning_cnnviz import EmbeddingMonitor
        >>> monitor = EmbeddingMonitor(max_points=500)
        >>> monitor.tag("fc2", "class_separation")
        'embeddings/fc2/class_separation'
    """

    auto_description = "it embeds the input of the last linear or conv layer"

    def __init__(
        self,
        layers: str | list[str] = "auto",
        max_points: int = 1000,
        batch_size: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(layers, **kwargs)
        check_int("max_points", max_points)
        check_int("batch_size", batch_size)
        self.max_points, self.batch_size = max_points, batch_size
        self.point_indices: list[int] = []
        self._points: tuple[Tensor, Tensor | None] | None = None

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._points = None  # a new fit may bring new datasets; the indices stay

    @override
    def auto_layers(self, model: nn.Module, available: dict[str, nn.Module]) -> list[str]:
        return of_type(nn.Linear, *CONV_TYPES)(model, available)[-1:]

    @property
    def reads_input(self) -> bool:
        """``layers="auto"``: the features are the selected layer's input."""
        return self.layers == "auto" or list(self.layers) == ["auto"]

    @override
    def describe_layers(self) -> str:
        note = " (the input of each: the penultimate features)" if self.reads_input else ""
        return super().describe_layers() + note

    def points(self, trainer: Trainer) -> tuple[Tensor, Tensor | None]:
        """Images and labels of the embedded samples, drawn once by index and kept on the CPU."""
        if self._points is None:
            dataset = find_dataset(trainer, "val")
            if not self.point_indices:
                generator = generator_for(self.seed, "embeddings/points")
                keep = self.probe(trainer, "val").indices
                self.point_indices = embedding.draw_indices(
                    len(dataset), self.max_points, keep, generator
                )
            loaded = probe_from_indices(dataset, self.point_indices, self.probe_label_key(dataset))
            self._points = (loaded.images, loaded.labels)
        return self._points

    def features(self, pl_module: LightningModule, images: Tensor) -> tuple[dict, Tensor | None]:
        """Pooled features per call site ``(N, D)`` and predictions ``(N,)`` (if 2-D logits)."""
        model = unwrap_model(pl_module)
        parts: dict[str, list[Tensor]] = {}
        predictions: list[Tensor] = []
        with with_probe(model):
            for start in range(0, images.shape[0], self.batch_size):
                x = to_model(images[start : start + self.batch_size], model)
                with LayerCapture(self.selected, shared=self.shared, inputs=self.reads_input) as c:
                    logits = self.logits_of(model(x), image_level=False)
                kept = c.inputs if self.reads_input else c.outputs
                for site, value in kept.items():
                    value = one_row_per_image(f"`{site}`", value, len(x))
                    parts.setdefault(site, []).append(embedding.pool_features(value))
                if logits.dim() == 2:
                    predictions.append(logits.argmax(1))
        feats = {site: torch.cat(chunks) for site, chunks in parts.items()}
        return feats, torch.cat(predictions) if predictions else None

    @override
    def log_event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        step = trainer.global_step
        with self.phase("capture"):
            self.logits_key(trainer, pl_module)
            images, labels = self.points(trainer)
            feats, predictions = self.features(pl_module, images)
        with self.phase("compute"):
            separation = {}
            if labels is not None:
                for site, value in feats.items():
                    separation[self.tag(site, "class_separation")] = embedding.class_separation(
                        value, labels
                    )
            host = torch.stack(list(separation.values())).tolist() if separation else []
            feats = {site: value.cpu() for site, value in feats.items()}
            predictions = predictions.cpu() if predictions is not None else None
        with self.phase("render"):
            sprite = None  # the projector's sprite needs images; vectors go without
            if images.dim() == 4:
                sprite = rendering.thumbnails(to_image01(images, norm_stats(trainer)))
                if sprite.shape[1] not in (1, 3):
                    sprite = sprite.mean(1, keepdim=True)
            header, metadata = _metadata(labels, predictions, len(images))
        with self.phase("write"):
            scalars = {k: v for k, v in zip(separation, host, strict=True) if v == v}
            self.sink.scalars(scalars, step)
            if self.sink.without_tensorboard():
                self.warn_once(
                    "projector",
                    "the projector's embeddings need a TensorBoard logger, and this run has "
                    "none: only the class separation scalars are written",
                )
            for site, value in feats.items():
                self.sink.embedding(
                    self.tag(site), value, step,
                    metadata=metadata, metadata_header=header, label_img=sprite,
                )  # fmt: skip

    @override
    def extra_state(self) -> dict[str, Any]:
        return {"point_indices": list(self.point_indices)}

    @override
    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.point_indices = list(state.get("point_indices", []))
        self._points = None


def _metadata(
    labels: Tensor | None, predictions: Tensor | None, n: int
) -> tuple[list[str] | None, list[Any] | None]:
    columns = {"label": labels, "predicted": predictions}
    columns = {k: v.tolist() for k, v in columns.items() if v is not None and len(v) == n}
    if not columns:
        return None, None
    if len(columns) == 1:
        return None, [str(v) for v in next(iter(columns.values()))]
    return list(columns), [list(map(str, row)) for row in zip(*columns.values(), strict=True)]
