"""GradCAMMonitor: what lands in TensorBoard, safety under Lightning's modes, resume, findings,
and agreement with the independent ``pytorch_grad_cam`` package on the trained reference model."""

from __future__ import annotations

import copy
import math
import warnings
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from lightning_cnnviz.core import cam as core_cam
from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.core.target_layer import block_output, trace_calls
from lightning_cnnviz.gradcam import callback as gradcam_callback
from lightning_cnnviz.gradcam import metrics
from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from lightning_cnnviz.gradcam.draw import cam_grid
from tests.contract.zoo import ZOO, ZooData
from tests.monitors import ComplexImages, complex_loader, trainer_for
from tests.tb import events, image_tags, texts

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


def fit(tmp_path, monitor, model="bn_dropout", steps=4, ckpt_path=None, data=None,
        **trainer_args):  # fmt: skip
    L.seed_everything(0, verbose=False)
    net = ZOO[model]() if isinstance(model, str) else model
    args = dict(
        default_root_dir=tmp_path,
        max_steps=steps,
        max_epochs=-1,
        limit_val_batches=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[monitor],
    )
    trainer = L.Trainer(**(args | trainer_args))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(net, datamodule=data or ZooData(), ckpt_path=ckpt_path)
    return net, trainer


def scalars(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_gradcam_writes_grids_and_metrics_under_inference_mode(tmp_path):
    monitor = GradCAMMonitor(every_n_steps=2, num_samples=4, misclassified_pool=32, strict=True)
    fit(tmp_path, monitor, inference_mode=True)
    assert list(monitor.selected) == ["pool2"] and monitor.events == 2
    acc = events(tmp_path / "tb")
    assert {"gradcam/train", "gradcam/val", "gradcam/misclassified"} <= set(image_tags(acc))
    for tag in ("gradcam/train", "gradcam/val"):
        images = acc.Images(tag)
        assert [i.step for i in images] == [2, 4]
        # 4 tiles of 28x28 (16 px upscaled x2... to >= 84: x6 = 96) side by side, with captions
        assert images[0].width >= 4 * 96 and images[0].height >= 96
    for split in ("train", "val"):
        conc = scalars(acc, f"gradcam/{split}/concentration")
        assert [s for s, _ in conc] == [2, 4] and all(0.1 <= v <= 1 for _, v in conc)
        obj = scalars(acc, f"gradcam/{split}/on_object")
        assert all(0 <= v <= 1 for _, v in obj)
        drift = scalars(acc, f"gradcam/{split}/drift")  # from the second log on
        assert [s for s, _ in drift] == [4] and 0 <= drift[0][1] <= 2
    assert "`pool2` (MaxPool2d)" in texts(acc, "cnnviz/layers")[0]


def test_gradcam_grid_labels_and_overlay():
    image01 = torch.zeros(2, 1, 4, 4)
    cam = torch.zeros(2, 4, 4)
    cam[0, 0, 0] = 1.0
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, 0.0]])  # softmax 0.75 on class 1 / 0.88
    grid, bad = cam_grid(image01, cam, logits, torch.tensor([1, 1]), alpha=1.0)
    assert bad == 1  # the second CAM is all zero
    assert grid.dtype == torch.uint8 and grid.shape[0] == 3
    # tiles are 84x84 (4 px x 21) under an 11 + 2 px caption strip, 2 px grid padding
    assert grid.shape[-2] == 2 + 13 + 84 + 2
    green = (grid[1] == 230) & (grid[0] == 120)
    red = (grid[0] == 255) & (grid[1] == 90)
    assert green.any() and red.any()  # "true 1 / pred 1 0.75" right, "true 1 / pred 0 0.88" wrong


def test_gradcam_grid_one_output_shows_it_without_a_verdict():
    image01, cam = torch.zeros(2, 1, 4, 4), torch.ones(2, 4, 4)
    outputs = torch.tensor([[2.31], [-0.5]])  # a regression: no class, no softmax
    grid, _ = cam_grid(image01, cam, outputs, torch.tensor([1, 0]), alpha=1.0)
    red = (grid[0] == 255) & (grid[1] == 90)
    green = (grid[1] == 230) & (grid[0] == 120)
    assert green.any() and not red.any()  # "true 1 / out 2.31" is no wrong prediction
    other, _ = cam_grid(image01, cam, outputs * 2, torch.tensor([1, 0]), alpha=1.0)
    assert not torch.equal(grid, other)  # the caption shows the output's value


def test_gradcam_frozen_backbone_gets_cams(tmp_path):
    monitor = GradCAMMonitor(every_n_steps=2, num_samples=4, misclassified_pool=16, strict=True)
    net, _ = fit(tmp_path, monitor, model="frozen_backbone")
    assert list(monitor.selected) == ["backbone.5"]
    assert all(not p.requires_grad and p.grad is None for p in net.backbone.parameters())
    acc = events(tmp_path / "tb")
    conc = scalars(acc, "gradcam/train/concentration")  # NaN (all-zero CAMs) would be left out
    assert len(conc) == 2 and all(0.1 <= v <= 1 for _, v in conc)


class InferenceForward(ZOO["bn_dropout"]):
    """``forward`` is an inference API under ``@torch.no_grad()``; training calls the net."""

    @torch.no_grad()
    def forward(self, x):
        return self.net(x)

    def net(self, x):
        return super().forward(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)


def test_gradcam_forward_without_gradients_steps_aside_saying_so(tmp_path):
    # setups hunt 18: "RuntimeError: element 0 of tensors does not require grad ..."
    monitor = GradCAMMonitor(every_n_steps=2, num_samples=4, misclassified_pool=16)
    fit(tmp_path, monitor, model=InferenceForward())
    assert monitor.disabled and monitor.events == 0
    assert monitor.aside_reason.startswith("stepped aside: the model's output carries no gradient")
    assert "`@torch.no_grad()`" in monitor.aside_reason  # a stated reason, not "failed"


def test_gradcam_bf16_mixed_on_cpu_gives_finite_float32_cams(tmp_path, monkeypatch):
    seen = []
    real = core_cam.grad_cam

    def spy(*args, **kwargs):
        cam, logits = real(*args, **kwargs)
        seen.append((cam.dtype, bool(torch.isfinite(cam).all()), float(cam.amax())))
        return cam, logits

    monkeypatch.setattr(core_cam, "grad_cam", spy)
    monitor = GradCAMMonitor(every_n_steps=2, num_samples=4, misclassified_pool=16, strict=True)
    fit(tmp_path, monitor, precision="bf16-mixed")
    assert seen and all(
        dtype == torch.float32 and finite and peak > 0 for dtype, finite, peak in seen
    )
    acc = events(tmp_path / "tb")
    assert all(math.isfinite(v) for _, v in scalars(acc, "gradcam/val/concentration"))


def test_gradcam_epoch_schedule_guided_and_int_target(tmp_path, monkeypatch):
    targets = []
    real = core_cam.grad_cam

    def spy(model, layer, x, target=None, **kwargs):
        targets.append(target)
        return real(model, layer, x, target, **kwargs)

    monkeypatch.setattr(core_cam, "grad_cam", spy)
    monitor = GradCAMMonitor(
        every_n_epochs=1, num_samples=4, method="guided_gradcam", target="2",
        misclassified_pool=16, strict=True, layers=["relu2", "pool2"],
    )  # fmt: skip
    assert monitor.target == 2
    fit(tmp_path, monitor, steps=16, limit_train_batches=8)  # two epochs of 8 batches
    assert targets and all(t == 2 for t in targets)
    acc = events(tmp_path / "tb")
    assert [i.step for i in acc.Images("gradcam/val")] == [8, 16]
    assert [i.step for i in acc.Images("gradcam/train")] == [8, 16]
    # one row per layer: two grids of 4 tiles stacked
    assert acc.Images("gradcam/val")[0].height > 2 * (84 + 13)
    # (class 2's Grad-CAM may be all zero on other classes' images: those metrics are NaN
    # and left out; the tags that do appear are per layer plus the plain deepest-layer tags)
    tags = set(acc.Tags()["scalars"])
    assert {"gradcam/val/relu2/concentration", "gradcam/val/relu2/on_object"} <= tags


def test_gradcam_true_target_and_per_layer_tags(tmp_path):
    monitor = GradCAMMonitor(
        every_n_steps=2, num_samples=4, target="true", misclassified_pool=16, strict=True,
        layers=["relu2", "pool2"],
    )  # fmt: skip
    fit(tmp_path, monitor, steps=2)
    tags = set(events(tmp_path / "tb").Tags()["scalars"])
    for split in ("train", "val"):
        assert {f"gradcam/{split}/{layer}/{metric}" for layer in ("relu2", "pool2")
                for metric in ("concentration", "on_object")} <= tags  # fmt: skip
        assert f"gradcam/{split}/concentration" in tags  # the deepest layer, plain tag


def test_gradcam_resume_continues_drift(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_train_steps=2)
    first = GradCAMMonitor(every_n_steps=2, num_samples=4, misclassified_pool=16, strict=True)
    fit(tmp_path / "a", first, steps=2, callbacks=[first, ckpt], enable_checkpointing=True)
    assert set(first.state_dict()["extra"]["previous"]) == {"train/pool2", "val/pool2"}
    second = GradCAMMonitor(every_n_steps=2, num_samples=4, misclassified_pool=16, strict=True)
    fit(tmp_path / "b", second, steps=4, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    acc = events(tmp_path / "b" / "tb")
    assert [s for s, _ in scalars(acc, "gradcam/val/drift")] == [4]  # compared with step 2
    assert second.state_dict()["probe_indices"] == first.state_dict()["probe_indices"]


def test_gradcam_kept_cams_are_small_and_still_give_the_drift():
    # setups hunt 19: the previous CAMs were kept at the input's resolution, 8.4 MB of every
    # checkpoint at 512 x 512 for a 4 x 4 map
    coarse = torch.rand(2, 1, 4, 4)
    cam = torch.nn.functional.interpolate(coarse, size=(512, 512), mode="bilinear")[:, 0]
    kept = metrics.kept_size(cam)
    assert kept.shape == (2, 32, 32)
    same = metrics.cam_metrics(cam, None, kept)["drift"]
    assert torch.allclose(same, torch.zeros(2), atol=1e-6)  # the same map: no drift
    other = torch.nn.functional.interpolate(coarse.flip(-1), size=(512, 512), mode="bilinear")
    assert (metrics.cam_metrics(other[:, 0], None, kept)["drift"] > 0.1).all()


def test_gradcam_reports_cam_off_object():
    monitor = GradCAMMonitor()
    trainer = SimpleNamespace(global_step=0, current_epoch=0)
    values = [0.30, 0.45, 0.40, 0.22, 0.20, 0.35, 0.10, 0.12, 0.11]
    said = []
    for step, value in enumerate(values):
        trainer.global_step = step
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            monitor._check_on_object(trainer, value)
        said += [(step, str(w.message)) for w in caught]
    found = findings_of(trainer)
    # 0.22, 0.20 < 0.45 - 0.2 (max minus margin), two logs in a row: told at the second;
    # back at 0.35 (a note); off again at 0.10, 0.12 < 0.5 x 0.30
    assert [(f.kind, f.severity, f.step) for f in found] == [
        ("cam_off_object", "note", 5),
        ("cam_off_object", "problem", 7),
    ]
    assert "Grad-CAM is back on the object: 0.35" in found[0].message
    assert "(told at step 4); a note now" in found[0].message
    assert found[1].source == "gradcam" and found[1].figures["max"] == 0.45
    assert "0.12 of its mass" in found[1].message
    assert [step for step, text in said if "moved off the object" in text] == [4, 7]
    assert not [text for _, text in said if "back on the object" in text]  # a note: no warning
    restored = GradCAMMonitor()
    restored.load_state_dict(monitor.state_dict())
    assert restored._on_object == monitor._on_object


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "cam"}, "`method` must be one of"),
        ({"target": "best"}, "`target` must be 'pred', 'true' or a class index, got 'best'"),
        ({"target": -1}, "got -1"),
        ({"target": True}, "got True"),
        ({"misclassified": "yes"}, "`misclassified` must be one of [True, False], got 'yes'"),
        ({"misclassified_pool": 0}, "`misclassified_pool` must be a positive integer, got 0"),
        ({"alpha": 1.5}, "`alpha` must be a number in [0.0, 1.0], got 1.5"),
        ({"cmap": "jet"}, "`cmap` must be one of"),
        ({"foreground_threshold": 2}, "`foreground_threshold` must be a number"),
        ({"every_n_steps": 0}, "`every_n_steps` must be a positive integer, got 0"),
    ],
)
def test_gradcam_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        GradCAMMonitor(**kwargs)


def test_gradcam_foreground_threshold_none_turns_on_object_off(tmp_path):
    monitor = GradCAMMonitor(
        every_n_steps=2, num_samples=4, foreground_threshold=None, misclassified_pool=16
    )
    fit(tmp_path, monitor, steps=2)
    tags = events(tmp_path / "tb").Tags()["scalars"]
    assert "gradcam/train/concentration" in tags and "gradcam/train/on_object" not in tags


def test_gradcam_misclassified_false_skips_search_and_image(tmp_path):
    monitor = GradCAMMonitor(
        every_n_steps=2, num_samples=4, misclassified=False, misclassified_pool=32, strict=True
    )
    fit(tmp_path, monitor)  # the first test: the same run with the default writes the image
    assert monitor.events == 2 and monitor._pool is None  # the pool was never drawn or searched
    images = set(image_tags(events(tmp_path / "tb")))
    assert {"gradcam/train", "gradcam/val"} <= images and "gradcam/misclassified" not in images


def test_gradcam_saliency_rows_appended_and_training_unchanged(tmp_path):
    plain = GradCAMMonitor(every_n_steps=2, num_samples=4, misclassified=False, strict=True)
    net_plain, _ = fit(tmp_path / "plain", plain)
    rich = GradCAMMonitor(every_n_steps=2, num_samples=4, misclassified=False, strict=True,
                          saliency=["saliency", "integrated_gradients"], smooth=True)  # fmt: skip
    net_rich, _ = fit(tmp_path / "rich", rich)
    for a, b in zip(net_plain.state_dict().values(), net_rich.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # bit-identical training with the saliency rows on
    for tag in ("gradcam/train", "gradcam/val"):
        (one,) = {(i.width, i.height) for i in events(tmp_path / "plain" / "tb").Images(tag)}
        images = events(tmp_path / "rich" / "tb").Images(tag)
        assert [i.step for i in images] == [2, 4]
        # the CAM row, then two captioned saliency rows of the same tiles (4 px gaps)
        assert images[-1].width == one[0] and images[-1].height > 3 * one[1] + 8
    with pytest.raises(ValueError, match="`saliency` must be one of"):
        GradCAMMonitor(saliency=["lime"])


class FloatNormData(ZooData):
    """Normalisation statistics given as plain floats (one for every channel)."""

    mean, std = 0.5, 0.25


def test_gradcam_saliency_rows_with_float_mean_std(tmp_path):
    # Regression: float `mean`/`std` were indexed (`mean[0]`) for the Integrated Gradients
    # baseline, a TypeError that made the monitor step aside at its first event.
    plain = GradCAMMonitor(every_n_steps=2, num_samples=4, misclassified=False)
    fit(tmp_path / "plain", plain, data=FloatNormData())
    rich = GradCAMMonitor(every_n_steps=2, num_samples=4, misclassified=False,
                          saliency=["saliency", "integrated_gradients"])  # fmt: skip
    fit(tmp_path / "rich", rich, data=FloatNormData())
    assert not rich.disabled and rich.events == 2
    acc = events(tmp_path / "rich" / "tb")
    for tag in ("gradcam/train", "gradcam/val"):
        (one,) = {(i.width, i.height) for i in events(tmp_path / "plain" / "tb").Images(tag)}
        images = acc.Images(tag)
        assert [i.step for i in images] == [2, 4]  # both events: the monitor did not step aside
        # the CAM row, then two captioned saliency rows of the same tiles (4 px gaps)
        assert images[-1].width == one[0] and images[-1].height > 3 * one[1] + 8
    assert [s for s, _ in scalars(acc, "gradcam/val/concentration")] == [2, 4]


def train_reference(tmp_path, steps=100):
    """The reference CNN trained briefly on the shared real MNIST digits, and a val batch."""
    from lightning_cnnviz.reference import MNISTClassifier, MNISTDataModule
    from tests.mnist_files import mnist_root

    L.seed_everything(0, verbose=False)
    data = MNISTDataModule(root=mnist_root(tmp_path), val_size=2000, batch_size=64, download=False)
    model = MNISTClassifier()
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=steps, limit_val_batches=0, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=data)
    x = torch.stack([data.val_dataset[i][0] for i in range(64)])
    return model, x


def per_image_correlation(a, b):
    a = metrics.drift(a, b)  # 1 - Pearson correlation, per image
    return 1 - a


@pytest.mark.skipif(
    not __import__("tests.mnist_files", fromlist=["have_mnist"]).have_mnist(),
    reason="shared MNIST files not found",
)
def test_gradcam_agrees_with_pytorch_grad_cam_on_reference_model(tmp_path):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from lightning_cnnviz.core import rendering
    from lightning_cnnviz.core.selection import named_layers

    model, x = train_reference(tmp_path)
    layers = named_layers(model)
    calls, shape = trace_calls(model, layers, x[:1])
    assert block_output(calls, layers, shape[-1]) == ("pool2", None)

    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    ours, logits = core_cam.grad_cam(model, model.pool2, x)
    after = [p.grad for p in model.parameters()]  # our pass writes no param.grad
    assert all(a is b or torch.equal(a, b) for a, b in zip(after, grads, strict=True))
    reference = copy.deepcopy(model)  # pytorch_grad_cam calls eval() and backward() on it
    targets = [ClassifierOutputTarget(int(c)) for c in logits.argmax(1)]
    with GradCAM(model=reference, target_layers=[reference.pool2]) as cam:
        theirs = torch.from_numpy(cam(input_tensor=x, targets=targets))
    # the same normalisation for both: per-image min-max to [0, 1]
    ours01, theirs01 = rendering.normalize(ours), rendering.normalize(theirs)
    live = ours.flatten(1).amax(1) > 0  # an all-zero CAM has no correlation
    assert live.sum() >= 60
    assert torch.equal(live, theirs.flatten(1).amax(1) > 0)
    corr = per_image_correlation(ours01[live], theirs01[live])
    assert corr.min() >= 0.999, corr.min()


def test_gradcam_grid_draws_at_most_max_tiles_of_a_large_probe(tmp_path, monkeypatch):
    # setups hunt 19: num_samples=1000 drew a 498 x 12,674-pixel grid per event
    monkeypatch.setattr(gradcam_callback, "MAX_TILES", 3)
    small = GradCAMMonitor(every_n_steps=2, num_samples=3, misclassified=False, strict=True)
    fit(tmp_path / "small", small, steps=2)
    large = GradCAMMonitor(every_n_steps=2, num_samples=8, misclassified=False, strict=True)
    fit(tmp_path / "large", large, steps=2)
    image = {
        name: acc.Images("gradcam/val")[-1]
        for name, acc in (("small", events(tmp_path / "small" / "tb")),
                          ("large", events(tmp_path / "large" / "tb")))
    }  # fmt: skip
    assert image["large"].width == image["small"].width  # 3 tiles each
    assert image["large"].height > image["small"].height  # and the caption saying so
    assert scalars(events(tmp_path / "large" / "tb"), "gradcam/val/concentration")


class PositionHead(L.LightningModule):
    """Two convs, a 4x4 average pool, flatten -> linear: the class is where the block sits."""

    def __init__(self) -> None:
        super().__init__()
        conv = torch.nn.Conv2d
        self.net = torch.nn.Sequential(
            conv(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            conv(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
            torch.nn.Flatten(), torch.nn.Linear(256, 10),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def blocks(n: int, seed: int) -> torch.utils.data.TensorDataset:
    """A bright block at one of 16 places; the class is its place (10 classes)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 28, 28, generator=g)
    for i, k in enumerate(y.tolist()):
        r, c = (k // 4) * 7, (k % 4) * 7
        x[i, :, r : r + 7, c : c + 7] += 1.5
    return torch.utils.data.TensorDataset(x, y)


def test_gradcam_blank_once_learnt_says_why_and_the_method_that_shows_it(tmp_path):
    # setups hunt 20: every CAM went blank once the model was right, and the one message
    # said "common early in training"
    torch.manual_seed(0)
    train = torch.utils.data.DataLoader(blocks(512, 0), batch_size=32, shuffle=True)
    val = torch.utils.data.DataLoader(blocks(128, 1), batch_size=32)
    monitor = GradCAMMonitor(every_n_steps=8, layers="net.5")
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, default_root_dir=tmp_path,
                        callbacks=[monitor])  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(PositionHead(), train, val)
    said = [str(w.message) for w in caught if "while the model gets" in str(w.message)]
    assert len(said) == 1 and "`method='hirescam'` shows where the model looks" in said[0]


def test_gradcam_one_logit_with_labels_past_it_is_not_graded_right_or_wrong(tmp_path):
    # setups hunt 21: a GAN discriminator (one logit) on digits labelled 0-9 was graded
    # against those labels ("right without the object" 0.125) and its object checks ran
    import torch.nn.functional as F

    from lightning_cnnviz.core.findings import checks_of
    from tests.monitors import TinyCNN, fit

    class Discriminator(TinyCNN):
        def __init__(self):
            super().__init__(classes=1)

        def _step(self, batch, stage):
            x, y = batch
            loss = F.binary_cross_entropy_with_logits(self(x)[:, 0], (y % 2).float())
            self.log(f"{stage}/loss", loss)
            return loss

    monitor = GradCAMMonitor(every_n_steps=2, num_samples=8)
    trainer, _, _ = fit(tmp_path, [monitor], model=Discriminator())
    assert monitor.events > 0 and not monitor.disabled
    why = checks_of(trainer)[("GradCAMMonitor", "CAM on the object")].why
    assert why.startswith("the training probe's labels run to 3 and the model gives 1 output")


class DetachedProbe(nn.Module):
    """An encoder trained by its own loss, its class logits a linear probe on detached maps."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.probe = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x):
        h = self.enc(x)
        return {"z": h.flatten(1), "logits": self.probe(h.detach())}


def test_gradcam_auto_layer_says_the_maps_are_cut_off_from_the_scores():
    # setups hunt 31: "found no layer it can watch ... name layers", for a model with two
    # convolutions whose logits come from detached features
    from lightning_cnnviz.core.selection import named_layers

    model = DetachedProbe()
    layers = named_layers(model)
    calls, shape = trace_calls(model, layers, torch.randn(1, 1, 8, 8), "logits")
    name, note = block_output(calls, layers, shape[1])
    assert name is None
    assert note.startswith("the model's maps (`enc.2`, `enc`) do not reach the scores")
    assert "`output_key=`" in note


class NoGradBackbone(DetachedProbe):
    """Its encoder run under ``torch.no_grad()``: a frozen feature extractor."""

    def forward(self, x):
        with torch.no_grad():
            h = self.enc(x)
        return {"z": h.flatten(1), "logits": self.probe(h)}


def test_gradcam_auto_layer_says_a_no_grad_backbone_is_cut_off_from_the_scores():
    # setups hunt 33: Grad-CAM stepped aside with torch's "One of the differentiated
    # Tensors does not require grad"
    from lightning_cnnviz.core.selection import named_layers

    model = NoGradBackbone()
    layers = named_layers(model)
    calls, shape = trace_calls(model, layers, torch.randn(1, 1, 8, 8), "logits")
    name, note = block_output(calls, layers, shape[1])
    assert name is None and note.startswith("the model's maps (`enc.2`, `enc`) do not reach")


class ComplexMaps(nn.Module):
    """A real conv stem, then a complex conv whose magnitudes feed the head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.inner = nn.Conv2d(4, 4, 3, padding=1, dtype=torch.cfloat)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        z = self.inner(self.stem(x).relu().to(torch.cfloat))
        return self.head(z.abs().mean((2, 3)))


def test_gradcam_complex_maps_are_no_map_with_the_reason():
    # setups hunt 48: "clamp is not supported for complex types", an internal error (and
    # with `strict=True` the fit aborted)
    net, x = ComplexMaps(), torch.randn(2, 1, 8, 8)
    with pytest.raises(core_cam.NoMapError, match=r"output is complex \(torch.complex64\)"):
        core_cam.layer_cams(net, net.inner, x)
    cams, _ = core_cam.layer_cams(net, net.stem, x)  # the real layer before it gives maps
    assert cams["gradcam"].shape == (2, 8, 8) and cams["gradcam"].dtype == torch.float32


def test_gradcam_complex_images_draw_the_cams_without_saliency_rows(tmp_path):
    # setups hunt 79: `saliency` on complex images raised "min_all" not implemented for
    # ComplexFloat and the monitor stepped aside, its Grad-CAMs lost too
    monitor = GradCAMMonitor(every_n_steps=2, saliency=("saliency",))
    trainer = trainer_for(tmp_path, [monitor], max_steps=4)
    with pytest.warns(UserWarning, match="the `saliency` rows need real-valued images"):
        trainer.fit(ComplexImages(), complex_loader())
    assert not monitor.disabled
    assert any(tag.startswith("gradcam/train") for tag in image_tags(events(tmp_path / "tb")))
