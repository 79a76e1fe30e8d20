"""Classes learnt on training images and left out on validation ones: rule, words, a run."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting import gap
from lightning_cnnviz.overfitting.class_gap import split_classes, swapped_pairs
from lightning_cnnviz.overfitting.detector import Detector
from lightning_cnnviz.overfitting.evaluation import Evaluation
from lightning_cnnviz.overfitting.headlines import headline
from tests.overfitting.runs import Net, fit_monitor, one_hot_set
from tests.tb import events, texts

LEARNT = [[16, 0, 0, 0], [0, 15, 1, 0], [0, 0, 16, 0], [0, 1, 0, 15]]
SWAPPED = [[16, 0, 0, 0], [0, 0, 16, 0], [0, 15, 1, 0], [0, 0, 0, 16]]  # val: 1 <-> 2


def test_class_gap_split_classes_need_learnt_train_and_enough_images():
    assert split_classes(LEARNT, SWAPPED) == {"split_classes": [1, 2], "split_taken": [2, 1]}
    assert swapped_pairs([1, 2], [2, 1]) == [(1, 2)]
    unlearnt = [[16, 0, 0, 0], [10, 6, 0, 0], [0, 0, 16, 0], [0, 0, 0, 16]]  # class 1 at 38%
    assert split_classes(unlearnt, SWAPPED)["split_classes"] == [2]
    few = [[4, 0, 0, 0], [0, 4, 0, 0], [0, 0, 4, 0], [0, 0, 0, 4]]  # 4 images: not judged
    assert split_classes(few, SWAPPED)["split_classes"] == []
    # 6 images of a class on each probe (20 classes), 3 right on train and 0 on val: noise
    noisy_train, noisy_val = [[3, 3, 0, 0], *LEARNT[1:]], [[0, 6, 0, 0], *LEARNT[1:]]
    assert split_classes(noisy_train, noisy_val)["split_classes"] == []
    assert split_classes([[6, 0, 0, 0], *LEARNT[1:]], noisy_val)["split_classes"] == [0]
    # blank inputs (held out): one class answered for every image, 11% train accuracy
    constant = [[0, 0, 16, 0]] * 4
    assert split_classes(constant, [[16, 0, 0, 0]] * 4)["split_classes"] == []

    # a small training set memorised (held out, hunt 88): every class at 100% on the train
    # probe, 19-47% on val; its weakest class is no split, nothing carries over well
    memorised = [[32, 0, 0, 0], [0, 32, 0, 0], [0, 0, 32, 0], [0, 0, 0, 32]]
    mediocre = [[14, 6, 6, 6], [7, 12, 7, 6], [9, 12, 3, 8], [6, 6, 5, 15]]
    assert split_classes(memorised, mediocre)["split_classes"] == []
    # ... while the same weak class beside classes that carry over is one
    carried = [[30, 1, 1, 0], [1, 29, 1, 1], [9, 12, 3, 8], [1, 1, 1, 29]]
    assert split_classes(memorised, carried)["split_classes"] == [2]


def told_gap(split_figures):
    """The generalisation gap a detector tells at its second evaluation of these figures."""
    detector = Detector(patience=2)
    e = Evaluation(10, 1, train_acc=1.0, val_acc=0.33, **split_figures)
    detector.update(e)
    (change,) = detector.update(Evaluation(**{**vars(e), "step": 20, "epoch": 2}))
    return headline(change.verdict)


def test_class_gap_words_lead_with_memorising_where_no_class_carries_over():
    memorised = [[32, 0, 0, 0], [0, 32, 0, 0], [0, 0, 32, 0], [0, 0, 0, 32]]
    text = told_gap(
        split_classes(memorised, [[14, 6, 6, 6], [7, 12, 7, 6], [9, 12, 3, 8], [6, 6, 5, 15]])
    )
    assert "Such a gap says the model memorises its training images" in text
    assert "never recognised" not in text
    text = told_gap(split_classes(LEARNT, SWAPPED))
    assert "Such a gap says the splits differ in what decides the label" in text


def ev(step, split, train_acc=0.93, val_acc=0.75):
    figures = split_classes(LEARNT, SWAPPED) if split else {"split_classes": []}
    return Evaluation(step, step // 10, train_acc=train_acc, val_acc=val_acc, **figures)


def test_class_gap_opens_a_gap_below_its_40_points_and_says_the_swap():
    assert gap.gapped(ev(10, split=False)) is False  # 18 points: no gap by accuracy
    assert gap.gapped(ev(10, split=True)) is True
    detector = Detector(patience=2)
    assert detector.update(ev(10, split=True)) == []
    (change,) = detector.update(ev(20, split=True))
    assert change.verdict.kind == "generalisation_gap"
    assert change.verdict.figures["split_classes"] == [1, 2]
    text = headline(change.verdict)
    assert "Classes 1, 2: learnt on the train probe, (almost) never recognised" in text
    assert "taken for others (those of 1 for 2, those of 2 for 1). 1 and 2: each taken" in text
    (gone,) = detector.update(ev(30, split=False, val_acc=0.92))  # both predicted again
    assert gone.change == "gone"


def test_class_gap_waits_the_val_curve_while_it_stands():
    detector = Detector(patience=2)
    losses = [1.0, 0.5, 0.6, 0.8, 1.0, 1.2]  # the val loss rises as the split classes firm up
    kinds = []
    for i, loss in enumerate(losses):
        e = ev(10 * (i + 1), split=i >= 1)
        e = Evaluation(**{**vars(e), "val_loss": loss, "train_loss": 1.0 / (i + 1)})
        kinds += [c.verdict.kind for c in detector.update(e)]
    assert kinds == ["generalisation_gap"]  # no "overfitting" beside it


def test_class_gap_found_in_a_run_with_two_val_labels_swapped(tmp_path):
    torch.manual_seed(0)
    val = one_hot_set([40, 8, 8, 40], seed=1)  # the swapped classes few: accuracy 83%
    x, y = val.tensors
    swapped = TensorDataset(x, torch.tensor([{1: 2, 2: 1}.get(int(c), int(c)) for c in y]))
    net = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.05)
    train = DataLoader(one_hot_set([40] * 4), batch_size=16, shuffle=True)
    trainer, _ = fit_monitor(tmp_path, net, train, DataLoader(swapped, batch_size=32), epochs=4)
    (found,) = [f for f in findings_of(trainer) if f.kind == "generalisation_gap"]
    assert found.severity == "problem" and found.figures["split_classes"] == [1, 2]
    assert found.figures["gap"] < gap.GAP  # found by the classes, not the accuracy gap
    text = texts(events(tmp_path / "tb" / "version_0"), "overfitting/diagnosis")[-1]
    assert "swapped labels between the splits?" in text
