"""Every ``Example::`` in the package's docstrings runs as written."""

import doctest
import importlib
import pkgutil

import pytest

import lightning_cnnviz

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(lightning_cnnviz.__path__, "lightning_cnnviz.")
    if not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_doctests_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
