"""Named registries of interchangeable components, with entry-point plugins.

There is one [`Registry`][mrsisr.registry.Registry] per role (initializers, backbones, samplers,
conditioning, schedules, pipelines, recipes). A built-in component registers itself with a
decorator in the module that defines it; the registry imports those modules lazily, on the first
lookup, so `mrsisr --help` does not pay for importing torch.

Third-party packages add components through an entry-point group per role, for example

```toml
[project.entry-points."mrsisr.samplers"]
ddim = "mrsisr_ddim:DDIMSampler"
```

Plugins are discovered on the first lookup too. A plugin that fails to import is reported (with
its distribution name) and skipped; a plugin that uses the name of a built-in is refused with an
error naming both; neither stops the rest of mrsisr from working.

Examples:
    >>> from mrsisr.registry import Registry
    >>> reg = Registry("toys", entry_points=lambda group: [])
    >>> @reg.register("double")
    ... def double(x: int) -> int:
    ...     '''Multiply by two.'''
    ...     return 2 * x
    >>> reg.build("double", x=3)
    6
    >>> reg.describe("double")
    'Multiply by two.'
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import inspect
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mrsisr.errors import DuplicateNameError, PluginError, UnknownNameError

T = TypeVar("T")

ENTRY_POINT_PREFIX = "mrsisr."


class PluginWarning(UserWarning):
    """Warning category for plugins that were skipped (import failure or name clash)."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component.

    Attributes:
        name: The snake_case name used in recipes (`type = "..."`) and on the command line.
        target: The registered class or function.
        description: One line saying what it is (defaults to the first docstring line).
        plugin: Distribution name of the plugin package that provided it, or `None` for built-ins.
    """

    name: str
    target: T
    description: str
    plugin: str | None = None


@dataclass(frozen=True)
class PluginProblem:
    """A plugin entry point that was skipped, and why.

    Attributes:
        group: The entry-point group, e.g. `mrsisr.samplers`.
        name: The entry point's name.
        distribution: The distribution (package) that declared it.
        message: One line saying what went wrong and what to do.
    """

    group: str
    name: str
    distribution: str
    message: str


def first_doc_line(obj: Any) -> str:
    """Return the first line of an object's docstring, or an empty string.

    Args:
        obj: Any object.

    Returns:
        The first non-empty docstring line, stripped.
    """
    doc = inspect.getdoc(obj) or ""
    for line in doc.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _default_entry_points(group: str) -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=group)


class Registry(Generic[T]):
    """A name → component table for one role, with lazy built-ins and entry-point plugins.

    Args:
        role: The role, in the plural (`"samplers"`); used in messages and in the default
            entry-point group `mrsisr.<role>`.
        locations: Modules imported on the first lookup so that their `@register` decorators run.
        populate: Optional callable run once on the first lookup to register built-ins that are
            not Python objects (the recipe registry registers the zoo's TOML files this way),
            or its `"module:function"` path, imported on that lookup (so the registry module
            does not import the module that fills it).
        group: Entry-point group to read plugins from; `None` gives `mrsisr.<role>`.
        entry_points: Function returning the entry points of a group. Tests pass a fake one; the
            default reads installed distributions with `importlib.metadata`.
        check: Optional check of a plugin's loaded target: returns a problem (one line) or
            `None`. A plugin that fails it is skipped with a warning, like one that fails to
            import (the recipe registry requires a path to an existing TOML file).
    """

    def __init__(
        self,
        role: str,
        *,
        locations: Iterable[str] = (),
        populate: Callable[[Registry[T]], None] | str | None = None,
        group: str | None = None,
        entry_points: Callable[[str], Iterable[importlib.metadata.EntryPoint]] | None = None,
        check: Callable[[Any], str | None] | None = None,
    ) -> None:
        self.role = role
        self._check = check
        self.group = group or f"{ENTRY_POINT_PREFIX}{role}"
        self._locations = tuple(locations)
        self._populate = populate
        self._entry_points = entry_points or _default_entry_points
        self._entries: dict[str, Entry[T]] = {}
        self._problems: list[PluginProblem] = []
        self._loaded = False
        self._loading = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ registration
    def register(
        self,
        name: str | None = None,
        target: T | None = None,
        *,
        description: str | None = None,
        plugin: str | None = None,
    ) -> Any:
        """Register a component, directly or as a decorator.

        Args:
            name: Registry name; defaults to the target's `__name__`.
            target: The component. If omitted, a decorator is returned.
            description: One-line description; defaults to the first docstring line.
            plugin: Distribution name when registered on behalf of a plugin.

        Returns:
            The target itself (so the decorator leaves it unchanged), or the decorator.

        Raises:
            DuplicateNameError: If the name is already taken in this registry.
        """

        def add(obj: T) -> T:
            key = name or getattr(obj, "__name__", None)
            if not key:
                raise ValueError(f"{self.role}: cannot register {obj!r} without a name")
            with self._lock:
                if key in self._entries:
                    old = self._entries[key]
                    raise DuplicateNameError(
                        f"{self.role}: the name '{key}' is already registered by "
                        f"{_origin(old)}; choose another name for {_describe_obj(obj)}"
                    )
                desc = description if description is not None else first_doc_line(obj)
                self._entries[key] = Entry(key, obj, desc, plugin)
            return obj

        if target is not None:
            return add(target)
        return add

    def unregister(self, name: str) -> None:
        """Remove an entry (mainly for tests and interactive use).

        Args:
            name: The entry to remove.

        Raises:
            UnknownNameError: If there is no such entry.
        """
        self._ensure_loaded()
        with self._lock:
            if name not in self._entries:
                raise self._unknown(name)
            del self._entries[name]

    # ------------------------------------------------------------------ lookup
    def get(self, name: str) -> T:
        """Return the component registered under `name`.

        Args:
            name: Registry name.

        Returns:
            The registered class, function or object.

        Raises:
            UnknownNameError: If nothing is registered under `name`; the message lists what
                exists and suggests the closest name.
        """
        return self.entry(name).target

    def entry(self, name: str) -> Entry[T]:
        """Return the full [`Entry`][mrsisr.registry.Entry] for `name`.

        Args:
            name: Registry name.

        Returns:
            The entry with its description and plugin origin.

        Raises:
            UnknownNameError: If nothing is registered under `name`.
        """
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            raise self._unknown(name) from None

    def build(self, name: str, /, **kwargs: Any) -> Any:
        """Look up `name` and call it with keyword arguments.

        Args:
            name: Registry name.
            **kwargs (Any): Arguments for the component's constructor or factory.

        Returns:
            The built component.
        """
        return self.get(name)(**kwargs)  # type: ignore[operator]

    def describe(self, name: str) -> str:
        """Return the one-line description of an entry.

        Args:
            name: Registry name.

        Returns:
            The description.
        """
        return self.entry(name).description

    def names(self, pattern: str = "*") -> list[str]:
        """Return the sorted names that match a shell-style pattern.

        Args:
            pattern: An `fnmatch` pattern; `*` lists everything.

        Returns:
            Sorted entry names.
        """
        self._ensure_loaded()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entries(self) -> list[Entry[T]]:
        """Return all entries, sorted by name.

        Returns:
            The entries, built-ins and plugins alike.
        """
        self._ensure_loaded()
        return [self._entries[n] for n in sorted(self._entries)]

    @property
    def problems(self) -> list[PluginProblem]:
        """Plugins that were skipped while loading this registry."""
        self._ensure_loaded()
        return list(self._problems)

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._entries)

    def __repr__(self) -> str:
        state = f"{len(self._entries)} entries" if self._loaded else "not loaded"
        return f"Registry({self.role!r}, {state})"

    # ------------------------------------------------------------------ loading
    def _ensure_loaded(self) -> None:
        if self._loaded or self._loading:
            return
        with self._lock:
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                for module in self._locations:
                    importlib.import_module(module)
                if isinstance(self._populate, str):
                    module, _, func = self._populate.partition(":")
                    self._populate = getattr(importlib.import_module(module), func)
                if self._populate is not None:
                    self._populate(self)
                self._load_plugins()
                self._loaded = True
            finally:
                self._loading = False

    def _load_plugins(self) -> None:
        seen: set[tuple[str, str]] = set()
        for ep in self._entry_points(self.group):
            dist = _dist_name(ep)
            if (ep.name, ep.value) in seen:  # the same distribution visible twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            if ep.name in self._entries:
                old = self._entries[ep.name]
                self._report(
                    ep,
                    dist,
                    f"plugin '{ep.name}' from {dist} ({ep.value}) would replace {_origin(old)} "
                    f"in {self.role}; it was skipped. Rename the entry point in {dist}.",
                )
                continue
            try:
                target = ep.load()
            except (Exception, SystemExit) as exc:  # any import-time failure of third-party code
                self._report(
                    ep,
                    dist,
                    f"plugin '{ep.name}' from {dist} failed to import ({type(exc).__name__}: "
                    f"{_one_line(exc)}); it was skipped. Reinstall or fix {dist}.",
                )
                continue
            problem = self._check(target) if self._check is not None else None
            if problem:
                self._report(
                    ep,
                    dist,
                    f"plugin '{ep.name}' from {dist} ({ep.value}): {problem}; it was skipped. "
                    f"Fix {dist}.",
                )
                continue
            self.register(ep.name, target, plugin=dist)

    def _report(self, ep: importlib.metadata.EntryPoint, dist: str, message: str) -> None:
        problem = PluginProblem(self.group, ep.name, dist, message)
        self._problems.append(problem)
        warnings.warn(message, PluginWarning, stacklevel=4)

    def _unknown(self, name: str) -> UnknownNameError:
        known = sorted(self._entries)
        folded = [k for k in known if k.lower() == str(name).lower()]
        close = folded or difflib.get_close_matches(str(name).lower(), known, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        listing = ", ".join(known) if known else "(none)"
        return UnknownNameError(f"unknown {self.role} entry '{name}'.{hint} Available: {listing}")

    def raise_for_problems(self) -> None:
        """Raise if any plugin of this registry was skipped (import failure or a built-in's name).

        Useful in strict environments (CI of a plugin package) where a skipped plugin must fail.

        Raises:
            PluginError: With the first problem's message (it names the plugin's distribution).
        """
        for p in self.problems:
            raise PluginError(p.message)


def _dist_name(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None) if dist is not None else None
    return name or "an unknown distribution"


def _origin(entry: Entry[Any]) -> str:
    if entry.plugin:
        return f"plugin '{entry.name}' from {entry.plugin}"
    return f"built-in '{entry.name}' ({_describe_obj(entry.target)})"


def _describe_obj(obj: Any) -> str:
    mod = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    return f"{mod}.{qual}" if mod and qual else repr(obj)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""
