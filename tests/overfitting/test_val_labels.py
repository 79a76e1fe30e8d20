"""A class the val labels lack where the training labels make many due: told at step 0."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.overfitting.val_labels import missing_val_classes, missing_val_text
from tests.overfitting.runs import Net, fit_monitor, one_hot_set


def _fit(tmp_path, relabel):
    val = one_hot_set([40] * 4, seed=1)
    x, y = val.tensors
    val = TensorDataset(x, relabel(y.clone()))
    train = DataLoader(one_hot_set([40] * 4), batch_size=32, shuffle=True)
    model = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    return fit_monitor(tmp_path, model, train, DataLoader(val, batch_size=32), epochs=1)


def _written_as_one(y):
    y[y == 3] = 1  # a label map applied to the val split alone
    return y


def test_val_labels_a_class_written_as_another_is_told_before_the_first_step(tmp_path):
    # hunt 31: every val 7 written as 1: val 85% against 96%, told as overfitting late
    trainer, said = _fit(tmp_path, _written_as_one)
    (found,) = [f for f in findings_of(trainer) if f.kind == "val_labels_differ"]
    assert (found.severity, found.step, found.figures["missing"]) == ("problem", 0, [3])
    assert (found.figures["due"], found.figures["taken_for"]) == (40.0, 1)
    assert "class 3 is absent from 160 val labels where ~40 were due" in found.message
    assert "class 1 has 50.0% of the val labels against 25.0% of the training labels" in (
        found.message
    )
    assert len([m for m in said if m.startswith("The val labels lack a class")]) == 1


def test_val_labels_quiet_for_right_labels_and_a_shift_between_splits(tmp_path):
    trainer, _ = _fit(tmp_path / "same", lambda y: y)
    assert not [f for f in findings_of(trainer) if f.kind == "val_labels_differ"]
    # labels one apart between the splits: a class of val missing in training, another rule
    assert missing_val_classes(torch.arange(400) % 4, torch.arange(400) % 4 + 1) == {}
    # hunt 33: a background class only training has, nothing in its place in val
    background = torch.cat([torch.arange(1000) % 10, torch.full((100,), 10)])
    assert missing_val_classes(background, torch.arange(500) % 10) == {}
    # a rare class (1% of training, ~2 due among 200) absent from val by chance
    rare = torch.cat([torch.arange(990) % 3, torch.full((10,), 3)])
    assert missing_val_classes(rare, torch.arange(200) % 3) == {}
    # hunt 34: a background class only training has (20%) beside a long-tailed digit val
    # set, whose commonest class was read as the background class's new name
    train = torch.cat([torch.arange(1600) % 10, torch.full((400,), 10)])
    shares = torch.tensor([0.7**c for c in range(10)])
    counts = (1000 * shares / shares.sum()).round().long()
    longtail = torch.repeat_interleave(torch.arange(10), counts)
    assert missing_val_classes(train, longtail) == {}
    # the rename still told where the other classes keep their shares
    assert missing_val_classes(train[train < 10], _written_as_one(torch.arange(500) % 10))
    # hunt 35: a rename beside a long-tailed training set and a balanced val set, and two
    # renames at once, were excused as shares that differ throughout
    tail = torch.repeat_interleave(torch.arange(10), (2000 * shares / shares.sum()).long())
    renamed = torch.arange(1000) % 10
    renamed[renamed == 7] = 1
    assert missing_val_classes(tail, renamed)["missing"] == [7]
    twice = renamed.clone()
    twice[twice == 4] = 9
    assert missing_val_classes(torch.arange(2000) % 10, twice)["missing"] == [4, 7]


def test_val_labels_three_classes_renamed_each_taken_for_its_own():
    # hunt 36: val 7 -> 1, 4 -> 9, 3 -> 8: the second and third takers were read among
    # the other classes, whose shares then differed, and the renames were excused
    val = torch.arange(1000) % 10
    for old, new in ((7, 1), (4, 9), (3, 8)):
        val[val == old] = new
    found = missing_val_classes(torch.arange(2000) % 10, val)
    assert found["missing"] == [3, 4, 7] and sorted(found["takers"]) == [1, 8, 9]
    text = missing_val_text(found)
    assert "classes 3, 4, 7 are absent from 1000 val labels" in text
    assert "hold more of the val labels than of the training labels" in text


def test_val_labels_quiet_for_a_val_set_that_leaves_classes_out():
    # hunt 38: a val set of classes 0-5 only, rightly labelled: every other class rose
    # alike, and each was read as a missing class's new name
    train = torch.arange(2000) % 10
    assert missing_val_classes(train, torch.arange(900) % 6) == {}
    # hunt 41: classes 3, 5 and 8 only, each read as a taker of the seven missing ones
    three = torch.repeat_interleave(torch.tensor([3, 5, 8]), torch.tensor([101, 89, 97]))
    assert missing_val_classes(torch.randint(0, 10, (2000,)), three) == {}
    one = torch.arange(1000) % 10
    one[one == 7] = 1
    assert missing_val_classes(train, one)["takers"] == [1]


def test_val_labels_a_rename_inside_a_val_set_of_part_of_the_classes_is_told():
    # hunt 39: val of classes 0-5 with 5 written as 3 (and 0-7 with 7 as 1) was told as
    # overfitting: the classes left out raised every other class, and the rename fell
    train = torch.arange(2000) % 10
    for classes, old, new in ((6, 5, 3), (8, 7, 1)):
        val = torch.arange(960) % classes
        val[val == old] = new
        found = missing_val_classes(train, val)
        assert found["takers"] == [new] and old in found["missing"]
        assert f"class {new} has {2 / classes:.1%} of the val labels" in missing_val_text(found)
        assert "as if one of them was written as it" in missing_val_text(found)
    # a long-tailed val set without its rarest classes, and MNIST's uneven shares: quiet
    tail = [300, 200, 150, 100, 80, 60, 40]
    assert (
        missing_val_classes(train, torch.repeat_interleave(torch.arange(7), torch.tensor(tail)))
        == {}
    )
    mnist = torch.tensor([98, 113, 103, 101, 98, 89])
    assert missing_val_classes(train, torch.repeat_interleave(torch.arange(6), mnist)) == {}
