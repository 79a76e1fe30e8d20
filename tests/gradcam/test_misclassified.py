"""``gradcam/misclassified``: searched only where the labels index the model's outputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import checks_of
from lightning_cnnviz.gradcam import misclassified
from lightning_cnnviz.gradcam.callback import GradCAMMonitor
from tests.monitors import TinyCNN, digits, failures, fit
from tests.tb import events, image_tags

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


class OneLogit(TinyCNN):
    """A one-logit head trained on "class 0 or not" of items labelled 0..3 (a discriminator)."""

    def __init__(self, lr: float = 0.05) -> None:
        super().__init__(lr=lr, classes=1)

    def _step(self, batch, stage):
        x, y = batch
        loss = nn.functional.binary_cross_entropy_with_logits(self(x)[:, 0], (y == 0).float())
        self.log(f"{stage}/loss", loss)
        return loss


class Binary(OneLogit):
    """The same head on items labelled 0/1: a BCE binary classifier, read by its logit's sign."""

    def _step(self, batch, stage):
        x, y = batch
        loss = nn.functional.binary_cross_entropy_with_logits(self(x)[:, 0], y.float())
        self.log(f"{stage}/loss", loss)
        return loss


def _monitor():
    return GradCAMMonitor(every_n_steps=2, num_samples=4, misclassified_pool=16)


def test_misclassified_one_logit_digit_labels_draws_no_panel(tmp_path):
    # setups hunt 83: argmax of one logit is always 0, so every item not labelled 0 was
    # "misclassified" and drawn at every log, with no word
    monitor = _monitor()
    trainer, _, messages = fit(tmp_path, [monitor], model=OneLogit())
    assert not failures(messages, "GradCAMMonitor") and monitor.events == 2
    images = set(image_tags(events(tmp_path / "tb")))
    assert {"gradcam/train", "gradcam/val"} <= images and "gradcam/misclassified" not in images
    said = [m for m in messages if "gradcam/misclassified" in m]
    assert len(said) == 1 and said[0].startswith("GradCAMMonitor: draws no")
    assert "labels run from 0 to 3 and the model gives 1 output per image" in said[0]
    check = checks_of(trainer)[("GradCAMMonitor", "misclassified samples")]
    assert not check.ran and "right and wrong cannot be told" in check.why


def test_misclassified_one_logit_binary_labels_read_by_sign(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(1, 1, bias=False))
    with torch.no_grad():
        net[1].weight.fill_(1.0)  # logit = x: class 1 where x > 0
    images = torch.tensor([2.0, -1.0, 3.0, -2.0]).view(4, 1, 1, 1)
    assert misclassified.find_misclassified(net, images, torch.tensor([1, 0, 0, 1])).tolist() == [
        2,
        3,
    ]
    with pytest.raises(misclassified.Untold, match="labels run from 0 to 2"):
        misclassified.find_misclassified(net, images, torch.tensor([0, 1, 2, 0]))
    # in a run: a BCE head on 0/1 labels keeps its panel, without a word about it (a rate
    # too small to learn: some val items stay wrong)
    data = (DataLoader(digits(32, classes=2, seed=1), batch_size=8),
            DataLoader(digits(16, classes=2, seed=2), batch_size=8))  # fmt: skip
    monitor = _monitor()
    trainer, _, messages = fit(tmp_path, [monitor], model=Binary(lr=1e-6), data=data)
    assert not [m for m in messages if "misclassified" in m or "GradCAMMonitor" in m]
    assert ("GradCAMMonitor", "misclassified samples") not in checks_of(trainer)
    assert "gradcam/misclassified" in set(image_tags(events(tmp_path / "tb")))


class Hinge(OneLogit):
    """The same head on items labelled -1/+1 (a hinge loss): the logit's sign is the class."""

    def _step(self, batch, stage):
        x, y = batch
        loss = nn.functional.relu(1 - y.float() * self(x)[:, 0]).mean()
        self.log(f"{stage}/loss", loss)
        return loss


def test_misclassified_one_logit_hinge_labels_say_the_models_own_width(tmp_path):
    # held-out hunt 126: a one-logit head on -1/+1 labels was said to give "2 outputs per
    # image", the width of the two classes its logit is read as where labels are 0/1
    def signed(data):
        x, y = data.tensors
        return TensorDataset(x, y * 2 - 1)

    data = (DataLoader(signed(digits(32, classes=2, seed=1)), batch_size=8),
            DataLoader(signed(digits(16, classes=2, seed=2)), batch_size=8))  # fmt: skip
    trainer, _, _ = fit(tmp_path, [_monitor()], model=Hinge(), data=data)
    check = checks_of(trainer)[("GradCAMMonitor", "misclassified samples")]
    assert not check.ran
    assert "labels run from -1 to 1 and the model gives 1 output per image" in check.why
    assert "gradcam/misclassified" not in set(image_tags(events(tmp_path / "tb")))
