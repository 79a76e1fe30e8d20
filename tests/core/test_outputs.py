"""Guessing where the logits and the labels are (``core/outputs.py``)."""

import torch

from lightning_cnnviz.core.capture import first_tensor
from lightning_cnnviz.core.outputs import guess_label_key, guess_output_key


def test_outputs_guess_prefers_class_count_then_name_then_first():
    feats, logits = torch.zeros(2, 10), torch.zeros(2, 4)
    assert guess_output_key((feats, logits), num_classes=4)[0] == 1
    assert guess_output_key({"emb": feats, "out": logits}, num_classes=None)[0] == "out"
    # two entries fit the class count: the name decides, else the first
    key, why = guess_output_key({"a": logits, "b": logits}, num_classes=4)
    assert key == "a" and "first tensor" in why
    seg = torch.zeros(2, 4, 8, 8)
    key, why = guess_output_key((feats, seg), num_classes=4)
    assert key == 1 and "second dim equals the 4 classes" in why


def test_outputs_guess_with_labels_missing_classes_takes_the_one_wide_enough():
    # an (aux, logits) model read through an 8-image probe of 10 classes: labels 0-7
    aux, logits = torch.zeros(2, 3), torch.zeros(2, 10)
    key, why = guess_output_key((aux, logits), num_classes=8)
    assert key == 1 and "room for labels 0-7" in why
    assert guess_output_key((torch.zeros(2, 12), logits), num_classes=8)[0] == 0  # no guess


def test_outputs_guess_label_only_one_integer_scalar():
    x = torch.zeros(3, 4, 4)
    assert guess_label_key({"pixels": x, "cls": torch.tensor(2)})[0] == "cls"
    assert guess_label_key({"pixels": x, "cls": 2, "flag": True})[0] == "cls"
    assert guess_label_key({"pixels": x, "a": 1, "b": torch.tensor(0)}) == (None, "")
    assert guess_label_key({"pixels": x, "w": torch.tensor(0.5)}) == (None, "")
    assert guess_label_key((x, 1)) == (None, "")


def test_outputs_as_logits_reads_a_softmax_models_probabilities_through_their_log():
    from lightning_cnnviz.core.outputs import as_logits, is_simplex

    logits = torch.randn(8, 5) * 4
    probs = logits.softmax(1)
    assert bool(is_simplex(probs)) and not bool(is_simplex(logits))
    assert torch.allclose(as_logits(probs).softmax(1), probs, atol=1e-6)
    assert torch.equal(as_logits(logits), logits)  # logits pass unchanged
    assert not bool(is_simplex(probs * 0.9))  # rows must sum to one


def test_outputs_dataclass_output_logits_guessed_and_read():
    # held out (setups hunt 18): a model returning an output object with `.logits` made
    # GradCAM and Overfitting fail ("expected a tensor ..., got HFOut")
    import dataclasses

    @dataclasses.dataclass
    class Out:
        hidden: torch.Tensor
        logits: torch.Tensor

    out = Out(torch.zeros(2, 16, 4, 4), torch.ones(2, 10))
    assert guess_output_key(out, num_classes=10) == (
        "logits",
        "shape (2, 10): its last dim equals the 10 classes",
    )
    assert first_tensor(out, "logits") is out.logits
    assert first_tensor(out) is out.hidden  # no key: the first tensor, as for a tuple


def test_outputs_digit_string_key_indexes_a_tuple_output():
    # `--...output_key 0` on the cnnviz command line arrives as "0"
    out = (torch.zeros(2, 10), torch.ones(2, 8))
    assert first_tensor(out, "1") is out[1]
