"""attention.weights and attention.rollout: recomputed weights equal the model's own."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.models.swin_transformer as tv_swin

from lightning_cnnviz.attention.rollout import cls_attention, entropy, rollout
from lightning_cnnviz.attention.weights import global_attention, window_received
from tests.attention.models import HYBRIDS, TRANSFORMERS


def _received(weights, x, block, window, shift):
    """The reference: per-window weights averaged over queries, laid back and unshifted."""
    b, h, w, _ = x.shape
    rec = weights.mean(2)
    heads = rec.shape[1]
    rec = rec.view(b, h // window[0], w // window[1], heads, *window)
    rec = rec.permute(0, 3, 1, 4, 2, 5).reshape(b, heads, h, w)
    return torch.roll(rec, shifts=tuple(shift), dims=(2, 3))


@pytest.mark.parametrize("name", ["timm_vit", "timm_deit", "timm_vit_reg"])
def test_global_attention_equals_timm_unfused_weights(name):
    torch.manual_seed(0)
    net = TRANSFORMERS[name]().eval()
    attn = net.blocks[1].attn
    attn.fused_attn = False  # the explicit path materialises the weights: read them at attn_drop
    seen = {}
    hooks = [attn.attn_drop.register_forward_hook(lambda m, i, o: seen.setdefault("w", o)),
             attn.register_forward_hook(lambda m, i, o: seen.setdefault("x", i[0]))]  # fmt: skip
    net(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    got = global_attention(attn, seen["x"])
    assert got.shape == seen["w"].shape
    assert torch.allclose(got, seen["w"], atol=1e-6)


def test_global_attention_equals_coatnet_attention2d_weights():
    torch.manual_seed(0)
    net = HYBRIDS["timm_coatnet"]().eval()
    attn = net.stages[3].blocks[1].attn  # (blocks[0] downsamples; timm's explicit path fails there)
    attn.fused_attn = False
    seen = {}
    hooks = [attn.attn_drop.register_forward_hook(lambda m, i, o: seen.setdefault("w", o)),
             attn.register_forward_hook(lambda m, i, o: seen.setdefault("x", i[0]))]  # fmt: skip
    net(torch.randn(2, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert seen["x"].dim() == 4  # attention over an (N, C, H, W) map
    assert torch.allclose(global_attention(attn, seen["x"]), seen["w"], atol=1e-6)


def test_global_attention_of_multihead_attention_is_a_distribution():
    net = TRANSFORMERS["tv_vit"]().eval()
    mha = net.encoder.layers[0].self_attention
    x = torch.randn(2, 17, 32)
    w = global_attention(mha, x)
    assert w.shape == (2, 2, 17, 17)
    assert torch.allclose(w.sum(-1), torch.ones(2, 2, 17), atol=1e-5)
    _, averaged = mha(x, x, x, need_weights=True)  # the module's own head-averaged weights
    assert torch.allclose(w.mean(1), averaged, atol=1e-6)


@pytest.mark.parametrize("block_index", [(0, 0), (0, 1), (1, 1)])
def test_window_received_equals_timm_swin_weights(block_index):
    torch.manual_seed(0)
    net = TRANSFORMERS["timm_swin"]().eval()
    block = net.layers[block_index[0]].blocks[block_index[1]]
    block.attn.fused_attn = False
    seen = {}
    drop, norm = block.attn.attn_drop, block.norm1
    hooks = [drop.register_forward_hook(lambda m, i, o: seen.setdefault("w", o)),
             norm.register_forward_hook(lambda m, i, o: seen.setdefault("x", o))]  # fmt: skip
    net(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    expected = _received(seen["w"], seen["x"], block, block.window_size, block.shift_size)
    got = window_received(block.attn, block, seen["x"])
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("block_index", [(1, 0), (1, 1), (3, 1)])
def test_window_received_equals_torchvision_swin_weights(monkeypatch, block_index):
    torch.manual_seed(0)
    net = TRANSFORMERS["tv_swin"]().eval()
    block = net.features[block_index[0]][block_index[1]]
    caught = []
    softmax = F.softmax
    monkeypatch.setattr(tv_swin.F, "softmax", lambda t, dim=-1, **k: caught.append(
        softmax(t, dim=dim, **k)) or caught[-1])  # fmt: skip
    seen = {}
    hook = block.norm1.register_forward_hook(lambda m, i, o: seen.setdefault("x", o))
    net(torch.randn(2, 3, 32, 32))
    hook.remove()
    index = [0, 0, 1, 1][[(1, 0), (1, 1), (3, 0), (3, 1)].index(block_index)] * 2
    index += block_index[1]
    weights, x = caught[index], seen["x"]
    shift = [0 if block.attn.window_size[i] >= x.shape[1 + i] else block.attn.shift_size[i]
             for i in range(2)]  # fmt: skip
    expected = _received(weights, x, block, block.attn.window_size, shift)
    assert torch.allclose(window_received(block.attn, block, x), expected, atol=1e-6)


def test_rollout_of_pure_self_attention_is_uniform_and_of_cls_focus_is_peaked():
    eye = torch.eye(5).expand(1, 2, 5, 5)  # every token attends to itself only
    rolled = rollout([eye, eye], prefix=1, hw=(2, 2))
    assert torch.equal(rolled, torch.zeros(1, 2, 2))  # the class token keeps to itself
    focus = torch.zeros(1, 1, 5, 5)
    focus[..., 3] = 1.0  # every token attends to patch 2
    rolled = rollout([focus], prefix=1, hw=(2, 2))
    assert rolled.flatten().tolist() == [0.0, 0.0, 0.5, 0.0]  # 0.5 A + 0.5 I, class-token row
    two = rollout([focus, focus], prefix=1, hw=(2, 2))
    assert math.isclose(float(two[0, 1, 0]), 0.75)  # (0.5 A + 0.5 I)^2 keeps flowing to patch 2


def test_cls_attention_without_prefix_averages_queries_and_entropy_bounds():
    w = torch.softmax(torch.randn(3, 2, 4, 4), -1)
    maps = cls_attention(w, prefix=0, hw=(2, 2))
    assert torch.allclose(maps.flatten(2), w.mean(2))
    assert torch.allclose(entropy(torch.full((1, 2, 2), 0.25)), torch.ones(1))
    assert torch.allclose(entropy(torch.tensor([[[0.0, 1.0], [0.0, 0.0]]])), torch.zeros(1))


class _HFAttention(torch.nn.Module):
    """HuggingFace's ViT attention (transformers 5): q/k/v projections, eager weights returned."""

    def __init__(self, dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.num_attention_heads, self.head_dim = heads, dim // heads
        self.scaling = self.head_dim**-0.5
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (
            torch.nn.Linear(dim, dim) for _ in range(4)
        )

    def forward(self, hidden_states):
        shape = (*hidden_states.shape[:-1], -1, self.head_dim)
        q, k, v = (p(hidden_states).view(shape).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))  # fmt: skip
        weights = (q @ k.transpose(-2, -1) * self.scaling).softmax(-1)
        out = (weights @ v).transpose(1, 2).reshape(*hidden_states.shape[:-1], -1)
        return self.o_proj(out), weights


def test_global_attention_equals_huggingface_eager_weights():
    # setups hunt 27: AttentionMonitor found no attention in a HuggingFace ViT
    from lightning_cnnviz.core.tokens import is_attention

    torch.manual_seed(0)
    attention = _HFAttention().eval()
    x = torch.randn(2, 17, 16)
    _, expected = attention(x)
    assert is_attention(attention)
    assert torch.allclose(global_attention(attention, x), expected, atol=1e-6)
