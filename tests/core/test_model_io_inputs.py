"""Inputs other than float images: token ids, integer scans, clips, flat vectors."""

import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz import findings_of
from tests.monitors import (
    ALL_MONITORS,
    TinyCNN,
    assert_every_monitor_wrote,
    digits,
    failures,
    fit,
    make_monitor,
    section,
    written_tags,
)


class TextCNN(TinyCNN):
    """Token ids (B, 40) -> embedding -> two Conv1d -> max over positions, 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        del self.conv1, self.bn1, self.conv2, self.bn2, self.fc
        self.emb = torch.nn.Embedding(200, 16)
        self.c1, self.c2 = torch.nn.Conv1d(16, 32, 3, padding=1), torch.nn.Conv1d(32, 32, 3)
        self.fc = torch.nn.Linear(32, 4)

    def forward(self, x):
        h = torch.relu(self.c1(self.emb(x).transpose(1, 2)))
        return self.fc(torch.relu(self.c2(h)).amax(2))


def test_model_io_inputs_token_ids_stay_integers_and_image_views_say_why_not(tmp_path):
    # setups hunt 19: a text CNN's Long token ids were cast to float, and Activation,
    # FeatureMap, GradCAM and Overfitting failed in the embedding
    def tokens(n, seed):
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % 4
        x = torch.randint(4, 200, (n, 40), generator=g)
        x[:, 5] = y  # the label's token
        return TensorDataset(x, y)

    torch.manual_seed(0)
    data = (DataLoader(tokens(64, 1), 16), DataLoader(tokens(32, 2), 16))
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    trainer, _, messages = fit(tmp_path, monitors, model=TextCNN(), data=data)
    tags = written_tags(tmp_path)
    written = {t for kind in ("images", "scalars") for t in tags[kind]}
    images_only = ("FeatureMapMonitor", "GradCAMMonitor", "AdversarialMonitor")
    for monitor in monitors:
        name = type(monitor).__name__
        assert not failures(messages, name), name
        if name in images_only:  # a stated reason, naming the ids
            assert "its inputs are integer ids, (40,) per sample" in monitor.aside_reason, name
        elif name == "ActivationMaximizationMonitor":
            assert "it optimises images (N, C, H, W)" in monitor.aside_reason
        else:
            assert any(t.startswith(section(name) + "/") for t in written), name
    assert "activations/c1/grad_rms" in tags["scalars"]
    assert not [f for f in findings_of(trainer) if f.kind == "unnormalised_inputs"]


class ScanCNN(TinyCNN):
    """12-bit scans stored as int16, scaled to floats in ``forward``."""

    def forward(self, x):
        return super().forward(x.float() / 4095)


def test_model_io_inputs_integer_images_are_pixels_for_every_monitor(tmp_path):
    # setups hunt 20: int16 scans were taken for token ids: Grad-CAM asked them for a
    # gradient ("only Tensors of floating point dtype can require gradients")
    def scans(data):
        x, y = data.tensors
        x = ((x - x.min()) / (x.max() - x.min()) * 4095).to(torch.int16)
        return DataLoader(TensorDataset(x, y), batch_size=8)

    monitors = [make_monitor(name) for name in ALL_MONITORS]
    data = (scans(digits(32, seed=1)), scans(digits(16, seed=2)))
    _, _, messages = fit(tmp_path, monitors, model=ScanCNN(), data=data)
    assert_every_monitor_wrote(tmp_path, monitors, messages)


class FoldedClips(TinyCNN):
    """Clips (N, T, C, H, W) through 2-D convolutions, frames folded into the batch."""

    def forward(self, x):
        n, t = x.shape[:2]
        return super().forward(x.flatten(0, 1)).view(n, t, -1).mean(1)


class FlatInputs(TinyCNN):
    """Flat (N, 256) vectors, reshaped to (N, 1, 16, 16) in ``forward`` (a CSV of pixels)."""

    def forward(self, x):
        return super().forward(x.view(-1, 1, 16, 16))


def clips(data):
    """Each image as a clip of 3 identical frames, (3, C, H, W)."""
    x, y = data.tensors
    return DataLoader(TensorDataset(x[:, None].expand(-1, 3, -1, -1, -1), y), batch_size=8)


def flat(data):
    """Each image as a flat vector, (C * H * W,)."""
    x, y = data.tensors
    return DataLoader(TensorDataset(x.flatten(1), y), batch_size=8)


def test_model_io_inputs_of_another_dimension_say_why_no_map(tmp_path):
    # setups hunts 18-20: FeatureMap and GradCAM stepped aside with "found no layer it can
    # watch" and nothing on why (the maps are not the inputs' shape)
    monitors = [make_monitor(name) for name in ("FeatureMapMonitor", "GradCAMMonitor")]
    data = (clips(digits(32, seed=1)), clips(digits(16, seed=2)))
    fit(tmp_path, monitors, model=FoldedClips(), data=data)
    said = "its inputs are 5-D ((3, 1, 16, 16) per sample) and its convolutions 2-D: frames"
    for monitor in monitors:
        assert monitor.disabled and said in monitor.aside_reason, type(monitor).__name__


def test_model_io_inputs_flat_get_maps_on_grey_and_no_grad_cam(tmp_path):
    # setups hunt 26: inputs without a channel dimension that `forward` makes maps of (a
    # waveform's spectrogram, a flat vector reshaped): FeatureMap stepped aside on "flat
    # vectors", and Grad-CAM, whose maps need an image to lie on, was told to name layers
    monitors = [make_monitor(name) for name in ("FeatureMapMonitor", "GradCAMMonitor")]
    data = (flat(digits(32, seed=1)), flat(digits(16, seed=2)))
    _, _, messages = fit(tmp_path, monitors, model=FlatInputs(), data=data)
    assert_every_monitor_wrote(tmp_path, monitors[:1], messages)
    grids = written_tags(tmp_path)["images"]
    assert {"feature_maps/conv1", "feature_maps/conv2"} <= set(grids)
    gradcam = monitors[1]
    said = "its inputs are 2-D ((256,) per sample) and its convolutions 2-D: `forward` turns"
    assert gradcam.disabled and said in gradcam.aside_reason
    assert "name layers" not in gradcam.aside_reason  # no layer can give it an image


class UnpacksBatch(TinyCNN):
    """``forward(self, batch)`` unpacking ``x, y = batch`` itself; ``conditioned``: uses ``y``."""

    def __init__(self, conditioned: bool = False) -> None:
        super().__init__()
        self.conditioned = conditioned

    def forward(self, batch):
        x, y = batch
        logits = super().forward(x)
        return logits + y[:, None].float() if self.conditioned else logits

    def _step(self, batch, stage):
        logits = self(batch)
        loss = torch.nn.functional.cross_entropy(logits, batch[1])
        self.log(f"{stage}/loss", loss)
        self.log(f"{stage}/acc", (logits.argmax(1) == batch[1]).float().mean())
        return loss


def test_model_io_inputs_a_forward_that_unpacks_the_batch_is_read(tmp_path):
    # setups hunt 26: `x, y = batch` in forward made four monitors step aside on "not enough
    # values to unpack", blamed on a GAN's noise or token ids
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, _, messages = fit(tmp_path, monitors, model=UnpacksBatch())
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    assert sum("unpacks the batch `(images, labels)` itself" in m for m in messages) == 1
    # outputs that depend on the labels cannot be read with placeholders: said, not guessed
    gradcam = make_monitor("GradCAMMonitor")
    fit(tmp_path / "conditioned", [gradcam], model=UnpacksBatch(conditioned=True))
    assert gradcam.disabled and "not enough values to unpack" in gradcam.aside_reason
