"""Small timm and torchvision vision transformers (no pretrained weights) as LightningModules.

``TRANSFORMERS`` builds each over 3x32x32 inputs and 4 classes, small enough for a
few CPU steps: timm ViT (with and without register tokens), DeiT (distilled: two
prefix tokens), Swin (windows, shifts, NHWC), torchvision's ``VisionTransformer``
(``nn.MultiheadAttention``) and ``SwinTransformer``; ``HYBRIDS`` the modern and hybrid
CNNs (timm ConvNeXt, MobileViT, CoAtNet) over 3x64x64.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import VisionTransformer
from torchvision.models.swin_transformer import SwinTransformer

TINY_VIT = {"img_size": 32, "patch_size": 8, "num_classes": 4, "depth": 2, "embed_dim": 32,
            "num_heads": 2}  # fmt: skip

TRANSFORMERS: dict[str, Callable[[], nn.Module]] = {
    "timm_vit": lambda: timm.create_model("vit_tiny_patch16_224", **TINY_VIT),
    "timm_vit_reg": lambda: timm.create_model("vit_tiny_patch16_224", reg_tokens=4, **TINY_VIT),
    "timm_deit": lambda: timm.create_model("deit_tiny_distilled_patch16_224", **TINY_VIT),
    "timm_swin": lambda: timm.create_model(
        "swin_tiny_patch4_window7_224",
        img_size=32,
        patch_size=2,
        window_size=4,
        embed_dim=24,
        depths=(2, 2),
        num_heads=(1, 2),
        num_classes=4,
    ),
    "tv_vit": lambda: VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=4,
    ),
    "tv_swin": lambda: SwinTransformer(
        patch_size=[2, 2],
        embed_dim=24,
        depths=[2, 2],
        num_heads=[1, 2],
        window_size=[4, 4],
        num_classes=4,
    ),
}
HYBRIDS: dict[str, Callable[[], nn.Module]] = {
    "timm_convnext": lambda: timm.create_model("convnext_atto", num_classes=4),
    "timm_mobilevit": lambda: timm.create_model("mobilevit_xxs", num_classes=4),
    "timm_coatnet": lambda: timm.create_model("coatnet_nano_rw_224", num_classes=4, img_size=64),
}


class Classifier(L.LightningModule):
    """Cross-entropy on any image classifier ``net``; AdamW; logs train/val loss and acc."""

    def __init__(self, net: nn.Module, lr: float = 1e-3) -> None:
        super().__init__()
        self.net, self.lr = net, lr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True)
        self.log(f"{stage}/acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr)
