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
