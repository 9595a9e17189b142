"""Registry behaviour: registration, lookup errors, lazy entry-point plugins."""

from __future__ import annotations

import sys
import types
import warnings
from dataclasses import dataclass

import pytest

from mrsisr.errors import DuplicateNameError, PluginError, UnknownNameError
from mrsisr.registry import PluginWarning, Registry


@dataclass
class FakeDist:
    name: str


class FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint; counts loads."""

    def __init__(self, name, value, group, dist="fake-plugin", loader=None):
        self.name, self.value, self.group = name, value, group
        self.dist = FakeDist(dist)
        self._loader = loader
        self.loads = 0

    def load(self):
        self.loads += 1
        return self._loader()


def make_registry(*eps):
    calls = []

    def entry_points(group):
        calls.append(group)
        return [ep for ep in eps if ep.group == group]

    reg = Registry("samplers", entry_points=entry_points)
    return reg, calls


def builtin_ancestral():
    """Built-in ancestral sampler."""


def test_register_get_build_and_describe():
    reg, _ = make_registry()

    @reg.register("scale")
    class Scale:
        """Multiply by a factor."""

        def __init__(self, factor: float = 2.0):
            self.factor = factor

    assert reg.get("scale") is Scale
    assert reg.build("scale", factor=3.0).factor == 3.0
    assert reg.describe("scale") == "Multiply by a factor."
    assert reg.names() == ["scale"] and "scale" in reg and len(reg) == 1
    assert reg.entry("scale").plugin is None


def test_register_direct_and_custom_description():
    reg, _ = make_registry()
    reg.register("a", builtin_ancestral, description="custom")
    assert reg.describe("a") == "custom"
    assert reg.names("a*") == ["a"] and reg.names("z*") == []


def test_duplicate_name_raises_and_names_the_first():
    reg, _ = make_registry()
    reg.register("ancestral", builtin_ancestral)
    with pytest.raises(DuplicateNameError, match="'ancestral' is already registered by built-in"):
        reg.register("ancestral", lambda: None)


def test_unknown_name_lists_alternatives_and_suggests():
    reg, _ = make_registry()
    reg.register("ancestral", builtin_ancestral)
    reg.register("respace", builtin_ancestral)
    with pytest.raises(UnknownNameError) as info:
        reg.get("ancestrl")
    msg = str(info.value)
    assert "Did you mean 'ancestral'?" in msg
    assert "Available: ancestral, respace" in msg
    with pytest.raises(UnknownNameError) as info:
        reg.get("zzz")
    assert "Did you mean" not in str(info.value)


def test_plugins_are_discovered_and_loaded_lazily():
    ep = FakeEntryPoint("heun", "pkg:Heun", "mrsisr.samplers", loader=lambda: builtin_ancestral)
    reg, calls = make_registry(ep)
    assert calls == [] and ep.loads == 0  # nothing happens at construction
    assert reg.get("heun") is builtin_ancestral
    assert calls == ["mrsisr.samplers"] and ep.loads == 1
    reg.get("heun")
    reg.names()
    assert calls == ["mrsisr.samplers"] and ep.loads == 1  # discovered once
    assert reg.entry("heun").plugin == "fake-plugin"


def test_lazy_locations_import_builtin_modules(tmp_path, monkeypatch):
    reg = Registry("samplers", locations=["mrsisr_lazy_builtins"], entry_points=lambda g: [])
    holder = types.ModuleType("mrsisr_lazy_holder")
    holder.REG = reg
    monkeypatch.setitem(sys.modules, "mrsisr_lazy_holder", holder)
    (tmp_path / "mrsisr_lazy_builtins.py").write_text(
        "import mrsisr_lazy_holder\n"
        "mrsisr_lazy_holder.REG.register('from_module', lambda: None, description='lazy')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "mrsisr_lazy_builtins", raising=False)
    assert "mrsisr_lazy_builtins" not in sys.modules  # constructing imported nothing
    assert reg.names() == ["from_module"]
    assert "mrsisr_lazy_builtins" in sys.modules
    monkeypatch.delitem(sys.modules, "mrsisr_lazy_builtins")


def test_broken_plugin_is_reported_and_skipped():
    def boom():
        raise ImportError("No module named 'missing_dep'")

    bad = FakeEntryPoint("broken", "bad_pkg:Thing", "mrsisr.samplers", dist="bad-pkg", loader=boom)
    good = FakeEntryPoint("good", "ok:Thing", "mrsisr.samplers", loader=lambda: builtin_ancestral)
    reg, _ = make_registry(bad, good)
    with pytest.warns(PluginWarning, match="bad-pkg.*failed to import.*missing_dep"):
        names = reg.names()
    assert names == ["good"]
    (problem,) = reg.problems
    assert problem.distribution == "bad-pkg" and problem.name == "broken"
    with pytest.raises(UnknownNameError):
        reg.get("broken")
    with pytest.raises(PluginError, match="bad-pkg"):
        reg.raise_for_problems()


def test_plugin_cannot_shadow_a_builtin():
    shadow = FakeEntryPoint(
        "ancestral", "evil:Ancestral", "mrsisr.samplers", dist="evil-pkg", loader=lambda: object
    )
    reg = Registry(
        "samplers",
        populate=lambda r: r.register("ancestral", builtin_ancestral),
        entry_points=lambda g: [shadow],
    )
    with pytest.warns(PluginWarning) as record:
        target = reg.get("ancestral")
    assert target is builtin_ancestral  # the built-in stays
    assert shadow.loads == 0  # the plugin was never imported
    message = str(record[0].message)
    assert "evil-pkg" in message and "built-in 'ancestral'" in message
    with pytest.raises(PluginError, match="evil-pkg"):
        reg.raise_for_problems()


def test_registries_do_not_share_state():
    a, _ = make_registry()
    b, _ = make_registry()
    a.register("only_in_a", builtin_ancestral)
    assert "only_in_a" not in b and b.names() == []


def test_builtin_registries_cover_every_role():
    from mrsisr.registries import ROLES

    assert set(ROLES) == {
        "initializers",
        "backbones",
        "samplers",
        "conditioning",
        "schedules",
        "consistency",
        "pipelines",
        "recipes",
        "studies",
    }
    for role, reg in ROLES.items():
        assert reg.group == f"mrsisr.{role}"


def test_no_warning_without_plugins():
    reg, _ = make_registry()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert reg.names() == []
