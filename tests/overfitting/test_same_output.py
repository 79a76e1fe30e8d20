"""One output for every image, whatever its units: a collapse told, healthy spreads left alone."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting import same_output
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.remedies import remedies
from tests.overfitting.runs import Net, fit_monitor


def ev(step, loss, spread, target=0.7, share=None, **row):
    if target is not None:  # a spread as values alike to its share of the size
        row = {"probe_spread_abs": spread, "target_spread_abs": target, **row}
    return Evaluation(step, step // 50, returned_loss=loss, probe_spread_val=spread,
                      target_spread_val=target, run_share=share or step / 300, **row)  # fmt: skip


def test_same_output_spread_reads_outputs_against_their_targets_in_any_units():
    targets = torch.rand(16, 1, 6, 6)
    logits = torch.full((16, 1, 6, 6), -1.9)  # a VAE's reconstruction logits, all alike
    f = same_output.output_spread(logits + 1e-6 * torch.randn(16, 1, 6, 6), targets)
    assert f["probe_spread_val"] < 1e-5 and 0.4 < f["target_spread_val"] < 0.8
    seen = same_output.output_spread(4 * torch.logit(targets.clamp(0.05, 0.95)), targets)
    assert seen["probe_spread_val"] > same_output.ALIKE * seen["target_spread_val"]
    rows = F.normalize(torch.randn(32, 16), dim=1)
    assert same_output.output_spread(rows, torch.arange(32))["probe_unit_rows"] == 1.0
    assert same_output.output_spread(torch.full((4, 3), float("nan")), None) == {}


def test_same_output_judged_only_where_no_chance_level_reads_the_outputs():
    assert same_output.alike(ev(100, 72.0, 0.0)) is True  # real-valued targets
    assert same_output.alike(ev(100, 72.0, 0.2)) is False
    assert same_output.alike(ev(100, 72.0, 0.0, target=0.0)) is None  # targets all alike
    # an embedding 16 wide for 4 labels: on the unit sphere, within 0.05 of one point
    row = dict(target=None, classes=16.0, label_classes=4.0, probe_unit_rows=1.0)
    assert same_output.alike(ev(100, 0.3, 0.014, **row)) is True
    assert same_output.alike(ev(100, 0.3, 0.4, **row)) is False
    # a classifier's logits: its chance level judges them (levels.not_learning)
    logits = dict(target=None, classes=4.0, label_classes=4.0, probe_acc_val=0.25)
    assert same_output.alike(ev(100, 2.3, 0.0, **logits)) is None
    # maps beside class labels (a VAE fed (image, label) batches, hunt 102): no accuracy
    assert same_output.alike(ev(100, 72.0, 7e-6, target=None, classes=1.0)) is True
    # unnormalised outputs without targets of their shape: only a constant is one output
    # (hunt 102: a triplet embedding + 50 at 96% 1-NN accuracy read 0.1% of its size)
    loose = dict(row, probe_unit_rows=0.0)
    assert same_output.alike(ev(100, 0.3, 1e-3, **loose)) is False
    assert same_output.alike(ev(100, 0.3, 1e-7, **loose)) is True
    # targets 300 +- 1 (hunt 102): outputs near 300 vary by 0.03% of their size while
    # learning, 0.1 as values against the targets' 1: read as values too
    offset = dict(target=3.3e-3, target_spread_abs=1.0, probe_spread_abs=0.1)
    assert same_output.alike(ev(100, 0.9, 3e-4, **offset)) is False
    assert same_output.alike(ev(100, 0.9, 3e-6, **dict(offset, probe_spread_abs=1e-3))) is True


def test_same_output_told_once_the_loss_stops_falling_and_gone_when_outputs_differ():
    # hunt 101: a VAE at beta 200 (KL 0.000, every reconstruction the same image, val 72.9
    # against the mean image's 71.6): its loss is a summed BCE of logits, which the
    # at-the-mean check cannot read, and nothing was told
    found = same_output.same_output([ev(200, 72.9, 0.0), ev(250, 72.8, 0.0)])
    assert (found.kind, found.severity, found.figures["evaluations"]) == ("not_learning",
                                                                          "problem", 2)  # fmt: skip
    said = headline(found)
    assert "the model gives the same output for every image of the val probe" in said
    assert "by 0 of their size, the targets by 70.0% of theirs" in said
    assert "posterior collapse" in said
    assert any(r.startswith("**Find what pulls the outputs together**") for r in remedies(found))
    assert same_output.same_output([ev(200, 80.0, 0.0), ev(250, 72.8, 0.0)]) is None
    # a slow learner's outputs spread out (hunt 102: targets 300 +- 1, the outputs' spread
    # 0.026 -> 0.035 of the targets' while its val MSE fell 2% a validation)
    slow = [ev(s, 1.0, a * 0.7, val_loss=v)
            for s, a, v in ((200, 0.0026, 0.95), (250, 0.0035, 0.933))]  # fmt: skip
    assert same_output.same_output(slow) is None
    assert same_output.same_output([ev(50, 72.9, 0.0), ev(60, 72.8, 0.0)]).severity == "note"
    # `patience=1`: one evaluation judged (torchvision zoo runs: an IndexError stepped aside)
    assert same_output.same_output([ev(200, 72.9, 0.0)], patience=1).kind == "not_learning"
    detector = Detector(patience=2)
    changes = [c for e in (ev(200, 72.9, 0.0), ev(250, 72.8, 0.0), ev(300, 60.0, 0.3))
               for c in detector.update(e)]  # fmt: skip
    assert [(c.change, c.verdict.kind) for c in changes] == [("new", "not_learning"),
                                                             ("gone", "not_learning")]  # fmt: skip
    gone = headline(changes[-1].verdict)
    assert gone.startswith("The model's outputs differ from image to image again at epoch 6")
    assert "(30.0% of their size; 0.3 as values, the targets 0.7)" in gone


def quadrants(n, seed):
    """A bright square in one of four quadrants: its quadrant is the label."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.randn(n, 1, 16, 16, generator=g) * 0.1
    for i, q in enumerate(y.tolist()):
        r, c = 8 * (q // 2) + 2, 8 * (q % 2) + 2
        x[i, 0, r : r + 4, c : c + 4] += 1.0
    return TensorDataset(x, y)


def triplet(z, y, margin=0.3):
    d = torch.cdist(z, z)
    same = y[:, None] == y[None]
    far = (d * same).max(1).values
    near = (d + 10 * same.float()).min(1).values
    return F.relu(far - near + margin).mean()


class Embedder(Net):
    """A 16-wide embedding on the unit sphere trained by a triplet loss (no accuracy)."""

    def __init__(self, collapsed: bool) -> None:
        net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                            nn.Flatten(), nn.Linear(128, 16))  # fmt: skip
        super().__init__(net, 0.05)
        self.collapsed = collapsed
        self.point = nn.Parameter(torch.randn(16))

    def forward(self, x):
        z = self.net(x)
        if self.collapsed:  # every image drawn to one point (the net still trains)
            z = self.point.expand_as(z) + 0.0 * z
        return F.normalize(z, dim=1)

    def _step(self, batch, split):
        x, y = batch
        loss = triplet(self(x), y)
        self.log(f"{split}/loss", loss, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def test_same_output_told_for_an_embedding_drawn_to_one_point_not_for_one_that_spreads(tmp_path):
    # hunt 101: a triplet-loss embedding at one point (mean distance 0.017, the loss at its
    # margin 0.30 for the whole run) was told nothing
    said = {}
    for collapsed in (True, False):
        torch.manual_seed(0)
        train = DataLoader(quadrants(512, 0), batch_size=32, shuffle=True)
        val = DataLoader(quadrants(128, 1), batch_size=64)
        trainer, _ = fit_monitor(tmp_path / str(collapsed), Embedder(collapsed), train, val,
                                 epochs=6)  # fmt: skip
        said[collapsed] = [f for f in findings_of(trainer) if f.severity == "problem"]
    (found,) = said[True]
    assert found.kind == "not_learning" and found.figures["same_output"]
    assert found.figures["unit_rows"] and found.figures["spread"] < same_output.UNIT_ROWS
    assert said[False] == []


class MeanImage(Net):
    """An autoencoder whose decoder ignores its code: one image for all (a collapsed VAE)."""

    def __init__(self) -> None:
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))
        super().__init__(net, 0.05)
        self.image = nn.Parameter(torch.zeros(1, 1, 16, 16))

    def forward(self, x):
        return torch.sigmoid(self.image + 0.0 * self.net(x))

    def _step(self, batch, split):
        x, _ = batch  # (image, label) batches: the labels unused
        loss = F.binary_cross_entropy(self(x), x.clamp(0, 1))
        self.log(f"{split}/loss", loss, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def test_same_output_told_for_maps_beside_class_labels(tmp_path):
    # hunt 102: a VAE at beta 200 fed (image, label) batches, every reconstruction the same
    # image: its (N, 1, H, W) outputs read no accuracy and no targets, and nothing was told
    torch.manual_seed(0)
    train = DataLoader(quadrants(512, 0), batch_size=32, shuffle=True)
    val = DataLoader(quadrants(128, 1), batch_size=64)
    trainer, _ = fit_monitor(tmp_path, MeanImage(), train, val, epochs=6)
    (found,) = [f for f in findings_of(trainer) if f.severity == "problem"]
    assert found.kind == "not_learning" and found.figures["same_output"]
    assert found.figures["spread"] < same_output.CONSTANT and found.figures["target_spread"] is None
