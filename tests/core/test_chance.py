"""The chance level shared by the activation and overfitting rules."""

import math

import pytest

from lightning_cnnviz.core.chance import AT_CHANCE, at_chance


@pytest.mark.parametrize("classes", [2, 10, 1000])
def test_at_chance_holds_within_the_tolerance_of_ln_k(classes: int) -> None:
    chance = math.log(classes)
    assert at_chance(chance * (1 + 0.9 * AT_CHANCE), classes)
    assert at_chance(chance * (1 - 0.9 * AT_CHANCE), classes)
    assert not at_chance(chance * (1 + 1.1 * AT_CHANCE), classes)
    assert not at_chance(chance * (1 - 1.1 * AT_CHANCE), classes)


def test_at_chance_reads_shuffled_label_losses_as_chance() -> None:
    # a CNN on shuffled labels sits at 2.29-2.31 against ln 10 = 2.303; one that learnt, lower
    assert all(at_chance(v, 10) for v in (2.29, 2.30, 2.31))
    assert not at_chance(2.1, 10)
