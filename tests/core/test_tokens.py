"""core.tokens and core.token_cam: token outputs laid on the patch grid, Grad-CAM on them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_cnnviz.core.selection import named_layers
from lightning_cnnviz.core.target_layer import auto_cam_layer
from lightning_cnnviz.core.token_cam import any_grad_cam, cam_layouts, token_grad_cam
from lightning_cnnviz.core.tokens import (
    Layout,
    grid_layout,
    is_attention,
    prefix_tokens,
    to_grid,
    transformer_blocks,
)
from tests.attention.models import HYBRIDS, TRANSFORMERS


@pytest.mark.parametrize(
    ("shape", "prefix", "expected"),
    [
        ((2, 17, 8), 1, Layout("tokens", 1, (4, 4))),  # ViT: class token
        ((2, 18, 8), None, Layout("tokens", 2, (4, 4))),  # DeiT: searched, class + distillation
        ((2, 21, 8), 5, Layout("tokens", 5, (4, 4))),  # class + 4 registers
        ((2, 8, 8, 24), None, Layout("nhwc", 0, (8, 8))),  # Swin
        ((2, 24, 8, 8), None, Layout("nchw", 0, (8, 8))),  # CNN
        ((2, 9, 8), 1, None),  # 8 patches do not make a square grid
        ((2, 5), None, None),  # pooled features
    ],
)
def test_grid_layout_reads_token_shapes(shape, prefix, expected):
    assert grid_layout(shape, (32, 32), prefix) == expected


def test_grid_layout_tie_goes_to_channels_last_for_layer_norm():
    shape = (1, 8, 8, 8)  # (N, C=8, 8, 8) or (N, 8, 8, C=8)
    assert grid_layout(shape, (32, 32), module=nn.Conv2d(8, 8, 1)).kind == "nchw"
    assert grid_layout(shape, (32, 32), module=nn.LayerNorm(8)).kind == "nhwc"


def test_grid_layout_rejects_another_batch():
    assert grid_layout((4, 16, 8), (32, 32), batch=1) is None  # MobileViT's unfolded patches


def test_to_grid_puts_token_k_at_row_k_div_w():
    tokens = torch.zeros(1, 1 + 6, 2)
    tokens[0, 0] = 99.0  # the class token is dropped
    tokens[0, 1:, 0] = torch.arange(6.0)
    grid = to_grid(tokens, Layout("tokens", 1, (2, 3)))
    assert grid.shape == (1, 2, 2, 3)
    assert grid[0, 0].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    nhwc = torch.arange(12.0).view(1, 2, 3, 2)
    assert torch.equal(to_grid(nhwc, Layout("nhwc", 0, (2, 3)))[0, 1], nhwc[0, :, :, 1])


def test_prefix_tokens_of_timm_and_torchvision():
    assert prefix_tokens(TRANSFORMERS["timm_deit"]()) == 2
    assert prefix_tokens(TRANSFORMERS["timm_vit_reg"]()) == 5
    assert prefix_tokens(TRANSFORMERS["tv_vit"]()) == 1
    assert prefix_tokens(nn.Conv2d(1, 1, 1)) is None


AUTO = {
    "timm_vit": "blocks.1.norm1",
    "timm_vit_reg": "blocks.1.norm1",
    "timm_deit": "blocks.1.norm1",
    "timm_swin": "layers.1.blocks.1.norm1",
    "tv_vit": "encoder.layers.encoder_layer_1.ln_1",
    "tv_swin": "features.3.1.norm1",
}


@pytest.mark.parametrize("name", list(AUTO))
def test_auto_cam_layer_picks_last_blocks_first_norm(name):
    torch.manual_seed(0)
    net = TRANSFORMERS[name]()
    layer, note = auto_cam_layer(net, named_layers(net), torch.randn(1, 3, 32, 32))
    assert (layer, note) == (AUTO[name], None)


def test_auto_cam_layer_keeps_conv_rule_for_mobilevit_and_convnext():
    for name in HYBRIDS:
        net = HYBRIDS[name]()
        layer, _ = auto_cam_layer(net, named_layers(net), torch.randn(1, 3, 64, 64))
        layouts = cam_layouts(net, {layer: named_layers(net)[layer]}, torch.randn(1, 3, 64, 64))
        assert layouts[layer].kind == "nchw", (name, layer)


def test_token_grad_cam_matches_a_cnn_grad_cam_on_the_same_map():
    """Tokens of a 1x1-conv map vs the map itself: the same Grad-CAM (Captum's path)."""
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.mix, self.head = (
                nn.Conv2d(3, 6, 4, 4),
                nn.Conv2d(6, 6, 1),
                nn.Linear(6, 3),
            )

        def forward(self, x):
            return self.head(torch.relu(self.mix(self.embed(x))).mean((2, 3)))

    class Tokens(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net, self.mix = net, nn.Identity()

        def forward(self, x):
            tokens = self.net.mix(self.net.embed(x)).flatten(2).transpose(1, 2)
            cls = torch.zeros_like(tokens[:, :1])
            tokens = self.mix(torch.cat([cls, tokens], 1))[:, 1:]
            return self.net.head(torch.relu(tokens).mean(1))

    net, x = Net(), torch.randn(3, 3, 16, 16)
    tok = Tokens(net)
    cam_tok, logits_tok = token_grad_cam(tok, tok.mix, x, Layout("tokens", 1, (4, 4)))
    cam_cnn, logits_cnn = any_grad_cam(net, net.mix, x)
    assert torch.allclose(logits_tok, logits_cnn, atol=1e-6)
    assert cam_tok.amax() > 0
    assert torch.allclose(cam_tok, cam_cnn, atol=1e-5)


def test_token_grad_cam_never_writes_param_grad():
    net = TRANSFORMERS["timm_vit"]()
    layer = dict(net.named_modules())["blocks.1.norm1"]
    cam, _ = any_grad_cam(net, layer, torch.randn(2, 3, 32, 32), 1)
    assert cam.shape == (2, 32, 32)
    assert all(p.grad is None for p in net.parameters())
    with pytest.raises(ValueError, match="needs a conv layer"):
        any_grad_cam(net, layer, torch.randn(1, 3, 32, 32), method="guided_gradcam")


def test_token_grad_cam_on_a_segmentation_output_matches_the_cnn_path():
    """Dense (N, K, h, w) logits: a token layer scores like ``core.cam`` (class over its pixels)."""
    torch.manual_seed(0)

    class Seg(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.mix, self.head = (
                nn.Conv2d(3, 6, 4, 4),
                nn.Conv2d(6, 6, 1),
                nn.Conv2d(6, 3, 1),
            )

        def forward(self, x):
            return self.head(torch.relu(self.mix(self.embed(x))))

    class Tokens(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net, self.mix = net, nn.Identity()

        def forward(self, x):
            fmap = self.net.mix(self.net.embed(x))
            tokens = self.mix(fmap.flatten(2).transpose(1, 2))  # (N, 16, 6)
            return self.net.head(torch.relu(tokens.transpose(1, 2).reshape(fmap.shape)))

    net, x = Seg(), torch.randn(3, 3, 16, 16)
    tok = Tokens(net)
    for target in (None, 2):
        cam_tok, logits_tok = token_grad_cam(tok, tok.mix, x, Layout("tokens", 0, (4, 4)), target)
        cam_cnn, logits_cnn = any_grad_cam(net, net.mix, x, target)
        assert logits_tok.shape == (3, 3) and torch.allclose(logits_tok, logits_cnn, atol=1e-6)
        assert torch.allclose(cam_tok, cam_cnn, atol=1e-5)
        assert cam_tok.amax() > 0 or target is not None  # a class predicted nowhere: blank


class _HFSelfAttention(nn.Module):  # HuggingFace's ViTSelfAttention: three projections
    def __init__(self) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)


class _HFAttention(nn.Module):  # ViTAttention: the self-attention and its output
    def __init__(self) -> None:
        super().__init__()
        self.attention, self.output = _HFSelfAttention(), nn.Linear(8, 8)


class _HFLayer(nn.Module):  # ViTLayer
    def __init__(self) -> None:
        super().__init__()
        self.layernorm_before, self.attention = nn.LayerNorm(8), _HFAttention()
        self.intermediate, self.layernorm_after = nn.Linear(8, 32), nn.LayerNorm(8)


def test_transformer_blocks_know_huggingface_layers_attention_reads_its_own_forms():
    # setups hunt 27: a HuggingFace ViT had no transformer block, and Grad-CAM's auto rule
    # took the patch-embedding conv, warning of an `F.relu` after it that is not there
    encoder = nn.Sequential(nn.Conv2d(3, 8, 4, 4), _HFLayer(), _HFLayer())
    layers = dict(encoder.named_modules())
    assert transformer_blocks(layers) == ["1", "2"]
    # no head count: weights AttentionMonitor could not recompute
    assert not any(is_attention(m) for m in layers.values())
    # a CNN's self-attention (SAGAN: 1x1 convs named query/key/value) beside a BatchNorm
    sagan = nn.Module()
    sagan.query, sagan.key, sagan.value = nn.Conv2d(8, 1, 1), nn.Conv2d(8, 1, 1), nn.Conv2d(8, 8, 1)
    block = nn.Module()
    block.bn, block.attention = nn.BatchNorm2d(8), sagan
    assert transformer_blocks({"block": block}) == []
