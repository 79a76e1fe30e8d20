"""Reads that put back what a dataset, a collate or a module holds."""

import collections

import torch

from lightning_cnnviz.core.attribute_state import attributes_kept
from lightning_cnnviz.core.random_state import restorable, rng_untouched


class Counting:
    """A dataset counting the labels it hands out, in a ``Counter``."""

    def __init__(self):
        self.seen = collections.Counter({3: 2, 5: 1})

    def __getitem__(self, i):
        self.seen[i % 7] += 1
        return torch.zeros(1), i % 7


def test_random_state_a_counter_is_put_back_as_it_was():
    # setups hunt 38: each put-back called `Counter.update` with the pairs, counting them:
    # keys like `((9, 2), 1)` after a fit, and a loss weighted by the counts changed
    data = Counting()
    with rng_untouched(data):
        _ = [data[i] for i in range(20)]
    assert data.seen == collections.Counter({3: 2, 5: 1})
    with attributes_kept(data):
        data.seen[9] += 4
    assert data.seen == collections.Counter({3: 2, 5: 1})


_CALLS = 0


def _global_counting(batch):
    global _CALLS
    _CALLS += 1
    return batch


def _defaults(batch, seen={"calls": 0}, generator=torch.Generator().manual_seed(0)):  # noqa: B006, B008
    seen["calls"] += 1
    return torch.rand(1, generator=generator)


class ClassCounted:
    calls = 0

    def __call__(self, batch):
        type(self).calls += 1
        return batch


def test_random_state_puts_back_defaults_function_and_class_attributes():
    # setups hunt 38: a default generator or dict, `collate.calls`, a class counter: moved
    # by the probes' reads; a module global rebound is bound back (setups hunt 73)
    state = _defaults.__defaults__[1].get_state()
    with rng_untouched(_defaults):
        _defaults(None)
    assert _defaults.__defaults__[0] == {"calls": 0}
    assert torch.equal(_defaults.__defaults__[1].get_state(), state)

    def counted(batch):
        counted.calls = getattr(counted, "calls", 0) + 1

    with rng_untouched(counted):
        counted(None)
    assert not hasattr(counted, "calls")
    collate = ClassCounted()
    with rng_untouched(collate):
        collate(None)
    assert ClassCounted.calls == 0
    assert restorable(_defaults, counted, collate, _global_counting)
    with rng_untouched(_global_counting):
        _global_counting(None)
    assert _CALLS == 0


def test_random_state_leaves_a_modules_and_a_datamodules_own_bookkeeping():
    # setups hunt 38: the put-back deleted `nn.Module`'s `_parameters` and a datamodule's
    # `trainer` (not searched, so taken for added): two monitors failed, the fit aborted
    import lightning as L
    from torchvision.transforms import v2

    pipeline = v2.Compose([v2.Normalize([0.5], [0.25])])
    data = L.LightningDataModule()
    data.pipeline = pipeline
    with rng_untouched(data.pipeline, data):
        data.extra = 1
    assert hasattr(pipeline, "_parameters") and hasattr(data, "trainer")
    assert not hasattr(data, "extra")
    assert restorable(data, pipeline)


class Normalise:
    """A normalising collate holding everyday values next to its constants."""

    def __init__(self, **held):
        self.__dict__.update(held)

    def __call__(self, items):
        self.classes.append("seen")  # a long plain list changed by a read: put back
        return (torch.stack(items) - 0.1307) / 0.3081


def test_random_state_everyday_values_leave_a_collate_restorable():
    # setups hunt 39: 100 class names, a class-to-index map, a logger, a dtype, a regex,
    # a date: each left a normalising collate never called, and the probes raw
    import datetime
    import logging
    import re

    import numpy as np

    names = [f"class_{i}" for i in range(100)]
    collate = Normalise(
        classes=list(names), class_to_idx={n: i for i, n in enumerate(names)},
        log=logging.getLogger("tests.data"), dtype=np.dtype("float32"),
        pattern=re.compile(r"\d+"), created=datetime.datetime(2026, 1, 1),
    )  # fmt: skip
    assert restorable(collate)
    with rng_untouched(collate):
        collate([torch.zeros(1)])
    assert collate.classes == names
    # a long list of objects of their own may hold anything: not read through
    assert not restorable(Normalise(classes=[Normalise() for _ in range(100)]))


class ReadCounts:
    """A dataset counting its reads per item, in a tensor as long as the set."""

    def __init__(self, n):
        self.reads = torch.zeros(n)

    def __getitem__(self, i):
        self.reads[i] += 1
        return torch.full((1,), float(self.reads[i])), 0


def test_random_state_a_count_per_item_of_a_large_set_is_put_back():
    # setups hunt 39: per-item read counts of a 100,000-item set (past the 65,536 entries
    # then put back) were moved by the probes' reads, and training changed
    data = ReadCounts(100_000)
    with rng_untouched(data):
        _ = [data[i] for i in range(0, 100_000, 997)]
    assert float(data.reads.sum()) == 0.0


class Running:
    """Running statistics a module keeps at module level (the user's own class)."""

    def __init__(self):
        self.n, self.mean = 0, torch.zeros(())

    def update(self, x):
        self.n += 1
        self.mean = self.mean + (x.mean() - self.mean) / self.n


STATS = Running()
SEEN = {"batches": 0}


class Standardised:
    """A batch whose ``__post_init__``-like constructor moves the module's ``STATS``."""

    def __init__(self, image):
        STATS.update(image)
        self.image = image - STATS.mean


def _module_level_collate(items):
    SEEN["batches"] += 1
    return Standardised(torch.stack(items))


def test_random_state_module_level_state_a_collate_reads_is_put_back():
    # setups hunt 72: a batch class standardising by a running mean kept at module level;
    # the probes' collate calls moved it, and the training batches (and weights) changed
    STATS.__init__()
    _module_level_collate([torch.ones(2)])
    assert restorable(_module_level_collate)
    with rng_untouched(_module_level_collate):
        for _ in range(5):
            _module_level_collate([torch.full((2,), 3.0)])
    assert (STATS.n, float(STATS.mean), SEEN["batches"]) == (1, 1.0, 1)


READS = 0
PER_ITEM: dict[int, int] = {}
NOISE = torch.Generator().manual_seed(3)


class ModuleCounting:
    """A dataset whose reads rebind a module global, count in a module dict and draw noise."""

    def __getitem__(self, i):
        global READS
        READS += 1
        PER_ITEM[i] = PER_ITEM.get(i, 0) + 1
        return torch.rand(1, generator=NOISE), i % 3


def test_random_state_module_level_state_a_datasets_class_reads_is_put_back():
    # setups hunt 73: a dataset's `__getitem__` rebinding `global n`, counting reads per item
    # in a module's dict, drawing from a module's generator: the probes' reads changed them
    state = NOISE.get_state()
    data = ModuleCounting()
    with rng_untouched(data):
        _ = [data[i] for i in range(5)]
    assert (READS, PER_ITEM) == (0, {})
    assert torch.equal(NOISE.get_state(), state)
