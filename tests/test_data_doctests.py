"""The Examples sections of the data, bench and sr docstrings run."""

import doctest
import importlib

import pytest

MODULES = [
    "mrsisr.data.degrade",
    "mrsisr.data.splits",
    "mrsisr.data.dataset",
    "mrsisr.data.phantom",
    "mrsisr.eval.bench",
    "mrsisr.sr",
    "mrsisr.eval.studies",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
