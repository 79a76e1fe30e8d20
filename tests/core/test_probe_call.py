"""A model whose ``forward`` cannot take the probe images: the reason, not the call's error."""

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import checks_of, findings_of
from lightning_cnnviz.core.probe_call import REENTRANT, why_not
from tests.monitors import (
    ALL_MONITORS,
    TinyCNN,
    assert_every_monitor_wrote,
    digits,
    failures,
    fit,
    make_monitor,
)
from tests.tb import events, texts

# Kernel reads weights; Overfitting reads the logged curves without the scores
PROBING = [name for name in ALL_MONITORS if name not in ("KernelMonitor", "OverfittingMonitor")]
UNSCORED = "OverfittingMonitor: the checks that read the model's scores do not run: "


class FixedBatch(TinyCNN):
    """``forward`` flattens with the batch size written in, as many tutorials do."""

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(x.view(8, -1))


class WithLengths(TinyCNN):
    """``forward(x, lengths)``: a second required input, given by the batches."""

    def forward(self, x, lengths):
        return super().forward(x[..., : int(lengths.max())])

    def _step(self, batch, stage):
        x, lengths, y = batch
        loss = F.cross_entropy(self(x, lengths), y)
        self.log(f"{stage}/loss", loss)
        return loss


class KeywordOnly(TinyCNN):
    """``forward(self, *, pixel_values)``, as Hugging Face models take their images."""

    def forward(self, *, pixel_values):
        return super().forward(pixel_values)

    def _step(self, batch, stage):
        x, y = batch
        loss = F.cross_entropy(self(pixel_values=x), y)
        self.log(f"{stage}/loss", loss)
        return loss


class NoForward(TinyCNN):
    """No ``forward`` of its own: the steps call the layers themselves (a common style)."""

    forward = L.LightningModule.forward

    def _step(self, batch, stage):
        x, y = batch
        loss = F.cross_entropy(TinyCNN.forward(self, x), y)
        self.log(f"{stage}/loss", loss)
        return loss


class NoiseIn(TinyCNN):
    """``forward(z)`` takes a 10-d vector, as a GAN's generator takes its noise."""

    def __init__(self):
        super().__init__()
        self.up = nn.Linear(10, 256)

    def forward(self, z):
        return super().forward(self.up(z).view(-1, 1, 16, 16))

    def _step(self, batch, stage):
        x, y = batch
        loss = F.cross_entropy(self(x[:, 0, 0, :10]), y)  # part of a row as its "noise"
        self.log(f"{stage}/loss", loss)
        return loss


def with_lengths(data: TensorDataset) -> DataLoader:
    x, y = data.tensors
    return DataLoader(TensorDataset(x, torch.full((len(y),), 16), y), batch_size=8)


def test_probe_call_why_not_names_a_second_required_input():
    net = WithLengths()
    said = why_not(net, torch.zeros(1, 1, 16, 16), batch_size=8)
    assert "needs `lengths` besides the images" in said and "`lengths=None`" in said
    # setups hunt 28: a Siamese `forward(a, b)` was told to give its second image a default
    assert "where the outputs can be computed without it" in said
    assert "a model that compares images (a Siamese pair) has no output of one image" in said


def test_probe_call_why_not_tells_a_fixed_batch_size_from_other_failures():
    x = torch.zeros(1, 1, 16, 16)
    said = why_not(FixedBatch(), x, batch_size=8)
    assert said.startswith("the model runs on batches of 8 (the training batch size) only")
    unknown = why_not(FixedBatch(), x, batch_size=None)  # not known: no guess at one size
    assert unknown.startswith("the model's `forward` fails on the val images (1x16x16, in "
                              "batches of 1, 2 and 3: RuntimeError")  # fmt: skip
    broken = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))  # fails on every batch size
    said = why_not(broken, x, batch_size=8)
    assert said.startswith("the model's `forward` fails on the val images (1x16x16, in batches "
                           "of 1, 2, 3 and 8: RuntimeError")  # fmt: skip
    assert "RuntimeError: mat1 and mat2 shapes cannot be multiplied" in said


@pytest.mark.parametrize(
    ("model", "data", "reason"),
    [
        (FixedBatch, None, "runs on batches of 8 (the training batch size) only"),
        (WithLengths, with_lengths, "needs `lengths` besides the images"),
        # setups hunt 24: "NotImplementedError: Module [Net] is missing the required
        # "forward" function" from every monitor
        (NoForward, None, "(`NoForward`) defines no `forward`, and a probe pass calls"),
        # setups hunt 24: a GAN's generator as `forward`: "mat1 and mat2 shapes cannot be
        # multiplied" as each monitor's failure
        (NoiseIn, None, "`forward` fails on the val images (1x16x16, in batches of 1, 2, 3"),
    ],
)
def test_probe_call_monitors_step_aside_with_the_reason(tmp_path, model, data, reason):
    # setups hunt 19: each monitor stepped aside with the call's raw error ("missing 1
    # required positional argument", "mat1 and mat2 shapes cannot be multiplied")
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    train, val = digits(32, seed=1), digits(16, seed=2)
    loaders = (with_lengths(train), with_lengths(val)) if data else None
    trainer, _, messages = fit(tmp_path, monitors, model=model(), data=loaders)
    checks = checks_of(trainer)
    for monitor in monitors:
        name = type(monitor).__name__
        said = [m for m in messages if m.startswith(name) and reason in m]
        if name in PROBING:
            assert monitor.disabled and len(said) == 1, name
            assert f"{name} steps aside" in said[0] and "failed" not in said[0]
            assert not checks[(name, "")].ran and reason in checks[(name, "")].why
        elif name == "OverfittingMonitor":
            assert not monitor.disabled and monitor.events > 0
            assert len(said) == 1 and said[0].startswith(UNSCORED), said
            assert checks[(name, "overfitting")].ran
            assert reason in checks[(name, "not learning")].why
        else:
            assert not monitor.disabled and monitor.events > 0 and not said
    # the summary names the monitors stepped aside together, and the reason once
    (summary,) = texts(events(trainer.logger.log_dir), "cnnviz/summary")
    assert summary.count(reason) == 1, summary
    aside = ", ".join(n for n in ALL_MONITORS if n in PROBING)
    assert f"did not run: {aside} (stepped aside: " in summary
    assert "OverfittingMonitor/not learning, " in summary
    assert "(as for FeatureMapMonitor)" in summary


def test_probe_call_keyword_only_forward_gets_its_images_by_name(tmp_path):
    # setups hunt 21: every probe pass raised "forward() takes 1 positional argument but 2
    # were given" and four monitors stepped aside
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, model, messages = fit(tmp_path, monitors, model=KeywordOnly())
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    said = [m for m in messages if "takes its images as the keyword `pixel_values`" in m]
    assert len(said) == 1
    assert not any(h for m in model.modules() for h in m._forward_pre_hooks.values())


class Siamese(TinyCNN):
    """``forward(pair)``: one argument holding two images, as the items ``(a, b, same)``."""

    def __init__(self) -> None:
        super().__init__(classes=2)

    def forward(self, pair):
        a, b = pair
        return (super().forward(a) - super().forward(b)).abs()

    def _step(self, batch, stage):
        a, b, same = batch
        loss = F.cross_entropy(self((a, b)), same)
        self.log(f"{stage}/loss", loss)
        return loss


def pairs(data: TensorDataset) -> DataLoader:
    """Items ``(a, b, same)``: each image with the next one, and whether their classes agree."""
    x, y = data.tensors
    other = torch.roll(torch.arange(len(y)), 1)
    return DataLoader(TensorDataset(x, x[other], (y == y[other]).long()), batch_size=8)


def test_probe_call_forward_of_a_pair_steps_aside_naming_it(tmp_path):
    # setups hunt 23: seven monitors stepped aside with the raw "ValueError: not enough
    # values to unpack (expected 2, got 1)" from `a, b = pair` on a probe batch
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    loaders = (pairs(digits(32, seed=1)), pairs(digits(16, seed=2)))
    _, _, messages = fit(tmp_path, monitors, model=Siamese(), data=loaders)
    reason = "the model's `forward` takes one argument holding two images"
    for monitor in monitors:
        name = type(monitor).__name__
        said = [m for m in messages if m.startswith(name) and reason in m]
        assert not failures(messages, name), name
        if name in PROBING:
            assert monitor.disabled and len(said) == 1, name
            assert reason in monitor.aside_reason and "forward(self, a, b=None)" in said[0]
        elif name == "OverfittingMonitor":
            assert not monitor.disabled and len(said) == 1 and said[0].startswith(UNSCORED)
        else:
            assert not monitor.disabled and monitor.events > 0 and not said


class InPlaceNormalise(TinyCNN):
    """``forward`` normalises its input in place, as ``normalize(x, ..., inplace=True)``."""

    def forward(self, x):
        return super().forward(x.sub_(0.1).div_(0.3))


def test_probe_call_forward_changing_its_input_in_place_leaves_the_probes_as_they_were(
    tmp_path,
):
    # setups hunt 29: every pass normalised the kept probe images again: "two passes over
    # the same images 230% apart" and "train and val inputs differ" were told as problems,
    # and FeatureMap and GradCAM stepped aside on an in-place change of a leaf
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    train, val = digits(32, seed=1), digits(16, seed=2)
    kept = val.tensors[0].clone()
    loaders = (DataLoader(train, batch_size=8), DataLoader(val, batch_size=8))
    trainer, _, messages = fit(tmp_path, monitors, model=InPlaceNormalise(), data=loaders)
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    assert not [m for m in monitors if m.disabled]
    assert not [f.kind for f in findings_of(trainer)], findings_of(trainer)
    assert torch.equal(val.tensors[0], kept)  # the dataset's own tensor too
    for monitor in monitors:
        for probe in getattr(monitor, "_probes", {}).values():
            assert float(probe.images.abs().max()) < 2.0, type(monitor).__name__


class Checkpointed(TinyCNN):
    """The second block under activation checkpointing, as memory-bound training does."""

    reentrant = False

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        block = lambda h: self.pool2(self.relu2(self.bn2(self.conv2(h))))  # noqa: E731
        return self.fc(checkpoint(block, x, use_reentrant=self.reentrant).flatten(1))


class Reentrant(Checkpointed):
    reentrant = True


def test_probe_call_activation_checkpointing_every_monitor_writes(tmp_path):
    # setups hunt 29: the block recomputed in backward fired the capture hooks again:
    # FeatureMap and GradCAM failed on an IndexError (the traced calls out of step), and
    # activation maximisation on torch's "different number of tensors saved"
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, _, messages = fit(tmp_path, monitors, model=Checkpointed())
    assert_every_monitor_wrote(tmp_path, monitors, messages)
    assert not [m for m in monitors if m.disabled]
    assert not [m for m in messages if "steps aside" in m]


def test_probe_call_reentrant_checkpointing_named_by_the_gradient_monitors(tmp_path):
    # setups hunt 29: Grad-CAM blamed "a `.detach()` or `torch.no_grad()`", two monitors
    # failed on torch's "incompatible with .grad()"
    monitors = [make_monitor(name) for name in ALL_MONITORS]
    _, _, messages = fit(tmp_path / "all", monitors, model=Reentrant())
    needing = {"ActivationMaximizationMonitor", "AdversarialMonitor"}
    for monitor in monitors:
        name = type(monitor).__name__
        said = [m for m in messages if m.startswith(name) and "steps aside" in m]
        assert not failures(messages, name), name
        if name in needing:
            assert len(said) == 1 and REENTRANT in said[0], name
        else:  # Grad-CAM's block output is the checkpoint's own output: its graph is there
            assert not monitor.disabled and monitor.events > 0 and not said, name
    inner = make_monitor("GradCAMMonitor", layers=["conv2"])  # inside the checkpointed block
    _, _, messages = fit(tmp_path / "inner", [inner], model=Reentrant())
    said = [m for m in messages if m.startswith("GradCAMMonitor") and "steps aside" in m]
    assert len(said) == 1 and REENTRANT in said[0] and inner.disabled
