"""Command-line conveniences: --version, case-insensitive recipe names, --device auto."""

from __future__ import annotations

import pytest

from mrsisr.errors import MrsisrError


def test_version(cli):
    res = cli("--version")
    assert res.exit_code == 0 and res.output.startswith("mrsisr ")


def test_recipe_names_are_case_insensitive_or_suggested(cli):
    from mrsisr.recipes import load_recipe

    assert load_recipe("FTDDM", size="tiny").name == "ftddm"
    res = cli("info", "FTDM")
    assert res.exit_code == 2 and "Did you mean 'ftddm'?" in res.output


def test_device_auto_and_refusals():
    from mrsisr.devices import resolve_device

    assert resolve_device("auto") in ("cpu", "cuda")
    assert resolve_device("cpu") == "cpu"
    for bad in ("tpu", "cuda:x", ""):
        with pytest.raises(MrsisrError, match="`device`"):
            resolve_device(bad)
