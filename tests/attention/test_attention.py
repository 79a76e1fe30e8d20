"""AttentionMonitor and every other monitor on small vision transformers: strict, tags read back."""

from __future__ import annotations

import lightning as L
import pytest
import torch

import lightning_cnnviz
from lightning_cnnviz import AttentionMonitor
from lightning_cnnviz.core.capture import hook_count
from lightning_cnnviz.presets import callbacks
from tests.attention.models import HYBRIDS, TRANSFORMERS, Classifier
from tests.monitors import ALL_MONITORS, TinyCNN, failures, fit, loaders, make_monitor, written_tags
from tests.tb import events

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

# What each view must write on a transformer, beyond its own section existing.
EXPECTED = {
    "timm_vit": {"attention/blocks.0.attn", "attention/blocks.1.attn", "attention/rollout",
                 "gradcam/val", "feature_maps/blocks.1"},
    "timm_vit_reg": {"attention/rollout", "feature_maps/blocks.1"},
    "timm_deit": {"attention/blocks.1.attn", "attention/rollout", "feature_maps/blocks.1"},
    "timm_swin": {"attention/layers.0.blocks.0.attn", "attention/layers.1.blocks.1.attn",
                  "feature_maps/layers.1.blocks.1"},
    "tv_vit": {"attention/encoder.layers.encoder_layer_1.self_attention", "attention/rollout",
               "feature_maps/encoder.layers.encoder_layer_1"},
    "tv_swin": {"attention/features.3.1.attn", "feature_maps/features.3.0"},
}  # fmt: skip


def _monitors():
    return [make_monitor(n, strict=True) for n in ALL_MONITORS] + [
        AttentionMonitor(every_n_steps=2, num_samples=4, strict=True)
    ]


@pytest.mark.parametrize("name", list(TRANSFORMERS))
def test_every_monitor_strict_on_transformer_writes_its_tags(tmp_path, name):
    torch.manual_seed(0)
    monitors = _monitors()
    data = loaders(channels=3, side=32)
    _, _, messages = fit(tmp_path, monitors, model=Classifier(TRANSFORMERS[name]()), data=data,
                         limit_train_batches=2)  # fmt: skip
    tags = written_tags(tmp_path)
    written = {t for kind in ("images", "scalars") for t in tags[kind]}
    for monitor in monitors:
        assert not monitor.disabled, type(monitor).__name__
        assert failures(messages, type(monitor).__name__) == []
        assert any(t.startswith(monitor.section + "/") for t in written), monitor.section
    expected = {t.split("/", 1)[0] + "/net." + t.split("/", 1)[1] if "/" in t and not
                t.endswith("rollout") and not t.startswith("gradcam") else t
                for t in EXPECTED[name]}  # fmt: skip
    assert expected <= written, sorted(expected - written)
    entropy = events(tmp_path).Scalars(next(t for t in written if t.endswith("entropy")))
    assert 0.0 <= entropy[-1].value <= 1.0


def test_attention_monitor_on_hybrids_and_step_aside_without_attention(tmp_path):
    torch.manual_seed(0)
    data = loaders(channels=3, side=64)
    mobile = AttentionMonitor(every_n_steps=2, num_samples=4, strict=True)
    convnext = AttentionMonitor(every_n_steps=2, num_samples=4, tag_prefix="c/")
    fit(tmp_path / "m", [mobile], model=Classifier(HYBRIDS["timm_mobilevit"]()), data=data,
        limit_train_batches=2)  # fmt: skip
    assert {"attention/rollout", "attention/rollout/entropy"} <= (
        written_tags(tmp_path / "m")["images"] | written_tags(tmp_path / "m")["scalars"]
    )
    _, _, messages = fit(tmp_path / "c", [convnext], model=Classifier(HYBRIDS["timm_convnext"]()),
                         data=data, limit_train_batches=2)  # fmt: skip
    said = [m for m in messages if m.startswith("AttentionMonitor (tag_prefix 'c/') steps aside")
            and "it looks for attention modules" in m]  # fmt: skip
    coatnet = AttentionMonitor(
        every_n_steps=2, num_samples=4, strict=True, layers="net.stages.3.*.attn"
    )
    fit(tmp_path / "a", [coatnet], model=Classifier(HYBRIDS["timm_coatnet"]()), data=data,
        limit_train_batches=2)  # fmt: skip
    written = written_tags(tmp_path / "a")["images"]
    assert {"attention/rollout", "attention/net.stages.3.blocks.2.attn"} <= written
    assert len(said) == 1 and convnext.disabled and convnext.events == 0


def test_attention_monitor_rejects_a_non_attention_layer(tmp_path):
    monitor = AttentionMonitor(layers="net.blocks.0.norm1", every_n_steps=2)
    with pytest.raises(ValueError, match="must select attention modules"):
        fit(tmp_path, [monitor], model=Classifier(TRANSFORMERS["timm_vit"]()),
            data=loaders(channels=3, side=32))  # fmt: skip


def test_views_leave_vit_training_bit_identical_and_no_hooks(tmp_path):
    def run(monitors, root):
        L.seed_everything(0, verbose=False)
        model = Classifier(TRANSFORMERS["timm_vit"]())
        model.net.blocks[0].attn.fused_attn = True
        fit(root, monitors, model=model, data=loaders(channels=3, side=32), limit_train_batches=4,
            max_epochs=2)  # fmt: skip
        return model

    plain = run([], tmp_path / "plain")
    views = [
        AttentionMonitor(every_n_steps=2, num_samples=4, strict=True),
        lightning_cnnviz.GradCAMMonitor(every_n_steps=3, num_samples=4, strict=True),
        lightning_cnnviz.FeatureMapMonitor(every_n_steps=2, num_samples=4, strict=True),
    ]
    watched = run(views, tmp_path / "watched")
    for (name, a), b in zip(plain.state_dict().items(), watched.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert sum(hook_count(watched).values()) == 0
    assert all(m.events > 0 for m in views)


def test_preset_full_has_the_attention_view_only():
    assert [type(m).__name__ for m in callbacks("full")][-1] == "AttentionMonitor"
    assert "AttentionMonitor" not in {type(m).__name__ for m in callbacks("standard")}


def test_attention_monitor_on_cnn_warns_once(tmp_path):
    monitor = AttentionMonitor(every_n_steps=1)
    _, _, messages = fit(tmp_path, [monitor], model=TinyCNN())
    said = [m for m in messages if m.startswith("AttentionMonitor steps aside")]
    assert len(said) == 1 and "found no layer it can watch" in said[0], messages
    # naming others cannot help: it reads the forms it names only (setups hunt 27: the
    # advice, followed on a HuggingFace ViT, raised at setup)
    assert "`nn.MultiheadAttention`, one with `qkv`" in said[0]
    assert "name layers with `layers=`" not in said[0]
    assert monitor.disabled and monitor.events == 0


def test_attention_and_token_gradcam_under_pytorch_lightning_with_output_key(tmp_path):
    """A ViT whose model returns a dict, trained by ``pytorch_lightning``: the shared keys pick."""
    import pytorch_lightning as PL
    import torch.nn.functional as F

    from tests.loggers import make_logger

    class DictViT(PL.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = TRANSFORMERS["timm_vit"]()

        def forward(self, x):
            return {"aux": x.mean((1, 2, 3)), "logits": self.net(x)}

        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self(batch[0])["logits"], batch[1])

        def validation_step(self, batch, batch_idx):
            return F.cross_entropy(self(batch[0])["logits"], batch[1])

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    torch.manual_seed(0)
    monitors = [
        AttentionMonitor(
            every_n_steps=2, num_samples=4, strict=True, output_key="logits", label_key=1
        ),
        lightning_cnnviz.GradCAMMonitor(
            every_n_steps=2, num_samples=4, strict=True, output_key="logits", label_key=1
        ),
    ]
    assert all(isinstance(m, PL.Callback) for m in monitors)
    trainer = PL.Trainer(
        default_root_dir=tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=1,
        num_sanity_val_steps=0, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=monitors,
        logger=make_logger("tensorboard", "pytorch_lightning", tmp_path),
    )  # fmt: skip
    trainer.fit(DictViT(), *loaders(channels=3, side=32))
    tags = events(tmp_path / "tb").Tags()
    assert {"attention/net.blocks.0.attn", "attention/rollout", "gradcam/val"} <= set(
        tags["images"]
    )
    assert "attention/rollout/entropy" in tags["scalars"]
    assert all(m.events > 0 and not m.disabled for m in monitors)
    assert monitors[1].selected and next(iter(monitors[1].selected)).startswith("net.blocks.")
