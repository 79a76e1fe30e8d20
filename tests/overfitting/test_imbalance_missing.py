"""One class in every training label, classes missing from training, relabelled or shifted."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting.class_figures import probe_figures
from lightning_cnnviz.overfitting.class_gap import split_classes
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from lightning_cnnviz.overfitting.imbalance import class_imbalance
from lightning_cnnviz.overfitting.remedies import remedies
from tests.overfitting.runs import Net, fit_imbalanced, fit_monitor, one_hot_set
from tests.overfitting.series import class_ev as ev
from tests.tb import events, texts


def test_imbalance_one_class_in_every_training_label_is_a_problem_at_once():
    # f_one_item: a `__getitem__` that ignores its index: every training item is one class
    everything_as_3 = [[0, 0, 0, 40], [0, 0, 0, 16], [0, 0, 0, 16], [0, 0, 0, 16]]
    one_class = torch.tensor([0.0, 0.0, 0.0, 1.0])
    evs = [ev(10, everything_as_3, one_class), ev(20, everything_as_3, one_class)]
    verdict = class_imbalance(evs)
    assert (verdict.severity, verdict.figures["one_class"]) == ("problem", True)
    text = headline(verdict)
    assert text.startswith("One class holds every training label: since epoch 1 (step 10)")
    assert "predicts class 3 for every image" in text
    assert remedies(verdict)[0].startswith("**Look at the training items**")
    assert class_imbalance([ev(10), ev(20)]).figures["one_class"] is False


def test_imbalance_one_class_found_in_a_run(tmp_path):
    trainer, warned = fit_imbalanced(tmp_path, one_hot_set([0, 0, 0, 300]))
    (finding,) = [f for f in findings_of(trainer) if f.kind == "class_imbalance"]
    assert (finding.severity, finding.figures["since_epoch"]) == ("problem", 0)
    assert finding.figures["top_share"] == 1.0 and finding.figures["one_class"] is True
    assert any(w.startswith("One class holds every training label") for w in warned)


def test_imbalance_a_class_relabelled_as_another_is_told_as_wrong_labels():
    # held out: 60% of the training 3s relabelled 8; class 3 never predicted, its images
    # taken for 8. Here 4 classes, class 1 at 10% of the training labels (25% of the val
    # probe) and class 3 at 40% (25%): a move, not a rare class
    moved = torch.tensor([0.25, 0.10, 0.25, 0.40])
    confusion = [[16, 0, 0, 0], [0, 1, 0, 15], [0, 0, 16, 0], [0, 0, 0, 16]]
    evs = [ev(10 * i, confusion, moved, val_acc=0.75) for i in (1, 2, 3)]
    verdict = class_imbalance(evs)
    assert verdict.severity == "problem"
    assert verdict.figures["ignored_val_share"] == pytest.approx(0.25)
    text = headline(verdict)
    assert text.startswith("Training labels of class 1 look moved to class 3 since epoch 1")
    assert "Class 1 is 10.0% of the training labels but 25.0% of the val probe" in text
    assert remedies(verdict)[0].startswith("**Check the training labels of classes 1 and 3**")
    # a long tail validated on balanced data: rare, not moved (its head holds 70%)
    tail = torch.tensor([0.70, 0.05, 0.10, 0.15])
    verdict = class_imbalance([ev(10 * i, confusion, tail, val_acc=0.75) for i in (1, 2, 3)])
    assert headline(verdict).startswith("Rare classes left out since epoch 1")


def test_imbalance_a_class_missing_from_training_is_a_problem_at_once():
    # held out: digits 8 and 9 left out of training (a split by class), the other eight
    # even: val capped at 76%, "no problems found". Here class 3 has no training label
    even = torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0])
    confusion = [[16, 0, 0, 0], [0, 16, 0, 0], [0, 0, 16, 0], [0, 0, 15, 1]]
    assert probe_figures(confusion, even)["missing"] == [3]
    verdict = class_imbalance([ev(10, confusion, even, val_acc=0.78)])
    assert (verdict.severity, verdict.figures["missing"]) == ("problem", [3])
    text = headline(verdict)
    assert text.startswith("Class 3 never appears among the training labels, but the val probe")
    assert "since epoch 1 (step 10) the model takes it for class 2" in text
    assert remedies(verdict)[0].startswith("**Put images of class 3 in the training set**")
    # a rare class that is there: no such sentence (and it waits, as before)
    rare = torch.tensor([0.45, 0.45, 0.09, 0.01])
    assert probe_figures(confusion, rare)["missing"] == []
    assert class_imbalance([ev(10, confusion, rare, val_acc=0.78)]) is None


def test_imbalance_a_missing_class_beside_moved_ones_is_taken_for_its_own_prediction():
    # hunt 27: training labels of 5-9 moved by one (5 -> 6, ..., 9 -> 0): 5 never appears
    # in training, and its images are taken for 6; 9's for 0, which was the one named
    shares = torch.tensor([0.4, 0.2, 0.2, 0.0, 0.2])  # class 3 missing, 4 moved
    confusion = [[16, 0, 0, 0, 0], [0, 16, 0, 0, 0], [0, 0, 16, 0, 0], [0, 0, 0, 0, 16],
                 [16, 0, 0, 0, 0]]  # fmt: skip
    figures = probe_figures(confusion, shares)
    assert (figures["ignored"], figures["missing"], figures["taken_for"]) == ([3, 4], [3], 4)
    # with no class missing, the rare left-out ones are still taken for another class only
    rare = probe_figures(confusion, torch.tensor([0.45, 0.25, 0.25, 0.025, 0.025]))
    assert (rare["missing"], rare["taken_for"]) == ([], 0)
    # the classes moved are split classes too: told as a gap, and the val curve waits
    detector, kinds = Detector(patience=2), []
    learnt = [[16 if i == j else 0 for j in range(5)] for i in range(5)]
    for i, loss in enumerate([1.0, 1.4, 1.8, 2.2]):
        e = Evaluation(10 * (i + 1), i, classes=5.0, train_acc=0.97, val_acc=0.6,
                       val_loss=loss, train_loss=1 / (i + 1), **figures,
                       **split_classes(learnt, confusion))  # fmt: skip
        kinds += [c.verdict.kind for c in detector.update(e)]
    assert sorted(set(kinds)) == ["class_imbalance", "generalisation_gap"]


def test_imbalance_val_labels_shifted_from_the_training_labels_are_told_so():
    # held out (hunt 22): training labels stored 1..10 (an 11-way head), val labels 0..9:
    # 93% of the val digits predicted as their label plus one, told "class 0 never
    # appears among the training labels ... a split made by class?"
    shares = torch.tensor([0.0, 0.25, 0.25, 0.25, 0.25])
    confusion = [[0, 15, 1, 0, 0], [0, 1, 15, 0, 0], [0, 0, 0, 16, 0], [0, 0, 1, 0, 15],
                 [0, 0, 0, 0, 0]]  # fmt: skip
    figures = probe_figures(confusion, shares)
    assert (figures["shift"], figures["shift_share"]) == (1, 0.953125)
    verdict = class_imbalance([ev(10, confusion, shares, val_acc=0.02)])
    text = headline(verdict)
    assert text.startswith("The val labels look shifted by -1 from the training labels")
    assert "predicts class k+1 for 95.3% of the val probe's images of class k" in text
    assert remedies(verdict)[0].startswith("**Map the labels alike in both splits**")
    # a class dropped from training, the others right: no shift
    even = torch.tensor([1 / 3, 1 / 3, 1 / 3, 0.0])
    dropped = [[16, 0, 0, 0], [0, 16, 0, 0], [0, 0, 16, 0], [0, 0, 15, 1]]
    assert probe_figures(dropped, even)["shift_share"] < 0.5


def test_imbalance_a_class_missing_from_training_found_in_a_run(tmp_path):
    linear = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.1)
    trainer, warned = fit_imbalanced(tmp_path, one_hot_set([100, 100, 100, 0]), model=linear)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "class_imbalance"]
    assert (finding.severity, finding.step, finding.figures["missing"]) == ("problem", 10, [3])
    assert finding.figures["top_share"] == pytest.approx(1 / 3, abs=0.01)
    assert any(w.startswith("Class 3 never appears among the training labels") for w in warned)
    assert any(finding.message in t for t in texts(events(tmp_path), "overfitting/diagnosis"))


def test_imbalance_a_class_an_unshuffled_loader_drops_every_epoch_is_missing(tmp_path):
    # hunt 41: class 9's 40 digits stored last, `shuffle=False, drop_last=True`: cut every
    # epoch, never trained (val recall 0), and nothing told (2% of the set: rare, not missing)
    x, y = one_hot_set([96, 96, 96, 20]).tensors
    order = torch.cat([torch.randperm(288, generator=torch.Generator().manual_seed(0)),
                       torch.arange(288, 308)])  # fmt: skip
    train = TensorDataset(x[order], y[order])  # 308 items: the last 20, class 3's, cut
    val = DataLoader(one_hot_set([16] * 4, seed=1), batch_size=32)
    for shuffle in (False, True):
        linear = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.1)
        loader = DataLoader(train, batch_size=32, shuffle=shuffle, drop_last=True)
        trainer, warned = fit_monitor(tmp_path / str(shuffle), linear, loader, val, epochs=2)
        found = [f for f in findings_of(trainer) if f.kind == "class_imbalance"]
        if shuffle:  # other items dropped each epoch: class 3 is learnt
            assert not found
            continue
        (finding,) = found
        assert (finding.severity, finding.figures["missing"]) == ("problem", [3])
        assert finding.figures["dropped"] == 20
        assert "drops the last 20 every epoch (`drop_last=True`" in finding.message
        assert any(finding.message in w for w in warned)
        written = texts(events(tmp_path / "False" / "tb" / "version_0"), "overfitting/diagnosis")
        assert any("1. **Shuffle the training loader**" in t for t in written)


def test_imbalance_a_rare_class_an_unshuffled_loader_cuts_names_drop_last(tmp_path):
    # hunt 43: 16 of class 9's 17 items stored last, cut every epoch: told late as rare,
    # `drop_last` unnamed. Here 20 of class 3's 21: one is read
    x, y = one_hot_set([96, 96, 96, 21]).tensors
    mixed = torch.randperm(289, generator=torch.Generator().manual_seed(0))
    order = torch.cat([mixed, torch.arange(289, 309)])  # 309 items: the last 21 cut
    train = DataLoader(TensorDataset(x[order], y[order]), batch_size=32, drop_last=True)
    val = DataLoader(one_hot_set([16] * 4, seed=1), batch_size=32)
    linear = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.1)
    trainer, _ = fit_monitor(tmp_path, linear, train, val, epochs=3)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "class_imbalance"]
    assert finding.figures["ignored"] == [3] and not finding.figures["missing"]
    assert "drops the last 21 every epoch (`drop_last=True`)" in finding.message


# f_classw0 (held out): digits, class 3 weighted 0 in the loss: 0% recall, the others 93-99%
