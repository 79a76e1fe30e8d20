"""The gradient rules (depth ratios, saturation, vanishing) and the loss's scale at the start."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.activations.callback import ActivationMonitor
from lightning_cnnviz.activations.diagnose import TrainingDiagnosis
from lightning_cnnviz.activations.gradients import attenuated, depth_ratio, gradient_findings
from lightning_cnnviz.core.findings import findings_of, problems
from tests.activations.series import figures, review
from tests.monitors import TinyCNN, fit, make_monitor
from tests.tb import events

# measured: a plain 10-conv Tanh CNN at PyTorch's default init, SGD 0.01 momentum 0.9, at
# chance for 378 steps: the first layer 4.4e-3 .. 8.5e-3 of the last, 2.6e-2 .. 4.8e-2 by
# thirds, at every log (these: its step 12)
STUCK = [("c0", 9.94e-6), ("c1", 1.66e-5), ("c2", 1.81e-5), ("c3", 1.91e-5), ("c4", 2.48e-5),
         ("c5", 3.48e-5), ("c6", 9.39e-5), ("c7", 1.48e-4), ("c8", 3.09e-4), ("c9", 5.82e-4),
         ("fc", 2.28e-3)]  # fmt: skip


def test_gradients_attenuated_needs_both_bars():
    assert attenuated(STUCK)
    # the same thirds with the first layer at 2e-2 of the last: a plain 8-conv Tanh CNN that
    # leaves chance under SGD 0.05 shows this in its flat start
    assert not attenuated([("c0", 4.6e-5), *STUCK[1:]])
    assert not attenuated(STUCK[:2])  # too few layers for thirds


def test_gradients_attenuated_through_few_layers_is_no_vanishing():
    # held out (hunt 95): a 3-conv GroupNorm ReLU net on data with no signal settled on a
    # constant output, its first layer at 8.9e-3 of its head: "vanishing gradients"
    shallow = [("c0", 2.0e-5), ("c1", 1.1e-4), ("c2", 3.9e-4), ("fc", 2.25e-3)]
    assert not attenuated(shallow)
    assert gradient_findings(shallow, None, {}, True, stuck=True) == []
    assert attenuated([*STUCK[:2], *shallow])  # the same fade through six layers


def test_gradients_weak_attenuation_is_vanishing_only_when_stuck():
    assert gradient_findings(STUCK, None, {}, stalled=True) == []
    ((kind, severity, message, fig),) = gradient_findings(STUCK, None, {}, True, stuck=True)
    assert (kind, severity) == ("vanishing_gradients", "problem")
    assert "the first layer alone 4.4e-03" in message
    assert "at each of the last 3 logs, with the loss at its chance level" in message
    assert fig["first_last_ratio"] < 1e-2 and fig["depth_ratio"] < 5e-2


def _log(diagnosis, step, losses, profile):
    for s, value in losses:
        diagnosis.loss.add(s, torch.tensor(value))
    chance = (10, 2.31) if diagnosis.wants_chance() else None
    return diagnosis.review(step, 0, {}, {}, list(profile), list, chance=chance)


def _at_chance(start, stop):
    return [(s, 2.303 + 0.01 * ((-1) ** s)) for s in range(start, stop)]


def test_gradients_stuck_at_chance_with_weak_attenuation_is_told_by_step_100():
    diagnosis, told, last = TrainingDiagnosis(0.25, 16, 0.025), [], 0
    for step in (12, 20, 60, 120):
        found = _log(diagnosis, step, _at_chance(last, step + 1), STUCK)
        told += [(step, v.kind, v.severity) for v in found]
        last = step + 1
    assert told == [(120, "vanishing_gradients", "problem")]
    saved = diagnosis.state_dict()
    assert saved["weak_logs"] == 4
    again = TrainingDiagnosis(0.25, 16, 0.025)
    again.load_state_dict(saved)
    assert again.weak_logs == 4


def test_gradients_weak_attenuation_while_learning_is_quiet():
    # the same profile with the loss leaving chance (a flat start that ends): nothing
    diagnosis, last = TrainingDiagnosis(0.25, 16, 0.025), 0
    for step in (12, 20, 60, 120):
        losses = [(s, 2.303 * (1 - 0.004 * s)) for s in range(last, step + 1)]
        assert _log(diagnosis, step, losses, STUCK) == []
        last = step + 1


def test_review_a_loss_scaled_far_below_the_models_cross_entropy_is_a_note():
    # held out: cross-entropy x1e-4 under SGD 0.01: 2.3e-4 against the probe's 2.31,
    # 10% -> 20% val accuracy in 282 steps, and nothing was said
    diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
    for s in range(5):
        diagnosis.loss.add(s, torch.tensor(2.3e-4 - 1e-7 * s))
    (note,) = diagnosis.review(5, 0, {}, {}, [], list, chance=(10, 2.31))
    assert (note.kind, note.severity) == ("scaled_loss", "note")
    assert note.figures["scale"] == pytest.approx(1e-4)
    assert "~0.0001x the model's own cross-entropy" in note.message
    assert "every step is ~10000x smaller" in note.message
    assert diagnosis.loss_scale is None  # no cause a divergence could name
    # a loss a little below its cross-entropy (one-vs-all BCE at ln 2 against ln 10): quiet
    quiet = TrainingDiagnosis(0.25, 16, 0.025)
    for s in range(5):
        quiet.loss.add(s, torch.tensor(0.69))
    assert quiet.review(5, 0, {}, {}, [], list, chance=(10, 2.31)) == []


def test_gradients_clipping_by_value_far_below_the_gradients_is_a_note_once():
    # held out (hunt 15): gradient_clip_val=1e-5 by value under SGD 0.05, 58-66% val
    diagnosis, healthy = (
        TrainingDiagnosis(0.25, 16, 0.025),
        [("c1", 2e-3), ("c2", 4e-3), ("fc", 9e-3)],
    )
    said = []
    for step in (12, 20):
        losses = [(s, 2.3 * (1 - 0.002 * s)) for s in range(step - 8, step + 1)]
        for s, value in losses:
            diagnosis.loss.add(s, torch.tensor(value))
        said += diagnosis.review(step, 0, {}, {}, healthy, list, clip=(1e-5, "value"))
    (note,) = said
    assert (note.kind, note.severity) == ("clipped_gradients", "note")
    assert note.figures["median_rms"] == pytest.approx(4e-3) and note.figures["over_clip"] == 400
    assert "Gradient clipping by value at 1e-05 cuts nearly every gradient entry" in note.message
    # by norm, or a bar above the gradients: nothing
    for clip in ((1e-5, "norm"), (1.0, "value"), (None, None)):
        quiet = TrainingDiagnosis(0.25, 16, 0.025)
        for s in range(9):
            quiet.loss.add(s, torch.tensor(2.3))
        assert quiet.review(8, 0, {}, {}, healthy, list, clip=clip) == []


def test_gradients_grad_rms_of_layers_under_the_older_weight_norm(tmp_path):
    # setups hunt 19: `torch.nn.utils.weight_norm` (its `weight` recomputed each forward, no
    # leaf) wrote no grad_rms for its layers, and PyTorch's non-leaf `.grad` warning leaked
    model = TinyCNN()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for parametrizations
        torch.nn.utils.weight_norm(model.conv1)
    monitor = make_monitor("ActivationMonitor")
    _, _, messages = fit(tmp_path, [monitor], model=model)
    assert not [m for m in messages if "non-leaf" in m]
    acc = events(tmp_path)
    written = [e.value for e in acc.Scalars("activations/conv1/grad_rms")]
    assert written and all(v > 0 for v in written)


def test_gradients_depth_ratio_vanishing_exploding_and_healthy():
    healthy = [("c1", 2e-3), ("c2", 1e-3), ("c3", 3e-3), ("fc", 5e-3)]
    assert gradient_findings(healthy, 2e-3, {}, stalled=False) == []
    vanishing = [("c1", 1e-10), ("c2", 1e-8), ("c3", 1e-6), ("c4", 1e-4), ("fc", 1e-2)]
    assert depth_ratio(vanishing) == pytest.approx(1e-8)
    ((kind, severity, message, figures),) = gradient_findings(vanishing, None, {"sig": 0.9}, True)
    assert (kind, severity) == ("vanishing_gradients", "problem")
    assert "`c1` 1.0e-10 vs `fc` 1.0e-02" in message and "`sig` 90%" in message
    assert figures["saturation/sig"] == 0.9
    assert "instead of Sigmoid/Tanh" in message
    # the same profile while the loss keeps falling: true, worth knowing, not a problem
    ((_, severity, message, _),) = gradient_findings(vanishing, None, {}, stalled=False)
    assert severity == "note"
    assert "Sigmoid" not in message and "kaiming" in message  # no such layer to swap
    grown = [(name, 1000 * v) for name, v in healthy]
    ((kind, severity, message, _),) = gradient_findings(grown, 2e-3, {}, stalled=False)
    assert kind == "exploding_gradients" and severity == "problem" and "grew" in message


def test_gradients_steep_ratio_is_an_explosion_only_where_the_first_layers_are_large():
    steep = [("c1", 5e-1), ("c2", 1e-2), ("c3", 1e-4), ("fc", 1e-5)]
    assert [k for k, *_ in gradient_findings(steep, 2e-3, {}, stalled=True)] == [
        "exploding_gradients"
    ]
    # setups hunt 18: a converged two-head model, one head's loss at 0: every gradient tiny
    converged = [("c1", 8e-6), ("c2", 1e-6), ("head1", 1e-7), ("head2", 1e-9)]
    assert gradient_findings(converged, 2e-3, {}, stalled=False) == []
    # hunt 24: timm darknet17 at step 3 (a healthy run, 93% val): each residual branch's
    # last norm starts at zero, so its convs fill the last third at ~2e-6 (2.3e3x by
    # thirds) while the stem and the head read 5.8e-2 and 3.9e-2
    branches = [(f"s{i}.b{j}", v) for i, v in enumerate((1e-5, 7e-6, 4e-6, 2.5e-6, 1.5e-6))
                for j in (1, 2)]  # fmt: skip
    darknet = [("stem", 5.8e-2), ("s0.down", 1.2e-2), *branches[:2], ("s1.down", 6.4e-3),
               *branches[2:], ("s4.down", 1.0e-3), ("head.fc", 3.9e-2)]  # fmt: skip
    assert depth_ratio(darknet) > 1e3
    assert gradient_findings(darknet, None, {}, stalled=None) == []
    # hunt 26: a healthy timm EfficientViT-B0 at step 60 (86% val, loss falling): the stem
    # flat at 0.13 from step 0, the attention aggregation convs at 3e-5 .. 1e-4 and the head
    # at 4e-3: steep by thirds and alone, and true, but learning goes on: a note
    vit = [("stem", 0.13), ("s1", 0.1), ("s2", 0.05), ("s3", 0.02), ("s3.b", 0.01),
           ("s3.aggreg", 1e-4), ("s4.aggreg", 5e-5), ("s4.proj", 3e-5), ("head", 4e-3)]  # fmt: skip
    assert depth_ratio(vit) > 1e3
    ((kind, severity, _, _),) = gradient_findings(vit, 0.02, {}, stalled=False)
    assert (kind, severity) == ("exploding_gradients", "note")
    ((kind, severity, _, _),) = gradient_findings(vit, 0.02, {}, stalled=True)
    assert (kind, severity) == ("exploding_gradients", "problem")  # where learning stalls


def test_gradients_saturation_alone_is_its_own_kind():
    found = gradient_findings([("a", 1e-3)] * 3, None, {"sig": 0.8, "tanh": 0.2}, True)
    assert [(k, s) for k, s, *_ in found] == [("saturated_activations", "problem")]
    assert "`tanh`" not in found[0][2]


def test_review_vanishing_gradients_with_dying_units_is_the_dead_units_finding():
    # a ReLU net whose loss was scaled 1000x: 69-94% of three layers dead at step 10, the
    # first layers at 1e-4 of the last ones' gradient: "use ReLU instead of Sigmoid/Tanh"
    vanishing = [("c1", 1e-8), ("c2", 1e-6), ("fc", 1e-2)]
    losses = [(s, 2300.0 + s) for s in range(1, 11)]

    def kinds(first, now):
        diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
        review(diagnosis, 5, losses[:5], {"relu": figures(dead=first)}, {"relu": "rectifier"},
               [("c1", 1e-3), ("c2", 1e-3), ("fc", 1e-3)])  # fmt: skip
        later = review(diagnosis, 10, losses[5:], {"relu": figures(dead=now)},
                       {"relu": "rectifier"}, vanishing)  # fmt: skip
        return [v.kind for v in later]

    assert kinds(0.0, 0.875) == ["dead_units"]  # 7 of 8 units died since the last log
    assert kinds(0.875, 0.875) == ["vanishing_gradients"]  # no die-off at this log


def test_review_vanishing_gradients_not_told_behind_frozen_first_layers():
    # hunt 18: a timm resnet18d frozen up to layer4 by mistake: "the first layers get 4.3e-4
    # of the last layers' gradient (`layer4.0.conv1` vs `fc`)", warned before frozen_layers
    profile = [("layer4.0.conv1", 1e-8), ("layer4.0.conv2", 1e-7), ("fc", 1e-2)]
    losses = [(s, 2.3) for s in range(1, 11)]

    def kinds(frozen_head):
        diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
        for s, value in losses:
            diagnosis.loss.add(s, torch.tensor(value))
        said = diagnosis.review(10, 0, {}, {}, profile, list, frozen_head=frozen_head)
        return [v.kind for v in said]

    assert "vanishing_gradients" in kinds(None)
    assert "vanishing_gradients" not in kinds("conv1")


def test_review_vanishing_gradients_told_past_a_layer_one_step_left_out():
    # hunt 53: a deep sigmoid net whose penultimate conv was skipped on alternate steps
    # (its `.grad` None, read as 0): the zero was taken for a `.detach()` cut and the
    # vanishing gradients before it were never told; a cut has every layer before it at 0
    losses = [(s, 2.3) for s in range(1, 11)]

    def kinds(profile):
        diagnosis = TrainingDiagnosis(0.25, 16, 0.025)
        for s, value in losses:
            diagnosis.loss.add(s, torch.tensor(value))
        return [v.kind for v in diagnosis.review(10, 0, {}, {}, profile, list)], diagnosis.cut

    skipped = [("c1", 1e-8), ("c2", 1e-7), ("c3", 0.0), ("fc", 1e-2)]
    assert kinds(skipped) == (["vanishing_gradients"], None)
    cut = [("c1", 0.0), ("c2", 0.0), ("c3", 1e-7), ("fc", 1e-2)]
    assert kinds(cut)[1] == ("c2", "c3") and "vanishing_gradients" not in kinds(cut)[0]


class ZeroInitLoRA(nn.Module):
    """PEFT's ``weight + B @ A``: ``A`` random, ``B`` zero, so the adapter starts as nothing."""

    def __init__(self, weight: torch.Tensor, rank: int = 4) -> None:
        super().__init__()
        self.shape, fan_in = weight.shape, weight[0].numel()
        self.A = nn.Parameter(torch.randn(rank, fan_in) / fan_in**0.5)
        self.B = nn.Parameter(torch.zeros(weight.shape[0], rank))

    def forward(self, weight):
        return weight + (self.B @ self.A).view(self.shape)


class Adapted(L.LightningModule):
    """A briefly trained base, frozen, with zero-initialised LoRA on both convs and fc1."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 16, 32), nn.ReLU(), nn.Linear(32, 4),
        )  # fmt: skip
        opt = torch.optim.SGD(self.net.parameters(), lr=0.05, momentum=0.9)
        for i in range(0, len(x), 32):
            opt.zero_grad()
            F.cross_entropy(self.net(x[i : i + 32]), y[i : i + 32]).backward()
            opt.step()
        for layer in (self.net[0], self.net[3], self.net[7]):
            nn.utils.parametrize.register_parametrization(
                layer, "weight", ZeroInitLoRA(layer.weight)
            )
            layer.parametrizations.weight.original.requires_grad_(False)
            layer.bias.requires_grad_(False)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        trained = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.SGD(trained, lr=0.05, momentum=0.9)


def test_gradients_lora_initialised_at_zero_is_no_cut_and_no_vanishing(tmp_path):
    # setups hunt 49: PEFT's LoRA (B = 0) gets exactly 0 on A before the first update, and a
    # small gradient while B is small: read from A alone, "No gradient reaches `net.7` ...
    # they do not learn" and a vanishing-gradients problem, while every adapter learnt
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (256,), generator=g)
    x = torch.randn(256, 1, 16, 16, generator=g) * 0.3
    x[torch.arange(256), 0, 4 * y, 4 * y] += 3.0
    torch.manual_seed(0)
    model = Adapted(x, y)
    data = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    trainer, _, _ = fit(tmp_path, [ActivationMonitor()], model=model, data=(data, None),
                        max_epochs=2, limit_train_batches=None, limit_val_batches=0)  # fmt: skip
    findings = findings_of(trainer)
    assert findings and not problems(findings)  # the dead units it finds: notes
    assert not [f for f in findings if "No gradient reaches" in f.message]


def test_gradients_no_cut_is_told_from_gradients_read_before_the_first_update():
    # a factor initialised at 0 (LoRA's B, a zero residual gate) holds what feeds it at
    # exactly 0 until the first update: a wrapper-module LoRA's `down` read as cut off
    losses, profile = [(s, 1.3) for s in range(1, 9)], [("down", 0.0), ("up", 1e-2)]
    for before, cut in ((True, None), (False, ("down", "up"))):
        diagnosis = TrainingDiagnosis(0.25, 16, 0.0)
        review(diagnosis, 8, losses, {"relu": figures(dead=0.5)}, {"relu": "rectifier"}, profile,
               before_update=before)  # fmt: skip
        assert diagnosis.cut == cut


class Gated(nn.Module):
    """ReZero: ``x + alpha * branch(x)`` with ``alpha`` 0 at the start."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv_a, self.conv_b = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x + self.alpha * self.conv_b(F.relu(self.conv_a(x)))


class DetachedGates(L.LightningModule):
    """A zero-gated residual net whose stem and first block a ``.detach()`` cuts off."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.b1, self.b2, self.b3 = nn.Conv2d(1, 16, 3, padding=1), *map(Gated, [16] * 3)
        self.head = nn.Linear(16 * 16, 4)

    def forward(self, x):
        x = self.b1(F.max_pool2d(F.relu(self.stem(x)), 2)).detach()
        return self.head(self.b3(F.max_pool2d(self.b2(x), 2)).flatten(1))

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), 1e-3)


def test_gradients_layers_cut_off_read_as_zero_and_no_vanishing_told(tmp_path):
    # hunt 52: layers a `.detach()` cuts off have no `.grad` and fell out of the depth
    # profile: the gated branches' small gradients after them were told as vanishing, with
    # Sigmoid/Tanh and initialisation remedies
    torch.manual_seed(0)
    monitor = ActivationMonitor(every_n_steps=2)
    trainer, _, _ = fit(tmp_path, [monitor], model=DetachedGates(), max_epochs=3,
                        limit_val_batches=0)  # fmt: skip
    assert not [f for f in findings_of(trainer) if f.kind == "vanishing_gradients"]
    rms = [e.value for e in events(tmp_path / "tb").Scalars("activations/stem/grad_rms")]
    assert rms and set(rms) == {0.0}  # read, at exactly 0
