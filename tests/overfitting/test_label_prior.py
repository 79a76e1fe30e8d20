"""One answer for every pixel or image (the label prior): the figures, the rule, a run."""

from dataclasses import replace

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import checks_of, findings_of
from lightning_cnnviz.core.probe import probe_from_indices
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.label_prior import one_answer, prior_figures
from tests.overfitting.runs import fit_monitor


def test_label_prior_figures_read_class_maps_masks_and_label_sets():
    masks = torch.zeros(4, 3, 3, dtype=torch.long)
    masks[:, 1, 1] = 2
    masks[:, 0, 0] = 255  # an ignore index: left out
    background = torch.zeros(4, 3, 3, 3)
    background[:, 0] = 1.0
    f = prior_figures(background, masks)
    assert (f["prior_pred"], f["prior_truth"], f["prior_answer"]) == (1.0, 0.875, 0.0)
    assert f["prior_major"] == 0.875 and f["prior_task"] == "pixels"
    seen = background.clone()
    seen[:, 2, 1, 1] = 5.0  # the rare class found where it is
    assert prior_figures(seen, masks)["prior_pred"] == 0.875
    # a binary mask (N, 1, H, W) beside one sigmoid output a pixel: probabilities at 0.5
    mask = (torch.arange(16.0).reshape(1, 1, 4, 4) > 11).float().expand(2, 1, 4, 4)
    f = prior_figures(torch.full((2, 1, 4, 4), 0.2), mask)
    assert (f["prior_pred"], f["prior_truth"], f["prior_major"]) == (1.0, 0.75, 0.75)
    # multi-label: every image given no label, though each holds two
    sets = torch.eye(5)[[0, 1, 2, 3]] + torch.eye(5)[[4, 4, 0, 1]]
    f = prior_figures(torch.full((4, 5), -2.0), sets)
    assert (f["prior_pred"], f["prior_truth"], f["prior_answer"], f["prior_task"]) == (
        1.0, 0.0, 0.0, "labels",
    )  # fmt: skip
    assert prior_figures(torch.where(sets > 0, 2.0, -2.0), sets)["prior_pred"] == 0.25
    # one-hot targets are one class an image: the largest score, log-probabilities too
    # (setups hunt 77: `log_softmax` outputs at 100% val read as "no label" for every image)
    onehot = torch.eye(3)[[0, 1, 2, 0]]
    f = prior_figures(torch.log_softmax(5 * onehot, 1), onehot)
    assert (f["prior_task"], f["prior_pred"], f["prior_answer"]) == ("classes", 0.5, 0.0)
    # a (N, 1, H, W) class map beside K outputs, and outputs at half the map's resolution
    maps = torch.zeros(2, 1, 4, 4, dtype=torch.long)
    maps[:, 0, :2, :2] = 1
    maps[1, 0, 2:, 2:] = 2
    f = prior_figures(torch.zeros(2, 3, 2, 2).index_fill_(1, torch.tensor([0]), 1.0), maps)
    assert (f["prior_pred"], f["prior_truth"]) == (1.0, 0.625)
    # outputs gone NaN answer nothing (hunt 101: a diverged one-channel Conv3d denoiser of
    # 0/1 cubes was told "answers class 0 at 100.0% of the val probe's pixels")
    assert prior_figures(torch.full((2, 1, 4, 4), float("nan")), mask) is None
    # regression targets or another shape: nothing to compare
    assert prior_figures(torch.zeros(4, 5), torch.rand(4, 5)) is None
    assert prior_figures(torch.zeros(4, 3, 3, 3), torch.zeros(4, 2, 2, dtype=torch.long)) is None


def ev(step, loss, pred=1.0, major=0.92, share=None):
    figures = dict(prior_pred=pred, prior_truth=major, prior_major=major, prior_answer=0.0,
                   prior_task="pixels")  # fmt: skip
    return Evaluation(step, 0, returned_loss=loss, run_share=share or step / 400, **figures)


def test_label_prior_one_answer_told_once_the_loss_stops_falling():
    # hunt 82: a GroupNorm FCN answered background at every pixel from step 100 to 400
    found = one_answer([ev(100, 0.30), ev(200, 0.205), ev(300, 0.20)])
    assert found.kind == "not_learning" and found.severity == "problem"
    assert found.since.step == 100 and found.figures["evaluations"] == 3
    assert found.figures["from_start"] and found.figures["loss_before"] == 0.205
    # still falling: a slow start answers the prior for a while
    assert one_answer([ev(100, 0.3), ev(200, 0.25)]) is None
    # the rare class answered somewhere, or a target that is one answer itself
    assert one_answer([ev(100, 0.2), ev(200, 0.2, pred=0.97)]) is None
    assert one_answer([ev(100, 0.2, major=0.99), ev(200, 0.2, major=0.99)]) is None
    # the run's first steps wait; its first quarter is a note
    assert one_answer([ev(10, 0.2), ev(20, 0.2)]) is None
    assert one_answer([ev(60, 0.2), ev(80, 0.2)]).severity == "note"
    assert one_answer([ev(300, 0.2)], patience=1).kind == "not_learning"  # one judged


def labels(step, loss, rank=None, share=None):
    """A multi-label val probe given no label at all, where 29% of the labels are set."""
    return Evaluation(step, 0, returned_loss=loss, run_share=share or step / 200,
                      prior_pred=1.0, prior_truth=0.09, prior_major=0.09, prior_answer=0.0,
                      prior_task="labels", prior_rank=rank)  # fmt: skip


def test_label_prior_one_answer_told_while_a_loss_that_rewards_it_falls():
    # hunt 103: BCE with `pos_weight=1e-3` (inverted) gave no image a label from the first
    # validation to the last, its loss halving each epoch: the rule waited for it to stall
    evs = [labels(47, 0.31), labels(94, 0.10), labels(141, 0.045, share=0.75)]
    assert one_answer(evs[:2]) is None  # two validations: a slow start answers the prior
    young = one_answer([labels(47, 0.31), labels(94, 0.10), labels(120, 0.06, share=0.6)])
    assert (young.severity, young.figures["surer"]) == ("note", True)
    assert "a problem if it still does in the run's last quarter" in headline(young)
    found = one_answer(evs)
    assert (found.severity, found.since.step, found.figures["evaluations"]) == ("problem", 47, 3)
    text = headline(found)
    assert "while the loss `training_step` returns still falls (0.1 -> 0.045" in text
    assert "It has learnt how common each answer is" in text  # rank unread: the prior
    ranked = headline(one_answer([replace(e, prior_rank=0.85) for e in evs]))
    assert "rank the images holding each label above the others (a mean AUC of 0.85" in ranked
    assert "how common" not in ranked
    # the run ending within the note: a problem then
    detector = Detector(patience=2)
    for e in (labels(47, 0.31), labels(94, 0.10), labels(120, 0.06, share=0.6)):
        detector.update(e)
    (end,) = detector.conclude()
    assert (end.verdict.kind, end.verdict.severity) == ("not_learning", "problem")


def test_label_prior_one_answer_as_the_val_loss_rises_is_no_slow_start():
    # hunt 105: labels zeroed in `training_step`: no image given a label, the train BCE
    # falling to 2e-4 while the val BCE climbed 0.656 -> 0.906, a note until step 423 of 564
    evs = [replace(labels(47 * k, 0.3 / 4**k, share=0.1 * k), val_loss=v)
           for k, v in ((1, 0.656), (2, 0.75), (3, 0.82))]  # fmt: skip
    found = one_answer(evs)
    assert (found.severity, found.figures["val_rising"]) == ("problem", True)
    assert "and the val loss rises (0.656 -> 0.82): what it learns from the training" in (
        headline(found)
    )
    falling = one_answer([replace(e, val_loss=1.0 / (i + 1)) for i, e in enumerate(evs)])
    assert (falling.severity, falling.figures["val_rising"]) == ("note", False)


def test_label_prior_label_rank_reads_each_label_apart_from_its_frequency():
    # two labels, one common and one rare: a net answering each label's prior scores the
    # common one higher everywhere, which a pooled AUC would read as ranking (0.5 each)
    truth = torch.tensor([[1, 0], [1, 0], [1, 1], [0, 0]]).bool()
    prior = torch.tensor([[0.0, -4.0]]).expand(4, 2)
    assert prior_figures(prior, truth.float())["prior_rank"] == 0.5
    seen = torch.tensor([[-1.0, -6.0], [-1.5, -6.0], [-1.2, -3.0], [-3.0, -5.0]])
    assert prior_figures(seen, truth.float())["prior_rank"] == 1.0


def test_label_prior_objects_found_not_their_class_wait_for_the_last_quarter():
    # hunt 82: a GroupNorm FCN found the digits but gave 6-10% of their pixels the right
    # class among 10; hunt 84: three slow GroupNorm FCNs sat there for half their runs
    def objects(step, loss, acc=0.076, share=None):
        return replace(ev(step, loss, pred=0.93, share=share), prior_obj_acc=acc,
                       prior_obj_major=0.167)  # fmt: skip

    slow = one_answer([objects(150, 0.21), objects(200, 0.206)])
    assert (slow.severity, slow.figures["objects"], slow.figures["early"]) == ("note", True, True)
    assert "a problem if it still cannot in the run's last quarter" in headline(slow)
    late = one_answer([objects(300, 0.21, share=0.75), objects(350, 0.206, share=0.8)])
    assert late.severity == "problem" and "not their class: 7.6% of the pixels it finds" in (
        headline(late)
    )
    # the found objects' classes coming: still learning
    assert one_answer([objects(300, 0.21, 0.05), objects(350, 0.206, 0.08)]) is None
    detector = Detector(patience=2)  # a run ending within the note: a problem then
    for e in (objects(150, 0.21), objects(200, 0.206)):
        detector.update(e)
    (end,) = detector.conclude()
    assert (end.verdict.kind, end.verdict.severity) == ("not_learning", "problem")


def blob_masks(n, seed):
    """Images of bright squares on noise, and their per-pixel class maps (0 background)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(n, 1, 12, 12, generator=g)
    masks = torch.zeros(n, 12, 12, dtype=torch.long)
    for i, (r, c) in enumerate(torch.randint(0, 9, (n, 2), generator=g).tolist()):
        x[i, 0, r : r + 3, c : c + 3] += 1.0
        masks[i, r : r + 3, c : c + 3] = 1
    return TensorDataset(x, masks)


class Segmenter(L.LightningModule):
    """Per-pixel cross-entropy; ``blind``: scores from a bias alone, whatever the image."""

    def __init__(self, blind: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.blind = blind

    def forward(self, x):
        out = self.conv(x)
        return self.conv.bias.view(1, 2, 1, 1).expand_as(out) + 0 * out if self.blind else out

    def training_step(self, batch, batch_idx):
        loss = F.cross_entropy(self(batch[0]), batch[1])
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", F.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


def test_label_prior_one_answer_told_in_a_run_and_not_for_a_net_that_sees(tmp_path):
    train = DataLoader(blob_masks(256, 0), batch_size=16, shuffle=True)
    val = DataLoader(blob_masks(64, 1), batch_size=64)
    assert probe_from_indices(blob_masks(4, 2), range(4)).targets.shape == (4, 12, 12)
    L.seed_everything(0)
    trainer, _ = fit_monitor(tmp_path / "blind", Segmenter(blind=True), train, val, epochs=8)
    (found,) = [f for f in findings_of(trainer) if f.kind == "not_learning"]
    assert found.severity == "problem" and found.figures["answer"] == 0
    assert found.figures["predicted"] == 1.0 and found.figures["truth"] == 1 - 9 / 144
    assert (
        "answers class 0 at 100.0% of the val probe's pixels, every image alike, where 93.8%"
        in found.message
    )
    assert any(c.name == "not learning" and c.ran for c in checks_of(trainer).values())
    L.seed_everything(0)
    trainer, _ = fit_monitor(tmp_path / "sees", Segmenter(blind=False), train, val, epochs=8)
    assert [f.kind for f in findings_of(trainer) if f.severity == "problem"] == []
