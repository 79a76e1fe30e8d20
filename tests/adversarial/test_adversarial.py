import pytest
import torch
from torch import nn

from lightning_cnnviz.adversarial.callback import AdversarialMonitor
from lightning_cnnviz.adversarial.fgsm import accuracy, fgsm
from lightning_cnnviz.core import labels
from tests.monitors import TinyCNN, failures, fit, make_monitor
from tests.tb import events
from tests.views_helpers import DigitsData, reference_model, run


def _linear():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([[1.0, -1.0, 2.0, 0.5], [0.0, 1.0, -1.0, 1.0]]))
        net[1].bias.zero_()
    return net


def test_adversarial_fgsm_hand_computed():
    # d CE / dx = (p1 - [y == 1]) (W1 - W0); for y = 0 the sign is sign(W1 - W0) = (-, +, -, +)
    net, x = _linear(), torch.zeros(2, 1, 2, 2)
    adv = fgsm(net, x, torch.tensor([0, 1]), 0.1, mean=[0.5], std=[0.25])
    step = 0.1 / 0.25
    torch.testing.assert_close(adv[0].flatten(), step * torch.tensor([-1.0, 1, -1, 1]))
    torch.testing.assert_close(adv[1].flatten(), -step * torch.tensor([-1.0, 1, -1, 1]))
    # clamped to the normalised images of pixels 0 and 1: [-2, 2] here
    near_edge = torch.full((1, 1, 2, 2), 1.9)
    adv = fgsm(net, near_edge, torch.tensor([0]), 0.1, mean=[0.5], std=[0.25])
    assert adv.flatten().tolist() == pytest.approx([1.5, 2.0, 1.5, 2.0])
    # without the normalisation: epsilon in input units, no clamp
    adv = fgsm(net, near_edge, torch.tensor([0]), 0.5)
    assert adv.flatten().tolist() == pytest.approx([1.4, 2.4, 1.4, 2.4])
    assert float(accuracy(torch.tensor([[1.0, 0], [0, 1], [1, 0]]), torch.tensor([0, 0, 0]))) == (
        pytest.approx(2 / 3)
    )


def test_adversarial_fgsm_leaves_params_and_grads_alone():
    model = reference_model()
    model.conv1.requires_grad_(False)
    sentinels = {n: torch.full_like(p, 0.25) for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = sentinels[n]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    x = DigitsData(train_size=8, val_size=8).val_dataset.tensors[0]
    adv = fgsm(model, x, torch.arange(8), 0.1, mean=[0.1307], std=[0.3081])
    assert not adv.requires_grad and adv.shape == x.shape and not torch.equal(adv, x)
    for n, p in model.named_parameters():
        assert p.grad is sentinels[n] and torch.equal(p.grad, torch.full_like(p, 0.25))
        assert torch.equal(p, before[n]) and p.requires_grad == (not n.startswith("conv1"))
    assert all(m.training for m in model.modules())


def test_adversarial_scalars_and_examples(tmp_path):
    monitor = AdversarialMonitor(every_n_steps=4, num_samples=40)
    run(tmp_path, [monitor], steps=8)
    acc = events(tmp_path)
    clean = acc.Scalars("adversarial/accuracy_clean")
    attacked = acc.Scalars("adversarial/accuracy_attacked")
    assert [e.step for e in clean] == [4, 8] == [e.step for e in attacked]
    for c, a in zip(clean, attacked, strict=True):
        assert 0 <= a.value <= c.value <= 1
    assert attacked[-1].value < clean[-1].value and clean[-1].value > 0.5
    image = acc.Images("adversarial/examples")[-1]
    caption_h = labels.text_size("y0 p0")[1] + 2
    assert (image.width, image.height) == (7 * 56 + 6 * 2, 4 * (56 + caption_h) + 3 * 4)
    assert monitor.cam_module(None, None)[0] == "pool2"  # Grad-CAM's auto: last block's output
    assert all(monitor.timings[p] > 0 for p in ("capture", "compute", "render", "write"))


def test_adversarial_scalars_only(tmp_path):
    monitor = AdversarialMonitor(every_n_steps=4, num_samples=10, samples_shown=0, epsilon=0.3)
    run(tmp_path, [monitor], steps=4)
    acc = events(tmp_path)
    assert "adversarial/examples" not in acc.Tags()["images"]
    assert len(acc.Scalars("adversarial/accuracy_attacked")) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epsilon": 0.0}, "`epsilon` must be a positive number, got 0.0"),
        ({"epsilon": "0.1"}, "`epsilon` must be a number in"),
        ({"samples_shown": -1}, "`samples_shown` must be a positive integer, got -1"),
        ({"cam_layer": ""}, "`cam_layer` must be 'auto' or a layer name, got ''"),
    ],
)
def test_adversarial_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdversarialMonitor(**kwargs)


class OneLogit(TinyCNN):
    """A discriminator-like head: one logit, trained on "class 0 or not" of 4-class labels."""

    def __init__(self) -> None:
        super().__init__(classes=1)

    def _step(self, batch, stage):
        x, y = batch
        loss = nn.functional.binary_cross_entropy_with_logits(self(x)[:, 0], (y == 0).float())
        self.log(f"{stage}/loss", loss)
        return loss


def test_adversarial_one_logit_model_steps_aside_saying_why(tmp_path):
    # setups hunt 18: a one-logit discriminator with 10-class labels in the batch ended in
    # "IndexError: Target 1 is out of bounds"
    monitor = make_monitor("AdversarialMonitor")
    _, _, messages = fit(tmp_path, [monitor], model=OneLogit())
    assert not failures(messages, "AdversarialMonitor") and monitor.events == 0
    aside = [m for m in messages if m.startswith("AdversarialMonitor steps aside")]
    assert len(aside) == 1
    assert "gives 1 output per image for labels 0 to 3 (a one-logit discriminator" in aside[0]


class Dense(TinyCNN):
    """An MLP on the images: no convolution for the `examples` image's maps."""

    def __init__(self, keep_convs=False):
        super().__init__()
        if not keep_convs:
            del self.conv1, self.bn1, self.conv2, self.bn2
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 4))

    def forward(self, x):
        return self.net(x)


def test_adversarial_without_a_conv_layer_logs_its_accuracies(tmp_path):
    # held out (setups hunt 22): on an MLP it stepped aside ("found no layer it can watch")
    # though its accuracy under attack needs no conv layer
    from tests.monitors import written_tags

    monitor = make_monitor("AdversarialMonitor", every_n_steps=2)
    _, _, messages = fit(tmp_path, [monitor], model=Dense())
    assert not monitor.disabled and monitor.events > 0
    tags = written_tags(tmp_path)
    assert "adversarial/accuracy_attacked" in tags["scalars"]
    assert "adversarial/examples" not in tags["images"]
    (said,) = [m for m in messages if "found no layer" in m]
    assert "accuracy scalars only, no `examples` image" in said
    # conv layers defined but never called: the same, said so (a raw KeyError before)
    monitor = make_monitor("AdversarialMonitor", every_n_steps=2)
    _, _, messages = fit(tmp_path / "unused", [monitor], model=Dense(keep_convs=True))
    assert not monitor.disabled and monitor.events > 0
    assert len([m for m in messages if "`conv1` is not called by the model's forward()" in m]) == 1


class Pixels(TinyCNN):
    """1x1 convolutions over 3x1x1 inputs: every map is 1x1, no layer for Grad-CAM."""

    def __init__(self):
        super().__init__(channels=3)
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.relu2(self.conv2(self.relu1(self.conv1(x)))).flatten(1))


def test_adversarial_one_by_one_maps_logs_its_accuracies(tmp_path):
    # held out (setups hunt 23): it stepped aside with a raw "ValueError: no layer with a
    # spatial output for Grad-CAM", though only the `examples` image needs a CAM
    from tests.monitors import loaders, written_tags

    monitor = make_monitor("AdversarialMonitor", every_n_steps=2)
    data = loaders(channels=3, side=1)
    _, _, messages = fit(tmp_path, [monitor], model=Pixels(), data=data)
    assert not failures(messages, "AdversarialMonitor") and not monitor.aside_reason
    assert not monitor.disabled and monitor.events == 2
    tags = written_tags(tmp_path)
    assert {"adversarial/accuracy_clean", "adversarial/accuracy_attacked"} <= tags["scalars"]
    assert len(events(tmp_path).Scalars("adversarial/accuracy_attacked")) == 2
    assert "adversarial/examples" not in tags["images"]
    (said,) = [m for m in messages if m.startswith("AdversarialMonitor") and "1x1" in m]
    assert "accuracy scalars only, no `examples` image" in said


class FrozenBackbone(TinyCNN):
    """The convolutions run under ``torch.no_grad()``: only the head trains."""

    def forward(self, x):
        with torch.no_grad():
            x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
            x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(x.flatten(1))


def test_adversarial_steps_aside_where_forward_cuts_the_input_gradient(tmp_path):
    # setups hunt 24: "One of the differentiated Tensors appears to not have been used in
    # the graph. Set allow_unused=True ..." as the monitor's failure
    monitor = make_monitor("AdversarialMonitor")
    _, _, said = fit(tmp_path, [monitor], model=FrozenBackbone())
    assert monitor.disabled and not failures(said, "AdversarialMonitor")
    (aside,) = [m for m in said if m.startswith("AdversarialMonitor steps aside")]
    assert "outputs carry no gradient back to its input images" in aside
