"""Layers whose registered weights `forward` does not use are not told as frozen."""

import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.kernels.callback import KernelMonitor
from tests.kernels.kernel_nets import WideNet, run


def said_unused(tmp_path, model, words):
    """The one warning holding ``words`` of a fit of ``model``, which tells no frozen layer."""
    with pytest.warns(UserWarning, match=words) as said:
        _, trainer, _ = run(tmp_path, KernelMonitor(every_n_steps=2), model, steps=10)
    assert not [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    (message,) = [str(w.message) for w in said if words in str(w.message)]
    return message


class Stateless(WideNet):
    """Calls a network of its own with weights it keeps apart (``torch.func.functional_call``)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner, self.conv1, self.conv2, self.fc = WideNet(), None, None, None
        self.weights = nn.ParameterDict(
            {n.replace(".", "_"): nn.Parameter(p.detach().clone())
             for n, p in self.inner.named_parameters()}
        )  # fmt: skip
        self.inner.requires_grad_(False)  # placeholders: never used, never trained

    def forward(self, x):
        params = {n: self.weights[n.replace(".", "_")] for n, _ in self.inner.named_parameters()}
        return torch.func.functional_call(self.inner, params, (x,))


def test_kernels_weights_a_stateless_call_replaces_are_not_told_frozen(tmp_path):
    # setups hunt 23: the placeholders were told "frozen ... load the pretrained weights"
    message = said_unused(tmp_path, Stateless(), "with other weights than their own")
    assert "`inner.conv1`, `inner.conv2`" in message and "functional_call" in message
    # the same layers frozen in a model that calls them with them: told as before
    model = WideNet()
    for conv in (model.conv1, model.conv2):
        conv.weight.requires_grad_(False)
    _, trainer, _ = run(tmp_path / "frozen", KernelMonitor(every_n_steps=2), model, steps=10)
    assert [f for f in findings_of(trainer) if f.kind == "frozen_layers"]


class AveragedCopy(WideNet):
    """Keeps an ``AveragedModel`` of its convolutions, as SWA by hand does: never called."""

    def __init__(self) -> None:
        super().__init__()
        convs = nn.Sequential(self.conv1, self.conv2)
        self.swa = torch.optim.swa_utils.AveragedModel(convs)


def test_kernels_a_weight_average_copy_is_not_watched_nor_told_frozen(tmp_path):
    # setups hunt 54: the copy's convolutions were told "frozen layers ... untrained";
    # setups hunt 58: "auto" picks the model's own layers, not its copy's
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        _, trainer, acc = run(tmp_path, KernelMonitor(every_n_steps=2), AveragedCopy(), steps=10)
    assert not [w for w in said if "swa.module" in str(w.message)]
    assert not [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    kernels = {t.split("/")[1] for t in acc.Tags()["scalars"] if t.startswith("kernels/")}
    assert kernels == {"conv1", "conv2"}


class AuxHead(WideNet):
    """An Inception-style auxiliary head, run in training mode only, its conv frozen."""

    def __init__(self) -> None:
        super().__init__()
        self.aux = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(16, 4))  # fmt: skip
        self.aux[0].requires_grad_(False)  # the mistake: it never trains

    def training_step(self, batch, batch_idx):
        x, y = batch
        h = torch.relu(self.conv1(x))
        loss = super().training_step(batch, batch_idx)
        return loss + 0.3 * torch.nn.functional.cross_entropy(self.aux(h), y)


def test_kernels_a_frozen_branch_run_in_training_only_is_told_frozen(tmp_path):
    # setups hunt 55: an eval-mode pass does not call it: "takes no part in training"
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        _, trainer, _ = run(tmp_path, KernelMonitor(every_n_steps=2), AuxHead(), steps=10)
    assert not [w for w in said if "does not call" in str(w.message)]
    (found,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert found.figures["names"] == ["aux.0"]


def bright_first(n: int = 48) -> DataLoader:
    """The four images of class 2 first and bright (every pixel above 1): one batch in 12.

    The probe's first image is of class 0 (not bright), its third of class 2.
    """
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 1, 16, 16, generator=g), torch.arange(n) % 2
    x[:4], y[:4] = x[:4].abs() + 1.0, 2
    return DataLoader(TensorDataset(x, y), batch_size=4)


class Branch(WideNet):
    """``conv2b`` in place of ``conv2`` on a batch of bright images only: trained on those."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2b = nn.Conv2d(16, 4, 3, padding=1)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = (self.conv2b if x.amin() > 0.5 else self.conv2)(h)  # chosen by the batch
        return self.fc(F.max_pool2d(F.relu(h), 2).flatten(1))


def test_kernels_a_branch_some_batches_take_is_not_told_apart_from_training(tmp_path):
    # setups hunt 74: the probe batch (of every class) takes `conv2`, so one pass on one
    # image said "`forward` does not call `conv2b`: they take no part in training"
    L.seed_everything(0, verbose=False)
    model = Branch()
    before = model.conv2b.weight.detach().clone()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        _, _, acc = run(tmp_path, KernelMonitor(every_n_steps=2), model, steps=24,
                        data=bright_first())  # fmt: skip
    assert not torch.equal(model.conv2b.weight, before)  # trained on the bright batches
    assert not [w for w in said if "does not call" in str(w.message)]
    assert [e.step for e in acc.Scalars("kernels/conv2b/relative_change")][-1] == 24


class Wasteful(WideNet):
    """Computes ``spare`` on conv2's maps and throws it away, or (``cut``) adds it detached."""

    def __init__(self, cut: bool = False) -> None:
        super().__init__()
        self.spare, self.cut = nn.Conv2d(4, 4, 3, padding=1), cut

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        spare = self.spare(x)  # a hooked feature net's later stage, as timm's runs it
        return self.fc((x + spare.detach() if self.cut else x).flatten(1))


def test_kernels_a_layer_whose_output_forward_throws_away_is_not_told_frozen(tmp_path):
    # setups hunt 75: a timm `features_only` net hooked ran its later stages for nothing;
    # given no gradient, they were told "frozen layers ... look untrained", a problem
    message = said_unused(tmp_path, Wasteful(), "throws its output away")
    assert message.startswith("KernelMonitor: `forward` computes `spare` and throws")
    # its output cut off by a `.detach()` (a bug the user can fix): still told
    _, trainer, _ = run(
        tmp_path / "cut", KernelMonitor(every_n_steps=2), Wasteful(cut=True), steps=10
    )
    (frozen,) = [f for f in findings_of(trainer) if f.kind == "frozen_layers"]
    assert frozen.figures["names"] == ["spare"] and "`.detach()`" in frozen.message
