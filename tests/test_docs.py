"""Every Python code block in docs/ runs, and every public symbol has a docstring."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import mrsisr

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SKIP = "<!-- docs-test: skip -->"


def runnable_blocks(page):
    text = page.read_text()
    return [m for m in BLOCK.finditer(text) if SKIP not in text[max(0, m.start() - 40) : m.start()]]


def pages_with_code():
    return sorted(p for p in DOCS.rglob("*.md") if runnable_blocks(p))


def test_skipped_blocks_are_rare():
    # a skipped block must say why it cannot run here; keep them to pages that need trained runs
    skipped = [p.name for p in DOCS.rglob("*.md") if SKIP in p.read_text()]
    assert set(skipped) <= {"training.md"}


# pages whose examples build the 25-subject cohort, run 1000-step chains or chains through the
# shipped small weights: they run in the slow set (`pytest -m slow`, also run by .ci/run)
SLOW_PAGES = {"bench.md", "data.md", "diffusion.md"}


def page_params():
    return [
        pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_PAGES else p
        for p in pages_with_code()
    ]


@pytest.mark.parametrize("page", page_params(), ids=lambda p: str(p.relative_to(DOCS)))
def test_docs_code_blocks_run(page, tmp_path, monkeypatch):
    blocks = runnable_blocks(page)
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    monkeypatch.setenv("MRSISR_CACHE", str(tmp_path / "cache"))
    namespace: dict = {"__name__": "__docs__"}
    for i, m in enumerate(blocks):
        code = compile(m.group(1), f"{page.name}[block {i}]", "exec")
        exec(code, namespace)  # blocks of one page share a namespace, as a reader's session would


def public_modules():
    names = ["mrsisr"]
    for info in pkgutil.walk_packages(mrsisr.__path__, "mrsisr."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return names


def test_every_public_symbol_has_a_docstring():
    missing = []
    for name in public_modules():
        module = importlib.import_module(name)
        if not inspect.getdoc(module):
            missing.append(name)
        exported = getattr(module, "__all__", None)
        for attr, obj in vars(module).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if exported is not None and attr not in exported:
                continue
            if inspect.isclass(obj) or inspect.isfunction(obj):
                if not inspect.getdoc(obj):
                    missing.append(f"{name}.{attr}")
                if inspect.isclass(obj):
                    for meth, fn in vars(obj).items():
                        if meth.startswith("_") or not (
                            inspect.isfunction(fn) or isinstance(fn, property)
                        ):
                            continue
                        if not inspect.getdoc(fn):
                            missing.append(f"{name}.{attr}.{meth}")
    assert not missing, "missing docstrings: " + ", ".join(missing)


def test_every_public_module_has_a_reference_entry():
    text = "\n".join(p.read_text() for p in (DOCS / "reference").glob("*.md"))
    documented = set(re.findall(r"^::: (\S+)", text, re.M))
    # the command line is documented by its commands and options (the generated cli.md, checked
    # below), not by the modules that implement it
    cli = [n for n in public_modules() if n == "mrsisr.cli" or n.startswith("mrsisr.cli.")]
    missing = [name for name in public_modules() if name not in documented and name not in cli]
    assert not missing, "modules without an API reference entry: " + ", ".join(missing)


def test_cli_reference_page_is_generated_from_the_app():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "cli_docs", DOCS.parent / "scripts" / "cli_docs.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.PAGE.read_text() == mod.render(), "run: python scripts/cli_docs.py"
