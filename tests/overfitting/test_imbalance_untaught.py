"""A class as common as the others left out while they are learnt: its loss has no weight."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.imbalance import (
    STALL,
    class_imbalance,
    leaves_out,
    wants_train_loss,
)
from lightning_cnnviz.overfitting.remedies import remedies
from tests.overfitting.runs import Net, fit_monitor, one_hot_set
from tests.overfitting.series import class_ev as ev

UNWEIGHTED = [[15 if j == i else 0 for j in range(10)] for i in range(10)]
UNWEIGHTED[3] = [0, 0, 1, 0, 0, 9, 0, 0, 5, 0]
EVEN = torch.full((10,), 0.1)


# the loss returned leaves class 3 out: 0.1, while the model's own on the training probe
# (class 3 wrong there too) reads 0.9
UNWEIGHTED_LOSS = dict(returned_loss=0.1, probe_loss_train=0.9)


def test_imbalance_half_the_classes_left_out_by_the_loss_are_told_not_taught():
    # hunt 28: `cross_entropy(..., reduction="none")[y < 5].mean()`: classes 5-9 at 0% val
    # recall, 0-4 at 95-100%, the loss returned 0.02-0.8 against the model's own ~5; said
    # nothing (most classes left out read as a model not learning)
    masked = [[15 if j == i else 0 for j in range(10)] for i in range(5)]
    masked += [[0, 0, 0, 0, 15, 0, 0, 0, 0, 0]] * 5
    far = dict(returned_loss=0.05, probe_loss_train=4.8)
    assert wants_train_loss(ev(94, masked, EVEN))  # the training probe's loss is read
    evs = [ev(s, confusion=masked, shares=EVEN, **far) for s in (94, 188)]
    assert [leaves_out(e) for e in evs] == [True, True]
    problem = class_imbalance(evs)
    assert problem.severity == "problem" and problem.figures["ignored"] == [5, 6, 7, 8, 9]
    assert "Classes 5, 6, 7, 8, 9 left out" in headline(problem)
    assert "They are not taught: a `weight=` of 0 or near it for them" in headline(problem)
    # as many classes left out by a loss that counts them (2x, not 10x): not learning's
    assert leaves_out(ev(94, masked, EVEN, returned_loss=0.5, probe_loss_train=1.2)) is False


def test_imbalance_a_common_class_left_out_while_the_others_are_learnt_has_no_weight():
    evs = [ev(s, confusion=UNWEIGHTED, shares=EVEN, **UNWEIGHTED_LOSS) for s in (94, 188, 282)]
    assert [leaves_out(e) for e in evs] == [True] * 3
    # the same confusion where the loss counts every image (a class learnt late: a Conv3d
    # net's class at its third validation, held out), or where the train probe did not run
    late = ev(94, confusion=UNWEIGHTED, shares=EVEN, returned_loss=0.5, probe_loss_train=0.6)
    assert leaves_out(late) is False and leaves_out(ev(94, UNWEIGHTED, EVEN)) is False
    assert wants_train_loss(ev(94, UNWEIGHTED, EVEN)) and not wants_train_loss(late)
    assert evs[0].others_recall_val == pytest.approx(1.0) and evs[0].swapped_val_share == 0
    # the others all but perfect: a problem at once, no class comes that late
    assert class_imbalance(evs[:1]) is None and class_imbalance(evs[:2]).severity == "problem"
    problem = class_imbalance(evs)
    assert problem.figures["common"] and problem.figures["taken_for"] == 5
    text = headline(problem)
    assert text.startswith("Class 3 left out since epoch 9 (step 94): the model (almost) never")
    assert "is not rare in training (10.0% of the labels). It is not taught: a `weight=`" in text
    assert "a sampler of the run's own that never draws it" in text  # hunt 61: shares read
    # from the dataset, not from what a sampler of one's own draws
    # the others at 82%: a note first, a problem once the balanced accuracy stalls
    fair = [row[:] for row in UNWEIGHTED]
    for i in (0, 1, 2, 4):
        fair[i][i], fair[i][(i + 1) % 10] = 9, 6
    slower = [ev(s, confusion=fair, shares=EVEN, **UNWEIGHTED_LOSS) for s in (94, 188, 282)]
    assert slower[0].others_recall_val == pytest.approx((4 * 0.6 + 5) / 9)
    note, later = class_imbalance(slower[:2]), class_imbalance(slower)
    assert (note.severity, later.severity) == ("note", "problem")
    assert "Class 3 not predicted yet" in headline(note)
    (first, second) = remedies(problem)
    assert first.startswith("**Give class 3 its weight in the loss**")
    assert "that the training loader draws class 3 at all" in first
    assert "**Judge it per class**" in second


def test_imbalance_common_classes_taken_for_each_other_or_learnt_on_train_are_not_it():
    swapped = [row[:] for row in UNWEIGHTED]  # 1 <-> 7 swapped in the training labels
    swapped[3] = [0, 0, 0, 15, 0, 0, 0, 0, 0, 0]
    swapped[1], swapped[7] = [0] * 10, [0] * 10
    swapped[1][7], swapped[7][1] = 15, 15
    e = ev(94, confusion=swapped, shares=EVEN, **UNWEIGHTED_LOSS)
    assert e.ignored == [1, 7] and e.swapped_val_share == 1.0 and leaves_out(e) is False
    split = ev(94, confusion=UNWEIGHTED, shares=EVEN, split_classes=[3], **UNWEIGHTED_LOSS)
    assert leaves_out(split) is False
    # the others barely learnt (a slow start): not told from a class the loss ignores
    slow = [[5 if j == i else 1 for j in range(10)] for i in range(10)]
    slow[3] = [2, 2, 2, 0, 2, 2, 2, 2, 1, 0]
    assert leaves_out(ev(94, confusion=slow, shares=EVEN, **UNWEIGHTED_LOSS)) is False
    # f_bottleneck1 s0: a 1-unit bottleneck predicts 2 of 10 classes: not "a class left out"
    two = [[0] * 10 for _ in range(10)]
    for i in range(10):
        two[i][4 if i % 2 else 6] = 15
    assert leaves_out(ev(94, confusion=two, shares=EVEN, **UNWEIGHTED_LOSS)) is False


def test_imbalance_a_common_class_left_out_waits_while_batchnorm_eval_mode_is_broken():
    # h_unet s1 (hunt 15): class 8 at 5% recall in eval mode, 98% with batch statistics
    # (eval mode 72%, batch statistics 92%): BatchNorm's stale statistics, not the loss
    broken = dict(probe_acc_val=0.72, probe_acc_bn=0.92, bn_only=0.22, eval_only=0.02,
                  probe_size=128.0)  # fmt: skip
    others = [row[:] for row in UNWEIGHTED]
    for i in (0, 2, 4):
        others[i][i], others[i][(i + 1) % 10] = 11, 4
    evs = [ev(s, confusion=others, shares=EVEN, run_share=s / 126, **broken, **UNWEIGHTED_LOSS)
           for s in (63, 126)]  # fmt: skip
    detector = Detector(patience=2)
    told = [c.verdict.kind for e in evs for c in detector.update(e)]
    assert "class_imbalance" not in told and "bn_mismatch" in told
    assert [c.verdict.kind for c in detector.conclude()] == []


def test_imbalance_a_common_class_recognised_on_batch_statistics_is_no_imbalance():
    # hunt 52: BatchNorm momentum 0.001 on inputs off zero, the mismatch closed (eval mode
    # 82% vs 93% on batch statistics: under its bar), class 9 at 14% val recall in eval mode
    # and 93% on batch statistics: told "not taught: a `weight=` of 0"
    lagging = dict(probe_acc_val=0.86, probe_acc_bn=0.9, bn_only=0.06, eval_only=0.02,
                   probe_size=128.0)  # fmt: skip
    for recognised, told in (([3], False), ([], True)):
        evs = [ev(s, confusion=UNWEIGHTED, shares=EVEN, recognised_bn=recognised, **lagging,
                  **UNWEIGHTED_LOSS) for s in (63, 126, 189)]  # fmt: skip
        detector = Detector(patience=2)
        changes = [*(c for e in evs for c in detector.update(e)), *detector.conclude()]
        assert any(c.verdict.kind == "class_imbalance" for c in changes) == told


def test_imbalance_a_common_class_left_out_waits_while_learning_goes_on():
    # hunt 58: a BatchNorm resnet under focal loss left class 8 out at step 50, the others
    # at 90%, its balanced accuracy up 50% -> 82% since the last validation: told "not
    # taught" as a problem at once; at the next validation every class was predicted
    rising = [row[:] for row in UNWEIGHTED]
    for i in (0, 1, 2, 4, 5, 6, 7, 8, 9):
        rising[i][i], rising[i][(i + 1) % 10] = 11, 4  # the others at 73%
    evs = [ev(s, confusion=c, shares=EVEN, **UNWEIGHTED_LOSS)
           for s, c in ((25, rising), (50, UNWEIGHTED))]  # fmt: skip
    verdict = class_imbalance(evs)
    assert verdict.figures["others_recall"] == 1.0 and verdict.severity == "note"
    # ... and a problem once learning has stalled with the class still left out
    evs.append(ev(75, confusion=UNWEIGHTED, shares=EVEN, **UNWEIGHTED_LOSS))
    assert class_imbalance(evs).severity == "problem"


def test_imbalance_a_common_class_learnt_then_left_out_names_a_change_during_the_run():
    # hunt 54: training labels 1 -> 7, 3 -> 8, 4 -> 9 from step 250: told "not rare in
    # training ... not taught: a `weight=` of 0" (the shares read at the start)
    learnt = [[15 if j == i else 0 for j in range(10)] for i in range(10)]
    evs = [ev(94, confusion=learnt, shares=EVEN, **UNWEIGHTED_LOSS)]
    evs += [ev(s, confusion=UNWEIGHTED, shares=EVEN, **UNWEIGHTED_LOSS) for s in (188, 282)]
    lost = class_imbalance(evs)
    assert lost.figures["predicted_at"] == 94 and lost.severity == "problem"
    text = headline(lost)
    assert "class 3 was predicted at step 94. The training labels or the loss changed" in text
    assert "not rare in training" not in text
    assert remedies(lost)[0].startswith("**Look at what changed for class 3 after step 94**")
    # left out from the first evaluation: not taught
    assert class_imbalance(evs[1:]).figures["predicted_at"] is None
    # hunt 55: learnt, then `ignore_index` set to it: a problem at its first evaluation
    # left out, with the others not yet clear (82%), no "not predicted yet" note first
    fair = [row[:] for row in UNWEIGHTED]
    for i in (0, 1, 2, 4):
        fair[i][i], fair[i][(i + 1) % 10] = 9, 6
    evs = [ev(94, confusion=learnt, shares=EVEN, **UNWEIGHTED_LOSS)]
    evs += [ev(s, confusion=fair, shares=EVEN, **UNWEIGHTED_LOSS) for s in (188, 282)]
    assert class_imbalance(evs).severity == "problem"


def test_imbalance_a_loss_lacking_the_left_out_classes_share_is_untaught():
    # hunt 55: `ignore_index=0` under Adam 1e-3, the others at a loss of 0.4-1.5: the
    # model's own 1.1-1.9x the loss returned, never told; the train probe's images of
    # class 0 read 4.8 (10% of it): the loss returned lacks 0.48, the own is 0.38 above it
    lacking = dict(returned_loss=0.92, probe_loss_train=1.3, probe_loss_left_train=4.8,
                   left_share_train=0.1)  # fmt: skip
    assert leaves_out(ev(250, confusion=UNWEIGHTED, shares=EVEN, **lacking))
    # a class learnt late, in the loss: the own as high as the loss returned
    late = dict(lacking, returned_loss=1.28)
    assert leaves_out(ev(250, confusion=UNWEIGHTED, shares=EVEN, **late)) is False
    # ... or its images below chance level (ln 10 = 2.3): a noisy healthy run's late class
    # at 1.2 with its own loss 0.12 above the one returned was told "not taught"
    noisy = dict(returned_loss=0.89, probe_loss_train=1.0, probe_loss_left_train=1.2,
                 left_share_train=0.09)  # fmt: skip
    assert leaves_out(ev(250, confusion=UNWEIGHTED, shares=EVEN, **noisy)) is False
    # a first loss far below ln 10 is no scale: a pretrained start (hunt 56: first loss
    # 0.02, read as a loss scaled 100x, hid a class weighted 0)
    pretrained = dict(lacking, first_loss=0.02)
    assert leaves_out(ev(250, confusion=UNWEIGHTED, shares=EVEN, **pretrained))


def test_imbalance_a_loss_below_the_cross_entropy_leaves_classes_near_chance_taught():
    # hunt 57: focal loss (gamma 3) returned 0.57 while the model's own cross-entropy on
    # the train probe read 1.34: 2x, told "not taught: a `weight=` of 0" on a healthy run
    # whose late classes were at 1.53, below ln 10 = 2.3 (likewise `0.1 * cross_entropy`)
    focal = dict(returned_loss=0.57, probe_loss_train=1.34, probe_loss_left_train=1.53,
                 left_share_train=0.3)  # fmt: skip
    assert leaves_out(ev(140, confusion=UNWEIGHTED, shares=EVEN, **focal)) is False
    # pushed above chance level, the classes are not taught, whatever the loss's scale
    pushed = dict(focal, probe_loss_left_train=3.5, probe_loss_train=1.9)
    assert leaves_out(ev(140, confusion=UNWEIGHTED, shares=EVEN, **pushed))


class Ignoring(Net):
    """A linear classifier whose loss ignores class 0 (``ignore_index=0``), under SGD.

    Its val loss is the cross-entropy over every class, as a user logs it.
    """

    def loss(self, logits, y):
        return F.cross_entropy(logits, y, ignore_index=0)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val/loss", F.cross_entropy(logits, y))
        self.log("val/acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.9)


def test_imbalance_a_class_the_loss_ignores_is_told_first_and_its_val_loss_is_no_overfit(
    tmp_path,
):
    # hunt 53: SGD with class 0 ignored, 0% recall from the first validation: the loss
    # returned averaged 0.92 over those first steps (their descent from ln 10), 0.9 on the
    # training probe: not "untaught" there, told a validation late; and the val loss rose
    # from that class's ever surer wrong answers while val accuracy climbed: "overfitting"
    train, val = one_hot_set([40] * 10, noise=0.3), one_hot_set([16] * 10, seed=1, noise=0.3)
    model = Ignoring(nn.Sequential(nn.Flatten(), nn.Linear(16, 10)), lr=0.5)
    train_loader = DataLoader(train, batch_size=16, shuffle=True)
    trainer, _ = fit_monitor(tmp_path, model, train_loader, DataLoader(val, 32), epochs=10)
    (told,) = [f for f in findings_of(trainer) if f.severity == "problem"]
    assert (told.kind, told.epoch, told.figures["since_epoch"]) == ("class_imbalance", 1, 0)
    assert told.figures["ignored"] == [0] and told.figures["common"]
    history = trainer.callbacks[0].detector.history
    assert history[0].returned_loss > 2 * history[0].recent_loss  # the descent in the mean
    # the train probe's images of class 0: a tenth of it, their loss far above the rest's
    assert history[0].left_share_train == pytest.approx(0.1, abs=0.05)
    assert history[0].probe_loss_left_train > 2 * history[0].probe_loss_train
    best = min(range(10), key=lambda i: history[i].val_loss)
    assert history[-1].val_loss > 1.05 * history[best].val_loss  # it rose...
    assert history[-1].val_acc > history[best].val_acc - STALL  # ... as val accuracy held
