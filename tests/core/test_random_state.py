"""Reads that put back what a dataset, a collate or a module holds."""

import collections

import torch

from lightning_cnnviz.core.attribute_state import attributes_kept
from lightning_cnnviz.core.random_state import rng_untouched


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
