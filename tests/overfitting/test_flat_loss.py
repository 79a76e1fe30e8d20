"""Not learning read from the loss alone: the rule on series, and runs without class labels."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting import blind_level, flat_loss
from lightning_cnnviz.overfitting.evaluation import Evaluation
from tests.overfitting.runs import Net, fit_monitor


def evaluations(losses, update=3e-8, lr=1e-6, start=0.39, every=50, steps=300, vals=None, **row):
    vals = vals or [0.403] * len(losses)
    return [
        Evaluation(every * (i + 1), i, start_loss=start, returned_loss=loss, val_loss=val,
                   run_share=every * (i + 1) / steps, update_ratio=update, lr=lr, **row)
        for i, (loss, val) in enumerate(zip(losses, vals, strict=True))
    ]  # fmt: skip


def test_flat_loss_a_regression_at_a_tiny_rate_is_not_learning():
    # hunt 78: MSE at SGD 1e-6, its means 0.384-0.391 against 0.39 over the first steps
    evs = evaluations([0.391, 0.384, 0.388])
    assert flat_loss.not_moving(evs[:1]) is None  # one evaluation: waits
    verdict = flat_loss.not_moving(evs[:2])
    assert verdict.kind == "not_learning" and verdict.severity == "problem"
    assert verdict.figures["loss_only"] and abs(verdict.figures["fell"]) < flat_loss.FLAT
    assert (verdict.since.step, verdict.detected.step) == (50, 100)
    # hunt 79: a BatchNorm autoencoder's val loss rose as its running statistics settled
    risen = evaluations([0.39, 0.39], vals=[0.143, 0.170], bn_momentum=0.1)
    assert flat_loss.not_moving(risen) is not None
    assert flat_loss.not_moving(evaluations([0.39, 0.39], vals=[0.143, 0.170])) is None
    assert flat_loss.not_moving(evaluations([0.39, 0.39], vals=[0.170, 0.160])) is None


def test_flat_loss_quiet_for_a_loss_far_under_what_a_blind_model_scores():
    # hunt 79: a converged autoencoder fine-tuned at Adam 1e-5, its MSE flat at 0.0078
    # against 0.067 for the mean image, was told "not learning ... try it 10x higher"
    blind = blind_level.blind_losses(torch.zeros(4, 2), torch.tensor([[0.0, 1], [1, 0]] * 2))
    assert blind == {"blind_mse": 0.25, "blind_l1": 0.5, "probe_mse_val": 0.5, "probe_l1_val": 0.5,
                     "probe_in_units": 0.0}  # fmt: skip
    converged = evaluations([0.0078, 0.0078], start=0.0081, vals=[0.0076, 0.0076],
                            blind_mse=0.067, blind_l1=0.15)  # fmt: skip
    assert blind_level.learnt(converged[-1]) and flat_loss.not_moving(converged) is None
    # stuck at the blind model's level (the mean image): not learnt, told
    stuck = evaluations([0.066, 0.066], start=0.066, vals=[0.067, 0.067], blind_mse=0.067,
                        blind_l1=0.15)  # fmt: skip
    assert flat_loss.not_moving(stuck).severity == "problem"
    assert blind_level.blind_losses(torch.zeros(4, 3), torch.zeros(4, 2)) is None  # no match


def test_flat_loss_waits_where_it_cannot_tell_a_stuck_run():
    # the weights moving normally: converged, or a target it cannot fit
    assert flat_loss.not_moving(evaluations([0.39, 0.39], update=1e-3)) is None
    # a slow but steady fall between evaluations, or from the first steps
    assert flat_loss.not_moving(evaluations([0.39, 0.37])) is None
    assert flat_loss.not_moving(evaluations([0.30, 0.30])) is None
    # class labels read: the accuracy against chance judges (``levels.not_learning``)
    assert flat_loss.not_moving(evaluations([0.39, 0.39], probe_acc_val=0.1)) is None
    # the run's first steps
    assert flat_loss.not_moving(evaluations([0.39, 0.39], every=15)) is None
    # tiny updates with no setting to explain them, early in the run: a note for now
    early = flat_loss.not_moving(evaluations([0.39, 0.39], lr=0.05, steps=1000))
    assert early.severity == "note" and early.figures["early"]
    late = flat_loss.not_moving(evaluations([0.39] * 6, lr=0.05, steps=1000))
    assert late.severity == "problem"


class Offsets(Net):
    """``Net`` regressing two numbers with MSE (no class labels), logging the loss only."""

    def _step(self, batch, split):
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log(f"{split}/loss", loss, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def offsets(n, seed):
    """Images of a bright square whose (row, col) offset is the target."""
    g = torch.Generator().manual_seed(seed)
    at = torch.randint(0, 12, (n, 2), generator=g)
    x = torch.randn(n, 1, 16, 16, generator=g) * 0.1
    for i, (r, c) in enumerate(at.tolist()):
        x[i, 0, r : r + 4, c : c + 4] += 1.0
    return TensorDataset(x, at.float() / 6 - 1)


def fit_offsets(tmp_path, lr):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(8 * 64, 32), nn.ReLU(), nn.Linear(32, 2),
    )  # fmt: skip
    train = DataLoader(offsets(512, 0), batch_size=32, shuffle=True)
    val = DataLoader(offsets(128, 1), batch_size=64)
    return fit_monitor(tmp_path, Offsets(net, lr), train, val, epochs=6)


def test_flat_loss_told_on_a_regression_run_and_quiet_on_a_learning_one(tmp_path):
    trainer, said = fit_offsets(tmp_path / "stuck", lr=1e-6)
    found = {f.kind: f for f in findings_of(trainer)}
    finding = found["not_learning"]
    assert finding.severity == "problem" and finding.step <= 3 * 16 + 1
    assert "the updates too small to bring it down" in finding.message
    assert "The learning rate has been 1e-06 at most" in finding.message
    assert "chance" not in finding.message.split(".")[0]  # no class labels: no chance level
    assert any("Not learning since" in m for m in said)
    trainer, _ = fit_offsets(tmp_path / "learns", lr=0.05)
    assert not [f for f in findings_of(trainer) if f.severity == "problem"]
