"""Shared pytest fixtures."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("COLUMNS", "200")  # rich renders wide tables under CliRunner


@pytest.fixture
def cli():
    """Invoke the mrsisr CLI in-process; returns a function(args) -> Result."""
    from typer.testing import CliRunner

    from mrsisr.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), env={"COLUMNS": "200"})

    return invoke


@pytest.fixture(scope="session")
def cohort5(tmp_path_factory):
    """A 5-subject phantom cohort (one subject per fold group), built once per test session."""
    from mrsisr.data import make_phantom_cohort

    return make_phantom_cohort(tmp_path_factory.mktemp("cohort5") / "c", subjects=5, seed=0)


@pytest.fixture
def lpips_installed():
    """Skip the test unless the real LPIPS metric can run (the `lpips` package and the offline
    weights that scripts/setup.sh installs)."""
    pytest.importorskip("lpips")
    from mrsisr.perceptual import lpips_weights_dir

    if not (lpips_weights_dir() / "vgg.safetensors").is_file():
        pytest.skip("LPIPS weights not installed (scripts/setup.sh installs them)")
