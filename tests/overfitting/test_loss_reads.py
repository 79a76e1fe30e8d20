"""A loss fed probabilities: the rule on the hunt's figures, the detector, and a short run."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting import loss_reads, other_targets, returned_loss, softmax_match
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.metrics import figures
from lightning_cnnviz.overfitting.remedies import remedies
from tests.overfitting.runs import Net, fit_monitor, one_hot_set
from tests.tb import events, texts


def evaluations(rows):
    return [Evaluation(23 * (i + 1), i // 2, classes=10.0, **row) for i, row in enumerate(rows)]


# f_ce_softmax s0 (digits, Adam 1e-3, `cross_entropy(logits.softmax(1), y)`): the logged val
# loss, the outputs' own cross-entropy and their softmax's on the val probe, val accuracy
BUG = [(2.262, 2.33, 2.261, 0.223), (1.986, 3.354, 1.987, 0.51), (1.885, 3.914, 1.878, 0.58),
       (1.801, 3.26, 1.79, 0.675)]  # fmt: skip
# legitimate losses, the same figures: h_focal s0 (a focal loss, gamma 2: logs less than the
# own cross-entropy) and h_ls_bn s0 (label smoothing 0.1 in training, plain CE logged on val)
FOCAL = [(1.504, 2.001, 2.262, 0.353), (0.479, 0.863, 1.929, 0.755), (0.225, 0.514, 1.761, 0.847)]
SMOOTHED = [(1.547, 1.55, 2.168, 0.711), (0.469, 0.452, 1.741, 0.9), (0.326, 0.313, 1.669, 0.948)]


def rows(series):
    return [
        dict(val_loss=a, probe_loss_val=b, probe_ce_probs_val=c, val_acc=d) for a, b, c, d in series
    ]


def test_loss_reads_candidates_of_logits_and_of_a_model_ending_in_softmax():
    # seeded, and spread so that no probability underflows `as_logits`'s 1e-12 floor
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(32, 10, generator=g) * 3, torch.randint(0, 10, (32,), generator=g)
    got = softmax_match.candidates(logits, labels)
    fed = F.cross_entropy(logits.softmax(1), labels)
    assert float(got["probe_ce_probs_val"]) == pytest.approx(float(fed))
    own = figures({}, {"val": logits}, {"val": labels})[0]["probe_loss_val"]
    assert own == pytest.approx(float(F.cross_entropy(logits, labels)))
    assert float(got["probe_simplex_val"]) == 0.0
    same = softmax_match.candidates(logits, labels.int())  # labels as a dataset may give them
    assert float(same["probe_ce_probs_val"]) == pytest.approx(float(fed))
    # the outputs are probabilities already: cross-entropy on them is the bug, NLL the loss
    probs = logits.softmax(1)
    got = softmax_match.candidates(probs, labels)
    assert float(got["probe_ce_probs_val"]) == pytest.approx(float(fed))
    own = figures({}, {"val": probs}, {"val": labels})[0]["probe_loss_val"]
    assert own == pytest.approx(float(F.cross_entropy(logits, labels)), rel=1e-4)
    assert float(got["probe_simplex_val"]) == 1.0
    # the floor of a loss fed probabilities: a one-hot softmax gives ln(1 + (K - 1) / e)
    floor = softmax_match.candidates(torch.tensor([[80.0] + [0.0] * 9]), torch.tensor([0]))
    assert float(floor["probe_ce_probs_val"]) == pytest.approx(math.log(1 + 9 / math.e), rel=1e-4)


def test_loss_reads_told_apart_from_focal_and_label_smoothing():
    said = [loss_reads.reads_logits(e) for e in evaluations(rows(BUG))]
    assert said == [None, False, False, False]  # untrained: both candidates near ln K
    assert [loss_reads.reads_logits(e) for e in evaluations(rows(FOCAL))] == [None, True, True]
    said = [loss_reads.reads_logits(e) for e in evaluations(rows(SMOOTHED))]
    assert said == [None, True, True]
    assert loss_reads.reads_logits(Evaluation(10, 0, probe_loss_val=7.1)) is None  # no val loss


def test_loss_reads_a_training_loss_below_the_floor_is_not_fed_probabilities():
    # hunt 28: `cross_entropy(logits / 10, y)` in `validation_step` only logged 1.667, near
    # the softmax candidate (1.617), while training returned 0.115 at 95% val: told "the
    # loss is fed probabilities ... learning stalls". No loss of probabilities reaches 1.461
    row = dict(classes=10.0, probe_size=128.0, val_loss=1.667, probe_loss_val=0.288,
               probe_ce_probs_val=1.617, probe_acc_val=0.95, val_acc=0.95)  # fmt: skip
    assert loss_reads.misfed(Evaluation(64, 1, returned_loss=0.115, **row)) is False
    # a training loss at that floor is: where the model does not rank its labels right yet
    # (at 80%+, a loss 1.5x over the outputs' own is its own level: label smoothing 0.5)
    ranked = Evaluation(64, 1, returned_loss=1.6, **row)
    assert loss_reads.misfed(ranked) is False
    unranked = replace(ranked, val_acc=0.7, probe_acc_val=0.7)
    assert loss_reads.misfed(unranked) == "probabilities"


def test_loss_reads_detector_tells_it_once_with_its_remedies():
    detector = Detector(patience=2)
    changes = [c for e in evaluations(rows(BUG)) for c in detector.update(e)]
    told = [(c.change, c.verdict.kind, c.verdict.detected.step) for c in changes]
    assert told == [("new", "loss_mismatch", 69)]
    verdict = detector.reported["loss_mismatch"]
    assert verdict.since.step == 46 and verdict.severity == "problem"
    text = headline(verdict)
    assert text.startswith("The loss is fed probabilities: the logged val loss (1.885) is")
    assert "(a softmax or a sigmoid: 1.878 on the val probe through a softmax), not of the " in text
    assert "outputs themselves (3.914)" in text
    assert "cannot fall below 1.46" in text
    assert detector.checks_ran()["loss fed probabilities"]
    quiet = Detector(patience=2)
    assert not [c for e in evaluations(rows(FOCAL + SMOOTHED)) for c in quiet.update(e)
                if c.verdict.kind == "loss_mismatch"]  # fmt: skip


def test_loss_reads_a_positive_loss_minimised_by_wrong_answers_is_told_before_not_learning():
    # hunt 29, f_focal_wrong_form s0: `(p_t ** 2 * CE).mean()` (a focal loss's weight
    # inverted) learnt to be wrong: 0% on train and val, its own cross-entropy 11; told "a
    # scaled loss: drop the factor" and "not learning ... may follow from it"
    row = dict(classes=10.0, probe_size=128.0, val_loss=11.3, val_acc=0.001,
               probe_acc_val=0.0, probe_loss_val=11.6, probe_ce_probs_val=2.4,
               probe_acc_train=0.0, probe_loss_train=11.1, train_acc=0.0)  # fmt: skip
    evs = [Evaluation(32 * (i + 1), i, returned_loss=r, **row) for i, r in enumerate((8e-3, 2e-4))]
    detector = Detector(patience=2)
    changes = [c for e in evs for c in detector.update(e)]
    assert [(c.change, c.verdict.kind) for c in changes] == [("new", "loss_mismatch")]
    verdict = detector.reported["loss_mismatch"]
    text = headline(verdict)
    assert text.startswith("The loss `training_step` returns falls (0.0002) as the model gets")
    assert "training accuracy 0.0%, below chance" in text and "focal loss" in text
    assert "must grow as the label's probability falls" in remedies(verdict)[0]
    # a model at chance (not below it) with a small loss: no such reading
    level = [replace(e, probe_acc_train=0.1, train_acc=0.1) for e in evs]
    assert not [returned_loss.maximised(e) for e in level if returned_loss.maximised(e)]


def test_loss_reads_a_logged_train_accuracy_of_other_targets_is_no_gap():
    # hunt 29, f_self_label s0: `training_step` took its targets from the model's own
    # argmax: logged train accuracy 100%, 10% on the train probe, the returned loss 0;
    # told "training images learnt, validation images not ... the splits differ"
    row = dict(classes=10.0, probe_size=128.0, train_acc=1.0, val_acc=0.102, val_loss=41.0,
               probe_acc_val=0.094, probe_loss_val=41.6, probe_acc_train=0.1,
               probe_loss_train=41.0, first_loss=2.31, returned_loss=1e-6)  # fmt: skip
    evs = [Evaluation(32 * (i + 1), i, **row) for i in range(2)]
    detector = Detector(patience=2)
    changes = [c for e in evs for c in detector.update(e)]
    assert [(c.change, c.verdict.kind) for c in changes] == [("new", "not_learning")]
    text = headline(detector.reported["not_learning"])
    assert "the loss does not measure the labels" in text


def test_loss_reads_labels_remapped_in_training_step_are_named():
    # hunt 91, r30: `training_step` mapped y -> (y + 3) % 10 from step 150; the model learnt
    # the new labels (loss 0.77) and scored 0-2% on the loader's: told "targets taken from
    # the model's own output" with no word of a remap
    row = dict(classes=10.0, probe_size=128.0, val_acc=0.016, val_loss=8.6,
               probe_acc_val=0.016, probe_loss_val=8.6, probe_acc_train=0.0,
               probe_loss_train=8.1, first_loss=2.31, returned_loss=0.77,
               remap_share=0.94)  # fmt: skip
    evs = [Evaluation(200 + 28 * i, 4 + i, **row) for i in range(2)]
    detector = Detector(patience=2)
    changes = [c for e in evs for c in detector.update(e)]
    assert [(c.change, c.verdict.kind) for c in changes] == [("new", "not_learning")]
    verdict = detector.reported["not_learning"]
    text = headline(verdict)
    assert "answers each class of the val probe with one other class (94.0% of its" in text
    assert "accuracy 1.6%, chance 10.0%" in text and "the loss measures the labels remapped" in text
    assert "targets taken from the model's own output" not in text
    assert remedies(verdict)[0].startswith("**Check the labels the loss is handed")
    # wrong answers scattered (no one-to-one map): a loss minimised by wrong answers
    scattered = [replace(e, remap_share=0.2) for e in evs]
    detector = Detector(patience=2)
    changes = [c for e in scattered for c in detector.update(e)]
    assert [(c.change, c.verdict.kind) for c in changes] == [("new", "loss_mismatch")]
    # at chance (a loss blind to the labels, not a relabelling): the blind words
    level = [replace(e, probe_acc_train=0.1, probe_acc_val=0.09, remap_share=0.1) for e in evs]
    detector = Detector(patience=2)
    for e in level:
        detector.update(e)
    text = headline(detector.reported["not_learning"])
    assert "the loss does not measure the labels" in text and "remapped" not in text


def test_loss_reads_a_remap_learnt_after_the_first_report_replaces_its_words():
    # hunt 93: a remap half learnt at the first report (the logged train accuracy read
    # other outputs) kept "a loss on an auxiliary head" to the end at 0% val
    row = dict(classes=10.0, probe_size=128.0, probe_acc_train=0.05, probe_loss_train=4.0,
               probe_acc_val=0.06, probe_loss_val=4.2, first_loss=2.31, run_share=0.5)  # fmt: skip
    half = dict(train_acc=0.6, returned_loss=1.3, remap_share=0.3)
    learnt = dict(train_acc=0.97, returned_loss=0.2, remap_share=0.9, probe_acc_val=0.01,
                  probe_acc_train=0.0, probe_loss_train=9.0, val_acc=0.01)  # fmt: skip
    evs = [Evaluation(150 + 20 * i, 3 + i, **{**row, **(half if i < 2 else learnt)})
           for i in range(4)]  # fmt: skip
    detector = Detector(patience=2)
    changes = [(c.change, c.verdict.kind) for e in evs for c in detector.update(e)]
    assert changes == [("new", "not_learning"), ("worse", "not_learning")]
    text = headline(detector.reported["not_learning"])
    assert "the loss measures the labels remapped" in text and "other outputs" not in text


def test_loss_reads_the_own_cross_entropy_returned_negated_is_told_at_once():
    # hunt 93: `-cross_entropy` from step 0 under Adam 1e-4: returned -2.33 and -2.39 at the
    # first validations, the own cross-entropy 2.35 and 2.43 (still near ln 10): told
    # `not_learning` with no cause, `loss_mismatch` 4 validations late
    row = dict(classes=10.0, probe_size=128.0, first_loss=-2.3)
    reads = [(-2.328, 2.350, 0.10), (-2.390, 2.428, 0.07)]
    evs = [Evaluation(23 * (i + 1), i, returned_loss=r, probe_loss_train=own, probe_loss_val=own,
                      probe_acc_train=acc, probe_acc_val=acc, **row)
           for i, (r, own, acc) in enumerate(reads)]  # fmt: skip
    detector = Detector(patience=2)
    changes = [(c.change, c.verdict.kind) for e in evs for c in detector.update(e)]
    assert changes == [("new", "loss_mismatch")]
    assert detector.reported["loss_mismatch"].figures["fed"] == "negated"
    # a negative term beside a cross-entropy the model lowers (a confidence penalty): none
    penalty = [replace(e, returned_loss=-0.5, probe_loss_train=0.3, probe_loss_val=0.3,
                       probe_acc_train=0.9, probe_acc_val=0.9) for e in evs]  # fmt: skip
    assert not [returned_loss.maximised(e) for e in penalty if returned_loss.maximised(e)]


def test_loss_reads_a_loss_falling_far_under_the_outputs_own_is_blind():
    # hunt 43: the loss on a second head (0.37, falling to 0.08), the accuracy logged on
    # the head `forward` returns (at chance, its own cross-entropy 4.4): no cause named
    row = dict(classes=10.0, probe_size=128.0, train_acc=0.09, val_acc=0.08, val_loss=4.3,
               probe_acc_val=0.094, probe_loss_val=4.3, probe_acc_train=0.086,
               probe_loss_train=4.4, first_loss=2.31)  # fmt: skip
    evs = [Evaluation(32 * (i + 1), i, returned_loss=r, **row) for i, r in enumerate((1.4, 0.37))]
    detector = Detector(patience=2)
    changes = [c for e in evs for c in detector.update(e)]
    assert [(c.change, c.verdict.kind) for c in changes] == [("new", "not_learning")]
    text = headline(detector.reported["not_learning"])
    assert "or measures other outputs than those `forward` returns" in text
    # a model at chance whose loss is its own: no such reading
    level = [replace(e, returned_loss=e.probe_loss_train) for e in evs]
    assert not any(other_targets.loss_blind(e) for e in level)


class AuxHead(Net):
    """The loss and logged train accuracy on an auxiliary head; ``forward`` returns another."""

    def __init__(self) -> None:
        super().__init__(nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU()), lr=0.01)
        self.head, self.aux = nn.Linear(32, 4), nn.Linear(32, 4)
        nn.init.zeros_(self.head.weight)  # never trained: one class for every image

    def forward(self, x):
        return self.head(self.net(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.aux(self.net(x))
        loss = F.cross_entropy(logits, y)
        self.log("train/loss", loss, on_epoch=True, on_step=False)
        self.log("train/acc", (logits.argmax(1) == y).float().mean(), on_epoch=True)
        return loss


def test_loss_reads_a_loss_on_another_head_than_forward_returns_is_not_learning(tmp_path):
    # hunt 41: the loss and the logged train accuracy (88%) on an auxiliary head, the head
    # `forward` returns never trained (8.6% on the train probe): told first as a train/val
    # gap, "the splits differ in what decides the label"
    torch.manual_seed(0)
    train = DataLoader(one_hot_set([128] * 4, seed=0, noise=0.5), batch_size=32, shuffle=True)
    val = DataLoader(one_hot_set([64] * 4, seed=1, noise=0.5), batch_size=64)
    trainer, said = fit_monitor(tmp_path, AuxHead(), train, val, epochs=4)
    problems = [f for f in findings_of(trainer) if f.severity == "problem"]
    assert [f.kind for f in problems] == ["not_learning"]
    assert "read other outputs than those `forward` returns" in problems[0].message
    assert "The logged train accuracy reads" in problems[0].message
    assert any(problems[0].message in s for s in said)
    written = texts(events(tmp_path / "tb" / "version_0"), "overfitting/diagnosis")
    assert any("**Compute the loss on the outputs `forward` returns**" in t for t in written)


class Softmaxed(Net):
    """``Net`` whose loss is ``cross_entropy`` of the softmax (the bug), in the loss or the net."""

    def loss(self, logits, y):
        in_net = isinstance(self.net[-1], nn.Softmax)
        return F.cross_entropy(logits if in_net else logits.softmax(1), y)


def fed_probabilities(tmp_path, in_net, noise, lr, epochs):
    """A 4-class MLP on one-hot digits whose loss is fed its softmax (in the net or the loss)."""
    torch.manual_seed(0)
    train = DataLoader(one_hot_set([128] * 4, seed=0, noise=noise), batch_size=32, shuffle=True)
    val = DataLoader(one_hot_set([64] * 4, seed=1, noise=noise), batch_size=64)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    if in_net:
        net.append(nn.Softmax(dim=1))
    return fit_monitor(tmp_path, Softmaxed(net, lr=lr), train, val, epochs=epochs)


@pytest.mark.parametrize("in_net", [False, True])
def test_loss_reads_found_in_a_run_fed_probabilities(tmp_path, in_net):
    trainer, said = fed_probabilities(tmp_path, in_net, noise=1.0, lr=0.05, epochs=8)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "loss_mismatch"]
    assert finding.severity == "problem" and finding.figures["in_model"] is in_net
    assert ("the model ends in a softmax" in finding.message) is in_net
    assert finding.figures["own_loss"] >= 2 * finding.figures["val_loss"]
    assert finding.figures["val_loss"] == pytest.approx(finding.figures["softmax_loss"], rel=0.15)
    assert any("The loss is fed probabilities" in m for m in said)
    run = events(tmp_path / "tb" / "version_0")
    # Lightning writes an epoch's val metrics at the step before the one the monitor sees
    logged = {e.step: e.value for e in run.Scalars("val/loss")}
    assert logged[finding.step - 1] == pytest.approx(finding.figures["val_loss"], rel=1e-5)
    text = [t for t in texts(run, "overfitting/diagnosis") if "fed probabilities" in t]
    assert text and "Pass the raw logits" in text[0]


@pytest.mark.parametrize("in_net", [False, True])
def test_loss_reads_fed_probabilities_stays_told_past_80_percent(tmp_path, in_net):
    # held-out hunt 122: softmax before `cross_entropy` on runs passing 80% val (digits under
    # Adam, a Conv1d net under SGD) logged the softmax's cross-entropy to 1-2% at every
    # validation; read as a label-smoothed loss's own level, it went untold or was withdrawn
    trainer, said = fed_probabilities(tmp_path, in_net, noise=0.3, lr=0.01, epochs=6)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "loss_mismatch"]
    assert finding.severity == "problem" and finding.figures["in_model"] is in_net
    assert finding.figures["val_acc"] >= 0.9  # past 80% when told, the own loss far under it
    assert finding.figures["own_loss"] * loss_reads.FAR <= finding.figures["val_loss"]
    run = events(tmp_path / "tb" / "version_0")
    logged = {e.step: e.value for e in run.Scalars("val/loss")}
    assert logged[finding.step - 1] == pytest.approx(finding.figures["val_loss"], rel=1e-5)
    monitor = next(c for c in trainer.callbacks if type(c).__name__ == "OverfittingMonitor")
    last = monitor.detector.history[-1]
    assert last.val_acc >= 0.9 and loss_reads.misfed(last) == "probabilities"
    written = texts(run, "overfitting/diagnosis")
    assert any("The loss is fed probabilities" in t for t in written)
    assert not any("as what they are again" in t for t in written)  # never withdrawn
    assert any("The loss is fed probabilities" in m for m in said)


def test_loss_reads_heavy_label_smoothing_at_its_optimum_is_not_told():
    # label smoothing 0.5 on 5 classes (a Conv1d net, 100% val, seed 1): at its optimum the
    # loss (the targets' entropy) meets their softmax's cross-entropy, 0.3-1.3 standard
    # errors of the probe from the logged one: no probe tells it from the bug
    # the logged val loss, the own cross-entropy, the softmax's, its standard error, conf
    reads = [
        (1.2870, 0.6742, 1.3086, 0.0065, 0.516), (1.2789, 0.6411, 1.2933, 0.0063, 0.533),
        (1.2754, 0.6093, 1.2789, 0.0057, 0.548), (1.2701, 0.6056, 1.2772, 0.0055, 0.550),
    ]  # fmt: skip
    evs = [Evaluation(141 + 47 * i, 2 + i, val_loss=a, probe_loss_val=b, probe_ce_probs_val=c,
                      probe_ce_probs_se_val=d, conf_val=q, val_acc=1.0, classes=5.0)
           for i, (a, b, c, d, q) in enumerate(reads)]  # fmt: skip
    assert [softmax_match.softmax_exact(e) for e in evs] == [False, False, True, True]
    assert [loss_reads.reads_logits(e) for e in evs] == [True, True, None, None]
    assert loss_reads.loss_mismatch(evs) is None
    # the bug at a confidence no smoothing at its optimum logs it at (held-out hunt 122)
    bug = replace(evs[-1], val_loss=1.1574, probe_loss_val=0.3753, probe_ce_probs_val=1.1423,
                  probe_ce_probs_se_val=0.0136, conf_val=0.711)  # fmt: skip
    assert loss_reads.reads_logits(bug) is False


def test_loss_reads_probabilities_read_as_their_logarithms_give_the_logits_figures():
    logits, labels = torch.randn(64, 5) * 3, torch.randint(0, 5, (64,))
    as_logits, _, _ = figures({}, {"val": logits}, {"val": labels})
    as_probs, _, _ = figures({}, {"val": logits.softmax(1)}, {"val": labels})
    for name in ("conf_val", "ece_val", "probe_acc_val", "probe_loss_val"):
        assert as_probs[name] == pytest.approx(as_logits[name], abs=1e-4), name
    assert (as_logits["probe_simplex_val"], as_probs["probe_simplex_val"]) == (0.0, 1.0)


class SoftmaxNLL(Net):
    """A model that ends in a softmax, trained right: NLL of the log-probabilities."""

    def _step(self, batch, split):
        x, y = batch
        probs = self(x)
        loss = F.nll_loss(probs.clamp_min(1e-12).log(), y)
        self.log(f"{split}/loss", loss, on_epoch=True, on_step=False)
        self.log(f"{split}/acc", (probs.argmax(1) == y).float().mean(), on_epoch=True)
        return loss


def test_loss_reads_a_softmax_model_trained_right_is_quiet_and_read_as_probabilities(tmp_path):
    torch.manual_seed(0)
    train = DataLoader(one_hot_set([128] * 4, seed=0, noise=0.8), batch_size=32, shuffle=True)
    val = DataLoader(one_hot_set([64] * 4, seed=1, noise=0.8), batch_size=64)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    trainer, _ = fit_monitor(tmp_path, SoftmaxNLL(net.append(nn.Softmax(1)), 0.01), train, val, 6)
    assert not [f for f in findings_of(trainer) if f.kind == "loss_mismatch"]
    monitor = next(c for c in trainer.callbacks if type(c).__name__ == "OverfittingMonitor")
    # the probe's cross-entropy is the model's own NLL (the logged val loss, on a subset),
    # not the softmax of its probabilities (which read it as under-confident: ECE 0.2-0.33)
    for ev in monitor.detector.history:
        assert ev.probe_loss_val == pytest.approx(ev.val_loss, rel=0.1)
    run = events(tmp_path / "tb" / "version_0")
    ece = [e.value for e in run.Scalars("overfitting/ece_val")]
    assert len(ece) == 6 and max(ece[1:]) < 0.2


class RawNLL(Net):
    """``Net`` whose loss is ``nll_loss`` of the raw logits (``log_softmax`` forgotten)."""

    def loss(self, logits, y):
        return F.nll_loss(logits, y)


def test_loss_reads_scores_fed_to_nll_told_by_the_negative_loss():
    # f10_nll_raw s0 (digits, Adam 1e-3, `F.nll_loss(logits, y)`): logged val loss, the
    # probe's -mean(out[y]) and own cross-entropy, val accuracy at chance
    series = [(-101.9, -98.4, 21.3, 0.101), (-3591.7, -3402.0, 662.6, 0.101)]
    evs = evaluations([dict(val_loss=a, probe_nll_raw_val=b, probe_loss_val=c, val_acc=d)
                       for a, b, c, d in series])  # fmt: skip
    assert [loss_reads.misfed(e) for e in evs] == ["scores", "scores"]
    detector = Detector(patience=2)
    told = [c.verdict for e in evs for c in detector.update(e) if c.verdict.kind == "loss_mismatch"]
    (verdict,) = told
    assert verdict.figures["fed"] == "scores" and verdict.since.step == 23
    text = headline(verdict)
    assert text.startswith("The loss is fed raw scores (logits) where it expects log-probab")
    assert "minus the mean output for the label (-3402 on the val probe)" in text
    # a legitimate loss is never negative, and a negative one far from -mean(out[y]) is
    # not this (a loss of another kind logged under the name)
    assert not loss_reads.fed_scores(Evaluation(5, 0, val_loss=0.3, probe_nll_raw_val=-3.0))
    assert not loss_reads.fed_scores(Evaluation(5, 0, val_loss=-0.5, probe_nll_raw_val=-30.0))


def fit_mlp(tmp_path, module):
    """Fit ``module`` (a ``Net`` class) around a small MLP on noisy one-hot images."""
    torch.manual_seed(0)
    train = DataLoader(one_hot_set([128] * 4, seed=0, noise=1.0), batch_size=32, shuffle=True)
    val = DataLoader(one_hot_set([64] * 4, seed=1, noise=1.0), batch_size=64)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    return fit_monitor(tmp_path, module(net, lr=0.05), train, val, epochs=4)


def test_loss_reads_found_in_a_run_feeding_nll_raw_scores(tmp_path):
    trainer, said = fit_mlp(tmp_path, RawNLL)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "loss_mismatch"]
    assert finding.severity == "problem" and finding.figures["fed"] == "scores"
    run = events(tmp_path / "tb" / "version_0")
    logged = {e.step: e.value for e in run.Scalars("val/loss")}
    assert logged[finding.step - 1] == pytest.approx(finding.figures["val_loss"], rel=1e-5)
    assert finding.figures["val_loss"] < 0
    assert finding.figures["raw_nll"] == pytest.approx(finding.figures["val_loss"], rel=0.5)
    text = [t for t in texts(run, "overfitting/diagnosis") if "where it expects log-prob" in t]
    assert text and "Use `F.cross_entropy` on the logits" in text[0]
    assert any("The loss is fed raw scores" in m for m in said)


class Negated(Net):
    """``Net`` that logs its cross-entropy and returns the negative (training maximises it)."""

    def training_step(self, batch, batch_idx):
        return -super().training_step(batch, batch_idx)


def test_loss_reads_negated_loss_told_by_the_returned_loss_and_the_own_cross_entropy():
    # negated_adam s0 (digits, Adam 1e-3, `return -loss`): returned loss since the last
    # validation, the train probe's own cross-entropy, val accuracy at chance
    series = [(-1337.7, 7527.6, 0.10), (-77636.0, 237763.1, 0.097)]
    evs = evaluations([dict(returned_loss=a, probe_loss_train=b, val_acc=c, val_loss=b)
                       for a, b, c in series])  # fmt: skip
    assert [loss_reads.misfed(e) for e in evs] == ["negated", "negated"]
    detector = Detector(patience=2)
    told = [c.verdict for e in evs for c in detector.update(e) if c.verdict.kind == "loss_mismatch"]
    (verdict,) = told
    assert verdict.figures["fed"] == "negated"
    assert verdict.figures["own_train_loss"] == pytest.approx(237763.1)
    assert "returns falls below zero (-7.764e+04)" in headline(verdict)
    # a negative loss from a model better than a guess (a bonus term subtracted) is not it,
    # nor a model at chance with its loss a little below zero
    assert not returned_loss.maximised(Evaluation(5, 0, returned_loss=-0.3, probe_loss_val=0.4,
                                               classes=10.0))  # fmt: skip
    assert not returned_loss.maximised(Evaluation(5, 0, returned_loss=-0.1, probe_loss_val=2.4,
                                               classes=10.0))  # fmt: skip


def test_loss_reads_found_in_a_run_returning_the_negated_loss(tmp_path):
    trainer, said = fit_mlp(tmp_path, Negated)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "loss_mismatch"]
    assert finding.severity == "problem" and finding.figures["fed"] == "negated"
    assert finding.figures["returned_loss"] < 0 < finding.figures["own_train_loss"]
    run = events(tmp_path / "tb" / "version_0")
    logged = {e.step: e.value for e in run.Scalars("train/loss")}  # the positive CE it logs
    assert all(v > 0 for v in logged.values())
    text = [t for t in texts(run, "overfitting/diagnosis") if "rewards wrong answers" in t]
    assert text and "**Return the loss itself**" in text[0]
    assert any("rewards wrong answers" in m for m in said)


def test_loss_reads_near_uniform_probabilities_fed_to_cross_entropy_are_told():
    # hunt 22: a softmax model trained through the bug kept its probabilities near uniform
    # (88% val, own NLL 2.10) while the logged val loss was the cross-entropy of its
    # probabilities to 4 decimals (1.5825): the candidates 1.33x apart, nothing was said
    ev = lambda loss, own, soft: Evaluation(10, 0, val_loss=loss, probe_loss_val=own,  # noqa: E731
                                            probe_ce_probs_val=soft)  # fmt: skip
    assert loss_reads.reads_logits(ev(1.5825, 2.102, 1.5824)) is False
    assert loss_reads.reads_logits(ev(1.74, 2.3, 1.77)) is False  # the probe's own noise
    assert loss_reads.reads_logits(ev(2.30, 2.29, 2.302)) is None  # untrained: all ~ln K
    assert loss_reads.reads_logits(ev(1.9, 1.8, 2.28)) is None  # learning logits, early
    assert loss_reads.reads_logits(ev(2.25, 2.10, 2.27)) is None  # not 10x nearer


def test_loss_reads_a_match_within_the_probes_sampling_error_is_no_bug():
    # hunt 25: 50% noisy labels, memorised; `validation_step` logged a plain cross-entropy
    # (1.853 on 1000 images) which the 128-image probe read as 1.564, and the softmax's
    # candidate (1.842) matched it by chance: "the loss is fed probabilities"
    y = torch.arange(10).repeat(13)[:128]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(128, 10, generator=g) * 4  # confident, often wrong: losses 0-10
    found = softmax_match.candidates(logits, y)
    own = float(torch.nn.functional.cross_entropy(logits, y))
    se = float(found["probe_loss_se_val"])
    per_image = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert se == pytest.approx(float(per_image.std()) / 128**0.5)
    soft = 1.12 * own  # a softmax candidate close to the own loss, the logged one beside it
    noisy = Evaluation(704, 43, val_loss=soft * 1.006, probe_loss_val=own,
                       probe_ce_probs_val=soft, probe_loss_se_val=se)  # fmt: skip
    assert soft * 1.006 - own < loss_reads.SAMPLED * se
    assert loss_reads.reads_logits(noisy) is None
    exact = replace(noisy, probe_loss_se_val=0.009)  # near-uniform probabilities: told
    assert loss_reads.reads_logits(exact) is False
    memorised = replace(noisy, classes=10.0, returned_loss=0.05, probe_acc_train=1.0)
    assert loss_reads.reads_logits(memorised) is None  # training's loss far under the floor


def test_loss_reads_a_training_loss_at_the_floor_confirms_a_spread_probe():
    # hunt 39: softmax before `cross_entropy`; the logged val loss was the probe's softmax
    # cross-entropy to 0.6% at six validations, but the probe's own one (2.06) spread too
    # widely (standard error 0.53) to rule it out; training returned 1.61 at 87% accuracy
    row = Evaluation(128, 3, val_loss=1.6125, probe_loss_val=2.0586, probe_ce_probs_val=1.6077,
                     probe_loss_se_val=0.5317, classes=10.0, probe_acc_train=0.867,
                     probe_loss_train=2.16)  # fmt: skip
    assert loss_reads.reads_logits(replace(row, returned_loss=1.6106)) is False
    assert loss_reads.reads_logits(replace(row, returned_loss=0.35)) is None  # under the floor
    early = replace(row, returned_loss=1.6106, probe_acc_train=0.55)  # not ranked right yet
    assert loss_reads.reads_logits(early) is None
    # hunt 40: label smoothing 0.5 (its minimum 1.68) at 98% val, told: the outputs' own
    # cross-entropy (0.62) is under the loss, where a softmax's loss is under theirs
    smoothed = replace(row, returned_loss=1.69, probe_loss_train=0.62, probe_acc_train=0.98)
    assert loss_reads.reads_logits(smoothed) is None  # not confirmed
    # ... and the val loss within 10% of the softmax's, far from the outputs' own
    logged = Evaluation(64, 1, val_loss=1.794, probe_loss_val=0.825, probe_ce_probs_val=1.954,
                        probe_loss_se_val=0.027, classes=10.0, val_acc=0.935)  # fmt: skip
    assert loss_reads.reads_logits(logged) is True
    assert loss_reads.reads_logits(replace(logged, val_acc=0.6)) is False


def test_loss_reads_a_negative_loss_of_a_model_that_classifies_is_no_nll_of_scores():
    # hunt 29, the figures at steps 64 and 96: `CE - entropy` (a confidence penalty, 97%
    # val) and `CE - 0.01 * sum(w ** 2)` (a penalty's sign flipped, 94%) were both told
    # "`nll_loss` fed raw scores ... learns nothing that classifies"
    common = dict(val_loss=0.9, probe_ce_probs_val=2.0, val_acc=0.94)
    penalty = [
        dict(common, returned_loss=-0.895, probe_loss_train=0.96, probe_nll_raw_val=-1.7),
        dict(common, returned_loss=-0.96, probe_loss_train=0.92, probe_nll_raw_val=-1.8),
    ]
    assert [loss_reads.misfed(e) for e in evaluations(penalty)] == [None, None]
    assert loss_reads.loss_mismatch(evaluations(penalty)) is None
    flipped = [
        dict(common, returned_loss=-4.33, probe_loss_train=0.16, probe_nll_raw_val=-8.0),
        dict(common, returned_loss=-11.6, probe_loss_train=0.12, probe_nll_raw_val=-9.9),
    ]
    verdict = loss_reads.loss_mismatch(evaluations(flipped))
    assert verdict.figures["fed"] == "unbounded"
    text = headline(verdict)
    assert text.startswith("The loss `training_step` returns falls below zero without limit")
    assert "(-11.6, where" in text and "own cross-entropy 0.12" in text
    assert "sign flipped" in text and "learns nothing that classifies" not in text
    assert "a penalty is added" in remedies(verdict)[0]


def test_loss_reads_a_negative_val_loss_of_a_model_that_classifies_is_no_nll_of_scores():
    # hunt 94: `CE - 1.5 * entropy` logged as the val loss on a Conv1d net at 100% val (its
    # own cross-entropy 0.73, ln 4 = 1.39) was told "`nll_loss` fed raw scores ... learns
    # nothing that classifies (val accuracy 100.0%)"
    row = dict(val_loss=-0.9, probe_nll_raw_val=-0.95, classes=4.0, val_acc=1.0)
    assert not loss_reads.fed_scores(Evaluation(94, 2, probe_loss_train=0.73, **row))
    assert loss_reads.fed_scores(Evaluation(94, 2, probe_loss_train=3.1, **row))


def test_loss_reads_nll_of_logits_in_training_step_only_is_not_a_flipped_sign():
    # hunt 25: `F.nll_loss(logits, y)` in `training_step` (the val loss a cross-entropy):
    # told "its sign flipped, or a subtracted term"; the label's logit climbs instead
    rows = [dict(returned_loss=-300.0 * (i + 1), val_loss=100.0 * (i + 1),
                 probe_loss_val=100.0 * (i + 1), probe_loss_train=100.0 * (i + 1),
                 probe_ce_probs_val=2.35, probe_nll_raw_val=-1000.0 * (i + 1))
            for i in range(2)]  # fmt: skip
    evs = evaluations(rows)
    assert [loss_reads.misfed(e) for e in evs] == ["scores_in_step"] * 2
    verdict = loss_reads.loss_mismatch(evs)
    text = headline(verdict)
    assert text.startswith("`training_step` feeds its loss raw scores (logits)")
    assert "-2000" in text and "sign flipped" not in text
    negated = [dict(r, probe_nll_raw_val=800.0) for r in rows]  # `return -loss`: label pushed down
    assert [loss_reads.misfed(e) for e in evaluations(negated)] == ["negated"] * 2


def test_loss_reads_a_loss_held_at_chance_while_the_outputs_learn_is_told():
    # hunt 39: logits divided by 100 inside the loss; the returned and logged losses sat
    # at 2.302 (ln 10 = 2.303) for six epochs while the outputs' own cross-entropy fell
    # 2.27 -> 1.98 (26-30% val): no finding at all
    rows = [(2.3021, 2.3020, 2.246), (2.3018, 2.3016, 2.211)]
    evs = [
        Evaluation(
            32 * (i + 2),
            i + 1,
            returned_loss=ret,
            val_loss=val,
            probe_loss_val=own,
            classes=10.0,
            val_acc=0.28,
        )
        for i, (ret, val, own) in enumerate(rows)
    ]
    found = loss_reads.loss_mismatch(evs)
    assert found is not None and found.figures["fed"] == "scaled"
    text = headline(found)
    assert "The loss `training_step` returns (2.302) and the logged val loss" in text
    assert "the loss does not read the outputs as the model gives them" in text
    # an untrained model (its outputs at chance too), and a loss that falls with them
    untrained = [replace(e, probe_loss_val=2.30) for e in evs]
    assert loss_reads.loss_mismatch(untrained) is None
    learning = [replace(e, returned_loss=e.probe_loss_val, val_loss=e.probe_loss_val) for e in evs]
    assert loss_reads.loss_mismatch(learning) is None


def test_loss_reads_a_logged_accuracy_far_from_the_model_s_is_another_model_s_loss():
    # hunt 80: a lagging average validated (Lightning's EMAWeightAveraging), its near-
    # uniform val loss at the model's softmax cross-entropy: told "fed probabilities"
    from lightning_cnnviz.overfitting.evaluation import Evaluation
    from lightning_cnnviz.overfitting.loss_reads import reads_logits

    row = dict(val_loss=2.157, probe_loss_val=0.9, probe_ce_probs_val=2.156, probe_acc_val=0.7)
    assert reads_logits(Evaluation(100, 1, val_acc=0.68, **row)) is False  # the model's
    assert reads_logits(Evaluation(100, 1, val_acc=0.13, **row)) is None  # another model's


def test_loss_reads_outputs_wider_than_the_labels_are_not_fed_probabilities():
    # setups hunt 76: NT-Xent (3.478) on a 32-wide embedding, labels 0-3 riding along: the
    # softmax of 32 flat outputs has a cross-entropy of ln 32 = 3.466 whatever they are
    wide = Evaluation(64, 1, returned_loss=3.46, classes=32.0, label_classes=4.0,
                      probe_size=128.0, val_loss=3.478, probe_loss_val=4.285,
                      probe_ce_probs_val=3.48, probe_acc_val=0.25)  # fmt: skip
    assert loss_reads.reads_logits(wide) is False and loss_reads.misfed(wide) is None
    assert loss_reads.misfed(replace(wide, classes=4.0)) == "probabilities"


def test_loss_reads_outputs_above_chance_on_batch_statistics_are_no_other_outputs():
    # hunt 88: a MobileNetV3 (BatchNorm momentum 0.01) at chance in eval mode on both
    # probes, logged train accuracy 78%, the val probe 47% on batch statistics (4 classes)
    row = dict(classes=4.0, probe_size=128.0, bn_size=96.0, train_acc=0.78,
               probe_acc_train=0.25, probe_acc_val=0.25)  # fmt: skip
    assert not other_targets.other_outputs(Evaluation(192, 5, probe_acc_bn=0.47, **row))
    # a head `forward` returns that never trained stays at chance on batch statistics too
    assert other_targets.other_outputs(Evaluation(192, 5, probe_acc_bn=0.27, **row))


def test_loss_reads_a_model_at_the_label_prior_is_no_other_targets_or_outputs():
    # hunt 92: a one-logit head on 4% positives under Adam 1e-7 answers "no" everywhere:
    # logged 96% and a returned loss at the prior's entropy (0.168), 50% and 1.57 on the
    # class-balanced train probe; told "other outputs" / "the loss does not measure the labels"
    row = dict(classes=2.0, probe_size=128.0, probe_acc_train=0.5, probe_loss_train=1.566,
               top_share=0.96)  # fmt: skip
    assert not other_targets.loss_blind(Evaluation(234, 1, returned_loss=0.168, **row))
    assert not other_targets.other_outputs(Evaluation(234, 1, train_acc=0.96, **row))
    # the same figures where the labels are balanced: other targets indeed
    balanced = {**row, "top_share": None}
    assert other_targets.loss_blind(Evaluation(234, 1, returned_loss=0.168, **balanced))
    assert other_targets.other_outputs(Evaluation(234, 1, train_acc=0.96, **balanced))
