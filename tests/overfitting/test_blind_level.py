"""Real-valued targets: what a blind model scores, and predictions that score no better."""

from dataclasses import replace

import torch
from torch import nn
from torch.utils.data import DataLoader

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting import blind_level
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from tests.overfitting.runs import fit_monitor
from tests.overfitting.test_flat_loss import Offsets, offsets


def ev(step, own, blind=0.393, share=None, **row):
    row = {"val_loss": own, "probe_l1_val": 0.5, "blind_l1": 0.5, **row}
    return Evaluation(step, step // 50, probe_mse_val=own, blind_mse=blind,
                      run_share=share or step / 300, **row)  # fmt: skip


def test_blind_level_predictions_at_the_targets_mean_are_not_learning():
    # hunt 86: a regression net that never saw its images sat at a val MSE of 0.394-0.398
    # for 300 steps (the targets' variance 0.393), its weights moving: nothing told
    found = blind_level.at_mean([ev(100, 0.398), ev(150, 0.395)])
    assert (found.kind, found.severity, found.figures["evaluations"]) == ("not_learning",
                                                                          "problem", 2)  # fmt: skip
    said = headline(found)
    assert "score an MSE of 0.395, as predicting the targets' mean for every image would" in said
    assert blind_level.at_mean([ev(100, 0.398), ev(150, 0.30)]) is None  # learning
    assert blind_level.at_mean([ev(100, 0.6), ev(150, 0.55)]) is None  # still falling
    slow = [ev(100, 0.44), ev(150, 0.42), ev(200, 0.40)]  # 4.5% and 4.8% a validation
    assert blind_level.at_mean(slow) is None
    assert blind_level.at_mean([ev(20, 0.4), ev(30, 0.4)]) is None  # the first steps
    assert blind_level.at_mean([ev(50, 0.4), ev(60, 0.4)]).severity == "note"  # young
    detector = Detector(patience=2)  # better than the mean later: gone
    changes = [c for e in (ev(100, 0.398), ev(150, 0.395), ev(200, 0.2))
               for c in detector.update(e)]  # fmt: skip
    assert [(c.change, c.verdict.kind) for c in changes] == [("new", "not_learning"),
                                                             ("gone", "not_learning")]  # fmt: skip
    # hunt 101: a U-Net 1.5x worse than the mean was told "as predicting the targets' mean
    # would ... it has learnt their average"; withdrawn, "Accuracy was at chance ... (n/a)"
    worse = headline(blind_level.at_mean([ev(100, 0.6), ev(150, 0.59)]))
    assert "0.59, above the 0.393 that predicting the targets' mean" in worse
    assert "learnt not even their average" in worse
    gone = changes[-1].verdict
    said = headline(gone)
    assert said.startswith("The val probe's predictions score better than the targets' mean")
    assert "an MSE of 0.2 against the mean's 0.393" in said and "ccuracy" not in said
    own = blind_level.blind_losses(torch.zeros(4, 1), torch.tensor([[0.0], [1], [2], [3]]))
    assert own["probe_mse_val"] == 3.5 and own["blind_mse"] == 1.25


def test_blind_level_judges_only_outputs_in_the_targets_units_and_both_errors():
    # hunt 87: logits under BCE against targets in [0, 1] (MSE 2.447 against the mean's
    # 0.101, val BCE 0.2) and targets standardised in `training_step` were told "as
    # predicting the targets' mean"; an L1 fit of skewed targets (its L1 0.587 under the
    # median's 0.632, its MSE above the mean's) too
    logits = ev(100, 2.447, blind=0.101, val_loss=0.2)
    assert blind_level.stuck_at_mean(logits) is None
    assert blind_level.stuck_at_mean(ev(100, 2.447, blind=0.101, val_loss=None)) is None
    skewed = ev(100, 0.9, blind=0.85, val_loss=0.587, probe_l1_val=0.587, blind_l1=0.632)
    assert blind_level.stuck_at_mean(skewed) is False
    assert blind_level.stuck_at_mean(ev(100, 0.398)) is True
    # a loss scaled (hunt 101: heatmap MSE x 100, val 1.19-1.40 against the mean's 0.94 x
    # 100, untold) is read where the outputs sit where the targets do, not logits
    scaled = ev(100, 0.0121, blind=0.0093, val_loss=1.21, probe_l1_val=0.05, blind_l1=0.04)
    assert blind_level.stuck_at_mean(scaled) is None
    assert blind_level.stuck_at_mean(replace(scaled, probe_in_units=1.0)) is True
    fitted = [replace(scaled, step=s, probe_in_units=1.0, returned_loss=0.5) for s in (300, 350)]
    assert blind_level.at_mean(fitted) is None  # its training images fitted, in its units
    stays = [replace(e, returned_loss=1.2) for e in fitted]
    assert blind_level.at_mean(stays).severity == "problem"
    # logits under BCE whose loss (0.52) sits within 2x of their MSE (0.92) by chance, its
    # learning told "not even the targets' mean" (hunt 102): the outputs say their units
    logits = ev(100, 0.92, blind=0.074, val_loss=0.52, probe_l1_val=0.8, blind_l1=0.15)
    assert blind_level.stuck_at_mean(replace(logits, probe_in_units=0.0)) is None
    targets = torch.rand(8, 1, 4, 4) * 0.3
    near = blind_losses_units(targets.mean() + 0.01 * torch.randn(8, 1, 4, 4), targets)
    assert near == 1.0 and blind_losses_units(torch.full((8, 1, 4, 4), -4.0), targets) == 0.0
    # the training images fitted while validation scores as the mean: noise learnt (hunt 87)
    noise = [ev(300, 1.2, blind=1.135, returned_loss=0.5), ev(350, 1.256, blind=1.135,
                                                             returned_loss=0.45)]  # fmt: skip
    assert blind_level.at_mean(noise) is None
    stuck = [ev(300, 1.2, blind=1.135, returned_loss=1.1), ev(350, 1.19, blind=1.135,
                                                              returned_loss=1.1)]  # fmt: skip
    assert blind_level.at_mean(stuck).severity == "problem"
    # since its plateau, not since the first evaluation at the mean's level (hunt 102: a
    # heatmap net 5x the mean's MSE and falling fast at step 32, flat from step 64)
    falling = [ev(100, 2.0), ev(150, 0.42), ev(200, 0.41), ev(250, 0.405)]
    assert blind_level.at_mean(falling).since.step == 150
    # a streak after a learning start (not from the start): told, and in words
    found = blind_level.at_mean([ev(50, 0.2), ev(100, 0.398), ev(150, 0.395)])
    assert found.figures["from_start"] is False and "predicting the targets' mean" in (
        headline(found)
    )


def blind_losses_units(outputs, targets):
    return blind_level.blind_losses(outputs, targets)["probe_in_units"]


class Blind(nn.Module):
    """A regression net whose images are multiplied by 0 on the way in."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 2))

    def forward(self, x):
        return self.net(x * 0)


def test_blind_level_told_in_a_run_of_a_model_blind_to_its_images(tmp_path):
    torch.manual_seed(0)
    train = DataLoader(offsets(512, 0), batch_size=32, shuffle=True)
    val = DataLoader(offsets(128, 1), batch_size=64)
    trainer, _ = fit_monitor(tmp_path, Offsets(Blind(), 0.05), train, val, epochs=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "not_learning"]
    assert found.severity == "problem" and found.figures["at_mean"]
    assert found.figures["own_mse"] >= blind_level.AT_MEAN * found.figures["blind_mse"]
