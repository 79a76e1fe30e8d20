"""AttentionMonitor: where a vision transformer's attention goes on fixed probe images."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor, nn
from typing_extensions import override

from lightning_cnnviz.attention.draw import attention_grid
from lightning_cnnviz.attention.maps import Sites, attention_maps, attention_sites
from lightning_cnnviz.attention.rollout import entropy
from lightning_cnnviz.core.checks import check_choice, check_int, check_number
from lightning_cnnviz.core.hook_guard import ConfigError
from lightning_cnnviz.core.inputs import norm_stats, to_image01
from lightning_cnnviz.core.monitor import Monitor
from lightning_cnnviz.core.rendering import CMAPS
from lightning_cnnviz.core.selection import evenly_spaced, named_layers, unwrap_model
from lightning_cnnviz.core.tokens import is_attention

# the attention modules whose weights it recomputes (``core.tokens.is_attention``)
READ_FORMS = (
    "an `nn.MultiheadAttention`, one with `qkv` and `num_heads` (timm), or one with query, "
    "key and value projections and a head count (HuggingFace)"
)


class AttentionMonitor(Monitor, section="attention"):
    """Class-token attention per head, and attention rollout, over the probe images.

    On logging steps only, one probe forward pass in eval mode keeps each attention
    module's input (global attention) or its Swin block's first-norm output
    (window attention); the weights are recomputed from the module's own
    projections (``attention.weights``), so fused ``scaled_dot_product_attention``
    is no obstacle. Writes, per selected attention module, ``attention/{layer}``
    (per probe image: the image, the head-averaged map, then each head; ViT/DeiT:
    the class token's attention to the patches; Swin: the attention each token
    receives inside its window) and ``attention/{layer}/entropy`` (normalised
    entropy of those maps, 1 = uniform); for global attention also
    ``attention/rollout`` and ``attention/rollout/entropy`` (Abnar & Zuidema
    2020, over every block). A model without attention: one warning, and the
    monitor steps aside. How to read them: ``docs/attention.md``.

    Args:
        layers: ``"auto"`` (the first and last attention modules, ``max_layers`` of
            them) or any selection of attention modules.
        max_layers: cap of the ``auto`` selection.
        max_heads: heads drawn per layer (the first ones; the mean uses all).
        max_samples_shown: probe images drawn, one row each.
        rollout: also log attention rollout (global attention only).
        cmap: colormap of the maps. alpha: their opacity over the image.
        **kwargs: the shared arguments of ``Monitor`` (schedule, ``budget``,
            ``num_samples``, ``tag_prefix``, ``strict``, ``seed``, ``output_key``,
            ``label_key``).

    Example::

        >>> from lightning_cnnviz import AttentionMonitor
        >>> AttentionMonitor(every_n_steps=100).tag("rollout")
        'attention/rollout'
    """

    needs_call_sites = False
    others_by_name = False
    auto_description = f"it looks for attention modules: {READ_FORMS}"

    def __init__(
        self,
        layers: str | list[str] = "auto",
        max_layers: int = 2,
        max_heads: int = 6,
        max_samples_shown: int = 4,
        rollout: bool = True,
        cmap: str = "inferno",
        alpha: float = 0.6,
        **kwargs: Any,
    ) -> None:
        super().__init__(layers, **kwargs)
        for name, value in [("max_layers", max_layers), ("max_heads", max_heads),
                            ("max_samples_shown", max_samples_shown)]:  # fmt: skip
            check_int(name, value)
        check_choice("rollout", rollout, (True, False))
        check_choice("cmap", cmap, CMAPS)
        check_number("alpha", alpha, low=0.0, high=1.0)
        self.max_layers, self.max_heads, self.max_samples_shown = (
            max_layers,
            max_heads,
            max_samples_shown,
        )
        self.rollout, self.cmap, self.alpha = rollout, cmap, alpha
        self._sites: Sites | None = None  # the model's attention modules, sorted in setup

    @override
    def auto_layers(self, model: nn.Module, available: dict[str, nn.Module]) -> list[str]:
        return evenly_spaced([n for n, m in available.items() if is_attention(m)], self.max_layers)

    @override
    def layers_found(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # "auto" on a model without attention: the base steps aside, saying why
        if not self.selected:
            return
        available = named_layers(unwrap_model(pl_module))
        attention = [n for n, m in available.items() if is_attention(m)]
        wrong = [n for n, m in self.selected.items() if not is_attention(m)]
        if wrong:
            raise ConfigError(
                f"`layers` of AttentionMonitor must select attention modules it can read "
                f"({READ_FORMS}), "
                f"got {wrong}; such modules in this model: {attention or 'none'}"
            )
        self._sites = attention_sites(available, list(self.selected))

    @override
    def log_event(self, trainer: Trainer, pl_module: LightningModule) -> None:
        model, step = unwrap_model(pl_module), trainer.global_step
        x = self.probe_input(trainer, pl_module)
        assert self._sites is not None
        with self.phase("compute"):  # one probe pass (capture) and the recomputed weights
            heads, rolled = attention_maps(model, x, self._sites, self.rollout)
            maps: dict[str, tuple[Tensor, list[str]]] = {}
            values: dict[str, Tensor] = {}
            for name, per_head in heads.items():
                values[self.tag(name, "entropy")] = entropy(per_head).mean()
                shown = per_head[:, : self.max_heads]
                maps[name] = (torch.cat([per_head.mean(1, keepdim=True), shown], 1),
                              ["mean"] + [f"head {h}" for h in range(shown.shape[1])])  # fmt: skip
            if rolled is not None:
                values[self.tag("rollout", "entropy")] = entropy(rolled).mean()
                maps["rollout"] = (rolled[:, None], ["rollout"])
            image01 = to_image01(x, norm_stats(trainer))
        if len(heads) < len(self.selected):
            self.warn_once("layout", "some attention maps could not be laid on the patch "
                           "grid (tokens do not match the input's aspect); skipped")  # fmt: skip
        with self.phase("write"):
            shown = self.max_samples_shown
            scalars = dict(zip(values, torch.stack(list(values.values())).tolist(), strict=True)
                           ) if values else {}  # fmt: skip
            self.sink.scalars(scalars, step)
            host = {k: (m[:shown].cpu(), titles) for k, (m, titles) in maps.items()}
            image01 = image01[:shown].cpu()
            self.in_background(lambda: self._draw(image01, host, step))

    def _draw(self, image01: Tensor, maps: dict[str, tuple[Tensor, list[str]]], step: int) -> None:
        """On the sink's thread: one overlay grid per selected layer and for the rollout."""
        for name, (heat, titles) in maps.items():
            grid = attention_grid(image01, heat, titles, cmap=self.cmap, alpha=self.alpha)
            self.sink.image(self.tag(name), grid, step)
