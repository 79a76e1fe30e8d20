"""Training images repeated: by the set itself (told before the first step), or the loader."""

import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler, SubsetRandomSampler

from lightning_cnnviz.core.findings import findings_of
from lightning_cnnviz.core.image_keys import image_keys
from lightning_cnnviz.core.root_causes import earlier_cause
from lightning_cnnviz.overfitting.repeated_items import repeated_set
from tests.overfitting.runs import ItemsMapped, Net, fit_monitor, one_hot_set


class SameIndices(Sampler):
    """Yields the first ``k`` indices again and again: every batch holds the same items."""

    def __init__(self, k, n):
        self.k, self.n = k, n

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter([i % self.k for i in range(self.n)])


def _fit(tmp_path, k=0, sampler=None, counts=32, shuffle=None, epochs=1, **trainer_args):
    train = one_hot_set([counts] * 4)
    # `__getitem__` wrapping the index at `k`: the set holds `k` different items
    data = ItemsMapped(train, lambda d, i: d[i % k]) if k else train
    model = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    shuffle = sampler is None if shuffle is None else shuffle
    loader = DataLoader(data, batch_size=16, shuffle=shuffle, sampler=sampler)
    val = DataLoader(one_hot_set([16] * 4, seed=1), batch_size=32)
    torch.manual_seed(0)
    return fit_monitor(tmp_path, model, loader, val, epochs=epochs, **trainer_args)


def _kinds(trainer):
    return {f.kind: f for f in findings_of(trainer) if f.kind.startswith("repeated")}


def test_repeated_items_a_set_wrapping_its_index_is_told_before_the_first_step(tmp_path):
    # hunt 34: `__getitem__` wrapping at 256 of 2000 digits, never told (val 89% vs 96%);
    # hunt 33: wrapping at 64, told as overfitting three validations late
    trainer, said = _fit(tmp_path, k=16, counts=128)  # 512 items, 16 different ones
    found = _kinds(trainer)
    assert list(found) == ["repeated_items"]  # the loader's batches: explained by the set
    item = found["repeated_items"]
    assert (item.severity, item.step) == ("problem", 0)
    # the probe's 64 images suggest it, 512 read at random count it (the whole set here)
    assert item.figures["distinct"] == 16.0 and item.figures["set_size"] == 512.0
    assert item.message.startswith("The training set holds only 16 different images among")
    assert len([m for m in said if m.startswith("The training set holds only")]) == 1


def test_repeated_items_a_sampler_repeating_its_indices_is_told_at_the_third_step(tmp_path):
    # hunt 33: the same 64 digits at every step; here the set is fine and the loader not
    trainer, _ = _fit(tmp_path, sampler=SameIndices(16, 128))
    found = _kinds(trainer)
    assert list(found) == ["repeated_batches"]
    batches = found["repeated_batches"]
    assert (batches.severity, batches.step) == ("problem", 2)
    assert batches.figures == {"distinct": 16.0, "read": 48.0, "set_size": 128.0, "batches": 3.0}
    assert "its first 3 batches hold 48 images but only 16 different ones" in batches.message


def test_repeated_items_quiet_for_a_usual_loader_and_blank_images(tmp_path):
    trainer, _ = _fit(tmp_path, counts=32)
    assert _kinds(trainer) == {}
    blank = torch.zeros(64, 1, 4, 4)  # images of one value say nothing of repeats
    assert repeated_set(image_keys(blank, plain=False), set_size=2000) == {}


def _mostly_blank(data, i):
    """70% of the items one blank cell (class 0), the rest the usual images."""
    x, y = data[i]
    return (torch.zeros_like(x), torch.tensor(0)) if i % 10 < 7 else (x, y)


def test_repeated_items_quiet_for_a_set_of_many_blank_cells(tmp_path):
    # hunt 35: 70% of the items one blank cell by design (val 97%) was told as a loader
    # handing the same few images at every step
    model = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    blank = ItemsMapped(one_hot_set([128] * 4), _mostly_blank)
    loader = DataLoader(blank, batch_size=16, shuffle=True)
    val = DataLoader(one_hot_set([16] * 4, seed=1), batch_size=32)
    trainer, _ = fit_monitor(tmp_path, model, loader, val, epochs=1)
    assert _kinds(trainer) == {}


def test_repeated_items_a_debugging_subset_sampler_is_told_before_the_first_step(tmp_path):
    # hunt 35: `SubsetRandomSampler(range(128))` left on 2000 digits, told as overfitting
    # two validations late ("stop at epoch 15")
    trainer, said = _fit(tmp_path, sampler=SubsetRandomSampler(range(32)), counts=128, epochs=2)
    found = _kinds(trainer)
    assert list(found) == ["repeated_items"]
    item = found["repeated_items"]
    # a note (a subset may be on purpose: hunt 37), named by the curves' findings
    assert (item.severity, item.step) == ("note", 0)
    assert (item.figures["reach"], item.figures["set_size"]) == (32.0, 512.0)
    assert item.message.startswith("Training reads only 32 of the 512 items of its set (6%)")
    assert "its `SubsetRandomSampler` reaches no others" in item.message
    assert not [m for m in said if m.startswith("Training reads only")]  # not warned
    assert "training reads few different images" in earlier_cause(trainer, "overfitting")


def test_repeated_items_an_unshuffled_loader_cut_short_is_told(tmp_path):
    trainer, _ = _fit(tmp_path, counts=128, shuffle=False, limit_train_batches=4, epochs=2)
    item = _kinds(trainer)["repeated_items"]
    assert (item.figures["reach"], item.figures["set_size"]) == (64.0, 512.0)
    assert "an unshuffled loader cut at 4 batches an epoch" in item.message


def test_repeated_items_quiet_for_a_split_by_samplers_and_a_shuffled_loader_cut(tmp_path):
    # a train/val split of one set by index samplers reads most of it: no subset left in
    trainer, _ = _fit(tmp_path, sampler=SubsetRandomSampler(range(100, 512)), counts=128, epochs=2)
    assert _kinds(trainer) == {}
    cut = {"counts": 128, "limit_train_batches": 4}
    trainer, _ = _fit(tmp_path / "cut", epochs=2, **cut)  # new items each epoch
    assert _kinds(trainer) == {}
    # one pass over the items reached (a smoke test) repeats nothing
    trainer, _ = _fit(tmp_path / "once", shuffle=False, **cut)
    assert _kinds(trainer) == {}


def test_repeated_items_quiet_for_rare_classes_oversampled_by_copies(tmp_path):
    # hunt 36: a long tail balanced by copying its rare images (994 different images in
    # 4000 items) was told "only about 181 different images"; the common class repeats none
    g = torch.Generator().manual_seed(0)
    common = torch.rand(100, 16, generator=g)  # class 0: 100 different items
    rare = torch.rand(9, 2, 16, generator=g)  # classes 1-9: 2 images each, copied 50 times
    x = torch.cat([common, rare.repeat_interleave(50, 1).flatten(0, 1)])
    y = torch.cat([torch.zeros(100), torch.arange(1, 10).repeat_interleave(100)]).long()
    data = torch.utils.data.TensorDataset(x, y)  # 1000 items, 118 different images
    model = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 10)), lr=0.01)
    loader = DataLoader(data, batch_size=16, shuffle=True)
    val = DataLoader(torch.utils.data.TensorDataset(x[:64], y[:64]), batch_size=32)
    trainer, _ = fit_monitor(tmp_path, model, loader, val, epochs=1)
    assert _kinds(trainer) == {}
    assert repeated_set(image_keys(x[::9, None, None]), 1000)  # as the probe alone reads it


def test_repeated_items_one_image_handed_for_half_the_items_is_told(tmp_path):
    # hunt 106: a `__getitem__` ignoring its index for half of 3,000 items (one digit half
    # of every batch) went untold: its other classes hardly repeat, as oversampled ones'
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(1000, 16, generator=g), torch.arange(1000) % 10
    data = ItemsMapped(torch.utils.data.TensorDataset(x, y), lambda d, i: d[0 if i < 500 else i])
    model = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 10)), lr=0.01)
    loader = DataLoader(data, batch_size=16, shuffle=True)
    val = DataLoader(torch.utils.data.TensorDataset(x[:64], y[:64]), batch_size=32)
    trainer, _ = fit_monitor(tmp_path, model, loader, val, epochs=1)
    (finding,) = [f for f in findings_of(trainer) if f.kind == "repeated_items"]
    assert finding.severity == "problem" and 0.4 <= finding.figures["one_image"] <= 0.6
    assert finding.message.startswith("The training set hands one image for about 5")
    assert "`__getitem__` (an index ignored, clamped or wrapped" in finding.message


def test_repeated_items_a_class_that_is_one_image_by_design_is_not_told():
    # hunt 107: an "empty" class of one background image, 30% of the items, was told "Check
    # the dataset's `__getitem__` (an index ignored ...)"; one image of a class holding
    # others too (an index ignored for part of the set) still is
    g = torch.Generator().manual_seed(0)
    x = torch.rand(700, 1, 4, 4, generator=g)
    empty = torch.zeros(300, 1, 4, 4) + 0.5 * torch.eye(4)
    keys = image_keys(torch.cat([x, empty]))
    labels = [i % 9 + 1 for i in range(700)] + [0] * 300
    assert repeated_set(keys, 3000, labels) == {}  # 1,000 read of 3,000 items
    found = repeated_set(keys, 3000, [i % 10 for i in range(700)] + [0] * 300)
    assert 0.29 <= found["one_image"] <= 0.31


class CycledBatches(Sampler):
    """A batch sampler handing the same ``k`` batches again and again."""

    def __init__(self, k, n, size=16):
        self.k, self.n, self.size = k, n, size

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter([list(range(b % self.k * self.size, (b % self.k + 1) * self.size))
                     for b in range(self.n)])  # fmt: skip


def test_repeated_items_a_batch_sampler_cycling_a_few_batches_is_told(tmp_path):
    # hunt 36: a batch sampler handing the same 2 (or 4) batches at every step was told
    # as overfitting, "stop at epoch 0"
    model = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    loader = DataLoader(one_hot_set([64] * 4), batch_sampler=CycledBatches(2, 16))
    val = DataLoader(one_hot_set([16] * 4, seed=1), batch_size=32)
    trainer, _ = fit_monitor(tmp_path, model, loader, val, epochs=1)
    batches = _kinds(trainer)["repeated_batches"]
    assert (batches.step, batches.figures["distinct"], batches.figures["read"]) == (15, 32.0, 256.0)
    assert "its first 16 batches hold 256 images but only 32 different ones" in batches.message


class PoolBatches:
    """A batch sampler of one's own: random batches from the first ``pool`` indices only."""

    def __init__(self, pool, n, size=16):
        self.pool, self.n, self.size = pool, n, size
        self.generator = torch.Generator().manual_seed(0)

    def __len__(self):
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            yield torch.randint(0, self.pool, (self.size,), generator=self.generator).tolist()


def test_repeated_items_a_batch_sampler_drawing_from_a_pool_is_a_note(tmp_path):
    # hunt 38: random batches from the first 300 of 2,000 indices (val 89-91% against
    # 95%) were never told: no sampler holds the indices, and no batch repeats another
    model = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    data = one_hot_set([128] * 4)
    loader = DataLoader(data, batch_sampler=PoolBatches(48, 32))
    val = DataLoader(one_hot_set([16] * 4, seed=1), batch_size=32)
    trainer, _ = fit_monitor(tmp_path, model, loader, val, epochs=1)
    reach = _kinds(trainer)["repeated_items"]
    assert (reach.severity, reach.step) == ("note", 15)
    assert 36 <= reach.figures["reach"] <= 60 and reach.figures["set_size"] == 512.0
    assert reach.message.startswith("Training reads only about ")
    assert "its first 16 batches drew 256 images holding" in reach.message
    # the same draws from the whole set are quiet
    model = Net(nn.Sequential(nn.Flatten(), nn.Linear(16, 4)), lr=0.01)
    loader = DataLoader(data, batch_sampler=PoolBatches(512, 32))
    trainer, _ = fit_monitor(tmp_path / "whole", model, loader, val, epochs=1)
    assert _kinds(trainer) == {}


def test_repeated_items_quiet_for_a_sampler_drawing_with_replacement(tmp_path):
    # class-balancing draws repeat some items, and most of what is read differs
    weights = torch.tensor([8.0] * 16 + [1.0] * 240)
    sampler = torch.utils.data.WeightedRandomSampler(weights, 256, generator=torch.Generator())
    trainer, _ = _fit(tmp_path, sampler=sampler, counts=64)
    assert _kinds(trainer) == {}


def test_repeated_items_reach_of_a_weighted_sampler_is_where_its_weight_lies():
    # hunt 37: weights of 1e-7 on 90% of the items: about 200 digits ever read
    from lightning_cnnviz.overfitting.repeated_items import loader_reach

    def reach(weights):
        sampler = torch.utils.data.WeightedRandomSampler(weights, len(weights))
        return loader_reach(DataLoader(range(len(weights)), 64, sampler=sampler), len(weights))

    # the items holding 95% of the draws
    for light in (1e-7, 1e-3, 3e-3):  # hunts 38-39: 3e-3 on the rest draws 97% from 200
        found = reach(torch.cat([torch.ones(200), torch.full((1800,), light)]))
        assert 190 <= found["reach"] <= 200
    assert reach(torch.cat([torch.full((20,), 90.0), torch.ones(1980)])) == {}  # balancing
    # class balancing over a set 80% of one class: that class's items are the least drawn
    balanced = torch.cat([torch.full((4000,), 0.1 / 4000), torch.full((900,), 0.1 / 100)])
    assert reach(balanced) == {}
