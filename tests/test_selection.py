import pytest
import torch
from torch import nn

from lightning_cnnviz.core.selection import clean_name, named_layers, of_type, resolve_layers


def net():
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()),
        nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU()),
        nn.Flatten(),
        nn.LazyLinear(3),
    )


def test_selection_exact_glob_and_type_names():
    model = net()
    assert list(resolve_layers(model, "0.0")) == ["0.0"]
    assert list(resolve_layers(model, "1.*")) == ["1.0", "1.1"]
    assert list(resolve_layers(model, "Conv2d")) == ["0.0", "1.0"]
    # model order, whatever the order of the patterns, and no duplicates
    assert list(resolve_layers(model, ["ReLU", "0.*"])) == ["0.0", "0.1", "1.1"]


def test_selection_unknown_pattern_lists_available_names():
    with pytest.raises(ValueError) as err:
        resolve_layers(net(), ["Conv2d", "features.*"])
    text = str(err.value)
    assert "'features.*'" in text and "'0.0' (Conv2d)" in text and "'3' (LazyLinear)" in text


def test_selection_auto_uses_the_monitor_rule():
    assert list(resolve_layers(net(), "auto", of_type(nn.ReLU))) == ["0.1", "1.1"]
    with pytest.raises(ValueError, match="not supported"):
        resolve_layers(net(), "auto")
    with pytest.raises(ValueError, match="found no suitable"):
        resolve_layers(net(), "auto", of_type(nn.GELU))


def test_selection_strips_compile_prefix():
    model = net()
    compiled = torch.compile(model, backend="eager")
    assert list(resolve_layers(compiled, "Conv2d")) == ["0.0", "1.0"]
    assert clean_name("_orig_mod.features.0") == "features.0"
    assert clean_name("backbone._orig_mod.conv") == "backbone.conv"


def test_selection_shared_module_listed_once():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu)
    assert list(named_layers(model)) == ["0", "1", "2"]


def test_selection_rejects_empty_list():
    with pytest.raises(ValueError, match="at least one"):
        resolve_layers(net(), [])
