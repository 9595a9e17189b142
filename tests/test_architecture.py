"""The architecture holds: layers point one way, no import cycle, small modules, one contract."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept(monkeypatch):
    """pyproject.toml's layers contract (CLI -> eval/train/sr -> ... -> types) is kept."""
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_no_import_cycle_between_top_level_modules():
    import grimp

    graph = grimp.build_graph("mrsisr")

    def top(m: str) -> str:
        return ".".join(m.split(".")[:2])

    edges: dict[str, set[str]] = {}
    for m in graph.modules:
        for d in graph.find_modules_directly_imported_by(m):
            a, b = top(m), top(d)
            if a != b and "mrsisr" not in (a, b):
                edges.setdefault(a, set()).add(b)

    def reach(a: str) -> set[str]:
        seen, todo = set(), [a]
        while todo:
            for y in edges.get(todo.pop(), ()):
                if y not in seen:
                    seen.add(y)
                    todo.append(y)
        return seen

    cycles = sorted((a, b) for a in edges for b in reach(a) if a < b and a in reach(b))
    assert cycles == []


def test_no_module_over_500_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "mrsisr").rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert long == {}


@pytest.mark.parametrize("name", ["ftddm", "tdpm", "munet_fs_cwgan", "flow_enhancer"])
def test_built_pipelines_keep_the_pipeline_contract(name):
    """Every pipeline type answers the protocol and carries the resolved recipe it came from."""
    import torch

    from mrsisr.recipes import load_recipe
    from mrsisr.types import Condition, Pipeline

    recipe = load_recipe(name, size="tiny")
    pipe = recipe.build().eval()
    assert isinstance(pipe, Pipeline)
    assert pipe.recipe.name == recipe.name and pipe.recipe.tables == recipe.tables
    assert pipe.training_stages() and pipe.parts()
    g = torch.Generator().manual_seed(0)
    ones = torch.ones(1, 1, 64, 64)
    cond = Condition(ones, torch.rand(1, 1, 64, 64, generator=g), ones, ones, torch.tensor([4.0]))
    counted: list[int] = []
    x = pipe.sample(cond, generator=g, progress=counted.append)
    assert x.shape == (1, 1, 64, 64)
    assert sum(counted) == pipe.nfe
