"""A model whose ``forward`` cannot take the probe: the logged curves are still read."""

import logging

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from lightning_cnnviz.core.findings import checks_of, findings_of
from lightning_cnnviz.overfitting.callback import OverfittingMonitor
from tests.monitors import TinyCNN, digits, make_monitor
from tests.monitors import fit as monitors_fit
from tests.overfitting.test_overfitting import Scripted, fit
from tests.tb import events, texts


class TwoInputs(Scripted):
    """``forward(x, scale)``: a second required input, which no probe pass can give."""

    def forward(self, x, scale):
        return self.fc(x.flatten(1)) * scale

    def training_step(self, batch, batch_idx):
        x, y = batch
        e = self.current_epoch
        self.log("train/loss", self.train_series[e], on_step=True, on_epoch=True)
        self.log("train/acc", 0.8 + 0.03 * e, on_step=True, on_epoch=True)
        return F.cross_entropy(self(x, 1.0), y)


def test_unprobed_model_is_still_told_overfitting_from_its_logged_curves(tmp_path, caplog):
    # setups hunt 28: the monitor stepped aside wholesale, though the val loss it reads
    # needs no probe pass
    monitor = OverfittingMonitor(num_samples=4)
    with caplog.at_level(logging.INFO):
        trainer, said = fit(tmp_path, monitor, model=TwoInputs())
    assert not monitor.disabled and monitor.events == 7
    reason = "the model's `forward` needs `scale` besides the images"
    told = [m for m in said if m.startswith("OverfittingMonitor")]
    assert told == [m for m in told if "checks that read the model's scores do not run" in m]
    assert len(told) == 1 and reason in told[0] and "steps aside" not in told[0]
    (finding,) = findings_of(trainer)
    assert (finding.kind, finding.step, finding.severity) == ("overfitting", 14, "problem")
    assert finding.figures["val_loss"] == pytest.approx(1.0)
    (text,) = texts(events(tmp_path / "tb"), "overfitting/diagnosis")
    assert text.startswith("**Overfitting since epoch 3 (step 8): val loss 1 is 25% above")
    checks = checks_of(trainer)
    assert checks[("OverfittingMonitor", "overfitting")].ran
    assert checks[("OverfittingMonitor", "memorisation")].ran  # from the logged accuracies
    assert checks[("OverfittingMonitor", "not learning")].ran  # from the loss it returns
    for check in ("class imbalance", "loss fed probabilities"):
        assert not checks[("OverfittingMonitor", check)].ran
        assert reason in checks[("OverfittingMonitor", check)].why, check
    assert "OverfittingMonitor (stepped aside" not in caplog.text


class Sizes(torch.utils.data.Dataset):
    """Digits cropped to 12..16 pixels a side, one size per item (collated as a list)."""

    def __init__(self, n: int, seed: int) -> None:
        self.items = digits(n, seed=seed)
        self.sides = [12 + i % 5 for i in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        x, y = self.items[i]
        return x[:, : self.sides[i], : self.sides[i]], y


class AnySize(TinyCNN):
    """Takes a list of images of their own sizes (or one batch), pooled to 4x4 before its head."""

    def forward(self, x):
        if isinstance(x, list):
            return torch.cat([self(image[None]) for image in x])
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = F.adaptive_avg_pool2d(self.relu2(self.bn2(self.conv2(x))), 4)
        return self.fc(x.flatten(1))

    def _step(self, batch, stage):
        return super()._step((batch[0], batch[1]), stage)


def _as_lists(batch):
    images, labels = zip(*batch, strict=True)
    return list(images), torch.as_tensor(labels)


def test_unprobed_a_probe_of_one_size_too_small_to_tell_chance_is_the_reason_said(tmp_path):
    # setups hunt 71: images of several sizes, the probe of the commonest (17 of 96): the
    # summary said "needs class labels, (N, classes) logits and enough probe images"
    def loader(n, seed):
        return DataLoader(Sizes(n, seed), batch_size=8, collate_fn=_as_lists)

    monitor = make_monitor("OverfittingMonitor", num_samples=16)
    data = (loader(40, 1), loader(40, 2))
    trainer, _, _ = monitors_fit(tmp_path, [monitor], model=AnySize(), data=data,
                                 limit_val_batches=1.0)  # fmt: skip
    why = checks_of(trainer)[("OverfittingMonitor", "not learning")].why
    assert why.startswith("the val probe holds 8 images, too few to tell chance on 4 classes")
    assert "one batch of one size" in why
