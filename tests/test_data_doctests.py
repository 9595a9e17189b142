"""The Examples sections of every docstring run (each module whose source has `>>>`)."""

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mrsisr"
MODULES = sorted(
    ".".join(("mrsisr", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
    if ">>>" in p.read_text(encoding="utf-8")
)


def test_the_examples_are_found():
    assert {"mrsisr.data.degrade", "mrsisr.eval.scores", "mrsisr.kspace", "mrsisr.sr"} <= set(
        MODULES
    )


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
