"""The BatchNorm train/eval check on multi-hot targets: the labels' AUC in both modes."""

from dataclasses import replace

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import checks_of, findings_of
from lightning_cnnviz.overfitting import bn_levels
from lightning_cnnviz.overfitting.bn_ranks import RANK_PART, rank_figures
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.passes import plan
from tests.overfitting.runs import fit_monitor


def labelled(step, eval_rank, bn_rank, share=None, momentum=0.01, loss=0.54):
    """A multi-label evaluation given the same labels for every image (hunt 110's figures)."""
    return Evaluation(step, step // 32, returned_loss=loss, run_share=share or step / 192,
                      prior_pred=1.0, prior_truth=0.2, prior_major=0.2, prior_answer=0.0,
                      prior_task="labels", prior_rank=eval_rank, prior_rank_bn=bn_rank,
                      prior_rank_at_bn=eval_rank, bn_size=96.0, probe_size=128.0,
                      bn_momentum=momentum)  # fmt: skip


def test_bn_ranks_figures_pair_the_modes_on_the_pass_images():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(64, 4, generator=g) < 0.3
    seeing = truth.float() + 0.5 * torch.randn(64, 4, generator=g)  # batch statistics rank
    alike = torch.zeros(64, 4)  # eval mode: the same outputs for every image
    f = rank_figures(alike, seeing[:32], truth)  # the pass saw the first 32 images
    assert f["prior_rank_at_bn"] == 0.5 and f["prior_rank_bn"] > 0.8
    e = Evaluation(0, 0, prior_task="labels", prior_rank=0.5, **f)
    assert bn_levels.parted(e) and bn_levels.gap(e) == f["prior_rank_bn"] - 0.5
    # within the bar, no pass, or no multi-hot targets: not parted, or unread
    assert bn_levels.parted(replace(e, prior_rank_bn=0.5 + RANK_PART)) is False
    assert bn_levels.parted(replace(e, prior_rank_bn=None)) is None
    assert bn_levels.no_training_norms(replace(e, prior_rank_bn=None, prior_rank_at_bn=None))
    assert bn_levels.parted(replace(e, prior_task="pixels")) is None
    assert rank_figures(alike, torch.full((32, 4), float("nan")), truth) == {}


def test_bn_ranks_pass_planned_at_every_multi_label_evaluation():
    history = [labelled(32, 0.7, 0.72), labelled(64, 0.72, 0.73)]
    p = plan(history, train_acc=None, eval_acc=None, probe_size=96, batch_norm=True, ranked=True)
    assert p.batch_stats and "multi-hot" in p.why["batch_stats"]
    assert not plan(history, train_acc=None, eval_acc=None, probe_size=96, batch_norm=False,
                    ranked=True).batch_stats  # fmt: skip
    # class labels without val logits: unchanged
    assert not plan([], train_acc=0.9, eval_acc=None, probe_size=96, batch_norm=True).batch_stats


def test_bn_ranks_mismatch_told_instead_of_one_answer():
    # hunt 110: eval mode gave every image the same labels (AUC 0.56), batch statistics
    # ranked them (0.78); told `not_learning` "how common each answer is"
    detector = Detector()
    kinds = []
    rows = ((64, 0.55, 0.74), (96, 0.56, 0.77), (128, 0.56, 0.78), (160, 0.57, 0.78))
    for step, ev_rank, bn_rank in rows:
        changes = detector.update(labelled(step, ev_rank, bn_rank))
        kinds += [(c.change, c.verdict.kind) for c in changes]
    assert kinds[0] == ("new", "bn_mismatch") and {k for _, k in kinds} == {"bn_mismatch"}
    assert ("worse", "bn_mismatch") in kinds  # the AUC gap widened 0.19 -> 0.21
    (found,) = detector.active
    assert (found.severity, found.since.step) == ("problem", 64)
    text = headline(found)
    assert "the labels' mean AUC on the val probe 0.56 in eval mode vs 0.78 with batch" in text
    assert "In eval mode it gives the same labels to 100.0% of the val probe's images" in text
    assert "accuracy" not in text and "n/a" not in text
    assert detector.checks_ran()["BatchNorm train/eval"]
    # the same evaluations without the pass (no BatchNorm): the label prior, as before
    blind = Detector()
    for step in (64, 96, 128, 160):
        e = replace(labelled(step, 0.56, None), prior_rank_at_bn=None)
        kinds = [c.verdict.kind for c in blind.update(e)]
    assert [v.kind for v in blind.active] == ["not_learning"]
    assert not blind.checks_ran()["BatchNorm train/eval"]


def test_bn_ranks_nonfinite_statistics_told_in_the_labels_words():
    e = replace(labelled(96, 0.5, None), prior_rank_at_bn=None, bn_nonfinite=("net.1",))
    found = bn_levels.bn_mismatch([e])
    assert found.figures["nonfinite"] == ["net.1"]
    text = headline(found)
    assert "hold NaN/Inf since epoch 3 (step 96) (`net.1`)" in text
    assert "the labels' mean AUC on the val probe n/a in eval mode" in text


def test_bn_ranks_gap_of_noise_or_closing_early_told_no_problem():
    # healthy BatchNorm nets at momentum 0.1: a few hundredths apart, or a first lag closing
    def healthy(i, ev_rank, bn_rank):  # answers that differ between images
        e = labelled(32 * (i + 1), ev_rank, bn_rank, momentum=0.1, loss=0.5 / (i + 1))
        return replace(e, prior_pred=0.4)

    detector = Detector()
    for i, (ev_rank, bn_rank) in enumerate(((0.70, 0.75), (0.80, 0.83), (0.86, 0.87))):
        assert detector.update(healthy(i, ev_rank, bn_rank)) == []
    assert detector.checks_ran()["BatchNorm train/eval"]
    early = Detector()
    told = []
    for i, (ev_rank, bn_rank) in enumerate(((0.55, 0.72), (0.70, 0.84), (0.83, 0.86))):
        told += [c.verdict for c in early.update(healthy(i, ev_rank, bn_rank))]
    assert told  # the first lag, twice past the bar in the run's first half: a note
    assert all(v.severity == "note" for v in told)
    assert not [v for v in early.active if v.severity == "problem"]


SHIFT = 30.0  # the lagging run's inputs: far from 0, as unnormalised pixels


def shapes(n, seed, offset=0.0):
    """Multi-hot images: up to three shapes, one a channel, each present with its own share."""
    g = torch.Generator().manual_seed(seed)
    x = offset + 0.3 * torch.randn(n, 3, 12, 12, generator=g)
    y = (torch.rand(n, 3, generator=g) < torch.tensor([0.4, 0.3, 0.2])).float()
    for i in range(n):
        for k in range(3):
            if y[i, k]:
                r, c = torch.randint(0, 8, (2,), generator=g).tolist()
                x[i, k, r : r + 4, c : c + 4] += 1.5
    return TensorDataset(x, y)


class Tagger(L.LightningModule):
    """A small BatchNorm CNN under BCE on multi-hot targets, BatchNorm at ``momentum``.

    Hard activations, as MobileNetV3's: on running statistics far from the batches' they
    saturate, and every image gets the same outputs.
    """

    def __init__(self, momentum: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16, momentum=momentum), nn.Hardtanh(),
            nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1),
            nn.BatchNorm2d(16, momentum=momentum), nn.Hardtanh(), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(16, 3),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        loss = F.binary_cross_entropy_with_logits(self(batch[0]), batch[1])
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", F.binary_cross_entropy_with_logits(self(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def fit_tagger(tmp_path, momentum, offset):
    torch.manual_seed(0)
    train = DataLoader(shapes(512, 0, offset), batch_size=32, shuffle=True)
    val = DataLoader(shapes(128, 1, offset), batch_size=128)
    trainer, _ = fit_monitor(tmp_path, Tagger(momentum), train, val, epochs=6)
    return trainer


def test_bn_ranks_lagging_statistics_told_in_a_run_and_a_healthy_net_not(tmp_path):
    # inputs far from 0 (unnormalised): at momentum 0.01 the running means stay far below
    # the batches' for the whole run, and eval mode scores every image alike, as hunt 110's
    # MobileNetV3 (told `not_learning` "how common each answer is" before)
    lag = fit_tagger(tmp_path / "lag", momentum=0.01, offset=SHIFT)
    kinds = {f.kind: f for f in findings_of(lag)}
    assert "bn_mismatch" in kinds and "not_learning" not in kinds, kinds
    assert kinds["bn_mismatch"].severity == "problem"
    assert "the labels' mean AUC on the val probe" in kinds["bn_mismatch"].message
    assert any(c.name == "BatchNorm train/eval" and c.ran for c in checks_of(lag).values())
    healthy = fit_tagger(tmp_path / "healthy", momentum=0.1, offset=0.0)
    told = [f for f in findings_of(healthy) if f.severity == "problem" or f.kind == "bn_mismatch"]
    assert not told, told
    assert any(c.name == "BatchNorm train/eval" and c.ran for c in checks_of(healthy).values())


def test_bn_ranks_a_lag_that_shifts_the_threshold_is_told_not_the_prior():
    # hunt 110: a lag of inputs offset by 10 left eval mode ranking the labels (AUC 0.91
    # against 0.985) but giving every image the same labels: told `not_learning`
    def shifted(step, bn_share, bn_rank=0.985, eval_rank=0.91):
        return replace(labelled(step, eval_rank, bn_rank), prior_pred_at_bn=1.0,
                       prior_pred_bn=bn_share)  # fmt: skip

    detector = Detector()
    for step in (64, 96, 128, 160):
        detector.update(shifted(step, 0.35))
    (found,) = detector.active
    assert found.kind == "bn_mismatch" and found.since.step == 64
    assert "same labels to 100.0% of the val probe's images (35.0% with batch statistics)" in (
        headline(found)
    )
    # batch statistics that answer alike too, or a model that ranks nothing in either mode
    # (a blind model whose batch statistics only spread noise): the label prior, as before
    for bn_share, bn_rank, eval_rank in ((0.99, 0.985, 0.91), (0.35, 0.55, 0.52)):
        blind = Detector()
        for step in (64, 96, 128, 160):
            blind.update(shifted(step, bn_share, bn_rank, eval_rank))
        assert [v.kind for v in blind.active] == ["not_learning"], (bn_share, bn_rank)
    # hunt 113: batch statistics ranking a little worse (0.60-0.76 against 0.85-0.89) but
    # right more often (92-97% against 87%): the lag
    lag = Detector()
    for step in (64, 96, 128, 160):
        lag.update(replace(shifted(step, 0.6, 0.65, 0.88), label_acc_bn=0.94,
                           label_acc_at_bn=0.87))  # fmt: skip
    assert [v.kind for v in lag.active] == ["bn_mismatch"]


def test_bn_ranks_a_lag_that_moves_every_score_past_the_threshold_is_no_overfitting():
    # hunt 112: a multi-label resnet18 at BatchNorm momentum 5e-4, eval-mode BCE 4.3-13
    # against 0.001-0.013 on batch statistics, the AUC 0.92-1.0 in both modes: told
    # overfitting, "stop at epoch 0"
    detector, kinds = Detector(), []
    for i, val_loss in enumerate((4.35, 11.45, 9.8, 13.2)):
        e = replace(labelled(40 * (i + 1), 0.93, 1.0, loss=0.05 / (i + 1)), prior_pred=0.4,
                    prior_rank_at_bn=0.93, label_acc_at_bn=0.49, label_acc_bn=1.0,
                    val_loss=val_loss, train_loss=0.05 / (i + 1))  # fmt: skip
        kinds += [c.verdict.kind for c in detector.update(e)]
    assert "overfitting" not in kinds and [v.kind for v in detector.active] == ["bn_mismatch"]
    assert "(49.0% vs 100.0% of its (image, label) answers right)" in headline(detector.active[0])
